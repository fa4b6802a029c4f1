"""The file-system strategies plugged into the ResourceManager suite: versioned over an overlay and
directly on the workspace, and inverse over an overlay and directly; real bwrap, a real snapshot store."""

from __future__ import annotations

from pathlib import Path

import pytest

from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.resource import Journaling, ResourceManager
from goexd.resources.fs.inverse import FsInverseResource
from goexd.resources.fs.versioned import FsVersionedResource
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore
from tests.conformance.resource_suite import Capabilities, InverseUse, ResourceBackend, ResourceManagerContract
from tests.fs_fingerprint import fingerprint


def sh(script: str) -> ActionSpec:
    return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", script))


def change(n: int) -> tuple[ActionSpec, ActionSpec]:
    """Appends to one file, adds one, changes a mode (of its own file); the inverse takes each back."""
    return (
        sh(f"echo line{n} >> a.txt && printf 'new {n}' > sub/new{n}.txt && chmod 600 m{n}.txt"),
        sh(f"sed -i '$ d' a.txt && rm sub/new{n}.txt && chmod 644 m{n}.txt"),
    )


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "sub" / "empty").mkdir(parents=True)
    (ws / "a.txt").write_text("alpha\n")
    for n in (1, 2, 3):
        (ws / f"m{n}.txt").write_text(f"mode {n}\n")
        (ws / f"m{n}.txt").chmod(0o644)
    (ws / "link").symlink_to("a.txt")
    return ws


def backend(tmp_path: Path, sandbox: BwrapSandbox, strategy: UndoStrategy, overlay: bool) -> ResourceBackend:
    ws = workspace(tmp_path)
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    resource = Resource("fs", ResourceKind.FS, str(ws), strategy)
    manager = FsInverseResource if strategy is UndoStrategy.INVERSE else FsVersionedResource

    def open_manager() -> ResourceManager:
        store = GitWorkspaceStore(tmp_path / "store.git", ws)
        store.capture(lenient=True)  # the engine's baseline
        m = manager(resource, store, sandbox, [tmp_path / "store.git"], overlays_dir=overlays if overlay else None)
        assert m.isolation == ("overlay" if overlay else "direct")
        return m

    return ResourceBackend(
        open=open_manager,
        change=change,
        failing=(sh("echo partial > partial.txt && chmod 600 a.txt && exit 3"), sh("rm partial.txt; chmod 644 a.txt")),
        read_action=sh("cat a.txt"),
        bad=ActionSpec(ActionKind.SQL, sql="SELECT 1"),
        bad_field="spec",
        state=lambda: fingerprint(ws),
    )


FS_CAPS = Capabilities(strategy_words="at the same path in the sandbox", read_journaling=Journaling.EACH_STEP)
INVERSE_CAPS = Capabilities(
    strategy_words="at the same path in the sandbox", read_journaling=Journaling.EACH_STEP, inverse=InverseUse.OPTIONAL
)


class TestFsVersioned(ResourceManagerContract):
    caps = FS_CAPS

    @pytest.fixture(params=[True, False], ids=["overlay", "direct"])
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path, sandbox: BwrapSandbox) -> ResourceBackend:
        return backend(tmp_path, sandbox, UndoStrategy.VERSIONED, overlay=request.param)


class TestFsInverse(ResourceManagerContract):
    caps = INVERSE_CAPS

    @pytest.fixture(params=[True, False], ids=["overlay", "direct"])
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path, sandbox: BwrapSandbox) -> ResourceBackend:
        return backend(tmp_path, sandbox, UndoStrategy.INVERSE, overlay=request.param)
