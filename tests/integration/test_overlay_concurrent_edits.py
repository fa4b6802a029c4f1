"""Which paths an overlay run's apply sets aside as changed by someone while it ran: exactly those that
differ between the workspace's snapshot just before the run and the one after (they were judged by
ctime with a slack, which counted goexd's own writes just before a run, an undo's, as a person's).
Real bwrap, real overlayfs, the real resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.resource import Checkpoint
from goexd.domain.sandbox import ExecResult, Limits
from goexd.resources.fs.versioned import FsVersionedResource
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore


def _resource(tmp: Path, sandbox: BwrapSandbox) -> tuple[FsVersionedResource, Path, BwrapSandbox]:
    """`sandbox`: the suite's, as goexd sets it up (a root one mounts the overlays itself)."""
    ws = tmp / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    (ws / "b.txt").write_text("b\n")
    overlays = tmp / "state" / "overlays"
    overlays.mkdir(parents=True)
    store = GitWorkspaceStore(tmp / "state" / "ws.git", ws)
    res = Resource("ws", ResourceKind.FS, str(ws), UndoStrategy.VERSIONED)
    return FsVersionedResource(res, store, sandbox, [], overlays_dir=overlays), ws, sandbox


def _run(fs: FsVersionedResource, action_id: str, script: str) -> tuple[Checkpoint, list[str]]:
    checkpoint = fs.checkpoint(action_id)
    spec = ActionSpec(kind=ActionKind.SHELL, argv=("sh", "-c", script))
    outcome = fs.execute(spec, Limits(timeout_s=30.0), checkpoint, None, None)
    assert outcome.exec.exit_code == 0 and outcome.changes is not None, outcome
    return {**checkpoint, **outcome.checkpoint_extra}, [w for w in outcome.changes.warnings if "set aside" in w]


def test_an_action_right_after_an_undo_sets_nothing_aside(tmp_path: Path, sandbox: BwrapSandbox) -> None:
    fs, ws, _ = _resource(tmp_path, sandbox)
    try:
        for i in range(5):  # the undo writes a.txt back moments before the next run starts
            checkpoint, kept = _run(fs, f"act{i}", "echo agent > a.txt")
            assert kept == [] and (ws / "a.txt").read_text() == "agent\n"
            assert fs.rollback(f"act{i}", checkpoint).verified
            assert (ws / "a.txt").read_text() == "a\n"
        assert fs.set_asides() == []
    finally:
        fs.close()


def test_a_file_changed_while_the_run_went_on_is_set_aside_and_one_left_alone_is_not(
    tmp_path: Path, sandbox: BwrapSandbox
) -> None:
    fs, ws, sandbox = _resource(tmp_path, sandbox)
    real_run = sandbox.run

    def run_while_the_person_edits(*args: Any, **kwargs: Any) -> ExecResult:
        result = real_run(*args, **kwargs)
        (ws / "a.txt").write_text("the person's\n")  # saved before the run's result is applied
        (ws / "b.txt").write_text("b\n")  # rewritten as it was: nothing of anyone's to keep
        return result

    sandbox.run = run_while_the_person_edits  # type: ignore[method-assign]
    try:
        _, kept_notes = _run(fs, "act", "echo agent > a.txt; echo agent > b.txt")
        assert (ws / "a.txt").read_text() == "agent\n" and (ws / "b.txt").read_text() == "agent\n"
        [kept] = fs.set_asides()
        assert kept.paths == ("a.txt",) and kept.action_id == "act"
        assert len(kept_notes) == 1 and kept.id in kept_notes[0]
        assert fs.restore_set_aside(kept.id).verified
        assert (ws / "a.txt").read_text() == "the person's\n"
    finally:
        fs.close()
