"""What the inverse and clone strategies share on PostgreSQL: a PgDatabase (the database's own connection, opened
on demand, and the maintenance one), their scripts (each action runs in its own transaction), and reading.

`releases`: the clone strategy closes the database's connection at the end of each call, so that it holds none
between calls and two goexd sessions on one database do not block each other's copies; the inverse strategy
keeps it open (nothing is pending on it between calls either way).
"""

from __future__ import annotations

import threading

from goexd.dbinspect import postgres as inspect
from goexd.domain.errors import GoexError, InvalidArgument
from goexd.domain.models import ActionSpec, Resource, SqlResult
from goexd.resources.postgres import reads, run
from goexd.resources.sql_manager import ScriptJob, SqlManager, StatementFailed
from goexd.sql.model import SQL_FIELD, Classified

RUNS_IN = "its own transaction"


class PgDatabaseManager(SqlManager):
    dialect = "postgres"
    releases = False

    def __init__(
        self,
        resource: Resource,
        password: str | None,
        row_limit: int = 1000,
        connect_timeout_s: float = 5.0,
        admin_database: str = run.ADMIN_DATABASE,
        copy_strategy: str | None = None,
    ) -> None:
        self.resource = resource
        self._pg = run.PgEndpoint(resource.uri, password, connect_timeout_s)
        self._db = run.PgDatabase(self._pg, admin_database, copy_strategy)
        self._row_limit = row_limit
        self._lock = threading.Lock()
        try:
            self._opened()
        except BaseException:
            self._db.close()
            raise

    def _opened(self) -> None:
        """The strategy's own setup and checks, at session open; the database is closed again if it raises."""

    def script(self, spec: ActionSpec, fld: str = "spec") -> list[Classified]:
        return run.check_script(spec, fld, runs_in=RUNS_IN)

    def change_nothing(self, functions: frozenset[str]) -> bool:
        """reads.none_volatile() on the database's connection."""
        if not functions:
            return True
        with self._lock:
            try:
                return self._db.reading("looking up functions", lambda c: reads.none_volatile(c, functions))
            except GoexError:  # then it runs as any action, and meets the problem there
                return False
            finally:
                self._release()

    def read(self, job: ScriptJob) -> SqlResult:
        """In a READ ONLY transaction, rolled back after (nothing is pending on the connection between calls)."""
        with self._lock:
            try:
                return reads.run_postgres_read(self._db.conn(), job, self._pg.message)
            except run.ConnectionLost as lost:
                raise self._db.lost(lost, "the read") from None
            except StatementFailed as exc:
                raise InvalidArgument(SQL_FIELD, exc.why) from None
            finally:
                self._release()

    def _described(self, head: str, samples: bool) -> str:
        with self._lock:
            try:
                body = self._db.reading("while describing it", lambda c: inspect.describe(c, 3 if samples else 0))
            finally:
                self._release()
        return head + "\n" + body

    def _release(self) -> None:
        if self.releases:
            self._db.release()
