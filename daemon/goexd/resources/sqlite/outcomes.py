"""The outcome markers (outcomes.py) in a SQLite database: `main.goex_outcomes`, on the resource's connection.

Writes go into the caller's open transaction (the action's, the inverse's) or, outside one,
commit at once. Each write first re-creates the table if it is missing (an action that dropped
it, or someone else): that costs microseconds, and a marker is never lost to a missing table.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from goexd.dbinspect.sqlite_catalog import rows
from goexd.domain.errors import FailedPrecondition
from goexd.resources.outcomes import PURPOSE, TABLE

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS main.{TABLE} (\n"
    f"  -- {PURPOSE}\n"
    "  action_id TEXT NOT NULL,\n"
    "  step TEXT NOT NULL,\n"
    "  at REAL NOT NULL,\n"
    "  PRIMARY KEY (action_id, step)\n"
    ") WITHOUT ROWID"
)
_CHUNK = 500  # ids per DELETE (SQLite's limit on parameters is 32766 nowadays, 999 in old builds)


class SqliteMarks:
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def ensure(self) -> None:
        """At session open: the table exists (created when missing), or the database is refused."""
        try:
            self._db.execute(_CREATE)
        except sqlite3.Error as exc:
            raise FailedPrecondition(
                f"the inverse strategy keeps a table {TABLE} in {self._path} to settle, after a crash, whether "
                f"an action or its undo committed, and cannot create it there ({exc}); "
                "use the transaction or clone strategy for this database"
            ) from None

    def write(self, action_id: str, step: str) -> None:
        """The marker, in the caller's transaction (or committed at once outside one)."""
        try:
            self._db.execute(_CREATE)
            self._db.execute(
                f"INSERT OR REPLACE INTO main.{TABLE} (action_id, step, at) VALUES (?, ?, ?)",  # noqa: S608
                (action_id, step, time.time()),
            )
        except sqlite3.Error as exc:
            raise FailedPrecondition(f"could not write goex's outcome marker into {TABLE}: {exc}") from None

    def steps(self, action_id: str) -> frozenset[str]:
        if not self._exists():
            return frozenset()
        found = rows(self._db, f"SELECT step FROM main.{TABLE} WHERE action_id = ?", (action_id,))  # noqa: S608
        return frozenset(str(r[0]) for r in found)

    def marked(self) -> list[str]:
        if not self._exists():
            return []
        return [str(r[0]) for r in rows(self._db, f"SELECT DISTINCT action_id FROM main.{TABLE}")]  # noqa: S608

    def drop(self, action_ids: Sequence[str]) -> None:
        if not action_ids or not self._exists():
            return
        for i in range(0, len(action_ids), _CHUNK):
            chunk = action_ids[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM main.{TABLE} WHERE action_id IN ({marks})", tuple(chunk))  # noqa: S608

    def _exists(self) -> bool:
        return bool(rows(self._db, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)))
