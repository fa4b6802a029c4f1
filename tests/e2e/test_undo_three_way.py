"""Undo takes back exactly the action's changes and never a person's (issue 14), against a real goexd
run as root and as an unprivileged user, over real bwrap and overlayfs.

The person's edits are made from here, outside the sandbox, as the workspace's owner would.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, status_of
from tests.fs_fingerprint import fingerprint
from tests.security.conftest import MODES, make_workspace, run_action, sec_session, start_daemon


@pytest.fixture(scope="module", params=MODES)
def d(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    with start_daemon(request.param) as daemon:
        yield daemon


@pytest.fixture
def ws(d: DaemonProcess) -> Iterator[Path]:
    with make_workspace(d.uid, d.gid) as w:
        for name, text in {"a.txt": "a\n", "b.txt": "b\n", "keep/k.txt": "k\n"}.items():
            person_writes(d, w / name, text)
        yield w


def person_writes(d: DaemonProcess, path: Path, text: str) -> None:
    """Write as the workspace's owner would (from outside the sandbox)."""
    for parent in reversed(path.relative_to(path.parents[len(path.parents) - 1]).parents):
        p = Path("/") / parent
        if not p.exists():
            p.mkdir()
            os.chown(p, d.uid, d.gid)
    path.write_text(text)
    os.chown(path, d.uid, d.gid)


def undo(d: DaemonProcess, session: str, action_id: str = "", *, force: bool = False, cascade: bool = False) -> list:
    req = apb.UndoActionRequest(session_id=session, action_id=action_id, force=force, cascade=cascade)
    return list(d.actions.UndoAction(req, timeout=60).undone)


def set_asides(d: DaemonProcess, session: str) -> list[apb.SetAside]:
    return list(d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session), timeout=30).set_asides)


def test_a_persons_edits_elsewhere_survive_the_undo(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    a = run_action(d, s, "echo agent >> a.txt; echo new > made.txt")
    assert a.state == pb.ACTION_STATE_EXECUTED
    person_writes(d, ws / "b.txt", "my edit\n")  # a file the action did not touch
    person_writes(d, ws / "mine.txt", "mine\n")  # a file the person made
    undone = undo(d, s)
    assert [u.state for u in undone] == [pb.ACTION_STATE_UNDONE]
    assert undone[0].reversibility.verdict == pb.VERDICT_PASSED
    assert (ws / "a.txt").read_text() == "a\n" and not (ws / "made.txt").exists()
    assert (ws / "b.txt").read_text() == "my edit\n" and (ws / "mine.txt").read_text() == "mine\n"
    assert "kept as" not in undone[0].reversibility.detail  # nothing was set aside, and it says nothing of it
    assert set_asides(d, s) == []


def test_a_path_changed_since_refuses_the_undo_and_force_sets_it_aside(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    a = run_action(d, s, "echo agent > a.txt; echo agent > b.txt")
    person_writes(d, ws / "a.txt", "person's version\n")
    before = fingerprint(ws)
    code, msg = status_of(lambda: undo(d, s))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "a.txt" in msg and "b.txt" not in msg
    assert "force" in msg and "cascade" in msg
    assert fingerprint(ws) == before  # refused whole: nothing written
    assert get(d, a.id).state == pb.ACTION_STATE_EXECUTED

    undone = undo(d, s, force=True)
    assert undone[0].state == pb.ACTION_STATE_UNDONE
    assert (ws / "a.txt").read_text() == "a\n" and (ws / "b.txt").read_text() == "b\n"
    kept = set_asides(d, s)
    assert len(kept) == 1 and list(kept[0].paths) == ["a.txt"] and kept[0].action_id == a.id
    assert kept[0].id in undone[0].reversibility.detail

    done = d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id), timeout=60)
    assert done.verified
    assert (ws / "a.txt").read_text() == "person's version\n" and (ws / "b.txt").read_text() == "b\n"
    assert set_asides(d, s) == []
    code, msg = status_of(
        lambda: d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id))
    )
    assert code == grpc.StatusCode.NOT_FOUND and kept[0].id in msg


def test_a_file_saved_while_the_action_ran_is_the_persons(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    req = apb.SubmitActionRequest(
        session_id=s,
        spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "sleep 1.5; echo agent > c.txt; echo x >> a.txt"])),
    )
    result: list[pb.Action] = []
    runner = threading.Thread(target=lambda: result.append(d.actions.SubmitAction(req, timeout=60).action))
    runner.start()
    time.sleep(0.6)
    person_writes(d, ws / "c.txt", "saved by the person meanwhile\n")
    person_writes(d, ws / "other.txt", "also meanwhile\n")
    runner.join()
    action = result[0]
    assert action.state == pb.ACTION_STATE_EXECUTED
    # Only what the action wrote is its change; the person's other file is not in it.
    assert sorted(c.path for c in action.changes.changes) == ["a.txt", "c.txt"]
    assert any("c.txt" in w and "set aside" in w for w in action.changes.warnings)
    assert (ws / "c.txt").read_text() == "agent\n"
    undo(d, s)
    assert (ws / "c.txt").read_text() == "saved by the person meanwhile\n"  # their version, not deleted
    assert (ws / "other.txt").read_text() == "also meanwhile\n" and (ws / "a.txt").read_text() == "a\n"


def test_an_older_action_is_undone_alone_unless_a_later_one_changed_the_same_paths(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    first = run_action(d, s, "echo one > one.txt")
    second = run_action(d, s, "echo two > two.txt")
    undone = undo(d, s, first.id)
    assert [u.id for u in undone] == [first.id]
    assert not (ws / "one.txt").exists() and (ws / "two.txt").read_text() == "two\n"
    assert get(d, second.id).state == pb.ACTION_STATE_EXECUTED

    third = run_action(d, s, "echo three > shared.txt")
    run_action(d, s, "echo four >> shared.txt")
    code, msg = status_of(lambda: undo(d, s, third.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "shared.txt" in msg
    undone = undo(d, s, third.id, cascade=True)
    assert len(undone) == 2 and not (ws / "shared.txt").exists()


def test_a_directory_the_action_made_stays_for_what_the_person_put_in_it(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    run_action(d, s, "mkdir -p new/deep && echo f > new/deep/f")
    person_writes(d, ws / "new" / "mine.txt", "mine\n")
    undone = undo(d, s)
    assert undone[0].reversibility.verdict == pb.VERDICT_PASSED
    assert "kept new/" in undone[0].reversibility.detail
    assert sorted(str(p.relative_to(ws)) for p in (ws / "new").rglob("*")) == ["new/mine.txt"]


def test_hard_linked_names_each_get_their_content_back(d: DaemonProcess, ws: Path) -> None:
    person_writes(d, ws / "x" / "a.txt", "linked\n")
    (ws / "y").mkdir()
    os.chown(ws / "y", d.uid, d.gid)
    os.link(ws / "x" / "a.txt", ws / "y" / "b.txt")
    s = sec_session(d, ws)
    action = run_action(d, s, "echo edited >> x/a.txt")
    # The action saw its own copy of x/a.txt (the overlay breaks the link, as a replace would):
    # y/b.txt is unchanged, and the change set says exactly that.
    assert [c.path for c in action.changes.changes] == ["x/a.txt"]
    assert (ws / "x" / "a.txt").read_text() == "linked\nedited\n" and (ws / "y" / "b.txt").read_text() == "linked\n"
    undone = undo(d, s)
    assert undone[0].reversibility.verdict == pb.VERDICT_PASSED
    assert (ws / "x" / "a.txt").read_text() == "linked\n" and (ws / "y" / "b.txt").read_text() == "linked\n"


def test_a_persons_edit_through_another_name_of_a_file_is_seen(d: DaemonProcess, ws: Path) -> None:
    person_writes(d, ws / "p" / "1.txt", "v1\n")
    (ws / "q").mkdir()
    os.chown(ws / "q", d.uid, d.gid)
    os.link(ws / "p" / "1.txt", ws / "q" / "2.txt")
    s = sec_session(d, ws)
    run_action(d, s, "true")  # goexd has seen the workspace
    with open(ws / "p" / "1.txt", "a") as f:  # the person edits through one name: q/2.txt changes too
        f.write("person\n")
    run_action(d, s, "echo agent > q/2.txt")
    undo(d, s)
    # The state before the action had the person's edit under both names: both get it back.
    assert (ws / "q" / "2.txt").read_text() == "v1\nperson\n" and (ws / "p" / "1.txt").read_text() == "v1\nperson\n"


def test_paths_that_run_code_later_are_flagged_for_the_reviewer(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    action = run_action(
        d, s, "echo 'export X=1' > .envrc; mkdir -p .vscode && echo '{}' > .vscode/tasks.json; echo x > a.txt"
    )
    flagged = {c.path: c.runs_code for c in action.changes.changes}
    assert flagged == {".envrc": True, ".vscode/tasks.json": True, "a.txt": False}
    assert any(".envrc" in w and "run code later" in w for w in action.changes.warnings)


def test_direct_isolation_undoes_three_way_too_and_says_attribution_is_approximate() -> None:
    with start_daemon("root", '[fs]\nisolation = "direct"\n') as direct, make_workspace(0, 0) as w:
        (w / "a.txt").write_text("a\n")
        s = sec_session(direct, w)
        action = run_action(direct, s, "echo agent > a.txt; echo new > made.txt")
        assert "direct isolation: changes others made" in action.reversibility.detail
        assert (w / "a.txt").read_text() == "agent\n"  # written in place while it ran
        (w / "mine.txt").write_text("mine\n")
        (w / "made.txt").write_text("the person's now\n")
        code, msg = status_of(lambda: undo(direct, s))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "made.txt" in msg
        undone = undo(direct, s, force=True)
        assert undone[0].state == pb.ACTION_STATE_UNDONE
        assert (w / "a.txt").read_text() == "a\n" and not (w / "made.txt").exists()
        assert (w / "mine.txt").read_text() == "mine\n"
        assert [list(k.paths) for k in set_asides(direct, s)] == [["made.txt"]]


def test_set_asides_expire_with_the_snapshot_retention() -> None:
    with start_daemon("root", "[gc]\nretention_hours = 0.0\n") as daemon, make_workspace(0, 0) as w:
        (w / "a.txt").write_text("a\n")
        s = sec_session(daemon, w)
        run_action(daemon, s, "echo agent > a.txt")
        (w / "a.txt").write_text("mine\n")
        undo(daemon, s, force=True)
        assert len(set_asides(daemon, s)) == 1
        dry = daemon.admin.RunGc(adpb.RunGcRequest(dry_run=True), timeout=60)
        assert any("set-aside" in r for r in dry.reasons) and len(set_asides(daemon, s)) == 1
        daemon.admin.RunGc(adpb.RunGcRequest(), timeout=60)
        assert set_asides(daemon, s) == []
