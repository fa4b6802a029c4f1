"""PostgreSQL entry points, typed for a psycopg 3 Connection (the package-level ones take either engine)."""

from __future__ import annotations

from typing import Any

import psycopg

from goexd.dbinspect.describe import describe as _describe
from goexd.dbinspect.diff import DbDiff, diff
from goexd.dbinspect.fingerprint import ROW_DETAIL_LIMIT, DbFingerprint
from goexd.dbinspect.fingerprint import fingerprint as _fingerprint

__all__ = ["DbDiff", "DbFingerprint", "describe", "diff", "fingerprint"]


def describe(conn: psycopg.Connection[Any], sample_rows: int = 0) -> str:
    return _describe(conn, sample_rows)


def fingerprint(
    conn: psycopg.Connection[Any], row_detail_limit: int = ROW_DETAIL_LIMIT, database_facts: bool = True
) -> DbFingerprint:
    return _fingerprint(conn, row_detail_limit, database_facts=database_facts)
