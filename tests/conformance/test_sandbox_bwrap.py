"""The bubblewrap sandbox plugged into the Sandbox suite: as a root goexd runs it, with its cgroup limits
directly on a root-owned workspace and over an overlay of it (mounted by the daemon itself; and by the
launch chain, where a root sandbox has no mount dir), and over an overlay of an unprivileged user's
workspace; with the rlimit fallback over a workspace of an unprivileged user (the run takes its uid: root
would ignore RLIMIT_NPROC, see sandbox/limits.py); and as an unprivileged goexd runs it, in a process of
the user `goex-sec` (tests/security's "user" mode), directly and over an overlay."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.domain.sandbox import Sandbox, SandboxSpec, WorkspaceOverlay
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.limits import RlimitEnforcer
from tests.conformance.as_user import AsUser
from tests.conformance.sandbox_suite import SandboxBackend, SandboxCaps, SandboxContract
from tests.users import ensure_system_user

UNPRIVILEGED = "goex-sec"  # as tests/security names the user an unprivileged goexd runs as


def dirs(tmp_path: Path, owner: tuple[int, int] | None = None) -> tuple[Path, Path]:
    """The workspace (of `owner`, else ours) and a dir beside it holding a file anyone may read."""
    ws = tmp_path / "ws"
    ws.mkdir(mode=0o755)
    (ws / "README").write_text("a workspace\n")
    if owner is not None:
        for p in (ws, ws / "README"):
            os.chown(p, *owner)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (outside / "secret.txt").write_text("outside-secret\n")
    (outside / "secret.txt").chmod(0o644)
    return ws, outside


@pytest.fixture
def user_ids() -> tuple[int, int]:
    user = ensure_system_user(UNPRIVILEGED)
    return user.pw_uid, user.pw_gid


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A scratch dir every user can reach (pytest's tmp_path is root's 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="goex-conform-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def direct(sandbox: Sandbox, tmp_path: Path, owner: tuple[int, int] | None = None) -> SandboxBackend:
    ws, outside = dirs(tmp_path, owner)

    def written(rel: str) -> bytes | None:
        return (ws / rel).read_bytes() if (ws / rel).exists() else None

    return SandboxBackend(sandbox, ws, outside, written=written)


class TestBwrapDirect(SandboxContract):
    caps = SandboxCaps()

    @pytest.fixture
    def backend(self, sandbox: BwrapSandbox, tmp_path: Path) -> SandboxBackend:
        return direct(sandbox, tmp_path)


def over_overlay(sandbox: Sandbox, tmp_path: Path, owner: tuple[int, int] | None = None) -> SandboxBackend:
    """Runs over a fresh overlay each (its upper dir carries the workspace root's owner and mode, as goexd
    makes it); writes land in the upper, the workspace itself stays as it was."""
    ws, outside = dirs(tmp_path, owner)
    runs = itertools.count()
    uppers: list[Path] = []

    def over(spec: SandboxSpec) -> SandboxSpec:
        run_dir = tmp_path / "overlays" / str(next(runs))
        upper, work = run_dir / "upper", run_dir / "work"
        upper.mkdir(parents=True)
        work.mkdir()
        os.chmod(upper, stat.S_IMODE(os.stat(ws).st_mode))
        if owner is not None:
            os.chown(upper, *owner)
            os.chown(work, *owner)
        uppers.append(upper)
        return SandboxSpec(**{**spec.__dict__, "overlay": WorkspaceOverlay(upper, work)})

    def written(rel: str) -> bytes | None:
        assert not (ws / rel).exists(), "a write over the overlay reached the workspace"
        return (uppers[-1] / rel).read_bytes() if (uppers[-1] / rel).exists() else None

    return SandboxBackend(sandbox, ws, outside, prepare=over, written=written)


class TestBwrapOverlay(SandboxContract):
    """Over an overlay as a root goexd runs it: mounted by the daemon itself (sandbox/overlay_mounts.py)."""

    caps = SandboxCaps()

    @pytest.fixture
    def backend(self, sandbox: BwrapSandbox, tmp_path: Path) -> SandboxBackend:
        assert sandbox.overlay_mounts is not None, "the suite runs as root, as a root goexd does"
        return over_overlay(sandbox, tmp_path)


class TestBwrapOverlayOfAUser(SandboxContract):
    """A root goexd over a workspace of an unprivileged user: the overlay it mounts itself, the run as them."""

    caps = SandboxCaps()

    @pytest.fixture
    def backend(self, sandbox: BwrapSandbox, open_dir: Path, user_ids: tuple[int, int]) -> SandboxBackend:
        return over_overlay(sandbox, open_dir, user_ids)


class TestBwrapOverlayLaunchChain(SandboxContract):
    """A root sandbox without a mount dir of its own: the launch chain mounts the overlay (unshare + mount)."""

    caps = SandboxCaps()

    @pytest.fixture
    def backend(self, tmp_path: Path) -> SandboxBackend:
        return over_overlay(BwrapSandbox(), tmp_path)


class TestBwrapOverlayUnprivileged(SandboxContract):
    """An unprivileged goexd's overlay: mounted in a user namespace of the run's own, rlimits as limits."""

    caps = SandboxCaps(reports_limits=False, enforced_by=frozenset({"rlimit"}))

    @pytest.fixture
    def backend(self, open_dir: Path, user_ids: tuple[int, int]) -> SandboxBackend:
        sandbox = AsUser("goexd.sandbox.bwrap:BwrapSandbox", *user_ids)
        sandbox.check()
        return over_overlay(sandbox, open_dir, user_ids)


class TestBwrapRlimit(SandboxContract):
    """Without cgroups: limits are rlimits, met by the command as failed allocations and forks."""

    caps = SandboxCaps(reports_limits=False, enforced_by=frozenset({"rlimit"}))

    @pytest.fixture
    def backend(self, open_dir: Path, user_ids: tuple[int, int]) -> SandboxBackend:
        return direct(BwrapSandbox(enforcer=RlimitEnforcer()), open_dir, user_ids)


class TestBwrapUnprivileged(SandboxContract):
    """bwrap started by an unprivileged user over a workspace of theirs: no cgroup delegated here, so rlimits
    (exact: the run has a user namespace of its own, whose tasks alone RLIMIT_NPROC counts)."""

    caps = SandboxCaps(reports_limits=False, enforced_by=frozenset({"rlimit"}))

    @pytest.fixture
    def backend(self, open_dir: Path, user_ids: tuple[int, int]) -> SandboxBackend:
        sandbox = AsUser("goexd.sandbox.bwrap:BwrapSandbox", *user_ids)
        sandbox.check()
        return direct(sandbox, open_dir, user_ids)
