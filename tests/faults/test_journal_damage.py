"""A damaged journal stops goexd's start with a message that names the file and what to do, exit
status 3, no traceback and nothing changed; `goexd --repair-journal` rebuilds it from what can be
read, keeps the damaged files, and goexd then starts on it.

The journal is a real one: goexd ran a few actions in it and stopped cleanly. Four kinds of damage:
a page of zeros (the root page of the actions table), random bytes over an index's b-tree page
(the open still works and every table reads: only integrity_check sees it), the file cut to half
its pages, and random bytes over the 100-byte header.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goexd.domain.models import ActionState
from goexd.engine.journal import Journal
from goexd.engine.journal_check import problems_of
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell
from tests.security.conftest import SEC_USER, _scratch_dir, make_workspace
from tests.users import ensure_system_user

JOURNAL = "journal.sqlite3"
EXIT_JOURNAL_DAMAGED = 3


def _page_of(journal: Path, name: str) -> tuple[int, int]:
    """(page size, root page number) of the table or index `name`."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
    return int(size), int(root)


def zero_a_page(journal: Path) -> None:
    size, root = _page_of(journal, "actions")
    with journal.open("r+b") as f:
        f.seek(size * (root - 1))
        f.write(b"\0" * size)


def random_bytes_in_an_index(journal: Path) -> None:
    size, root = _page_of(journal, "actions_state")
    with journal.open("r+b") as f:
        f.seek(size * (root - 1) + 8)  # past the b-tree page header's first bytes
        f.write(random.Random(14).randbytes(size - 8))


def truncate(journal: Path) -> None:
    """Cut the file halfway through the pages after the tables' roots (the rows' pages), whatever the schema."""
    size, _ = _page_of(journal, "actions")
    pages = journal.stat().st_size // size
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        roots = int(db.execute("SELECT max(rootpage) FROM sqlite_schema").fetchone()[0])
    with journal.open("r+b") as f:
        f.truncate(size * ((roots + pages) // 2))


def corrupt_header(journal: Path) -> None:
    with journal.open("r+b") as f:
        f.write(random.Random(14).randbytes(100))


# How many of the 41 actions the repair must bring back: all of them but where the pages are gone.
# (The zeroed page is the actions table's root: its rows are read from the leaf pages below it.)
RECOVERED = {"zeroed-page": 41, "random-index-page": 41, "corrupt-header": 41, "truncated": 1}
VARIANTS: dict[str, Callable[[Path], None]] = {
    "zeroed-page": zero_a_page,
    "random-index-page": random_bytes_in_an_index,
    "truncated": truncate,
    "corrupt-header": corrupt_header,
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A daemon root whose journal holds sessions and actions (goexd stopped cleanly: no WAL left)."""
    root = tmp_path_factory.mktemp("journal-made")
    ws = root / "ws"
    ws.mkdir()
    (root / "daemon").mkdir()
    d = DaemonProcess(root / "daemon").start()
    try:
        session = open_fs(d, ws)
        for i in range(40):
            shell(d, session.id, f"echo {i} > f{i}.txt")
        d.actions.CommitActions(apb.CommitActionsRequest(session_id=session.id), timeout=60)
        shell(d, session.id, "echo pending > pending.txt")
    finally:
        assert d.stop() == 0
    assert problems_of(d.state_dir / JOURNAL) == []  # control: the journal is sound before we damage it
    yield root / "daemon"


def _copy(made: Path, tmp_path: Path) -> DaemonProcess:
    root = tmp_path / "daemon"
    shutil.copytree(made, root, symlinks=True)
    shutil.rmtree(root / "run", ignore_errors=True)
    (root / "goexd.log").unlink(missing_ok=True)
    return DaemonProcess(root)


def _goexd(d: DaemonProcess, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    """goexd with `args` on d's socket and state dir, to its end (`popen`: user=, group=, ...)."""
    argv = [sys.executable, "-m", "goexd.main", "--socket", str(d.socket), "--state-dir", str(d.state_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=d.env, **popen)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_damaged_journal_stops_the_start_with_what_to_do(made: Path, tmp_path: Path, variant: str) -> None:
    d = _copy(made, tmp_path)
    journal = d.state_dir / JOURNAL
    VARIANTS[variant](journal)
    before = journal.read_bytes()
    r = _goexd(d)
    assert r.returncode == EXIT_JOURNAL_DAMAGED, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert f"the journal {journal} is damaged" in r.stderr, r.stderr
    assert "--repair-journal" in r.stderr and "cp -a" in r.stderr, r.stderr
    assert journal.read_bytes() == before, "the failed start changed the damaged journal"
    assert not d.socket.exists()


def test_control_the_same_journal_undamaged_starts(made: Path, tmp_path: Path) -> None:
    d = _copy(made, tmp_path).start()
    try:
        sessions = d.sessions.ListSessions(spb.ListSessionsRequest(), timeout=30).sessions
        assert len(sessions) == 1 and sessions[0].total_actions == 41
    finally:
        assert d.stop() == 0


def _repair(d: DaemonProcess, variant: str) -> str:
    """Damage the journal, run `goexd --repair-journal`; returns its output."""
    journal = d.state_dir / JOURNAL
    VARIANTS[variant](journal)
    damaged = journal.read_bytes()
    r = _goexd(d, "--repair-journal")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert f"rebuilt the journal {journal}" in r.stdout, r.stdout
    aside = list(d.state_dir.glob("journal-damaged-*"))
    assert len(aside) == 1 and (aside[0] / JOURNAL).read_bytes() == damaged  # kept, untouched
    assert not list(d.state_dir.glob(".journal-repair-*"))  # the scratch copy is gone
    assert problems_of(journal) == []
    return r.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_repair_journal_rebuilds_what_can_be_read_and_keeps_the_damaged_files(
    made: Path, tmp_path: Path, variant: str
) -> None:
    d = _copy(made, tmp_path)
    out = _repair(d, variant)
    # Read back the way goexd reads it (its start, recovery and every call go through these).
    journal = Journal(d.state_dir / JOURNAL)
    try:
        sessions = journal.list_sessions(include_closed=True, after=(0.0, ""), limit=100)
        actions = [a for s in sessions for a in journal.list_actions(s.id)]
        assert len(actions) >= RECOVERED[variant], out
        assert len({a.id for a in actions}) == len(actions)
        assert {a.state for a in actions} <= set(ActionState)
        for a in actions:
            journal.transitions(a.id)
    finally:
        journal.close()
    again = _goexd(d, "--repair-journal")
    assert again.returncode == 0 and "is sound: nothing to repair" in again.stdout, again


def test_goexd_starts_and_serves_on_a_repaired_journal(made: Path, tmp_path: Path) -> None:
    d = _copy(made, tmp_path)
    _repair(d, "zeroed-page")  # the root page of the actions table: the worst of the four
    d.start()
    try:
        sessions = d.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True), timeout=30).sessions
        assert len(sessions) == 1
        listed = d.actions.ListActions(apb.ListActionsRequest(session_id=sessions[0].id), timeout=30).actions
        assert len(listed) == sessions[0].total_actions > 0
    finally:
        assert d.stop() == 0
    assert "Traceback" not in d.log(), d.log()


def test_repair_journal_refuses_while_goexd_runs(made: Path, tmp_path: Path) -> None:
    d = _copy(made, tmp_path).start()
    try:
        r = _goexd(d, "--repair-journal")
        assert r.returncode == 1 and "in use by another goexd" in r.stderr, r.stderr
    finally:
        assert d.stop() == 0


def test_as_the_unprivileged_user_a_damaged_journal_stops_the_start_and_is_repaired() -> None:
    """The same with goexd running as goex-sec over a workspace of theirs (one kind of damage)."""
    user = ensure_system_user(SEC_USER)
    root = _scratch_dir("goex-journal-", user.pw_uid, user.pw_gid)
    try:
        with make_workspace(user.pw_uid, user.pw_gid) as ws:
            d = DaemonProcess(root, user=SEC_USER).start()
            try:
                session = open_fs(d, ws)
                for i in range(10):
                    shell(d, session.id, f"echo {i} > f{i}.txt")
            finally:
                assert d.stop() == 0
            journal = d.state_dir / JOURNAL
            zero_a_page(journal)
            who = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": root}
            r = _goexd(d, **who)
            assert r.returncode == EXIT_JOURNAL_DAMAGED and "Traceback" not in r.stderr, (r.returncode, r.stderr)
            assert f"the journal {journal} is damaged" in r.stderr
            r = _goexd(d, "--repair-journal", **who)
            assert r.returncode == 0 and "rebuilt the journal" in r.stdout, (r.stdout, r.stderr)
            assert journal.stat().st_uid == user.pw_uid and journal.stat().st_mode & 0o777 == 0o600
            d.start()
            try:
                sessions = d.sessions.ListSessions(spb.ListSessionsRequest(), timeout=30).sessions
                assert [s.total_actions for s in sessions] == [10]
            finally:
                assert d.stop() == 0
            assert "Traceback" not in d.log(), d.log()
    finally:
        shutil.rmtree(root, ignore_errors=True)
