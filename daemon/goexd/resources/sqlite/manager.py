"""What the three sqlite strategies share: the database file, goexd's own connection to it, and their scripts."""

from __future__ import annotations

import threading
from pathlib import Path

from goexd.dbinspect import sqlite as inspect
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionSpec, Resource, SqlResult
from goexd.resources.sql_manager import ScriptJob, SqlManager, StatementFailed
from goexd.resources.sqlite import reads, run
from goexd.sql.model import SQL_FIELD, Classified


class SqliteManager(SqlManager):
    dialect = "sqlite"

    def __init__(self, resource: Resource, row_limit: int, busy_timeout_s: float) -> None:
        self.resource = resource
        self.path = Path(resource.uri)
        self._row_limit = row_limit
        self._db = run.connect(self.path, busy_timeout_s)
        self._lock = threading.Lock()

    def script(self, spec: ActionSpec, fld: str = "spec") -> list[Classified]:
        return run.check_script(spec, fld)

    def read(self, job: ScriptJob) -> SqlResult:
        """On the connection, where no transaction is open between calls (inverse, clone)."""
        with self._lock:
            try:
                return reads.run_sqlite_read(self._db, job)
            except StatementFailed as exc:
                raise InvalidArgument(SQL_FIELD, exc.why) from None

    def _described(self, head: str, samples: bool) -> str:
        with self._lock:
            return head + "\n" + inspect.describe(self._db, sample_rows=3 if samples else 0)
