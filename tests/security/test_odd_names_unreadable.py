"""A message naming a file whose name is not UTF-8 text shows it escaped, as goexd shows names
everywhere (goexd/names.py), and is journaled and served like any other: here the error of an
action that finds an entry goexd's user may not read (root's, named b"foreign\\xff\\nx").

Before, the name reached SQLite and protobuf as a str with a lone surrogate (UnicodeEncodeError:
INTERNAL) or, in a status message, with "?" in place of the byte. Both modes of the suite: a root
goexd reads root's entry (the control: the action runs, its change set names the file exactly).
"""

from __future__ import annotations

import os
from pathlib import Path

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.conftest import close_session, mode_of, run_action, sec_session

FOREIGN = b"foreign\xff\nx"


def test_an_unreadable_entry_with_an_odd_name_is_named_escaped(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    d, ws = sec_daemon, os.fsencode(sec_workspace)
    os.mkdir(os.path.join(ws, FOREIGN), 0o700)  # root's: goex-sec may not read it
    with open(os.path.join(ws, FOREIGN, b"secret\xfe"), "wb") as f:
        f.write(b"root's\n")
    session = sec_session(d, sec_workspace)
    try:
        action = run_action(d, session, "echo hi > new.txt && echo x > \"$(printf 'odd\\377')\"")
        listed = d.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=10).actions
    finally:
        close_session(d, session)
    assert [a.id for a in listed] == [action.id]
    if mode_of(d) == "root":  # the control: root reads it; the action runs and its names are exact
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        assert {(c.path, c.path_bytes) for c in listed[0].changes.changes} == {
            ("new.txt", b"new.txt"),
            ("odd\\xff", b"odd\xff"),
        }
        return
    assert action.state == pb.ACTION_STATE_FAILED
    assert "foreign\\xff\\nx/ (owner 0:0, mode 0700)" in action.error, action.error
    assert listed[0].error == action.error  # as the journal kept it
    assert not os.path.exists(os.path.join(ws, b"odd\xff"))  # nothing ran
    assert "Traceback" not in d.log(), d.log()
