"""`goexd --repair-journal`: rebuild a damaged journal from what can still be read.

goexd never does this by itself: a damaged journal stops the start (journal_check.py) and the
person decides. Asked to, it

1. copies the damaged journal (with its -wal) to a scratch dir in the state dir and works only
   on that copy; when the copy's header is unreadable, it writes a plain one (trying the usual
   page sizes) so that SQLite can walk the pages behind it;
2. writes a new journal with the current schema and copies into it every row it can read, table
   by table: forwards in rowid order until a damaged page stops the walk, then backwards from the
   end (the rows of the damaged pages themselves are lost); an index is never needed for this;
3. drops the actions (and sessions) whose rows cannot be read back as goexd reads them, with
   their transitions, and names them;
4. checks the new journal whole; only then moves the damaged files into
   `journal-damaged-<UTC time>/` in the state dir, untouched, and puts the new journal in place.

Anything failing before 4 changes nothing. What the rebuilt journal lacks: the actions of lost
rows are no longer listed, undoable or recovered (their effects stay as they are in the
workspaces and databases); their snapshots stay in the store until removed by hand.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from goexd.engine import sqlite_pages
from goexd.engine.journal import SCHEMA_VERSION, Journal
from goexd.engine.journal_check import HEADER, is_fresh, problems_of, wal_paths

# Parents first, so that what refers to a row finds it.
TABLES = ("sessions", "resources", "actions", "transitions")
# Copied table by table too, but left out of the orphan-page search (it tells tables apart by width alone).
PAIR_TABLES = ("pair_verdicts", "pair_judgements")
PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


class RepairFailed(Exception):
    """The journal could not be rebuilt; nothing was changed. The message says why."""


@dataclass
class RepairReport:
    aside: Path  # where the damaged files now are
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows in the new journal
    refused: dict[str, int] = field(default_factory=dict)  # table -> rows read but not valid (a lost parent)
    dropped_actions: list[str] = field(default_factory=list)
    dropped_sessions: list[str] = field(default_factory=list)
    header_rewritten: bool = False
    from_pages: int = 0  # rows read from leaf pages no table reaches any more
    original_header: bytes = b""  # the damaged file's first 100 bytes, when they were rewritten
    problems: list[str] = field(default_factory=list)  # what the check found in the damaged journal

    def describe(self) -> str:
        lines = [f"the damaged journal: {'; '.join(self.problems[:3])}"]
        if self.header_rewritten:
            lines.append("SQLite could not read it as it was: the rows were read behind a rewritten header")
        lines.append("rows kept: " + ", ".join(f"{n} {t}" for t, n in self.rows.items()))
        if self.from_pages:
            lines.append(f"{self.from_pages} of them read from pages that no table reached any more")
        if any(self.refused.values()):
            lines.append("rows read but not kept: " + ", ".join(f"{n} {t}" for t, n in self.refused.items() if n))
        if self.dropped_sessions:
            lines.append(f"sessions dropped (unreadable rows): {', '.join(self.dropped_sessions)}")
        if self.dropped_actions:
            lines.append(f"actions dropped (unreadable rows): {', '.join(self.dropped_actions)}")
        lines.append(f"the damaged files, untouched, are in {self.aside}")
        lines.append(
            "actions whose rows were lost are no longer listed, undoable or recovered; their effects stay as they are"
        )
        return "\n".join(lines)


def repair_journal(path: Path) -> RepairReport | None:
    """Rebuild the journal at `path` (see the module doc); None when it is sound (nothing done)."""
    if is_fresh(path):
        return None
    problems = problems_of(path)
    if not problems:
        return None
    scratch = path.parent / f".journal-repair-{secrets.token_hex(4)}"
    scratch.mkdir(mode=0o700)
    try:
        report = _rebuild(path, scratch)
        report.problems = problems
        report.aside = _swap_in(path, scratch / path.name)
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _rebuild(path: Path, scratch: Path) -> RepairReport:
    copy = scratch / "damaged.sqlite3"
    shutil.copyfile(path, copy)
    wal, _ = wal_paths(path)
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    report = RepairReport(aside=path)
    src = _open_readable(copy, report)
    try:
        _refuse_newer(src)
        journal = Journal(scratch / path.name, sync="normal")
        try:
            for table in (*TABLES, *PAIR_TABLES):
                _copy_table(src, journal, table)
            report.from_pages = _copy_orphans(src, copy, journal, report.original_header)
            for table in (*TABLES, *PAIR_TABLES):  # again: rows refused for want of a parent that the pages gave back
                report.refused[table] = _copy_table(src, journal, table)
            _drop_unreadable(journal, report)
            report.rows = {t: _count(journal, t) for t in (*TABLES, *PAIR_TABLES)}
        finally:
            journal.close()
    finally:
        src.close()
    left = problems_of(scratch / path.name)
    if left:
        raise RepairFailed(f"the rebuilt journal is not sound either ({'; '.join(left[:3])}); nothing was changed")
    return report


def _open_readable(copy: Path, report: RepairReport) -> sqlite3.Connection:
    """A connection on the copy whose schema can be read, its header rewritten if need be."""
    try:
        return _connect_with_schema(copy)
    except sqlite3.DatabaseError as first:
        original = copy.read_bytes()[:100]
        report.original_header = original
        for page_size in PAGE_SIZES:
            _write_header(copy, page_size)
            with contextlib.suppress(sqlite3.DatabaseError):
                db = _connect_with_schema(copy)
                report.header_rewritten = True
                return db
        with copy.open("r+b") as f:
            f.write(original)
        raise RepairFailed(f"nothing in it can be read ({first}); nothing was changed") from None


def _connect_with_schema(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if "actions" not in names:
            raise sqlite3.DatabaseError("no actions table in its schema")
    except BaseException:
        db.close()
        raise
    return db


def _write_header(path: Path, page_size: int) -> None:
    """A plain SQLite header (https://sqlite.org/fileformat2.html#the_database_header) for a file
    of `page_size` pages: no freelist, page count from the file's size, WAL-mode versions when
    there is a -wal to read."""
    size = path.stat().st_size
    wal = 2 if path.with_name(path.name + "-wal").exists() else 1
    header = bytearray(100)
    header[0:16] = HEADER
    struct.pack_into(">H", header, 16, 1 if page_size == 65536 else page_size)
    header[18:24] = bytes([wal, wal, 0, 64, 32, 32])
    struct.pack_into(">IIII", header, 24, 1, max(1, size // page_size), 0, 0)  # change counter, pages, freelist
    struct.pack_into(">II", header, 40, 1, 4)  # schema cookie, schema format
    struct.pack_into(">I", header, 56, 1)  # UTF-8
    struct.pack_into(">II", header, 92, 1, sqlite3.sqlite_version_info[0] * 1000000)  # valid-for = counter
    with path.open("r+b") as f:
        f.write(header)


def _refuse_newer(src: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.DatabaseError):
        row = src.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and str(row[0]).isdigit() and int(row[0]) > SCHEMA_VERSION:
            raise RepairFailed(
                f"the journal has schema {row[0]}, newer than this goexd's ({SCHEMA_VERSION}): "
                "repair it with the goexd that wrote it; nothing was changed"
            )


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _copy_table(src: sqlite3.Connection, journal: Journal, table: str) -> int:
    """Copy what can be read of `table`; returns how many rows read were refused by the new journal
    (a row whose session was lost, a NULL where none may be)."""
    try:
        theirs = _columns(src, table)
    except sqlite3.DatabaseError:
        return 0  # its schema entry is gone: nothing of it can be read
    common = [c for c in _columns(journal._db, table) if c in theirs]
    if not common:
        return 0
    cols = ", ".join(common)
    insert = f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({', '.join('?' * len(common))})"  # noqa: S608
    refused = 0
    with journal.batch():
        for row in _readable_rows(src, table, cols):
            try:
                journal._db.execute(insert, row)
            except sqlite3.Error:
                refused += 1
    return refused


def _readable_rows(src: sqlite3.Connection, table: str, cols: str) -> Iterator[tuple[object, ...]]:
    """Every row a walk of the table's b-tree reaches: forwards until a damaged page, then
    backwards from the end down to where the forward walk stopped."""
    last = None
    try:
        for rowid, *row in src.execute(f"SELECT rowid, {cols} FROM {table} ORDER BY rowid"):  # noqa: S608
            last = rowid
            yield tuple(row)
        return
    except sqlite3.DatabaseError:
        pass
    query = f"SELECT rowid, {cols} FROM {table} WHERE rowid > ? ORDER BY rowid DESC"  # noqa: S608
    with contextlib.suppress(sqlite3.DatabaseError):
        for _, *row in src.execute(query, (last if last is not None else -(2**63),)):
            yield tuple(row)


def _copy_orphans(src: sqlite3.Connection, copy: Path, journal: Journal, original_header: bytes) -> int:
    """Rows on table-leaf pages that no b-tree reaches (their parent page was destroyed) and that
    are not free; each goes to the table whose column count it has. Rows already copied win.
    None when the freelist is unknown (a header rewritten over a broken one): a freed page still
    holds old rows, which must not come back."""
    with contextlib.suppress(sqlite3.DatabaseError):
        src.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the scratch copy's WAL into its pages
    try:
        roots = [int(r[0]) for r in src.execute("SELECT rootpage FROM sqlite_schema WHERE rootpage > 0")]
        theirs = {t: _columns(src, t) for t in TABLES}
    except sqlite3.DatabaseError:
        return 0
    f = sqlite_pages.PageFile.parse(copy.read_bytes())
    if f is None:
        return 0
    if original_header and original_header[: len(HEADER)] != HEADER:
        return 0
    free = sqlite_pages.freelist(f, original_header or f.data[:100])
    ours = {t: set(_columns(journal._db, t)) for t in TABLES}
    copied = 0
    with journal.batch():
        for rowid, values in sqlite_pages.orphan_rows(f, sqlite_pages.reachable(f, roots) | free):
            table = _table_of(len(values), theirs)
            if table is None:
                continue
            cols = theirs[table][: len(values)]
            if table == "transitions" and values and values[0] is None:
                values[0] = rowid  # its INTEGER PRIMARY KEY is the rowid, stored as NULL in the record
            pairs = [(c, v) for c, v in zip(cols, values, strict=True) if c in ours[table]]
            names = ", ".join(c for c, _ in pairs)
            insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(pairs))})"  # noqa: S608
            try:
                copied += journal._db.execute(insert, [v for _, v in pairs]).rowcount
            except sqlite3.Error:
                continue
    return copied


def _table_of(width: int, columns: dict[str, list[str]]) -> str | None:
    """The table a record of `width` values belongs to: the one with that many columns; a wider
    record than any but the actions' is an action row written before later columns were added."""
    exact = [t for t, cols in columns.items() if len(cols) == width]
    if len(exact) == 1:
        return exact[0]
    others = max(len(cols) for t, cols in columns.items() if t != "actions")
    return "actions" if others < width <= len(columns["actions"]) else None


def _drop_unreadable(journal: Journal, report: RepairReport) -> None:
    """Remove what goexd could not read back (it would fail the start or a call later)."""
    db = journal._db
    for (sid,) in db.execute("SELECT id FROM sessions").fetchall():
        try:
            journal.get_session(sid)
        except Exception:
            report.dropped_sessions.append(str(sid))
    for aid, sid in db.execute("SELECT id, session_id FROM actions").fetchall():
        try:
            journal.get_action(aid)
        except Exception:
            report.dropped_actions.append(str(aid))
            continue
        if (
            sid in report.dropped_sessions
            or db.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone() is None
        ):
            report.dropped_actions.append(str(aid))  # its session is gone: nothing could show or undo it
    with journal.batch():
        for aid in report.dropped_actions:
            db.execute("DELETE FROM transitions WHERE action_id = ?", (aid,))
            db.execute("DELETE FROM actions WHERE id = ?", (aid,))
        for sid in report.dropped_sessions:
            db.execute("DELETE FROM resources WHERE session_id = ?", (sid,))
            db.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        db.execute("DELETE FROM transitions WHERE action_id NOT IN (SELECT id FROM actions)")
        db.execute("DELETE FROM resources WHERE session_id NOT IN (SELECT id FROM sessions)")


def _count(journal: Journal, table: str) -> int:
    return int(journal._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def _swap_in(path: Path, rebuilt: Path) -> Path:
    """Move the damaged files aside (untouched) and put the rebuilt journal in their place."""
    aside = path.parent / f"journal-damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    aside.mkdir(mode=0o700)
    for p in (path, *wal_paths(path)):
        if p.exists():
            p.rename(aside / p.name)
    rebuilt.rename(path)
    path.chmod(0o600)
    return aside
