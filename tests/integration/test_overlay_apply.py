"""An action run over an overlay gives exactly what it gives run on the workspace itself.

Each example builds one random tree twice, runs one random shell script over an overlay of the
first copy (real bwrap, real overlayfs) and directly on the second, then checks: the first copy
was not touched by the run; the snapshot built from the overlay's upper dir (tree_edit) has the
id of a capture of the second copy; applying it (three-way) makes the first copy byte-for-byte
the second; undoing it (three-way) gives back the original.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goexd.domain.sandbox import Limits, SandboxSpec, Termination, WorkspaceOverlay
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore
from tests.fs_fingerprint import describe_diff, fingerprint

NAMES = ["a", "b", "d/c", "d/e/f", "g"]
DIRS = ["d", "d/e", "h", "h/i"]

_ops = st.one_of(
    st.builds(
        lambda p, t: f"mkdir -p $(dirname {p}) && printf '{t}' > {p}",
        st.sampled_from(NAMES),
        st.text("xyz", max_size=5),
    ),
    st.builds(lambda p: f"echo more >> {p}", st.sampled_from(NAMES)),
    st.builds(lambda p: f"rm -f {p}", st.sampled_from(NAMES)),
    st.builds(lambda p: f"rm -rf {p}", st.sampled_from(DIRS)),
    st.builds(lambda p: f"mkdir -p {p}", st.sampled_from(DIRS)),
    st.builds(lambda p, m: f"chmod {m:o} {p}", st.sampled_from(NAMES + DIRS), st.sampled_from([0o600, 0o755, 0o700])),
    st.builds(lambda p, q: f"mv {p} {q}", st.sampled_from(NAMES + DIRS), st.sampled_from(NAMES + DIRS)),
    st.builds(lambda p, t: f"ln -sfn {t} {p}", st.sampled_from(NAMES), st.sampled_from(["a", "../x", "d"])),
    st.builds(lambda p: f"rm -rf {p} && mkdir -p {p} && echo new > {p}/n", st.sampled_from(DIRS)),
)
_seed = st.dictionaries(st.sampled_from(NAMES), st.binary(max_size=40), max_size=5)


def _build(root: Path, files: dict[str, bytes]) -> None:
    root.mkdir(parents=True)
    for d in ("d", "h"):
        (root / d).mkdir(exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=_seed, ops=st.lists(_ops, min_size=1, max_size=6))
def test_overlay_run_applied_equals_direct_run(
    tmp_path: Path, sandbox: BwrapSandbox, seed: dict[str, bytes], ops: list[str]
) -> None:
    """Over the overlay as goexd runs it (the suite's sandbox: a root one mounts it itself)."""
    base = tmp_path / "example"
    shutil.rmtree(base, ignore_errors=True)
    over, direct = base / "over", base / "direct"
    _build(over, seed)
    _build(direct, seed)
    original = fingerprint(over)
    script = "; ".join(f"{{ {op}; }} 2>/dev/null" for op in ops) + "; true"
    limits = Limits(timeout_s=20.0)

    store = GitWorkspaceStore(base / "over.git", over)
    try:
        pre = store.capture()
        upper, work = base / "upper", base / "work"
        upper.mkdir()
        work.mkdir()
        os.chmod(upper, os.stat(over).st_mode & 0o7777)
        ran = sandbox.run(SandboxSpec(["sh", "-c", script], over, overlay=WorkspaceOverlay(upper, work), limits=limits))
        assert ran.termination is Termination.EXITED, ran
        assert fingerprint(over) == original  # the run never touched the workspace

        ran_direct = sandbox.run(SandboxSpec(["sh", "-c", script], direct, limits=limits))
        assert ran_direct.termination is Termination.EXITED
        with GitWorkspaceStore(base / "direct.git", direct) as direct_store:
            expected = direct_store.capture()

        post, _ = store.edit(pre, upper, privileged=os.geteuid() == 0)
        assert post == expected, f"script: {script}"
        applied = store.revert(pre, post, force=True)
        assert applied.plan.conflicts == ()
        assert fingerprint(over) == fingerprint(direct), describe_diff(fingerprint(direct), fingerprint(over))
        assert store.capture() == post

        store.revert(post, pre)
        assert fingerprint(over) == original
    finally:
        store.close()
