"""What an open REPEATABLE READ transaction changed in a PostgreSQL database, without reading every row.

For the reversibility test (action then inverse, in a transaction that is always rolled back).
Fingerprinting the whole database before and after hashes every row of every table twice
(~175 ms a pass at 1M rows); instead `Probe.start`, at the start of the transaction, notes:
- an exported snapshot (pg_export_snapshot()): another connection can later read the database
  as it was before the action, so only what turns out to matter is read;
- the schema (catalog reads, cheap), and for each table and materialized view its oid, its file
  node (a REFRESH makes a new one; REFRESH ... CONCURRENTLY writes rows) and this backend's
  counts of inserted, updated and deleted rows (pg_stat_get_xact_tuples_*);
- capture triggers on the tables the scripts write (`written`) and those their foreign keys
  cascade to: statement-level AFTER triggers with transition tables that add up, per table,
  the rows each statement inserted, updated and deleted, and the sums of their digests (old
  rows and new rows; pg_data's digest, under the same pinned settings).
`Probe.finish`, after the action and the inverse, tells what changed:
- the schema is compared whole, when the statements wrote any row of the system catalogs (DDL,
  GRANT, ANALYZE... do; the counts tell, as for tables); otherwise it is as it was;
- a table whose counts did not move and whose file node (TRUNCATE, a rewrite) and oid (dropped
  and created again) are the same was not written: its rows are the same, unread;
- a written table with a capture is judged by its net change, new rows minus old rows in count
  and in digest sum (mod 2^64): exactly how far its full fingerprint moved. A capture counts
  only if it saw as many rows as the counts say were inserted, updated and deleted; otherwise
  (the script disabled triggers, a subtransaction's writes were rolled back, rows went to a
  partition...) the table is read;
- any other written table is read whole, now and as the snapshot saw it.
When something differs, or may differ, the tables concerned (every table, when the schema
differs) are fingerprinted on both sides, and `diff` says what changed, as it always did.

The snapshot's side is read after the caller's ROLLBACK (`Pending.result`): the transaction may
hold locks (TRUNCATE, ALTER TABLE) that a read of the same table would wait for. The snapshot is
imported before that, while the transaction that exported it is still open.

Costs and limits:
- The capture triggers are DDL inside the caller's transaction (rolled back with it). They
  need the TRIGGER privilege (owners have it) and take a SHARE ROW EXCLUSIVE lock on each
  captured table until the ROLLBACK: other sessions' writes to those tables wait for the test
  (a few ms). The lock is waited for at most LOCK_WAIT_MS; past that nothing is captured and
  written tables are read. A temporary function and table (pg_temp) hold the sums.
- Partitions and tables with inheritance parents or children are not captured (they are read).
- A large change captured costs more than reading the table twice would (every changed row is
  kept by PostgreSQL for the transition tables, then hashed).
- Same hash, same caveat as fingerprint(): a sum of 64-bit digests.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from goexd.dbinspect.backend import PINNED_SETTINGS, Backend, reading
from goexd.dbinspect.content import MASK64
from goexd.dbinspect.diff import DbDiff, diff
from goexd.dbinspect.fingerprint import DbFingerprint, partial_fingerprint, unreadable
from goexd.dbinspect.model import Schema, object_hashes
from goexd.dbinspect.pg_catalog import USER_NAMESPACES, sequence_states
from goexd.dbinspect.pg_data import DIGEST

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

LOCK_WAIT_MS = 50  # how long a capture trigger may wait for its table's lock before the table is read instead

_REF = "CASE WHEN n.nspname = 'public' THEN quote_ident(c.relname) ELSE quote_ident(n.nspname) || '.' || quote_ident(c.relname) END"  # noqa: E501 (pg_catalog.qualified(), in SQL)

_STATES = f"""
SELECT {_REF}, c.oid, c.relfilenode, pg_stat_get_xact_tuples_inserted(c.oid),
       pg_stat_get_xact_tuples_updated(c.oid), pg_stat_get_xact_tuples_deleted(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND {USER_NAMESPACES}
"""  # noqa: S608 (constant text)

# Rows of the system catalogs this backend has written so far: DDL (and GRANT, ANALYZE...) writes
# them; when the statements wrote none, the schema is as it was, unread.
_CATALOG_WRITES = """
SELECT coalesce(sum(pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid)
                    + pg_stat_get_xact_tuples_deleted(c.oid)), 0)
FROM pg_class c WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
"""

# The written tables, resolved as the session would (search_path), and the tables their
# foreign keys' ON DELETE/UPDATE actions reach; those a capture trigger can go on.
_CAPTURABLE = f"""
WITH RECURSIVE named(oid) AS (
    SELECT to_regclass(CASE WHEN w.nsp IS NULL THEN quote_ident(w.rel)
                            ELSE quote_ident(w.nsp) || '.' || quote_ident(w.rel) END)::oid
    FROM unnest(%s::text[], %s::text[]) AS w(nsp, rel)
), reach(oid) AS (
    SELECT oid FROM named WHERE oid IS NOT NULL
    UNION
    SELECT con.conrelid FROM pg_constraint con JOIN reach ON con.confrelid = reach.oid
    WHERE con.contype = 'f' AND (con.confdeltype IN ('c', 'n', 'd') OR con.confupdtype IN ('c', 'n', 'd'))
)
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), current_setting('lock_timeout')
FROM reach JOIN pg_class c ON c.oid = reach.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT c.relispartition AND {USER_NAMESPACES}
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid)
  AND has_table_privilege(c.oid, 'TRIGGER') AND has_table_privilege(c.oid, 'SELECT')
ORDER BY 1
"""  # noqa: S608 (constant text)

_FUNCTION = "pg_temp.goex_capture"
_SUMS = "goex.captured"  # a setting local to the transaction: it needs no table, and a ROLLBACK TO takes it back
_SAVEPOINT = "goex_capture"
_PINS = " ".join(f"SET {name} = '{value}'" for name, value in PINNED_SETTINGS)
# Per statement and side, "oid op side rows digests;": how many rows it inserted (side 1, the new
# rows), updated (both sides) or deleted (side -1, the old rows), and the sum of their digests,
# hashed as pg_data hashes a row.
_CREATE = f"""
SELECT set_config('{_SUMS}', '', true);
CREATE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql {_PINS} AS $goex$
DECLARE
  n bigint;
  digests numeric;
BEGIN
  IF TG_OP <> 'DELETE' THEN
    SELECT count(*), coalesce(sum({DIGEST}), 0) INTO n, digests FROM goex_new AS t;
    PERFORM set_config(
      '{_SUMS}', current_setting('{_SUMS}') || concat_ws(' ', TG_RELID, TG_OP, 1, n, digests) || ';', true);
  END IF;
  IF TG_OP <> 'INSERT' THEN
    SELECT count(*), coalesce(sum({DIGEST}), 0) INTO n, digests FROM goex_old AS t;
    PERFORM set_config(
      '{_SUMS}', current_setting('{_SUMS}') || concat_ws(' ', TG_RELID, TG_OP, -1, n, digests) || ';', true);
  END IF;
  RETURN NULL;
END $goex$
"""  # noqa: S608 (constant text)
_TRIGGERS = (
    ("goex_capture_i", "INSERT", "NEW TABLE AS goex_new"),
    ("goex_capture_u", "UPDATE", "OLD TABLE AS goex_old NEW TABLE AS goex_new"),
    ("goex_capture_d", "DELETE", "OLD TABLE AS goex_old"),
)
_OPS = ("INSERT", "UPDATE", "DELETE")
_DROP = f"SELECT current_setting('{_SUMS}', true); DROP FUNCTION IF EXISTS {_FUNCTION}() CASCADE"


@dataclass(frozen=True)
class _TableState:
    oid: int
    filenode: int
    counts: tuple[int, int, int]  # rows inserted, updated, deleted by this backend, not yet reported


@dataclass(frozen=True)
class _Captured:
    counts: tuple[int, int, int]  # rows the triggers saw inserted, updated, deleted
    net_rows: int  # new rows minus old rows
    net_digests: int  # sum of new rows' digests minus old rows', mod 2^64


@dataclass(frozen=True)
class Probe:
    """The state at the start of the transaction; see the module's docstring."""

    snapshot: str
    schema: Schema
    tables: dict[str, _TableState]  # by the table's SQL name
    captured: tuple[str, ...]  # the tables with capture triggers (schema-qualified, quoted)
    catalog_writes: int  # catalog rows written when the statements were about to run

    @classmethod
    def start(cls, conn: Conn, written: Sequence[tuple[str | None, str]]) -> Probe:
        """In the caller's open REPEATABLE READ transaction, before the action: note the state, capture writes."""
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        with reading(conn) as db:
            schema = db.schema()
            tables = _states(conn)
        captured = _capture(conn, written)
        return cls(str(row[0]), schema, tables, captured, _catalog_writes(conn))

    def finish(self, conn: Conn, open_view: Callable[[], AbstractContextManager[Conn]]) -> Pending:
        """After the action and the inverse, still in the transaction: compare with the start.

        Returns what is left to read from the snapshot's side; call its result() after the
        ROLLBACK. `open_view()` gives a new connection to the same database, for as long as
        the context lasts (result() ends it)."""
        same_schema = _catalog_writes(conn) == self.catalog_writes  # before the capture's own DROP
        captured = _collect(conn) if self.captured else {}
        with reading(conn) as db:
            # A sequence moves without writing the catalogs (nextval, setval): its position is read again.
            same_schema = same_schema and set(sequence_states(conn.cursor())) <= set(self.schema.states)
            schema = self.schema if same_schema else db.schema()
            states = _states(conn)
            read = _to_read(self, schema, states, captured)
            if not read and same_schema:  # no table to read and no catalog written: nothing can differ
                return Pending(None)
            # Else compared as the undo compares (DbFingerprint.digest): a schema that changed with no table to
            # read (an enum value added, a function's volatility: trial 15b P01/P17/P50/P51) is not "unchanged".
            after = partial_fingerprint(db, schema, read)
        pending = Pending(after, self.schema, read)
        try:
            pending.open(open_view(), self.snapshot)
        except BaseException:
            pending.close()
            raise
        return pending


@dataclass
class Pending:
    """What finish() could not decide alone: the snapshot's side of the tables it has to compare."""

    after: DbFingerprint | None  # None: nothing to compare, the database is unchanged
    schema: Schema | None = None  # the schema at the start
    read: frozenset[str] = frozenset()  # the tables to fingerprint on the snapshot's side
    _view: Backend | None = None
    _scope: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def open(self, view: AbstractContextManager[Conn], snapshot: str) -> None:
        conn = self._scope.enter_context(view)
        self._view = self._scope.enter_context(reading(conn, snapshot))  # imports the snapshot now

    def result(self) -> DbDiff | None:
        """None when the database is as it was at the start, else the diff. Closes the view connection."""
        try:
            if self.after is None:
                return None
            assert self._view is not None and self.schema is not None
            before = partial_fingerprint(self._view, self.schema, self.read)
            return None if before.digest == self.after.digest else diff(before, self.after)
        finally:
            self.close()

    def close(self) -> None:
        self._scope.close()


def _states(conn: Conn) -> dict[str, _TableState]:
    rows = conn.cursor(row_factory=tuple_row).execute(_STATES).fetchall()
    return {ref: _TableState(oid, filenode, (ins, upd, dele)) for ref, oid, filenode, ins, upd, dele in rows}


def _capture(conn: Conn, written: Sequence[tuple[str | None, str]]) -> tuple[str, ...]:
    """Capture triggers on the written tables (and where their cascades reach); () when that cannot be done."""
    if not written:
        return ()
    cur = conn.cursor(row_factory=tuple_row)
    names = [w[0] for w in written], [w[1] for w in written]
    found = cur.execute(_CAPTURABLE, names).fetchall()
    if not found:
        return ()
    tables, lock_timeout = tuple(str(r[0]) for r in found), str(found[0][1])
    statements: list[sql.Composable] = [
        sql.SQL("SAVEPOINT {}").format(sql.Identifier(_SAVEPOINT)),
        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{LOCK_WAIT_MS}ms")),
        sql.SQL(_CREATE),
    ]
    for table in tables:  # names from quote_ident(): already valid SQL
        for name, event, referencing in _TRIGGERS:
            statements.append(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER {} ON {} REFERENCING {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                ).format(sql.Identifier(name), sql.SQL(event), sql.SQL(table), sql.SQL(referencing), sql.SQL(_FUNCTION))
            )
    statements += [
        sql.SQL("SELECT set_config('lock_timeout', {}, true)").format(sql.Literal(lock_timeout)),
        sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(_SAVEPOINT)),
    ]
    try:
        cur.execute(sql.SQL(";\n").join(statements))
    except psycopg.Error as exc:
        if conn.info.transaction_status is not TransactionStatus.INERROR:
            raise  # the connection went: the caller handles it
        log.debug("no capture triggers (the written tables will be read): %s", exc)
        conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {0}; RELEASE SAVEPOINT {0}").format(sql.Identifier(_SAVEPOINT)))
        return ()
    return tables


def _catalog_writes(conn: Conn) -> int:
    row = conn.cursor(row_factory=tuple_row).execute(_CATALOG_WRITES).fetchone()
    return int(row[0]) if row else 0


def _collect(conn: Conn) -> dict[int, _Captured]:
    """The capture triggers' sums by table oid; drops the triggers and their function."""
    row = conn.cursor(row_factory=tuple_row).execute(_DROP).fetchone()  # the first statement's result
    totals: dict[int, list[int]] = {}  # oid -> rows inserted, updated, deleted; net rows; net digests
    for entry in filter(None, str(row[0] if row and row[0] else "").split(";")):
        rel, op, side, n, digests = entry.split(" ")
        seen = totals.setdefault(int(rel), [0, 0, 0, 0, 0])
        if side == "1" or op == "DELETE":  # each row once: the new side of inserts and updates, the old of deletes
            seen[_OPS.index(op)] += int(n)
        seen[3] += int(side) * int(n)
        seen[4] += int(side) * int(digests)
    return {rel: _Captured((t[0], t[1], t[2]), t[3], t[4] & MASK64) for rel, t in totals.items()}


def _to_read(
    probe: Probe, schema: Schema, states: dict[str, _TableState], captured: dict[int, _Captured]
) -> frozenset[str]:
    """The tables to fingerprint on both sides: every table when the schema changed, else those written
    whose change the captures do not settle, and those the captures saw changed."""
    if object_hashes(schema) != object_hashes(probe.schema) or unreadable(schema) != unreadable(probe.schema):
        return frozenset(rel.ref for rel in (*schema.tables, *probe.schema.tables))
    read = set()
    for rel in schema.tables:
        before, now = probe.tables.get(rel.ref), states.get(rel.ref)
        if not rel.readable:
            continue  # compared by definition only, as fingerprint() does
        if before is None or now is None or (before.oid, before.filenode) != (now.oid, now.filenode):
            read.add(rel.ref)
            continue
        moved = tuple(n - b for n, b in zip(now.counts, before.counts, strict=True))
        if not any(moved):
            continue
        seen = captured.get(now.oid)
        if seen is None or seen.counts != moved or seen.net_rows != 0 or seen.net_digests != 0:
            read.add(rel.ref)  # not captured, not all seen, or changed: the fingerprints tell which
    return frozenset(read)
