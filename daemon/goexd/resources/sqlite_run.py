"""Running a SQL action's statements on a SQLite connection: shared by the sqlite strategies.

`check_script` refuses, before anything runs, what no strategy may run; `run_script` executes
the statements with a deadline and cancel (SQLite's progress handler) and returns the last
statement's rows (capped) and the rows all statements changed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from goexd.engine.models import ActionKind, ActionSpec, SqlResult
from goexd.errors import FailedPrecondition, InvalidArgument
from goexd.sandbox.base import Limits
from goexd.sql.classify import Classified, StatementClass, classify_script

PROGRESS_STEPS = 10_000  # SQLite VM steps between checks of the deadline and of cancel


class StatementFailed(Exception):
    """A statement failed or was stopped; `why` is what the action's error says."""

    def __init__(self, why: str, stopped: bool) -> None:
        super().__init__(why)
        self.why = why
        self.stopped = stopped


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
    statements = classify_script(spec.sql, "sqlite")
    for i, st in enumerate(statements):
        if st.cls is StatementClass.TRANSACTION:
            raise InvalidArgument(
                f"{fld}.sql.sql", f"statement {i + 1} ({st.reason}): goexd runs each action in its own savepoint"
            )
    if spec.params and len(statements) != 1:
        raise InvalidArgument(f"{fld}.sql.params", f"parameters need exactly one statement, not {len(statements)}")
    return statements


def run_script(
    db: sqlite3.Connection,
    statements: Sequence[Classified],
    params: Sequence[str],
    limits: Limits,
    cancel: threading.Event | None,
    row_limit: int,
) -> SqlResult:
    deadline = time.monotonic() + limits.timeout_s
    stopped: list[str] = []

    def progress() -> int:
        # A non-zero return makes SQLite abort the statement with "interrupted".
        if cancel is not None and cancel.is_set():
            stopped.append("cancelled")
        elif time.monotonic() > deadline:
            stopped.append(f"wall-clock timeout of {limits.timeout_s:g} s")
        return 1 if stopped else 0

    before = db.total_changes
    db.set_progress_handler(progress, PROGRESS_STEPS)
    try:
        result = SqlResult()
        for st in statements:
            cur = db.execute(st.sql, tuple(params))
            if cur.description is not None:
                result = _rows(cur, row_limit)
    except sqlite3.Error as exc:
        raise StatementFailed(f"stopped: {stopped[0]}" if stopped else f"sqlite: {exc}", bool(stopped)) from None
    finally:
        db.set_progress_handler(None, 0)
    return SqlResult(result.columns, result.rows, result.total_rows, result.truncated, db.total_changes - before)


def commit_at_once(
    db: sqlite3.Connection,
    statements: Sequence[Classified],
    params: Sequence[str],
    limits: Limits,
    cancel: threading.Event | None,
    row_limit: int,
) -> SqlResult:
    """Run in one transaction and commit it (statements a transaction cannot hold run on their own);
    on failure roll back and raise InvalidArgument with the cause."""
    if all(st.transactional for st in statements):
        db.execute("BEGIN IMMEDIATE")
    try:
        result = run_script(db, statements, params, limits, cancel, row_limit)
        if db.in_transaction:
            db.execute("COMMIT")
    except StatementFailed as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise InvalidArgument("spec.sql.sql", exc.why) from None
    return result


def _rows(cur: sqlite3.Cursor, row_limit: int) -> SqlResult:
    columns = tuple(d[0] for d in cur.description)
    rows: list[tuple[str | None, ...]] = []
    total = 0
    for row in cur:
        total += 1
        if len(rows) < row_limit:
            rows.append(tuple(None if v is None else _text(v) for v in row))
    return SqlResult(columns, tuple(rows), total, total > len(rows))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)
