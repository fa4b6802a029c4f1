"""SQLite reads resolved at once (resources/sql_reads.py): the script under PRAGMA query_only."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionSpec, SqlResult
from goexd.domain.resource import Outcome
from goexd.domain.sandbox import Limits
from goexd.resources.sql_reads import read_outcome
from goexd.resources.sqlite import run as sqlite_run
from goexd.sql.model import SQL_FIELD, Classified


def run_sqlite_read(
    db: sqlite3.Connection,
    statements: Sequence[Classified],
    params: Sequence[str],
    limits: Limits,
    cancel: threading.Event | None,
    row_limit: int,
) -> SqlResult:
    """The statements under PRAGMA query_only (SQLite refuses any write), on whatever transaction is open."""
    db.execute("PRAGMA query_only = ON")
    try:
        return sqlite_run.run_script(db, statements, params, limits, cancel, row_limit)
    finally:
        db.execute("PRAGMA query_only = OFF")


def sqlite_read(
    db: sqlite3.Connection,
    lock: threading.Lock,
    statements: Sequence[Classified],
    spec: ActionSpec,
    limits: Limits,
    cancel: threading.Event | None,
    row_limit: int,
) -> Outcome:
    """A read resolved at once on a manager's connection (outside any transaction: inverse and clone)."""
    with lock:
        try:
            result = run_sqlite_read(db, statements, spec.params, limits, cancel, row_limit)
        except sqlite_run.StatementFailed as exc:
            raise InvalidArgument(SQL_FIELD, exc.why) from None
    return read_outcome(result)
