"""kill -9 around the file inverse strategy: during the trial, the action, and the undo that runs the
inverse. The inverse used here is not idempotent (it deletes the last line), so running it twice
shows: the workspace must end exactly as before the action, the inverse run at most once.

- killed during the trial -> nothing of it reached the workspace, its overlay dir is gone at restart;
- killed after the action was applied, before EXECUTED -> rolled back from its snapshots (never by the
  inverse, meant for a whole action);
- killed in the undo: before it ran, after the inverse's result was snapshotted (its apply intent
  written), after it was applied, after the manager returned -> UNDONE at restart, the inverse's
  effect applied exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get
from tests.faults.crash import armed, crash, restart, stop_cleanly
from tests.fs_fingerprint import fingerprint

TAG = "fs-inverse"
ACTION = "echo more >> f.txt"
INVERSE = "sed -i '$ d' f.txt"  # twice would take "b" too
MINE = b"the person's \x00\xff version\n"


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("a\nb\n")
    return ws


def _session(d: DaemonProcess, ws: Path) -> str:
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)), strategy=pb.UNDO_STRATEGY_INVERSE)
    return str(d.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60).session.id)


def _request(session: str, action: str = ACTION, detach: bool = False) -> apb.SubmitActionRequest:
    return apb.SubmitActionRequest(
        session_id=session,
        spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", action])),
        inverse=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", INVERSE])),
        detach=detach,
    )


def _leftovers(d: DaemonProcess) -> list[str]:
    overlays = d.state_dir / "overlays"
    return sorted(p.name for p in overlays.iterdir()) if overlays.exists() else []


def test_killed_during_the_trial_leaves_nothing(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    (tmp_path / "daemon").mkdir()
    d = DaemonProcess(tmp_path / "daemon").start()
    session = _session(d, ws)
    accepted = d.actions.SubmitAction(_request(session, f"sleep 5; {ACTION}", detach=True), timeout=60).action
    deadline = time.monotonic() + 20
    while not any(n.startswith("trial-") for n in _leftovers(d)):
        assert time.monotonic() < deadline, d.log()[-2000:]
        time.sleep(0.05)
    d.kill()  # SIGKILL, mid-trial
    assert fingerprint(ws) == before
    restart(d)
    assert _leftovers(d) == []
    assert get(d, accepted.id).state == pb.ACTION_STATE_INTERRUPTED
    assert fingerprint(ws) == before
    stop_cleanly(d)


def test_killed_after_the_action_was_applied_is_rolled_back_from_its_snapshots(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    d = armed(tmp_path / "daemon", f"fs-applied:{TAG}")
    session = _session(d, ws)
    crash(d, f"fs-applied:{TAG}", lambda: d.actions.SubmitAction(_request(session), timeout=60))
    assert (ws / "f.txt").read_text() == "a\nb\nmore\n"
    restart(d)
    [action] = d.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=10).actions
    assert action.state == pb.ACTION_STATE_INTERRUPTED and "rolled back" in action.error
    assert fingerprint(ws) == before
    stop_cleanly(d)


# The fs points are reached first by the action's own apply (1st), then by the undo's (2nd).
@pytest.mark.parametrize("point", ["undo-journaled", "fs-apply-intent@2", "fs-applied@2", "undo-returned"])
def test_an_undo_killed_anywhere_runs_the_inverse_exactly_once(tmp_path: Path, point: str) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    name, _, nth = point.partition("@")
    spec = f"{name}:{TAG}" + (f"@{nth}" if nth else "")
    d = armed(tmp_path / "daemon", spec)
    session = _session(d, ws)
    action = d.actions.SubmitAction(_request(session), timeout=60).action
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    assert action.reversibility.verdict == pb.VERDICT_PASSED, action.reversibility.detail
    assert (ws / "f.txt").read_text() == "a\nb\nmore\n"
    crash(d, f"{name}:{TAG}", lambda: d.actions.UndoAction(apb.UndoActionRequest(session_id=session), timeout=60))
    restart(d)
    undone = get(d, action.id)
    assert undone.state == pb.ACTION_STATE_UNDONE, (undone.state, undone.error)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert (ws / "f.txt").read_text() == "a\nb\n"  # the inverse took one line, once
    assert fingerprint(ws) == before
    assert _leftovers(d) == []
    stop_cleanly(d)


def test_an_edit_made_while_goexd_was_down_mid_undo_is_set_aside(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"fs-apply-intent:{TAG}@2")
    session = _session(d, ws)
    action = d.actions.SubmitAction(_request(session), timeout=60).action
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    crash(
        d, f"fs-apply-intent:{TAG}", lambda: d.actions.UndoAction(apb.UndoActionRequest(session_id=session), timeout=60)
    )
    (ws / "f.txt").write_bytes(MINE)  # the person's, after the crash: the finished apply overwrites it
    restart(d)
    assert get(d, action.id).state == pb.ACTION_STATE_UNDONE
    assert (ws / "f.txt").read_text() == "a\nb\n"
    kept = d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session), timeout=30).set_asides
    [mine] = [k for k in kept if "f.txt" in k.paths and "stopped in an undo" in k.reason]
    d.actions.RestoreSetAside(
        apb.RestoreSetAsideRequest(session_id=session, set_aside_id=mine.id, force=True), timeout=60
    )
    assert (ws / "f.txt").read_bytes() == MINE
    stop_cleanly(d)
