"""Action references, resolved by goexd (issue 19): a seq number, an id prefix or "last" wherever an action id
is asked for (show: GetAction, undo: UndoAction/UndoTo, diff: GetDiff, and the others), through a real goexd.
An ambiguous prefix is INVALID_ARGUMENT naming the candidates, a missing one NOT_FOUND."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell, status_of


def _get(d: DaemonProcess, ref: str, session: str = "") -> str:
    return d.actions.GetAction(apb.GetActionRequest(action_id=ref, session_id=session)).action.id


def test_seq_prefix_and_last_name_the_same_actions_everywhere(daemon: DaemonProcess, workspace: Path) -> None:
    s = open_fs(daemon, workspace).id
    ids = [shell(daemon, s, f"echo {i} > f{i}.txt").id for i in range(1, 4)]
    by_bare = next((i for i in ids if not i[4:12].isdecimal()), ids[0])
    bare = by_bare[4:12] if not by_bare[4:12].isdecimal() else f"act_{by_bare[4:12]}"
    for ref, want in (
        ("1", ids[0]),
        ("2", ids[1]),
        ("last", ids[2]),
        (ids[1][:10], ids[1]),  # "act_" and 6 hex digits
        (bare, by_bare),  # the hex digits alone (not digits only: those are seq numbers)
        (f"act_{ids[1][4:12]}", ids[1]),
        (ids[0], ids[0]),
        (f"  {ids[0]}  ", ids[0]),
    ):
        assert _get(daemon, ref, s) == want, ref
    assert _get(daemon, ids[2][:12]) == ids[2]  # a prefix needs no session
    diff = daemon.actions.GetDiff(apb.GetDiffRequest(action_id="2", session_id=s))
    assert diff.action_id == ids[1] and "f2.txt" in diff.files[0].path
    undone = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s, action_id="last")).undone
    assert [a.id for a in undone] == [ids[2]] and not (workspace / "f3.txt").exists()
    fourth = shell(daemon, s, "echo 4 > f4.txt").id
    undone = daemon.actions.UndoTo(apb.UndoToRequest(action_id="1", session_id=s)).undone
    assert [a.id for a in undone] == [fourth, ids[1]] and not (workspace / "f2.txt").exists()
    committed = daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s, up_to_action_id="1")).committed
    assert [a.id for a in committed] == [ids[0]]


def test_bad_references_get_the_right_status_and_change_nothing(daemon: DaemonProcess, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    s = open_fs(daemon, tmp_path / "a").id
    other = open_fs(daemon, tmp_path / "b").id
    first = shell(daemon, s, "echo 1 > one.txt").id
    theirs = shell(daemon, other, "echo 1 > one.txt").id
    for ref, session, code, words in (
        ("last", "", grpc.StatusCode.INVALID_ARGUMENT, "action_id: 'last' counts in a session"),
        ("3", "", grpc.StatusCode.INVALID_ARGUMENT, "give session_id too"),
        ("99", s, grpc.StatusCode.NOT_FOUND, f"number 99 of session {s}"),
        ("99999999999999999999999", s, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ("last", "ses_0000000000000000", grpc.StatusCode.NOT_FOUND, "ses_0000000000000000"),
        ("ab", s, grpc.StatusCode.INVALID_ARGUMENT, "too short a prefix"),
        ("act_ffff", s, grpc.StatusCode.NOT_FOUND, "act_ffff"),
        ("no such thing!", s, grpc.StatusCode.INVALID_ARGUMENT, "is not an action reference"),
        ("", s, grpc.StatusCode.INVALID_ARGUMENT, "action_id: is required"),
        (theirs, s, grpc.StatusCode.INVALID_ARGUMENT, "belongs to another session"),
        (theirs[:10], s, grpc.StatusCode.NOT_FOUND, f"in session {s}"),  # a prefix counts in the session given
    ):
        got, msg = status_of(lambda r=ref, se=session: _get(daemon, r, se))
        assert got == code and words in msg, (ref, got, msg)
    got, msg = status_of(lambda: daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s, action_id="7")))
    assert got == grpc.StatusCode.NOT_FOUND and "number 7" in msg
    assert (tmp_path / "a" / "one.txt").exists()  # nothing was undone by the refusals
    assert _get(daemon, "last", s) == first


def test_an_ambiguous_prefix_names_the_candidates(daemon: DaemonProcess, workspace: Path) -> None:
    s = open_fs(daemon, workspace).id
    real = shell(daemon, s, "echo 1 > one.txt").id
    daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s))
    daemon.sessions.CloseSession(sepb.CloseSessionRequest(session_id=s))
    assert daemon.stop() == 0
    # Ids are random: make a second one share the first's 8 leading hex digits, in the journal itself.
    twin = real[:12] + ("0000" if real[12:16] != "0000" else "1111")
    journal = sqlite3.connect(daemon.state_dir / "journal.sqlite3")
    with journal:
        cols = [r[1] for r in journal.execute("PRAGMA table_info(actions)")]
        picked = ", ".join("? AS id" if c == "id" else ("seq + 1" if c == "seq" else c) for c in cols)
        journal.execute(
            f"INSERT INTO actions ({', '.join(cols)}) SELECT {picked} FROM actions WHERE id = ?", (twin, real)
        )
    journal.close()
    daemon.start()
    for ref in (real[:12], real[4:10]):
        got, msg = status_of(lambda r=ref: _get(daemon, r))
        assert got == grpc.StatusCode.INVALID_ARGUMENT and "ambiguous" in msg, msg
        assert real in msg and twin in msg and "give more of the id" in msg
    assert _get(daemon, real[:16]) == real  # more digits tell them apart
    assert _get(daemon, "last", s) == twin
