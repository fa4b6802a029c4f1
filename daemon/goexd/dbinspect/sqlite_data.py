"""Row counts, sample rows and content digests of SQLite tables.

SQLite has no hash function in SQL, so rows are streamed and hashed in Python: a row's digest is
the first 8 bytes of BLAKE2b over repr() of its values, which tells the storage classes apart
(1, 1.0, '1', b'1', None) and keeps every bit of a REAL.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing

from goexd.dbinspect.content import ContentAccumulator, RowCount, TableContent
from goexd.dbinspect.model import Relation
from goexd.dbinspect.sqlite_catalog import rows

_FETCH = 5000


def count_rows(conn: sqlite3.Connection, rel: Relation, cap: int) -> RowCount:
    """Exact up to `cap` rows (a LIMIT-bounded count); beyond, sqlite_stat1's estimate if any."""
    # Identifiers in the model are quoted by the catalog reader (quote_ident): safe to splice.
    q = f"SELECT count(*) FROM (SELECT 1 FROM main.{rel.ref} LIMIT ?)"  # noqa: S608
    ((n,),) = rows(conn, q, (cap + 1,))
    if n <= cap:
        return RowCount(n, exact=True)
    if rel.estimated_rows is not None and rel.estimated_rows > cap:
        return RowCount(rel.estimated_rows, exact=False)
    return RowCount(cap, exact=False, lower_bound=True)


def sample_rows(conn: sqlite3.Connection, rel: Relation, n: int) -> tuple[list[str], list[tuple[object, ...]]]:
    order = f" ORDER BY {', '.join(rel.primary_key)}" if rel.primary_key else ""
    with closing(conn.cursor()) as cur:
        cur.row_factory = None
        cur.execute(f"SELECT * FROM main.{rel.ref}{order} LIMIT ?", (n,))  # noqa: S608
        rows = [tuple(r) for r in cur.fetchall()]
        names = [d[0] for d in cur.description or ()]
    return names, rows


def table_content(conn: sqlite3.Connection, rel: Relation, detail_limit: int) -> TableContent:
    keys = list(rel.row_key)
    k = len(keys)
    acc = ContentAccumulator(keyed=bool(keys), detail_limit=detail_limit)
    blake = hashlib.blake2b
    from_bytes = int.from_bytes
    with closing(conn.cursor()) as cur:
        cur.row_factory = None
        # A hidden rowid is content too (the first value digested; sqlite_changes captures it alike).
        rowid = f"{rel.rowid}, " if rel.rowid else ""
        cur.execute(f"SELECT {''.join(c + ', ' for c in keys)}{rowid}* FROM main.{rel.ref}")  # noqa: S608
        while batch := cur.fetchmany(_FETCH):
            for row in batch:
                digest = from_bytes(blake(repr(row[k:]).encode(), digest_size=8).digest(), "little")
                acc.add(repr(row[:k]) if k else "", digest)
    return acc.result()
