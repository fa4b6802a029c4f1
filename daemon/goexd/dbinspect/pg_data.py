"""Row counts, sample rows and content digests of PostgreSQL tables.

A row's digest is hashtextextended(ROW(t.*)::text, 0), computed by the server: the row's text
form (as the session's output settings render it; dbinspect pins them while it reads) hashed
to 64 bits. Measured on 1M rows it was 3x faster than the md5-based
`('x'||substr(md5(...),1,16))::bit(64)::bigint`. The function is internal to PostgreSQL:
digests are comparable on one server, not across major versions.

Tables of up to `detail_limit` rows are read row by row (key, digest) and summed here; larger
ones are summed by the server in one aggregate (a parallel scan where the planner allows it).
Both paths give the same hash, so a table crossing the limit still compares.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from goexd.dbinspect.content import MASK64, ContentAccumulator, RowCount, TableContent
from goexd.dbinspect.model import Relation

DIGEST = "hashtextextended(ROW(t.*)::text, 0)"  # of a row `t` (pg_changes.py hashes captured rows alike)
_DIGEST = sql.SQL(DIGEST)


def _table(rel: Relation) -> sql.Composable:
    return sql.Identifier(rel.schema or "public", rel.name)


def count_rows(conn: psycopg.Connection[Any], rel: Relation, cap: int) -> RowCount:
    """The planner's estimate when it says more than `cap` rows, else an exact count bounded by
    a LIMIT (estimates are missing or stale for tables just created or filled)."""
    if rel.estimated_rows is not None and rel.estimated_rows > cap:
        return RowCount(rel.estimated_rows, exact=False)
    q = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) s").format(_table(rel))
    row = conn.cursor(row_factory=tuple_row).execute(q, (cap + 1,)).fetchone()
    n = int(row[0]) if row else 0
    if n <= cap:
        return RowCount(n, exact=True)
    return RowCount(cap, exact=False, lower_bound=True)


def sample_rows(conn: psycopg.Connection[Any], rel: Relation, n: int) -> tuple[list[str], list[tuple[object, ...]]]:
    order: sql.Composable = sql.SQL("")
    if rel.primary_key:  # names from quote_ident(): already valid SQL
        order = sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.SQL(c) for c in rel.primary_key)
    q = sql.SQL("SELECT * FROM {}{} LIMIT %s").format(_table(rel), order)
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(q, (n,)).fetchall()
    return [c.name for c in cur.description or ()], rows


def table_content(conn: psycopg.Connection[Any], rel: Relation, detail_limit: int) -> TableContent:
    keyed = bool(rel.primary_key)
    key = (
        sql.SQL("ROW(") + sql.SQL(", ").join(sql.SQL("t." + c) for c in rel.primary_key) + sql.SQL(")::text")
        if keyed
        else sql.SQL("''")
    )
    cur = conn.cursor(row_factory=tuple_row)
    q = sql.SQL("SELECT {}, {} FROM {} AS t LIMIT %s").format(key, _DIGEST, _table(rel))
    rows = cur.execute(q, (detail_limit + 1,)).fetchall()
    if len(rows) <= detail_limit:
        acc = ContentAccumulator(keyed=keyed, detail_limit=detail_limit)
        for k, digest in rows:
            acc.add(k, digest)
        return acc.result()
    agg = sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} AS t").format(_DIGEST, _table(rel))
    row = cur.execute(agg).fetchone()
    assert row is not None
    return TableContent(int(row[0]), int(row[1]) & MASK64)
