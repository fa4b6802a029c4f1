"""SQL actions that only read, resolved at once as http reads are (issue 19): shared by the six database managers.

A manager that `ReadsAtOnce` answers Journaling.AFTER_RUN for a read-only script (sql/read_only.py,
and on PostgreSQL no volatile function called but the few that change nothing): the engine then takes
no checkpoint and no reversibility test (it hands execute() READ_CHECKPOINT), journals the action whole
once it has answered and resolves it at once, COMMITTED, so `undo` takes back the last change and never
a SELECT. The read runs where the strategy's writes run (inside the transaction strategy's open
transaction, so it sees the pending work) but fenced, and the fence is taken down after it: SQLite's
PRAGMA query_only; on PostgreSQL a savepoint set read-only inside an open transaction, or a READ ONLY
transaction of its own, rolled back either way. Nothing pending is committed or rolled back by it, and
a write that slipped past the parse (a view over a function that writes) fails instead of happening.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence

import psycopg
from psycopg.pq import TransactionStatus

from goexd.domain.errors import GoexError, InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, Reversibility, ReversibilityClass, SqlResult, Verdict
from goexd.domain.resource import Checkpoint, Journaling, Outcome, RollbackReport
from goexd.domain.sandbox import Limits
from goexd.resources import postgres_run as pg_run
from goexd.resources import sqlite_run
from goexd.sql.model import SQL_FIELD, Classified, Dialect
from goexd.sql.read_only import reads_only

READ_ONLY_KEY = "read_only"
READ_CHECKPOINT: Checkpoint = {READ_ONLY_KEY: "no checkpoint: it only reads"}
NOTHING_TO_ROLL_BACK = RollbackReport(verified=True, detail="it only read; nothing to roll back")
# Volatile in pg_proc, but they change nothing: reading them in a read-only transaction is fine.
HARMLESS_VOLATILE = frozenset({"random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid"})
_SAVEPOINT = "goex_read"


def is_read(checkpoint: Checkpoint) -> bool:
    """Whether the engine handed execute()/rollback() the checkpoint of a read resolved at once."""
    return READ_ONLY_KEY in checkpoint


def read_outcome(result: SqlResult) -> Outcome:
    return Outcome(
        exec=None,
        changes=None,
        sql=result,
        reversibility=Reversibility(ReversibilityClass.READ_ONLY, Verdict.PASSED, "read-only: nothing to undo"),
    )


class ReadsAtOnce:
    """Mixed into a database manager (before StepByStep/UndoesByItself): reads are journaled after they run."""

    dialect: Dialect

    def reads_only(self, spec: ActionSpec) -> bool:
        """Whether `spec` only reads: the parse's word, and then the resource's on the functions it calls."""
        found = reads_only(spec.sql, self.dialect) if spec.kind is ActionKind.SQL else None
        return found is not None and self.change_nothing(frozenset(found.functions - HARMLESS_VOLATILE))

    def change_nothing(self, functions: frozenset[str]) -> bool:
        """Whether calling these functions changes nothing (PostgreSQL asks its catalog; SQLite has none that do)."""
        return True

    def journaling(self, spec: ActionSpec) -> Journaling:
        return Journaling.AFTER_RUN if self.reads_only(spec) else Journaling.EACH_STEP


# ---------------------------------------------------------------- SQLite


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


# ---------------------------------------------------------------- PostgreSQL


def none_volatile(conn: pg_run.Conn, functions: frozenset[str]) -> bool:
    """Whether no function of these names is volatile in the catalog (pg_proc.provolatile; any overload counts).

    A non-volatile (STABLE, IMMUTABLE) SQL or PL/pgSQL function cannot write: PostgreSQL refuses it."""
    if not functions:
        return True
    idle = conn.info.transaction_status is TransactionStatus.IDLE
    cur = conn.execute(
        "SELECT 1 FROM pg_proc WHERE proname = ANY(%s) AND provolatile = 'v' LIMIT 1", [sorted(functions)]
    )
    volatile = cur.fetchone() is not None
    if idle and conn.info.transaction_status is not TransactionStatus.IDLE:
        conn.rollback()  # the look began a transaction (psycopg, autocommit off): end it, nothing was pending
    return not volatile


@contextlib.contextmanager
def _fenced(conn: pg_run.Conn) -> Iterator[None]:
    """A read-only stretch on `conn` that leaves its transaction (and what is pending in it) as it was."""
    status = conn.info.transaction_status
    if status is TransactionStatus.IDLE:
        conn.execute("BEGIN READ ONLY" if conn.autocommit else "SET TRANSACTION READ ONLY")
        try:
            yield
        finally:
            if not pg_run.broken(conn):
                conn.execute("ROLLBACK") if conn.autocommit else conn.rollback()
        return
    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        conn.execute("SET LOCAL transaction_read_only = on")
        yield
    finally:
        if not pg_run.broken(conn):  # undoes the setting too, and clears an error the read left
            conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")


def run_postgres_read(
    conn: pg_run.Conn,
    statements: Sequence[Classified],
    params: Sequence[str],
    limits: Limits,
    cancel: threading.Event | None,
    row_limit: int,
    message: Callable[[psycopg.Error], str],
) -> SqlResult:
    """The statements read-only (see _fenced). Raises StatementFailed or ConnectionLost as run_script does."""
    try:
        with _fenced(conn):
            return pg_run.run_script(conn, statements, params, limits, cancel, row_limit, message)
    except psycopg.Error as exc:  # the fence itself (BEGIN, SAVEPOINT, its rollback)
        if pg_run.broken(conn):
            raise pg_run.ConnectionLost(exc, started=False) from None
        raise pg_run.StatementFailed(f"postgres: {message(exc)}", False) from None


def database_change_nothing(
    db: pg_run.PgDatabase, lock: threading.Lock, functions: frozenset[str], release: bool
) -> bool:
    """none_volatile() on a PgDatabase's connection (inverse, clone); `release`: close it after (clone)."""
    if not functions:
        return True
    with lock:
        try:
            return db.reading("looking up functions", lambda c: none_volatile(c, functions))
        except GoexError:  # then it runs as any action, and meets the problem there
            return False
        finally:
            if release:
                db.release()


def database_read(
    db: pg_run.PgDatabase,
    lock: threading.Lock,
    statements: Sequence[Classified],
    spec: ActionSpec,
    limits: Limits,
    cancel: threading.Event | None,
    row_limit: int,
    release: bool,
) -> Outcome:
    """A read resolved at once on a PgDatabase's connection, in a READ ONLY transaction rolled back after."""
    with lock:
        try:
            result = run_postgres_read(db.conn(), statements, spec.params, limits, cancel, row_limit, db.pg.message)
        except pg_run.ConnectionLost as lost:
            raise db.lost(lost, "the read") from None
        except pg_run.StatementFailed as exc:
            raise InvalidArgument(SQL_FIELD, exc.why) from None
        finally:
            if release:
                db.release()
    return read_outcome(result)
