"""fingerprint(): the schema and the content of every table, comparable across two moments.

Two fingerprints are equal (==) when the schema, every table's row count and every table's
content hash are; the per-row detail kept for small tables (used by diff to count rows) is not
compared. Taken inside an open transaction, a fingerprint sees that transaction's uncommitted
changes, so `fingerprint, action, inverse, fingerprint, ROLLBACK` compares the states before
and after the action and its inverse. See content.py for how a table's content is hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from goexd.dbinspect.backend import Backend, DbConnection, reading
from goexd.dbinspect.model import TABLE, Relation, Schema, object_hashes, relation_hash, schema_hash
from goexd.dbinspect.schema_diff import Definitions

ROW_DETAIL_LIMIT = 10_000  # per-row digests kept for tables up to this many rows


@dataclass(frozen=True)
class TableFingerprint:
    schema_hash: str  # the table's definition: columns, keys, constraints, indexes, triggers
    row_count: int
    content_hash: str  # 16 hex digits: sum of per-row 64-bit digests mod 2^64 (order-independent)
    primary_key: tuple[str, ...]  # the columns `rows_by_key` is keyed on; () when there is none
    # Per-row detail, only for tables of at most `row_detail_limit` rows; not compared by ==.
    rows_by_key: Mapping[str, int] | None = field(default=None, compare=False, repr=False)  # pk text -> digest
    row_multiset: Mapping[int, int] | None = field(default=None, compare=False, repr=False)  # digest -> count
    kind: str = field(default=TABLE, compare=False)  # TABLE or MATVIEW (a diff names it)
    # A SQLite shadow table compared as a table (its virtual table shows no content of its own): that virtual table.
    shadow_of: str | None = field(default=None, compare=False)

    @property
    def has_row_detail(self) -> bool:
        return self.rows_by_key is not None or self.row_multiset is not None


@dataclass(frozen=True)
class DbFingerprint:
    engine: str  # "sqlite" | "postgresql"
    schema_hash: str  # every object of the user schemas (tables, views, types...)
    objects: Mapping[str, str]  # "table users", "view v", "type mood" -> hash of its definition
    # By the table's SQL name (`users`, `audit.log`); materialized views' rows are here too.
    tables: Mapping[str, TableFingerprint]
    # Tables the connection's role may not SELECT from: in `objects` (their definition is
    # compared) but not in `tables` (their rows are not).
    unreadable: tuple[str, ...] = ()
    # The definitions `objects` hashes, for a diff to say what changed in them; not compared by ==.
    definitions: Definitions | None = field(default=None, compare=False, repr=False)
    # Database-level state beside the schema and rows (SQLite: user_version, application_id,
    # sqlite_sequence values, ANALYZE's sqlite_stat1/sqlite_stat4; sqlite_catalog.database_state), compared.
    state: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """One hex digest of everything == compares."""
        h = hashlib.sha256(f"{self.engine}\0{self.schema_hash}\0{','.join(self.unreadable)}".encode())
        for name in sorted(self.tables):
            t = self.tables[name]
            h.update(f"\0{name}\0{t.schema_hash}\0{t.row_count}\0{t.content_hash}".encode())
        for key in sorted(self.state):
            h.update(f"\0state\0{key}\0{self.state[key]}".encode())
        return h.hexdigest()


def fingerprint(
    conn: DbConnection,
    row_detail_limit: int = ROW_DETAIL_LIMIT,
    snapshot: str | None = None,
    database_facts: bool = True,
) -> DbFingerprint:
    """The whole database's fingerprint (on PostgreSQL as an exported `snapshot` saw it, when given).
    Without `database_facts`, the database's own privileges and settings are left out (PostgreSQL: to
    compare a database with a copy of it, which CREATE DATABASE ... TEMPLATE does not give them)."""
    with reading(conn, snapshot) as db:
        schema = db.schema()
        return fingerprint_of(db, schema if database_facts else schema.without_database_facts(), row_detail_limit)


def fingerprint_of(db: Backend, schema: Schema, row_detail_limit: int = ROW_DETAIL_LIMIT) -> DbFingerprint:
    """The fingerprint of `schema` (read through `db`, inside its read scope) and of every table's rows."""
    return partial_fingerprint(db, schema, None, row_detail_limit)


def partial_fingerprint(
    db: Backend, schema: Schema, read: Collection[str] | None, row_detail_limit: int = ROW_DETAIL_LIMIT
) -> DbFingerprint:
    """The fingerprint of `schema` and of the rows of the tables in `read` (None: every table).

    The other tables stand in unread (a row count of 0, the content hash "unread"): two partial
    fingerprints that read the same tables compare and diff like whole ones, as long as the
    tables left unread are known to be the same on both sides."""
    objects = object_hashes(schema)
    tables = {
        rel.ref: (
            table_fingerprint(db, rel, row_detail_limit)
            if read is None or rel.ref in read
            else TableFingerprint(relation_hash(rel), 0, "unread", rel.row_key, kind=rel.kind, shadow_of=rel.shadow_of)
        )
        for rel in schema.tables
        if rel.readable
    }
    return DbFingerprint(
        db.engine, schema_hash(objects), objects, tables, unreadable(schema), Definitions.of(schema), db.state()
    )


def unreadable(schema: Schema) -> tuple[str, ...]:
    """The tables whose rows the connection's role may not read (compared by definition only)."""
    return tuple(rel.ref for rel in schema.tables if not rel.readable)


def table_fingerprint(db: Backend, rel: Relation, row_detail_limit: int = ROW_DETAIL_LIMIT) -> TableFingerprint:
    content = db.table_content(rel, row_detail_limit)
    return TableFingerprint(
        schema_hash=relation_hash(rel),
        row_count=content.row_count,
        content_hash=f"{content.content_hash:016x}",
        primary_key=rel.row_key,
        rows_by_key=content.by_key,
        row_multiset=content.multiset,
        kind=rel.kind,
        shadow_of=rel.shadow_of,
    )
