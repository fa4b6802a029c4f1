"""SQLite entry points, typed for a sqlite3.Connection (the package-level ones take either engine)."""

from __future__ import annotations

import sqlite3

from goexd.dbinspect.describe import describe as _describe
from goexd.dbinspect.diff import DbDiff, diff
from goexd.dbinspect.fingerprint import ROW_DETAIL_LIMIT, DbFingerprint
from goexd.dbinspect.fingerprint import fingerprint as _fingerprint

__all__ = ["DbDiff", "DbFingerprint", "describe", "diff", "fingerprint"]


def describe(conn: sqlite3.Connection, sample_rows: int = 0) -> str:
    return _describe(conn, sample_rows)


def fingerprint(conn: sqlite3.Connection, row_detail_limit: int = ROW_DETAIL_LIMIT) -> DbFingerprint:
    return _fingerprint(conn, row_detail_limit)
