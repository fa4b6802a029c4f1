"""PostgreSQL reads resolved at once (resources/sql_reads.py): fenced by a read-only savepoint or transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import psycopg
from psycopg.pq import TransactionStatus

from goexd.domain.models import SqlResult
from goexd.resources.postgres import run as pg_run
from goexd.resources.sql_manager import ScriptJob, StatementFailed

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


def run_postgres_read(conn: pg_run.Conn, job: ScriptJob, message: Callable[[psycopg.Error], str]) -> SqlResult:
    """The statements read-only (see _fenced). Raises StatementFailed or ConnectionLost as run_script does."""
    try:
        with _fenced(conn):
            return pg_run.run_script(conn, job, message)
    except psycopg.Error as exc:  # the fence itself (BEGIN, SAVEPOINT, its rollback)
        if pg_run.broken(conn):
            raise pg_run.ConnectionLost(exc, started=False) from None
        raise StatementFailed(f"postgres: {message(exc)}", False) from None
