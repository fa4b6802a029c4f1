"""Undoing an older action alone, then the later one (issue 14 F9), through a real goexd: the later undo
replays the older undo first (ReplaysUndone, resources/fs/versioned.py UNDONE_SINCE), so after both the
workspace is exactly as before either ran: a directory the older one made and its undo kept only for the
later one's files goes with them; one the person put something in stays; what the older (forced) undo
took back, or found already as before it, is not written again. And a path whose directory a later
action removed is a conflict for the older undo alone."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell, undo
from tests.fs_fingerprint import fingerprint


def forced_undo(d: DaemonProcess, session_id: str, action_id: str) -> list[pb.Action]:
    req = apb.UndoActionRequest(session_id=session_id, action_id=action_id, force=True)
    return list(d.actions.UndoAction(req, timeout=60).undone)


def list_set_asides(d: DaemonProcess, session_id: str) -> list[apb.SetAside]:
    return list(d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session_id), timeout=30).set_asides)


def _older_undone_alone(d: DaemonProcess, workspace: Path) -> tuple[str, str]:
    """The older action makes n/x/y, the later one n/z; the older is undone alone (n/ stays for n/z).
    (session id, the later action's id)."""
    s = open_fs(d, workspace)
    older = shell(d, s.id, "mkdir -p n/x && echo y > n/x/y")
    later = shell(d, s.id, "echo z > n/z")
    undo(d, s.id, older.id)
    assert sorted(p.name for p in (workspace / "n").iterdir()) == ["z"]
    return s.id, later.id


def test_a_directory_kept_only_for_a_later_actions_files_goes_with_them(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    before = fingerprint(workspace)
    session_id, later = _older_undone_alone(shared_daemon, workspace)
    [undone] = undo(shared_daemon, session_id, later)
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED
    assert not (workspace / "n").exists()
    assert fingerprint(workspace) == before  # was: an empty n/ left behind, both undos "verified"


def test_a_directory_the_person_put_something_in_stays(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session_id, later = _older_undone_alone(shared_daemon, workspace)
    (workspace / "n" / "mine.txt").write_text("the person's\n")
    undo(shared_daemon, session_id, later)
    assert sorted(p.name for p in (workspace / "n").iterdir()) == ["mine.txt"]
    assert (workspace / "n" / "mine.txt").read_text() == "the person's\n"


def test_what_a_forced_undo_of_the_older_took_back_is_not_written_again(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    before = fingerprint(workspace)
    s = open_fs(shared_daemon, workspace)
    older = shell(shared_daemon, s.id, "echo one > a.txt; echo changed > b.txt")
    later = shell(shared_daemon, s.id, "echo two > a.txt")
    forced_undo(shared_daemon, s.id, older.id)  # a.txt: the later one's version is set aside
    assert not (workspace / "a.txt").exists() and (workspace / "b.txt").read_text() == "bee\n"
    undo(shared_daemon, s.id, later.id)  # no conflict, nothing of the older one comes back
    assert not (workspace / "a.txt").exists()
    assert fingerprint(workspace) == before


def test_what_the_older_undo_found_already_as_before_it_is_not_brought_back(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    """The later action wrote back what the older one replaced: the older undo finds it already as before
    it and writes nothing; undoing the later one then leaves it so (the older one's version, undone, does
    not come back)."""
    before = fingerprint(workspace)
    s = open_fs(shared_daemon, workspace)
    older = shell(shared_daemon, s.id, "echo one > b.txt; mkdir -p n/x")
    later = shell(shared_daemon, s.id, "echo bee > b.txt")
    undo(shared_daemon, s.id, older.id)  # b.txt: already "bee"; n/ goes
    assert fingerprint(workspace) == before
    [undone] = undo(shared_daemon, s.id, later.id)
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED
    assert (workspace / "b.txt").read_text() == "bee\n"  # was "one\n" in the property test's model
    assert fingerprint(workspace) == before
    assert not list_set_asides(shared_daemon, s.id)


def test_a_path_whose_directory_a_later_action_moved_away_is_a_conflict(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    """The older action removed sub/c.bin, the later one moved sub/ away: putting sub/c.bin back would make
    sub/ again, so the older undo alone is refused naming it, though sub/c.bin itself is as it was left;
    forced, sub/ comes back as the older action left it, with sub/c.bin, and sub2/ stays the later one's."""
    s = open_fs(shared_daemon, workspace)
    older = shell(shared_daemon, s.id, "rm sub/c.bin")
    shell(shared_daemon, s.id, "mv sub sub2")
    now = fingerprint(workspace)
    with pytest.raises(grpc.RpcError) as refused:
        undo(shared_daemon, s.id, older.id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sub/c.bin" in refused.value.details()
    assert fingerprint(workspace) == now  # refused whole
    [undone] = forced_undo(shared_daemon, s.id, older.id)
    assert undone.state == pb.ACTION_STATE_UNDONE
    assert (workspace / "sub" / "c.bin").read_bytes() == bytes(range(256))
    assert sorted(os.listdir(workspace / "sub2")) == []
    assert {p: e for p, e in fingerprint(workspace).items() if p not in ("sub", "sub/c.bin")} == now
