"""Inspect a SQLite or PostgreSQL database through an open connection.

    describe(conn, sample_rows=0) -> str                   what a planner needs to write SQL
    fingerprint(conn, row_detail_limit=10_000) -> DbFingerprint   schema + per-table content hashes
    diff(before, after) -> DbDiff                          tables added/removed/changed, row counts

`conn` is a sqlite3.Connection (the daemon opens it with isolation_level=None) or a psycopg 3
Connection. Each call reads inside a scope it rolls back (backend.py): it works with or without
an open transaction, sees that transaction's uncommitted changes, and changes nothing.

Modules: model (schema model, definition hashes), sqlite_catalog / pg_catalog (schema readers),
content (counts, row-digest sums), sqlite_data / pg_data (counts, samples, row digests),
backend (engine dispatch, read scopes), describe, fingerprint, diff; sqlite and postgres hold
the same three functions typed for one engine's connection; pg_changes and sqlite_changes tell
what an open transaction changed without reading every row (the reversibility test's shortcut,
and on SQLite the fingerprints around an action).
"""

from goexd.dbinspect.backend import DbConnection
from goexd.dbinspect.describe import describe
from goexd.dbinspect.diff import DbDiff, TableDiff, diff
from goexd.dbinspect.fingerprint import DbFingerprint, TableFingerprint, fingerprint

from goexd.dbinspect import postgres, sqlite  # isort: skip  (engine-typed entry points)

__all__ = [
    "DbConnection",
    "DbDiff",
    "DbFingerprint",
    "TableDiff",
    "TableFingerprint",
    "describe",
    "diff",
    "fingerprint",
    "postgres",
    "sqlite",
]
