"""Under the default overlay isolation: what an action writes reaches the workspace only through
goexd's apply, which never applies set-id bits, file capabilities or entries it cannot snapshot,
and entries an action leaves unreadable are taken back by its undo (both modes of the suite).

The direct-isolation checks of the same threats are test_setid_and_ownership.py and
test_unreadable_entries.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import fingerprint
from tests.security.conftest import close_session, result_of, run_action, sec_session
from tests.security.test_setid_and_ownership import CAP_NET_RAW, CAPABILITY, has_capability, make, perm

SETID = stat.S_ISUID | stat.S_ISGID


def _owner(d: DaemonProcess) -> tuple[int, int]:
    return d.uid, d.gid


def _undo(d: DaemonProcess, session: str) -> pb.Action:
    (undone,) = d.actions.UndoAction(apb.UndoActionRequest(session_id=session), timeout=60).undone
    return undone


def test_a_link_to_a_setuid_file_is_applied_without_its_set_id_bits(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    private = ws / "private"
    private.mkdir(mode=0o700)
    os.chown(private, *_owner(d))
    own = make(private / "own-suid", _owner(d), 0o4755)
    session = sec_session(d, ws)
    try:
        action = run_action(d, session, "ln private/own-suid exposed && ls -l exposed")
        assert action.state == pb.ACTION_STATE_EXECUTED and action.exec.exit_code == 0, result_of(action)
        assert "rws" in result_of(action).out  # the control: inside the sandbox the link was set-uid
        exposed = ws / "exposed"
        assert perm(exposed) & SETID == 0 and perm(own) & SETID == 0  # neither name keeps the bit
        assert any("exposed: set-id bits 4000 not applied" in w for w in action.changes.warnings)
        undone = _undo(d, session)
    finally:
        close_session(d, session)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert not exposed.exists() and perm(own) == 0o4755


def test_a_file_capability_never_reaches_the_workspace(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    d, ws = sec_daemon, sec_workspace
    kept = make(ws / "kept", _owner(d), 0o755)
    os.setxattr(kept, CAPABILITY, CAP_NET_RAW)  # put there by root, outside any action
    session = sec_session(d, ws)
    try:
        # The action copies a file that carries a capability (cp -a keeps xattrs where it can) and
        # rewrites the original: the copy must not carry it, and the original is replaced.
        action = run_action(d, session, "cp -a kept copy; echo more >> kept; true")
        assert action.state == pb.ACTION_STATE_EXECUTED, result_of(action)
    finally:
        close_session(d, session)
    assert (ws / "copy").exists() and not has_capability(ws / "copy")
    assert not has_capability(kept)


def test_entries_an_action_leaves_unreadable_are_taken_back(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    d, ws = sec_daemon, sec_workspace
    (ws / "d").mkdir()
    (ws / "d" / "f").write_text("f\n")
    for p in (ws / "d", ws / "d" / "f"):
        os.chown(p, *_owner(d))
    before = fingerprint(ws)
    session = sec_session(d, ws)
    try:
        script = "mkdir -p closed && echo s > closed/s && chmod 000 closed; chmod 000 d/f; chmod 000 d; chmod 000 ."
        action = run_action(d, session, script)
        assert action.state == pb.ACTION_STATE_EXECUTED, result_of(action)
        assert stat.S_IMODE(os.lstat(ws).st_mode) == 0 and stat.S_IMODE(os.lstat(ws / "closed").st_mode) == 0
        undone = _undo(d, session)
    finally:
        close_session(d, session)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert fingerprint(ws) == before
