"""PostgreSQL reads resolved at once (resources/sql_reads.py): fenced by a read-only savepoint or transaction."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import psycopg
from psycopg.pq import TransactionStatus

from goexd.domain.errors import GoexError, InvalidArgument
from goexd.domain.models import ActionSpec, SqlResult
from goexd.domain.resource import Outcome
from goexd.domain.sandbox import Limits
from goexd.resources.postgres import run as pg_run
from goexd.resources.sql_reads import read_outcome
from goexd.sql.model import SQL_FIELD, Classified

_SAVEPOINT = "goex_read"


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
