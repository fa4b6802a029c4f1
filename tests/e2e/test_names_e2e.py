"""Names are bytes, through the real goexd: an action that makes, edits and deletes files whose
names are not UTF-8 text (tests/odd_names.py) is reported exactly by every RPC (path_bytes: the
bytes; path: the display form), kept exactly by the journal across a restart, shown escaped by
the CLI, and undone byte for byte. Before path_bytes, SubmitAction, every later ListActions,
GetAction and UndoAction answered INTERNAL (UnicodeEncodeError building the change set)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

import goex
from goex.cli import _json as cli_json
from goex.cli.main import main
from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, shell, undo
from tests.odd_names import LONG, ODD_FILES, ODD_LINK, listing, sh_word, shell_script

# What the workspace holds before the action: one odd name the action edits, one it deletes.
EDITED, DELETED = b"old\xff", b"gone\xfe\nx"
SCRIPT = f"{shell_script()} && printf more >> {sh_word(EDITED)} && rm {sh_word(DELETED)}"

# The action's change set: exact name -> (kind, display form), the display form written out by hand.
EXPECTED: dict[bytes, tuple[int, str]] = {
    b"bad\xff": (pb.CHANGE_KIND_ADDED, "bad\\xff"),
    b"nl\nname": (pb.CHANGE_KIND_ADDED, "nl\\nname"),
    b"back\\slash": (pb.CHANGE_KIND_ADDED, "back\\\\slash"),
    b"bad\\xff": (pb.CHANGE_KIND_ADDED, "bad\\\\xff"),
    b"\xc3\x28": (pb.CHANGE_KIND_ADDED, "\\xc3("),
    b"\xed\xa0\x80": (pb.CHANGE_KIND_ADDED, "\\xed\\xa0\\x80"),
    b"\xc0\xaf": (pb.CHANGE_KIND_ADDED, "\\xc0\\xaf"),
    b"\x1b[31mred": (pb.CHANGE_KIND_ADDED, "\\x1b[31mred"),
    "ünï".encode(): (pb.CHANGE_KIND_ADDED, "ünï"),
    LONG: (pb.CHANGE_KIND_ADDED, "\\xff" * 255),
    b"d\xfe/s\x80/f\xff": (pb.CHANGE_KIND_ADDED, "d\\xfe/s\\x80/f\\xff"),
    b"d\xfe/" + LONG: (pb.CHANGE_KIND_ADDED, "d\\xfe/" + "\\xff" * 255),
    ODD_LINK[0]: (pb.CHANGE_KIND_ADDED, "lnk\\xfe"),
    EDITED: (pb.CHANGE_KIND_MODIFIED, "old\\xff"),
    DELETED: (pb.CHANGE_KIND_DELETED, "gone\\xfe\\nx"),
}
assert set(EXPECTED) == {*ODD_FILES, ODD_LINK[0], EDITED, DELETED}


@pytest.fixture
def ws(workspace: Path) -> bytes:
    raw = os.fsencode(workspace)
    for name in (EDITED, DELETED):
        with open(os.path.join(raw, name), "wb") as f:
            f.write(b"before\n")
    return raw


def assert_exact(changes: pb.ChangeSet) -> None:
    got = {c.path_bytes: (c.kind, c.path) for c in changes.changes}
    assert got == EXPECTED
    assert (changes.added, changes.modified, changes.deleted, changes.total) == (13, 1, 1, 15)
    assert not changes.truncated


def run_odd_action(d: DaemonProcess, ws: bytes) -> tuple[pb.Session, pb.Action, dict[bytes, Any]]:
    """Open a session on ws and run SCRIPT; returns the listing from before the action."""
    before = listing(ws)
    session = open_fs(d, Path(os.fsdecode(ws)))
    action = shell(d, session.id, SCRIPT)
    assert action.state == pb.ACTION_STATE_EXECUTED, (action.error, action.exec.stderr)
    assert action.exec.exit_code == 0, action.exec.stderr
    on_disk = listing(ws)
    assert on_disk[b"bad\xff"] == ("file", 0o600, b"ff\n") and on_disk[EDITED][2] == b"before\nmore"
    assert DELETED not in on_disk and on_disk[ODD_LINK[0]] == ("link", 0, ODD_LINK[1])
    return session, action, before


def undo_exactly(d: DaemonProcess, session_id: str, action_id: str, ws: bytes, before: dict[bytes, Any]) -> None:
    undone = undo(d, session_id, action_id)
    assert [a.id for a in undone] == [action_id]
    assert undone[0].state == pb.ACTION_STATE_UNDONE, undone[0].error
    assert undone[0].reversibility.verdict == pb.VERDICT_PASSED
    assert_exact(undone[0].changes)
    assert listing(ws) == before  # every name, content, mode and link target, byte for byte


def test_submit_reports_odd_names_exactly(shared_daemon: DaemonProcess, ws: bytes) -> None:
    session, action, before = run_odd_action(shared_daemon, ws)
    assert_exact(action.changes)
    for c in action.changes.changes:
        assert c.path.isprintable()  # one line, no escape sequence for the reviewer's terminal
    undo_exactly(shared_daemon, session.id, action.id, ws, before)


def test_list_actions_reports_odd_names_exactly(shared_daemon: DaemonProcess, ws: bytes) -> None:
    session, action, before = run_odd_action(shared_daemon, ws)
    for _ in range(2):  # every later ListActions of the session answered INTERNAL
        listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=session.id), timeout=10)
        [only] = listed.actions
        assert only.id == action.id
        assert_exact(only.changes)
    undo_exactly(shared_daemon, session.id, action.id, ws, before)
    listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=session.id), timeout=10)
    assert listed.actions[0].state == pb.ACTION_STATE_UNDONE
    assert_exact(listed.actions[0].changes)


def test_get_action_reads_odd_names_back_from_the_journal_after_a_restart(tmp_path: Path, ws: bytes) -> None:
    root = tmp_path / "daemon"
    root.mkdir()
    d = DaemonProcess(root).start()
    try:
        session, action, before = run_odd_action(d, ws)
        assert_exact(get(d, action.id).changes)
    finally:
        assert d.stop() == 0
    d = DaemonProcess(root).start()  # everything below comes from the journal
    try:
        again = get(d, action.id)
        assert again.state == pb.ACTION_STATE_EXECUTED
        assert_exact(again.changes)
        undo_exactly(d, session.id, action.id, ws, before)
        assert_exact(get(d, action.id).changes)
    finally:
        assert d.stop() == 0
    assert "Traceback" not in d.log(), d.log()


def test_undo_answers_and_restores_odd_names_byte_for_byte(shared_daemon: DaemonProcess, ws: bytes) -> None:
    session, action, before = run_odd_action(shared_daemon, ws)
    # A second action over the odd names, undone together with the first (cascade).
    odd_dir, odd_file = sh_word(b"d\xfe"), sh_word(b"bad\xff")
    second = shell(shared_daemon, session.id, f"rm -r {odd_dir} && mv {odd_file} moved")
    assert second.state == pb.ACTION_STATE_EXECUTED, second.exec.stderr
    assert {(c.kind, c.path_bytes) for c in second.changes.changes} == {
        (pb.CHANGE_KIND_DELETED, b"bad\xff"),
        (pb.CHANGE_KIND_ADDED, b"moved"),
        (pb.CHANGE_KIND_DELETED, b"d\xfe/s\x80/f\xff"),
        (pb.CHANGE_KIND_DELETED, b"d\xfe/" + LONG),
    }
    undone = undo(shared_daemon, session.id, action.id, cascade=True)
    assert [a.id for a in undone] == [second.id, action.id]
    assert all(a.state == pb.ACTION_STATE_UNDONE for a in undone)
    assert_exact(undone[1].changes)
    assert listing(ws) == before


def test_describe_session_lists_odd_names_escaped(shared_daemon: DaemonProcess, ws: bytes) -> None:
    session, action, before = run_odd_action(shared_daemon, ws)
    described = shared_daemon.sessions.DescribeSession(spb.DescribeSessionRequest(session_id=session.id), timeout=10)
    lines = {line.strip() for line in described.resources[0].text.splitlines()[1:]}
    assert {"bad\\xff", "nl\\nname", "d\\xfe/s\\x80/f\\xff", "old\\xff", "lnk\\xfe"} <= lines
    undo_exactly(shared_daemon, session.id, action.id, ws, before)


# ---------------------------------------------------------------- the Python client and the CLI


class Cli:
    """`goex ARGV...` in-process against the daemon (as tests/e2e/test_cli.py does)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> str:
        """stdout; for `goex run`, goex's report on stderr."""
        rc = main(list(argv))
        out, err = self.capsys.readouterr()
        assert rc == 0, f"goex {argv} -> {rc}\n{out}\n{err}"
        assert "Traceback" not in out + err
        return err if argv[:1] == ("run",) else out


@pytest.fixture
def cli(
    shared_daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    monkeypatch.setenv("GOEX_SOCKET", str(shared_daemon.socket))
    monkeypatch.setenv("GOEX_CLI_STATE", str(tmp_path / "state" / "cli.json"))
    monkeypatch.delenv("GOEX_DEBUG", raising=False)
    return Cli(capsys)


def test_python_client_gives_exact_names(shared_daemon: DaemonProcess, ws: bytes) -> None:
    session, action, before = run_odd_action(shared_daemon, ws)
    with goex.Client(shared_daemon.socket, timeout=60) as client:
        got = client.get_action(action.id)
        assert got.changes is not None
        assert {c.path_bytes: c.path for c in got.changes.changes} == {k: v[1] for k, v in EXPECTED.items()}
        for c in got.changes.changes:
            if c.kind is not goex.ChangeKind.DELETED:
                assert os.path.lexists(os.path.join(os.fsdecode(ws), c.fspath))  # usable with os functions
    undo_exactly(shared_daemon, session.id, action.id, ws, before)


def test_cli_run_log_show_undo_show_odd_names_escaped(cli: Cli, ws: bytes) -> None:
    before = listing(ws)
    sid = cli("session", "open", "--fs", os.fsdecode(ws)).strip()
    out = cli("run", "--", "sh", "-c", SCRIPT)
    headline, *changes = out.splitlines()
    assert headline.startswith("action act_") and "executed, exit 0" in headline
    letter = {pb.CHANGE_KIND_ADDED: "A", pb.CHANGE_KIND_MODIFIED: "M", pb.CHANGE_KIND_DELETED: "D"}
    lines = sorted(f"{letter[kind]} {shown}" for kind, shown in EXPECTED.values())
    # One line per change (the newline in "nl\nname" is escaped); goexd's own notes follow ("goexd: ...").
    assert sorted(line for line in changes if not line.startswith("goexd: ")) == lines
    action_id = headline.split()[1].rstrip(":")

    row = cli("log").splitlines()[1]
    assert action_id in row and "+13 ~1 -1" in row

    shown = cli("show", action_id).splitlines()
    assert sorted(line for line in shown if line[:2] in ("A ", "M ", "D ")) == lines
    assert all("\x1b" not in line for line in shown)  # the odd name's escape sequence never reaches a terminal

    data = json.loads(cli("show", action_id, "--json"))
    # --json: a name that is UTF-8 as text, one that is not with its exact bytes in path_bytes_base64
    got = {
        base64.b64decode(c["path_bytes_base64"]) if "path_bytes_base64" in c else c["path_bytes"].encode(): (
            c["kind"],
            c["path"],
        )
        for c in data["action"]["changes"]["changes"]
    }
    kind_word = pb.ChangeKind.DESCRIPTOR
    assert got == {k: (cli_json.enum_word(kind_word, kind), path) for k, (kind, path) in EXPECTED.items()}
    assert any("path_bytes_base64" in c for c in data["action"]["changes"]["changes"])
    logged = json.loads(cli("log", "--json"))
    assert logged["actions"][0]["changes"] == data["action"]["changes"]

    assert cli("undo").startswith(f"undone {action_id} (seq 1)")
    assert listing(ws) == before
    cli("session", "close")
    assert sid.startswith("ses_")
