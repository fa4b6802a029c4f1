"""kill -9 inside a workspace action's apply and inside its undo; the restart's recovery must leave
the workspace as the journal says, touch nothing else, and lose nobody's edit.

- killed after the run's result was snapshotted, before it touched the workspace -> INTERRUPTED, the
  workspace as before;
- killed after it was applied, before EXECUTED was journaled -> INTERRUPTED, taken back three-way
  (what someone changed there after the crash is set aside, never dropped);
- killed in the undo of A while a later action B is pending on other paths -> A is UNDONE and B keeps
  its effects (recovery once restored A's whole pre-action snapshot, wiping B's file).
"""

from __future__ import annotations

from pathlib import Path

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, shell
from tests.faults.crash import armed, crash, restart, stop_cleanly
from tests.fs_fingerprint import fingerprint

TAG = "fs-versioned"


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    (ws / "b.txt").write_text("b\n")
    return ws


def _submit(d: DaemonProcess, session: str, script: str) -> None:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec), timeout=60)


def _only_action(d: DaemonProcess, session: str) -> pb.Action:
    [action] = d.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=10).actions
    return action


def _no_overlays(d: DaemonProcess) -> bool:
    overlays = d.state_dir / "overlays"
    return not overlays.exists() or not any(overlays.iterdir())


def test_killed_before_the_apply_leaves_the_workspace_as_it_was(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    d = armed(tmp_path / "daemon", f"fs-apply-intent:{TAG}")
    session = open_fs(d, ws).id
    crash(d, f"fs-apply-intent:{TAG}", lambda: _submit(d, session, "echo agent > a.txt; rm b.txt"))
    assert fingerprint(ws) == before
    restart(d)
    action = _only_action(d, session)
    assert action.state == pb.ACTION_STATE_INTERRUPTED and "rolled back" in action.error
    assert fingerprint(ws) == before and _no_overlays(d)
    stop_cleanly(d)


def test_killed_after_the_apply_is_taken_back_at_restart(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    d = armed(tmp_path / "daemon", f"fs-applied:{TAG}")
    session = open_fs(d, ws).id
    crash(d, f"fs-applied:{TAG}", lambda: _submit(d, session, "echo agent > a.txt; rm b.txt; echo n > new.txt"))
    assert (ws / "a.txt").read_text() == "agent\n" and not (ws / "b.txt").exists()  # applied, not journaled
    restart(d)
    action = _only_action(d, session)
    assert action.state == pb.ACTION_STATE_INTERRUPTED and "rolled back" in action.error
    assert fingerprint(ws) == before and _no_overlays(d)
    stop_cleanly(d)


def test_an_edit_made_between_the_crash_and_the_restart_is_set_aside(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"fs-applied:{TAG}")
    session = open_fs(d, ws).id
    crash(d, f"fs-applied:{TAG}", lambda: _submit(d, session, "echo agent > a.txt; echo agent > b.txt"))
    (ws / "a.txt").write_text("the person's, after the crash\n")
    restart(d)
    action = _only_action(d, session)
    assert action.state == pb.ACTION_STATE_INTERRUPTED
    assert (ws / "a.txt").read_text() == "a\n" and (ws / "b.txt").read_text() == "b\n"
    kept = d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session), timeout=30).set_asides
    assert [list(k.paths) for k in kept] == [["a.txt"]] and kept[0].action_id == action.id
    d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=session, set_aside_id=kept[0].id), timeout=60)
    assert (ws / "a.txt").read_text() == "the person's, after the crash\n"
    stop_cleanly(d)


def _undo_crash(tmp_path: Path, point: str) -> None:
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"{point}:{TAG}")
    session = open_fs(d, ws).id
    first = shell(d, session, "echo A > a.txt")
    second = shell(d, session, "echo B > b.txt; echo new > later.txt")
    req = apb.UndoActionRequest(session_id=session, action_id=first.id)
    crash(d, f"{point}:{TAG}", lambda: d.actions.UndoAction(req, timeout=60))
    restart(d)
    assert get(d, first.id).state == pb.ACTION_STATE_UNDONE
    assert get(d, second.id).state == pb.ACTION_STATE_EXECUTED
    assert (ws / "a.txt").read_text() == "a\n"
    assert (ws / "b.txt").read_text() == "B\n" and (ws / "later.txt").read_text() == "new\n"  # B's effects stay
    stop_cleanly(d)


def test_killed_before_an_undo_ran_it_is_finished_without_touching_a_later_action(tmp_path: Path) -> None:
    _undo_crash(tmp_path, "undo-journaled")


def test_killed_after_an_undo_ran_it_is_recorded_without_touching_a_later_action(tmp_path: Path) -> None:
    _undo_crash(tmp_path, "undo-returned")
