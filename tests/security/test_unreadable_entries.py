"""An action cannot defeat its own undo by leaving what goexd's user may not read.

`chmod 000 d`, `chmod 0 f`, a 0300 directory, a whole tree at mode 0, a 000 directory where a file
was, the workspace root at 0: an unprivileged goexd ("user" mode) used to fail the post-action
capture ("internal error while running"), then its rollback (ROLLBACK FAILED), with a traceback
in its log and the action's changes left in place. Whatever modes an action leaves on what
goexd's user owns, undo, undo-to, a failed action's rollback and crash recovery bring the
workspace back byte for byte and mode for mode. What goexd does not own and may not read (only
someone else can put it there: root here) fails the action cleanly, naming it, and the rollback
restores everything else and says what it left.

Each test goes through a real goexd in both modes of the suite (root over a root-owned workspace:
the control, root reads everything; goex-sec over its own), real bwrap and real files. The test
process is root: it fingerprints what goexd's user may not read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import Item, describe_diff, fingerprint
from tests.security.conftest import (
    action_spec,
    close_session,
    make_workspace,
    mode_of,
    result_of,
    run_action,
    sec_session,
    start_daemon,
)

# Direct isolation: these tests follow entries an action leaves in the workspace while it runs (under the
# default overlay the workspace is not written until goexd applies the run: test_overlay_privileges.py).
SEC_DAEMON_CONFIG = '[fs]\nisolation = "direct"\n'

# name -> what the action does (its workspace holds README, lib/keep.txt and lib/sub/deep.txt).
LEFT_UNREADABLE = {
    "a 000 directory with files": "mkdir d && echo x > d/f && mkdir d/sub && echo y > d/sub/g && chmod 000 d",
    "000 files": "echo new > f && chmod 000 f lib/keep.txt README",
    "a 0300 directory": "mkdir w && echo x > w/f && chmod 0300 w lib",
    # Deepest first, the action's own working directory last (`chmod 0 .`).
    "a nested tree at 0": "mkdir -p t/a && echo x > t/a/f && chmod 0 t/a/f t/a && cd lib/sub && chmod 0 deep.txt .. .",
    "a 000 directory where a file was": "rm README && mkdir README && echo x > README/inner && chmod 000 README",
    "the workspace root at 0": "echo x > new && chmod 0 lib/sub lib . ",
}
ACTIVE = (pb.ACTION_STATE_PROPOSED, pb.ACTION_STATE_PREPARING, pb.ACTION_STATE_RUNNING)


def populate(ws: Path, uid: int, gid: int) -> dict[str, Item]:
    """Give the workspace a tree to damage (the daemon's user's); returns its fingerprint."""
    (ws / "lib" / "sub").mkdir(parents=True)
    (ws / "lib" / "keep.txt").write_text("kept\n")
    (ws / "lib" / "sub" / "deep.txt").write_text("deep\n")
    for p in (ws / "lib", ws / "lib" / "keep.txt", ws / "lib" / "sub", ws / "lib" / "sub" / "deep.txt"):
        os.chown(p, uid, gid)
    return fingerprint(ws)


def executed(d: DaemonProcess, session: str, script: str, **kw: object) -> pb.Action:
    action = run_action(d, session, script, **kw)
    assert action.state == pb.ACTION_STATE_EXECUTED, (action.error, result_of(action))
    assert action.exec.exit_code == 0, result_of(action)
    return action


def assert_same(ws: Path, expected: dict[str, Item]) -> None:
    actual = fingerprint(ws)
    assert actual == expected, describe_diff(expected, actual)


def assert_no_traceback(d: DaemonProcess) -> None:
    assert "Traceback" not in d.log(), d.log()


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def finished(d: DaemonProcess, action_id: str) -> pb.Action:
    def done() -> bool:
        return bool(d.actions.GetAction(apb.GetActionRequest(action_id=action_id)).action.state not in ACTIVE)

    wait_until(done, 60)
    action: pb.Action = d.actions.GetAction(apb.GetActionRequest(action_id=action_id)).action
    return action


@pytest.mark.parametrize("script", LEFT_UNREADABLE.values(), ids=LEFT_UNREADABLE.keys())
def test_undo_brings_back_what_an_action_left_unreadable(
    sec_daemon: DaemonProcess, sec_workspace: Path, script: str
) -> None:
    d, ws = sec_daemon, sec_workspace
    before = populate(ws, d.uid, d.gid)
    session = sec_session(d, ws)
    try:
        action = executed(d, session, script)
        left = fingerprint(ws)
        assert left != before and any(item[1] & 0o400 == 0 for item in left.values())  # the control
        assert action.changes.added + action.changes.modified + action.changes.deleted > 0
        (undone,) = d.actions.UndoAction(
            apb.UndoActionRequest(session_id=session, action_id=action.id), timeout=60
        ).undone
    finally:
        close_session(d, session)
    assert undone.state == pb.ACTION_STATE_UNDONE, undone.error
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert_same(ws, before)
    assert_no_traceback(d)


def test_undo_to_takes_back_two_actions_that_left_unreadable_entries(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    populate(ws, d.uid, d.gid)
    session = sec_session(d, ws)
    try:
        first = executed(d, session, "echo base > base.txt")
        kept = fingerprint(ws)
        executed(d, session, LEFT_UNREADABLE["a 000 directory with files"])
        executed(d, session, LEFT_UNREADABLE["a nested tree at 0"])
        undone = d.actions.UndoTo(apb.UndoToRequest(action_id=first.id), timeout=60).undone
    finally:
        close_session(d, session)
    assert [a.reversibility.verdict for a in undone] == [pb.VERDICT_PASSED] * 2, [a.error for a in undone]
    assert_same(ws, kept)
    assert_no_traceback(d)


def test_a_failed_actions_rollback_brings_back_what_it_left_unreadable(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    before = populate(ws, d.uid, d.gid)
    session = sec_session(d, ws)
    try:
        script = "mkdir d && echo x > d/f && chmod 000 d lib/keep.txt README lib/sub && sleep 30"
        action = run_action(d, session, script, timeout_s=2)
    finally:
        close_session(d, session)
    assert action.state == pb.ACTION_STATE_FAILED, action.error
    assert "rolled back (took back" in action.error and "verified on disk" in action.error, action.error
    assert "ROLLBACK FAILED" not in action.error and "internal error" not in action.error, action.error
    assert_same(ws, before)
    assert_no_traceback(d)


@pytest.mark.parametrize("mode", ["root", "user"])
def test_recovery_after_a_kill_brings_back_what_the_action_left_unreadable(mode: str) -> None:
    """SIGKILL goexd while the action sleeps after its chmods; the restarted goexd rolls it back."""
    with start_daemon(mode, SEC_DAEMON_CONFIG, check_alive=False) as d, make_workspace(d.uid, d.gid) as ws:
        before = populate(ws, d.uid, d.gid)
        session = sec_session(d, ws)
        script = "mkdir d && echo x > d/f && chmod 000 d lib/keep.txt lib && touch ready && chmod 0 . && sleep 300"
        spec = action_spec(script, timeout_s=600)
        req = apb.SubmitActionRequest(session_id=session, spec=spec, detach=True)
        action_id = d.actions.SubmitAction(req, timeout=60).action.id
        wait_until(lambda: (ws / "ready").exists() and os.stat(ws).st_mode & 0o777 == 0)
        d.kill()
        d.start()
        action = d.actions.GetAction(apb.GetActionRequest(action_id=action_id)).action
        assert action.state == pb.ACTION_STATE_INTERRUPTED, action.error
        assert "rolled back to its checkpoint (restored snapshot" in action.error, action.error
        assert_same(ws, before)
        assert_no_traceback(d)


# -- what goexd's user does not own and may not read ------------------------------------------


def make_foreign(ws: Path) -> None:
    """Root's entries, which goex-sec may not read (a root goexd reads them)."""
    (ws / "foreign").mkdir(mode=0o700)
    (ws / "foreign" / "secret").write_text("root's\n")
    (ws / "foreign.txt").write_text("root's\n")
    os.chmod(ws / "foreign.txt", 0o600)


def test_an_action_on_a_workspace_holding_what_goexd_may_not_read_fails_cleanly(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    make_foreign(ws)
    session = sec_session(d, ws)
    try:
        action = run_action(d, session, "echo hi > new.txt")
    finally:
        close_session(d, session)
    if mode_of(d) == "root":  # the control: root reads them, the action runs
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        return
    assert action.state == pb.ACTION_STATE_FAILED
    assert action.error.startswith("could not checkpoint the resource: goexd's user (uid "), action.error
    assert "foreign/ (owner 0:0, mode 0700)" in action.error and "foreign.txt (owner 0:0, mode 0600)" in action.error
    assert not (ws / "new.txt").exists()  # nothing ran
    assert_no_traceback(d)


def test_what_goexd_may_not_read_appearing_during_an_action_fails_it_and_the_rest_is_rolled_back(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    before = populate(ws, d.uid, d.gid)
    session = sec_session(d, ws)
    try:
        script = (
            "echo changed > README && mkdir d && echo x > d/f && chmod 000 d lib/keep.txt && touch go && "
            "while [ ! -e foreign.txt ]; do sleep 0.05; done"
        )
        spec = action_spec(script)
        req = apb.SubmitActionRequest(session_id=session, spec=spec, detach=True)
        action_id = d.actions.SubmitAction(req, timeout=60).action.id
        wait_until((ws / "go").exists)
        make_foreign(ws)  # someone else, meanwhile
        action = finished(d, action_id)
    finally:
        close_session(d, session)
    if mode_of(d) == "root":  # the control: root reads them
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        return
    assert action.state == pb.ACTION_STATE_FAILED, action.error
    assert "goexd cannot snapshot them: foreign/ (owner 0:0, mode 0700), foreign.txt" in action.error, action.error
    assert "rolled back (restored snapshot" in action.error, action.error
    assert "but left 2 entries as they were, which goexd's user (uid " in action.error, action.error
    after = fingerprint(ws)
    assert sorted(set(after) - set(before)) == ["foreign", "foreign.txt", "foreign/secret"]
    assert {k: v for k, v in after.items() if k in before} == before, describe_diff(before, after)
    assert_no_traceback(d)
