"""SQLite reads resolved at once (resources/sql_reads.py): the script under PRAGMA query_only."""

from __future__ import annotations

import sqlite3

from goexd.domain.models import SqlResult
from goexd.resources.sql_manager import ScriptJob
from goexd.resources.sqlite import run as sqlite_run


def run_sqlite_read(db: sqlite3.Connection, job: ScriptJob) -> SqlResult:
    """The statements under PRAGMA query_only (SQLite refuses any write), on whatever transaction is open."""
    db.execute("PRAGMA query_only = ON")
    try:
        return sqlite_run.run_script(db, job)
    finally:
        db.execute("PRAGMA query_only = OFF")
