"""kill -9 inside a workspace action's apply and inside its undo; the restart's recovery must leave
the workspace as the journal says, touch nothing else, and lose nobody's edit.

- killed after the run's result was snapshotted, before it touched the workspace -> INTERRUPTED, the
  workspace as before;
- killed after it was applied, before EXECUTED was journaled -> INTERRUPTED, taken back three-way
  (what someone changed there after the crash is set aside, never dropped);
- killed in the undo of A while a later action B is pending on other paths -> A is UNDONE and B keeps
  its effects (recovery once restored A's whole pre-action snapshot, wiping B's file);
- killed in a forced undo, a forced recovery or an apply that overwrites a person's version, between
  recording its set-aside and writing, or after writing -> the person's version is listed (once) and
  brought back byte for byte (it was once recorded only after the write: a kill there lost it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from goexd.domain.errors import FailedPrecondition
from goexd.domain.models import Resource, ResourceKind, UndoStrategy
from goexd.faults import ARM_ENV, POINT_ENV
from goexd.resources.fs.versioned import APPLYING, FORCED, FsVersionedResource
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore
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


MINE = b"the person's \x00\xff version\n"  # bytes no text round trip keeps by accident


def _kept(d: DaemonProcess, session: str) -> list[apb.SetAside]:
    return list(d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session), timeout=30).set_asides)


def _restore(d: DaemonProcess, session: str, set_aside_id: str) -> None:
    req = apb.RestoreSetAsideRequest(session_id=session, set_aside_id=set_aside_id)
    assert d.actions.RestoreSetAside(req, timeout=60).verified


def _forced_undo_killed(tmp_path: Path, point: str, nth: int) -> None:
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"{point}:{TAG}@{nth}")
    session = open_fs(d, ws).id
    action = shell(d, session, "echo A > a.txt; echo A > b.txt")
    (ws / "a.txt").write_bytes(MINE)  # the person's, after the action: a forced undo overwrites it
    req = apb.UndoActionRequest(session_id=session, action_id=action.id, force=True)
    crash(d, f"{point}:{TAG}", lambda: d.actions.UndoAction(req, timeout=60))
    restart(d)  # recovery finishes the undo, forced
    assert get(d, action.id).state == pb.ACTION_STATE_UNDONE
    assert (ws / "a.txt").read_text() == "a\n" and (ws / "b.txt").read_text() == "b\n"
    [kept] = _kept(d, session)  # one, though the undo ran twice
    assert list(kept.paths) == ["a.txt"] and kept.action_id == action.id
    _restore(d, session, kept.id)
    assert (ws / "a.txt").read_bytes() == MINE and (ws / "b.txt").read_text() == "b\n"
    assert _kept(d, session) == []
    stop_cleanly(d)


def test_a_forced_undo_killed_after_its_set_aside_before_writing_loses_nothing(tmp_path: Path) -> None:
    _forced_undo_killed(tmp_path, "fs-set-aside-kept", 1)  # the action's apply set nothing aside


def test_a_forced_undo_killed_after_writing_keeps_the_person_s_version_listed(tmp_path: Path) -> None:
    _forced_undo_killed(tmp_path, "fs-revert-written", 2)  # the first is the action's apply


def test_a_recovery_killed_while_it_overwrites_an_edit_keeps_it_listed(tmp_path: Path) -> None:
    # Killed after the apply; the person edits; the restart's recovery takes the action back, forced over
    # the edit, and is killed itself between the edit's set-aside and the write; the next start finishes.
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"fs-applied:{TAG}")
    session = open_fs(d, ws).id
    crash(d, f"fs-applied:{TAG}", lambda: _submit(d, session, "echo agent > a.txt; echo agent > b.txt"))
    (ws / "a.txt").write_bytes(MINE)
    with pytest.raises(RuntimeError, match="goexd exited with -9"):  # killed in its recovery
        restart(d, f"fs-set-aside-kept:{TAG}")
    assert f"goexd: fault point fs-set-aside-kept:{TAG} hit" in d.log()
    d.kill()
    assert (ws / "a.txt").read_bytes() == MINE  # recorded, not yet overwritten
    restart(d)
    assert _only_action(d, session).state == pb.ACTION_STATE_INTERRUPTED
    assert (ws / "a.txt").read_text() == "a\n" and (ws / "b.txt").read_text() == "b\n"
    [kept] = _kept(d, session)
    assert list(kept.paths) == ["a.txt"]
    _restore(d, session, kept.id)
    assert (ws / "a.txt").read_bytes() == MINE
    stop_cleanly(d)


def test_a_forced_restore_killed_before_writing_keeps_both_versions(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"fs-set-aside-kept:{TAG}@2")  # the first is the forced undo's
    session = open_fs(d, ws).id
    action = shell(d, session, "echo A > a.txt")
    (ws / "a.txt").write_bytes(MINE)
    d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=action.id, force=True), timeout=60)
    [first] = _kept(d, session)
    (ws / "a.txt").write_bytes(b"a later edit\n")  # bringing MINE back (forced) overwrites this one
    req = apb.RestoreSetAsideRequest(session_id=session, set_aside_id=first.id, force=True)
    crash(d, f"fs-set-aside-kept:{TAG}", lambda: d.actions.RestoreSetAside(req, timeout=60))
    restart(d)
    assert (ws / "a.txt").read_bytes() == b"a later edit\n"  # nothing was written
    kept = {k.id: k for k in _kept(d, session)}
    assert first.id in kept and len(kept) == 2  # the first stays listed until it is brought back
    [second] = [k for k in kept if k != first.id]
    d.actions.RestoreSetAside(req, timeout=60)  # the retry: the later edit is set aside (again: one set-aside)
    assert (ws / "a.txt").read_bytes() == MINE
    [again] = _kept(d, session)
    assert again.id == second
    _restore(d, session, second)
    assert (ws / "a.txt").read_bytes() == b"a later edit\n"
    stop_cleanly(d)


# The apply's race (a path changed between the snapshot after the run and the write) cannot be timed from
# outside goexd: this runs the resource itself in a child process, with the person's edit made right after
# that snapshot, armed at the same fault point; the parent then does what recovery does.
_APPLY_RACE = """
import os, sys
from pathlib import Path
from goexd import faults
from goexd.domain.sandbox import Limits
from tests.faults.test_fs_crash import resource
faults.arm_from_env(os.environ)
ws, state = Path(sys.argv[1]), Path(sys.argv[2])
fs, store, sandbox = resource(ws, state)
checkpoint = fs.checkpoint("act")
real_capture, real_run = store.capture, sandbox.run
ran = []
def run(*args, **kwargs):
    result = real_run(*args, **kwargs)
    ran.append(result)
    return result
def capture(**kwargs):
    snap = real_capture(**kwargs)
    if ran:  # the apply's snapshot (`pre`) is taken: the person writes now
        (ws / "a.txt").write_bytes({mine!r})
    return snap
sandbox.run, store.capture = run, capture
from goexd.domain.models import ActionKind, ActionSpec
spec = ActionSpec(kind=ActionKind.SHELL, argv=("sh", "-c", "echo agent > a.txt; echo agent > b.txt"))
fs.execute(spec, Limits(timeout_s=30.0), checkpoint, None, None)
print("not killed")
"""


def resource(ws: Path, state: Path) -> tuple[FsVersionedResource, GitWorkspaceStore, BwrapSandbox]:
    store = GitWorkspaceStore(state / "ws.git", ws)
    sandbox = BwrapSandbox()
    overlays = state / "overlays"
    overlays.mkdir(parents=True, exist_ok=True)
    res = Resource("ws", ResourceKind.FS, str(ws), UndoStrategy.VERSIONED)
    return FsVersionedResource(res, store, sandbox, [], overlays_dir=overlays), store, sandbox


def test_an_apply_killed_after_setting_aside_a_racing_edit_loses_nothing(tmp_path: Path) -> None:
    ws, state = _workspace(tmp_path), tmp_path / "state"
    env = {**os.environ, ARM_ENV: "1", POINT_ENV: f"fs-set-aside-kept:{TAG}"}
    script = textwrap.dedent(_APPLY_RACE).format(mine=MINE)
    child = subprocess.run(
        [sys.executable, "-c", script, str(ws), str(state)], env=env, capture_output=True, timeout=120, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-3000:]
    assert f"goexd: fault point fs-set-aside-kept:{TAG} hit" in child.stderr.decode()
    assert (ws / "a.txt").read_bytes() == MINE and (ws / "b.txt").read_text() == "b\n"  # nothing applied
    fs, _, _ = resource(ws, state)  # goexd again: recovery rolls the run back from its intent
    try:
        assert fs.isolation == "overlay"
        assert fs.rollback("act", {"overlay": str(state / "overlays" / "act")}).verified
        assert (ws / "a.txt").read_text() == "a\n" and (ws / "b.txt").read_text() == "b\n"
        kept = fs.set_asides()
        assert kept and all(k.paths == ("a.txt",) and k.action_id == "act" for k in kept)
        # The recovery's (expected: the workspace as it took it back) brings the edit back. The apply's own
        # expect the run's result there, so each is then refused (what it holds differs) or finds its
        # version back already: none overwrites anything.
        [forced] = [k for k in kept if k.reason == FORCED]
        assert fs.restore_set_aside(forced.id).verified
        assert (ws / "a.txt").read_bytes() == MINE
        for k in kept:
            if k is not forced:
                with contextlib.suppress(FailedPrecondition):
                    fs.restore_set_aside(k.id)
                assert (ws / "a.txt").read_bytes() == MINE
        assert any(k.reason == APPLYING for k in kept)  # the apply's: recorded before the kill
        assert (ws / "b.txt").read_text() == "b\n"
    finally:
        fs.close()


def _temporaries(ws: Path) -> list[str]:
    return sorted(str(p.relative_to(ws)) for p in ws.rglob(".goex-write-*"))


@pytest.mark.parametrize("point", ["fs-write-named", "fs-write-swapped"])
def test_a_kill_in_the_middle_of_a_write_leaves_no_temporaries_after_the_restart(tmp_path: Path, point: str) -> None:
    """F8: killed with a file's new content under its temporary name (before the rename), or just after the
    exchange (the displaced version under it): the restart clears goexd's temporaries, never snapshots them,
    and takes the apply back."""
    ws = _workspace(tmp_path)
    (ws / "sub").mkdir()
    (ws / "sub" / "c.txt").write_text("c\n")
    before = fingerprint(ws)
    d = armed(tmp_path / "daemon", f"{point}:{TAG}")
    session = open_fs(d, ws).id
    crash(d, f"{point}:{TAG}", lambda: _submit(d, session, "echo agent >> a.txt; echo agent >> sub/c.txt"))
    assert _temporaries(ws)  # the kill left one
    restart(d)
    action = _only_action(d, session)
    assert action.state == pb.ACTION_STATE_INTERRUPTED and "rolled back" in action.error, action
    assert _temporaries(ws) == [] and not list(ws.rglob("*goex-kept*"))
    assert fingerprint(ws) == before and _no_overlays(d)
    stop_cleanly(d)
