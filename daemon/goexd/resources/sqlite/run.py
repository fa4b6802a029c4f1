"""Running a SQL action's statements on a SQLite connection: shared by the sqlite strategies.

`check_script` refuses, before anything runs, what no strategy may run; `run_script` executes
the statements with a deadline and cancel (SQLite's progress handler) and returns the last
statement's rows (capped) and the rows all statements changed. `Tracked` keeps the database's
fingerprint between calls and commits statements with the fingerprints before and after them,
in O(changed rows) (dbinspect/sqlite_changes.py) for the strategies that verify by fingerprint.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from goexd.dbinspect import sqlite as inspect
from goexd.dbinspect import sqlite_changes
from goexd.dbinspect.sqlite_catalog import rows as fetch
from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, SqlResult
from goexd.domain.resource import CHANGED_KEY, Checkpoint
from goexd.domain.textcap import capped
from goexd.resources.sql_manager import ScriptJob, StatementFailed
from goexd.sql.classify import Classified, StatementClass, classify_script

PROGRESS_STEPS = 10_000  # SQLite VM steps between checks of the deadline and of cancel
CHANGED_CHARS = 2000  # of what an action changed, in words, kept in its checkpoint


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Autocommit mode (goexd issues BEGIN itself, so DDL stays transactional), WAL, foreign keys on."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    db.execute("PRAGMA foreign_keys = ON")
    try:
        db.execute("PRAGMA journal_mode = WAL")  # readers elsewhere keep working while a write lock is held
    except sqlite3.OperationalError as exc:
        db.close()
        raise FailedPrecondition(f"cannot open {path} in WAL mode: {exc}") from None
    return db


def check_script(spec: ActionSpec, fld: str = "spec") -> list[Classified]:
    """Parse and classify; refuse transaction statements. Changes nothing.

    Privileged statements are not refused here: whether they run is the session policy's call (the engine's)."""
    if spec.kind is not ActionKind.SQL:
        raise InvalidArgument(fld, f"{spec.kind.value} actions do not run on a database resource")
    statements = classify_script(spec.sql, "sqlite", f"{fld}.sql.sql")
    for i, st in enumerate(statements):
        if st.cls is StatementClass.TRANSACTION:
            raise InvalidArgument(
                f"{fld}.sql.sql", f"statement {i + 1} ({st.reason}): goexd runs each action in its own savepoint"
            )
    if spec.params and len(statements) != 1:
        raise InvalidArgument(f"{fld}.sql.params", f"parameters need exactly one statement, not {len(statements)}")
    return statements


def run_script(db: sqlite3.Connection, job: ScriptJob) -> SqlResult:
    """Run the statements; the last result's rows and the rows all statements changed. Raises StatementFailed."""
    timeout_s, cancel = job.limits.timeout_s, job.cancel
    deadline = time.monotonic() + timeout_s
    stopped: list[str] = []

    def progress() -> int:
        # A non-zero return makes SQLite abort the statement with "interrupted".
        if cancel is not None and cancel.is_set():
            stopped.append("cancelled")
        elif time.monotonic() > deadline:
            stopped.append(f"wall-clock timeout of {timeout_s:g} s")
        return 1 if stopped else 0

    before = db.total_changes
    db.set_progress_handler(progress, PROGRESS_STEPS)
    try:
        result = SqlResult()
        for st in job.statements:
            cur = db.execute(st.sql, tuple(job.params))
            if cur.description is not None:
                result = _rows(cur, job.row_limit)
    except sqlite3.Error as exc:
        raise StatementFailed(f"stopped: {stopped[0]}" if stopped else f"sqlite: {exc}", bool(stopped)) from None
    finally:
        db.set_progress_handler(None, 0)
    return SqlResult(result.columns, result.rows, result.total_rows, result.truncated, db.total_changes - before)


def _rows(cur: sqlite3.Cursor, row_limit: int) -> SqlResult:
    columns = tuple(d[0] for d in cur.description)
    rows: list[tuple[str | None, ...]] = []
    total = 0
    for row in cur:
        total += 1
        if len(rows) < row_limit:
            rows.append(tuple(None if v is None else _text(v) for v in row))
    return SqlResult(columns, tuple(rows), total, total > len(rows))


def changed_tables(before: inspect.DbFingerprint, after: inspect.DbFingerprint) -> Checkpoint:
    """The checkpoint entry saying what statements changed, per table: the two fingerprints are
    known anyway (Tracked.commit), so an action's diff can say it at no extra read."""
    return {CHANGED_KEY: capped(inspect.diff(before, after).text, CHANGED_CHARS)}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)


class Tracked:
    """A connection's database and its fingerprint, known without reading every row while no other
    connection commits (PRAGMA data_version tells: it moves only for other connections' commits).

    The strategies' own writes go through commit(), which knows the fingerprint after them from
    the one before and what the statements changed; any other write of this connection must be
    followed by forget()."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._known: tuple[int, inspect.DbFingerprint] | None = None  # (data_version, fingerprint)

    def current(self) -> inspect.DbFingerprint:
        """The database's fingerprint now (read whole only when others have committed since)."""
        version = self._version()
        if self._known is None or self._known[0] != version:
            self._known = (version, inspect.fingerprint(self.db))
        return self._known[1]

    def forget(self) -> None:
        self._known = None

    def commit(
        self, job: ScriptJob, before_commit: Callable[[], None] | None = None
    ) -> tuple[SqlResult, inspect.DbFingerprint, inspect.DbFingerprint]:
        """Run the statements and commit them: the result, the fingerprints before and after.

        In one transaction (BEGIN IMMEDIATE, so no one writes between the two fingerprints), the
        changes captured as they are made; statements a transaction cannot hold run on their own,
        between two whole fingerprints. `before_commit` runs last in the transaction (after the
        statements, outside one), for writes that must commit with them and that fingerprints do not
        see (outcome markers). Raises StatementFailed after rolling back."""
        if not job.transactional:
            before = self.current()
            self.forget()  # whatever happens now, this connection wrote
            result = run_script(self.db, job)
            if before_commit is not None:
                before_commit()
            return result, before, self.current()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            before = self.current()
            written = sqlite_changes.written_tables(self.db, [(st.sql, job.params) for st in job.statements])
            probe = sqlite_changes.Probe.start(self.db, written)
            try:
                result = run_script(self.db, job)
                after = probe.after(before)
                probe.drop()  # temporary triggers outlive a COMMIT
            finally:
                probe.stop()
            if before_commit is not None:
                before_commit()
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if not isinstance(exc, StatementFailed):  # rolled back, as it was: anything else, read again
                self.forget()
            raise
        self._known = (self._version(), after)
        return result, before, after

    def _version(self) -> int:
        return int(fetch(self.db, "PRAGMA data_version")[0][0])
