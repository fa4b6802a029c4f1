"""A person writing in the workspace while goexd applies an action or undoes one loses nothing (issue 14,
F1/F2/F4): every last write of theirs is on disk or in a set-aside, byte-exact; the action's state agrees
with the workspace; nothing answers INTERNAL. Real goexd (root and unprivileged), bwrap, overlayfs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.test_undo_three_way import person_writes, set_asides
from tests.security.conftest import MODES, make_workspace, sec_session, start_daemon


@pytest.fixture(scope="module", params=MODES)
def d(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    with start_daemon(request.param) as daemon:
        yield daemon


@pytest.fixture
def ws(d: DaemonProcess) -> Iterator[Path]:
    with make_workspace(d.uid, d.gid) as w:
        yield w


def submit_while(d: DaemonProcess, session: str, script: str, meanwhile: Callable[[], None]) -> pb.Action:
    """Run `script` as an action; `meanwhile` runs here (as the person) while it does."""
    req = apb.SubmitActionRequest(
        session_id=session, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    )
    result: list[pb.Action] = []
    runner = threading.Thread(target=lambda: result.append(d.actions.SubmitAction(req, timeout=120).action))
    runner.start()
    meanwhile()
    runner.join()
    return result[0]


@pytest.mark.parametrize(
    "script",
    ["rm -rf d; sleep 2", "mv d e; sleep 2", "rm -rf d; mkdir d; echo agent > d/y; sleep 2"],
)
def test_files_a_person_writes_in_a_directory_the_action_removes_are_set_aside(
    d: DaemonProcess, ws: Path, script: str
) -> None:
    person_writes(d, ws / "d" / "x", "x\n")
    person_writes(d, ws / "d" / "y", "y\n")
    s = sec_session(d, ws)

    def person() -> None:
        time.sleep(1.0)
        person_writes(d, ws / "d" / "x", "PERSON-x\n")
        person_writes(d, ws / "d" / "new", "PERSON-new\n")

    action = submit_while(d, s, script, person)
    assert action.state == pb.ACTION_STATE_EXECUTED, action
    kept = set_asides(d, s)
    assert len(kept) == 1 and sorted(kept[0].paths) == ["d/new", "d/x"], kept
    assert any("set aside" in w and "d/new" in w for w in action.changes.warnings)
    assert not (ws / "d" / "new").exists()  # the action's rm removed it: set aside, and it says so
    done = d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id), timeout=60)
    assert done.verified, done
    assert (ws / "d" / "x").read_text() == "PERSON-x\n" and (ws / "d" / "new").read_text() == "PERSON-new\n"


def test_a_file_the_person_makes_a_directory_while_the_action_modifies_it_is_set_aside(
    d: DaemonProcess, ws: Path
) -> None:
    person_writes(d, ws / "f", "v1\n")
    s = sec_session(d, ws)

    def person() -> None:
        time.sleep(1.0)
        (ws / "f").unlink()
        person_writes(d, ws / "f" / "g", "PERSON-g\n")

    action = submit_while(d, s, "echo agent >> f; sleep 2", person)
    assert action.state == pb.ACTION_STATE_EXECUTED, action
    kept = set_asides(d, s)
    assert len(kept) == 1 and "f/g" in kept[0].paths, kept
    assert (ws / "f").read_text() == "v1\nagent\n"
    done = d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id), timeout=60)
    assert done.verified, done
    assert (ws / "f" / "g").read_text() == "PERSON-g\n"
