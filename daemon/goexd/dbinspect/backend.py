"""One interface over both engines, used inside a read scope that leaves the connection as it was.

`reading(conn)` opens the scope and yields a `Backend`:
- SQLite (a sqlite3.Connection; the daemon uses isolation_level=None): SAVEPOINT ... ROLLBACK TO,
  RELEASE. Outside a transaction the savepoint is a read transaction (one consistent snapshot);
  inside the caller's transaction it sees the caller's uncommitted changes.
- PostgreSQL (a psycopg 3 Connection): a transaction block that is always rolled back; a
  savepoint when the caller's transaction is open (its uncommitted changes are seen), else a
  REPEATABLE READ READ ONLY transaction (one snapshot for every table). The output settings
  that shape a row's text (TimeZone, DateStyle, IntervalStyle, extra_float_digits,
  bytea_output) and search_path are pinned with SET LOCAL inside it, so a fingerprint does not
  depend on how the session was configured; the rollback undoes them. Given a `snapshot` (one
  pg_export_snapshot() named), an idle connection reads as that snapshot saw the database.
Either way nothing is written, and a failure inside the scope leaves the caller's transaction
usable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from goexd.dbinspect import pg_catalog, pg_data, sqlite_catalog, sqlite_data
from goexd.dbinspect.content import RowCount, TableContent
from goexd.dbinspect.model import Relation, Schema

DbConnection = sqlite3.Connection | psycopg.Connection[Any]

# The settings that shape a row's text, as every PostgreSQL digest is taken (pg_changes.py pins
# them on its capture function too, so both hash the same text).
PINNED_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("search_path", "public"),
    ("quote_all_identifiers", "off"),
)
_PIN_SETTINGS = "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in PINNED_SETTINGS)


class Backend(Protocol):
    engine: str  # "sqlite" | "postgresql"

    def schema(self) -> Schema: ...

    def count_rows(self, rel: Relation, cap: int) -> RowCount: ...

    def sample_rows(self, rel: Relation, n: int) -> tuple[list[str], list[tuple[object, ...]]]: ...

    def table_content(self, rel: Relation, detail_limit: int) -> TableContent: ...

    def state(self) -> dict[str, str]:
        """Database-level state compared beside the schema and rows ("user_version" -> "7")."""
        ...


class SqliteBackend:
    engine = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def schema(self) -> Schema:
        return sqlite_catalog.read_schema(self.conn)

    def count_rows(self, rel: Relation, cap: int) -> RowCount:
        return sqlite_data.count_rows(self.conn, rel, cap)

    def sample_rows(self, rel: Relation, n: int) -> tuple[list[str], list[tuple[object, ...]]]:
        return sqlite_data.sample_rows(self.conn, rel, n)

    def table_content(self, rel: Relation, detail_limit: int) -> TableContent:
        return sqlite_data.table_content(self.conn, rel, detail_limit)

    def state(self) -> dict[str, str]:
        return sqlite_catalog.database_state(self.conn)


class PgBackend:
    engine = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def schema(self) -> Schema:
        return pg_catalog.read_schema(self.conn)

    def count_rows(self, rel: Relation, cap: int) -> RowCount:
        return pg_data.count_rows(self.conn, rel, cap)

    def sample_rows(self, rel: Relation, n: int) -> tuple[list[str], list[tuple[object, ...]]]:
        return pg_data.sample_rows(self.conn, rel, n)

    def table_content(self, rel: Relation, detail_limit: int) -> TableContent:
        return pg_data.table_content(self.conn, rel, detail_limit)

    def state(self) -> dict[str, str]:
        return {}


@contextmanager
def reading(conn: DbConnection, snapshot: str | None = None) -> Iterator[Backend]:
    if isinstance(conn, sqlite3.Connection):
        if snapshot is not None:
            raise ValueError("snapshots are for PostgreSQL connections")
        with _sqlite_scope(conn):
            yield SqliteBackend(conn)
    elif isinstance(conn, psycopg.Connection):
        with _pg_scope(conn, snapshot):
            yield PgBackend(conn)
    else:
        raise TypeError(f"not a sqlite3 or psycopg connection: {type(conn).__name__}")


_SAVEPOINT = "goex_dbinspect"


@contextmanager
def _sqlite_scope(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield
    finally:
        conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
        conn.execute(f"RELEASE {_SAVEPOINT}")


@contextmanager
def _pg_scope(conn: psycopg.Connection[Any], snapshot: str | None = None) -> Iterator[None]:
    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR:
        raise ValueError("the connection's transaction is aborted (a statement failed): roll it back first")
    if status not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
        raise ValueError(f"the connection is busy ({status.name})")
    if snapshot is not None and status != TransactionStatus.IDLE:
        raise ValueError("a snapshot is read in a transaction of its own: the connection must be idle")
    with conn.transaction(force_rollback=True):
        if status == TransactionStatus.IDLE:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if snapshot is not None:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        conn.execute(_PIN_SETTINGS)
        yield
