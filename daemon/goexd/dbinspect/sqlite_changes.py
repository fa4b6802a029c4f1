"""What an open SQLite transaction changed, without reading every row.

Hashing every row of every table in Python costs ~1.5 s per million rows, twice per reversibility
test and once or twice more around each action and undo. Instead, in the caller's transaction:
- `written_tables` compiles the statements (EXPLAIN: nothing runs) under an authorizer, which
  SQLite calls for every table a statement could write, its triggers' statements, foreign-key
  actions and views' INSTEAD OF triggers included;
- `Probe.start` notes the schema and the row counts of those tables and puts TEMP triggers on
  them (private to the connection; no lock, no change to the file) that hash, through a Python
  function, every row inserted, updated or deleted: the net change per table is the count and
  the digest sum (mod 2^64) of new rows minus old rows, exactly how far its fingerprint moved;
  an authorizer notes the tables the statements really write while they run;
- `Probe.compare` (the test: the database is as it was, or the diff) and `Probe.after` (the
  fingerprint now, from a whole one at the start: an action's or an undo's) read the schema again
  only when PRAGMA schema_version moved (every schema change moves it; scripts may not set it),
  and trust a capture only when the row count moved by as many rows as it saw (REPLACE deletes
  rows without firing delete triggers) and its triggers are still in place. Other tables the
  statements wrote are read: on both sides for compare, the side before through a second,
  read-only connection (in WAL mode it sees the last commit, i.e. the state before the
  transaction, while the transaction is open); only now for after. A schema change, a write to a
  virtual table (its shadow tables are written behind SQL's back) or statements whose writes
  could not be told beforehand mean every table.
Digests are sqlite_data's (BLAKE2b of the row's repr()), so a probe's numbers and a fingerprint's
agree. Same caveat as fingerprint(): a sum of 64-bit digests.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from goexd.dbinspect.backend import Backend, reading
from goexd.dbinspect.content import MASK64
from goexd.dbinspect.diff import DbDiff, diff
from goexd.dbinspect.fingerprint import (
    DbFingerprint,
    TableFingerprint,
    fingerprint_of,
    partial_fingerprint,
    table_fingerprint,
)
from goexd.dbinspect.model import TABLE, Relation, Schema, object_hashes
from goexd.dbinspect.sqlite_catalog import rows

_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})
# Statements that act while they are compiled: EXPLAIN would not keep them from acting.
_ACT_WHEN_COMPILED = frozenset({sqlite3.SQLITE_PRAGMA, sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH})
_FUNCTION = "goex_capture"
_TRIGGER = "goex_capture_{n}_{event}"
_EVENTS = ("INSERT", "UPDATE", "DELETE")
# A table's capture hashes at most half as many rows as it had, plus this many: past that,
# reading the table (both sides, at ~2 us a row) is cheaper than hashing each change (~2 us a
# row and side, each statement), so the capture stops and the table is read.
CAPTURE_SLACK = 1000

Statements = Sequence[tuple[str, Sequence[object]]]  # (SQL, parameters)


def written_tables(conn: sqlite3.Connection, statements: Statements) -> frozenset[str] | None:
    """The `main` tables (and views) the statements could write, compiled but not run; None when that
    cannot be told: a statement does not compile yet (it needs what an earlier one creates), or it
    is a PRAGMA, ATTACH or DETACH (they act while compiled)."""
    found: set[str] = set()
    refused: list[int] = []

    def authorize(action: int, arg1: str | None, _arg2: str | None, dbname: str | None, _by: str | None) -> int:
        if action in _ACT_WHEN_COMPILED:
            refused.append(action)
            return sqlite3.SQLITE_DENY
        if action in _WRITES and dbname == "main" and arg1:
            found.add(arg1)
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorize)  # also expires cached statements: each is compiled again, and seen
    try:
        for sql, params in statements:
            if not sql.lstrip()[:7].upper().startswith("EXPLAIN"):  # an EXPLAIN runs nothing anyway
                conn.execute("EXPLAIN " + sql, tuple(params)).close()
    except sqlite3.Error:
        return None
    finally:
        conn.set_authorizer(None)
    return None if refused else frozenset(found)


@dataclass
class Probe:
    """The state at the start of the transaction, and what the capture triggers have seen since."""

    conn: sqlite3.Connection
    schema: Schema
    counts: dict[str, int]  # rows of each captured table at the start, by name
    triggers: dict[str, str]  # the capture triggers: name -> their SQL, as temp.sqlite_master keeps it
    wal: bool  # whether a second connection sees the state before the transaction
    everything: bool  # what the statements write was not known: every table counts as written
    schema_version: int  # SQLite's count of changes to the main schema, at the start
    written: set[str] = field(default_factory=set)  # tables (by name) the statements were compiled to write
    seen: dict[str, list[int]] = field(default_factory=dict)  # name -> rows added, net digest sum, rows seen
    state: dict[str, str] = field(default_factory=dict)  # database-level state at the start (DbFingerprint.state)

    @classmethod
    def start(cls, conn: sqlite3.Connection, written: frozenset[str] | None) -> Probe:
        """In the caller's open transaction, before the statements run (see written_tables for `written`)."""
        with reading(conn) as db:
            schema = db.schema()
            state = db.state()
        ((journal,),) = rows(conn, "PRAGMA journal_mode")
        probe = cls(conn, schema, {}, {}, str(journal).lower() == "wal", written is None, _schema_version(conn))
        probe.state = state
        conn.create_function(_FUNCTION, -1, probe._capture)
        tables = {rel.name: rel for rel in schema.tables}
        for n, name in enumerate(sorted(written or ())):
            rel = tables.get(name)
            # not views (their INSTEAD OF triggers' writes are in `written` too), nor virtual tables (no triggers
            # on them; a write to one reads every table: _to_read)
            if rel is not None and rel.kind == TABLE:
                probe._watch(rel, n)
        conn.set_authorizer(probe._authorize)
        return probe

    def _watch(self, rel: Relation, n: int) -> None:
        ((count,),) = rows(self.conn, f"SELECT count(*) FROM main.{rel.ref}")  # noqa: S608 (quoted by the catalog)
        self.counts[rel.name] = int(count)
        name = rel.name.replace("'", "''")
        for event in _EVENTS:
            trigger = _TRIGGER.format(n=n, event=event.lower())
            calls = [
                f"SELECT {_FUNCTION}('{name}', {side}, {', '.join(f'{row}.{c}' for c in _digested(rel))});"
                for side, row in ((1, "NEW"), (-1, "OLD"))
                if (row == "NEW" and event != "DELETE") or (row == "OLD" and event != "INSERT")
            ]
            body = f"TRIGGER {trigger} AFTER {event} ON main.{rel.ref} BEGIN {' '.join(calls)} END"
            self.conn.execute(f"CREATE TEMP {body}")
            self.triggers[trigger] = f"CREATE {body}"  # as temp.sqlite_master keeps it

    def _capture(self, table: str, side: int, *values: object) -> None:
        seen = self.seen.setdefault(table, [0, 0, 0])
        seen[2] += 1
        if seen[2] > self.counts.get(table, 0) // 2 + CAPTURE_SLACK:
            return  # hashing more rows than reading the table would: it is read instead (see _to_read)
        seen[0] += side
        seen[1] += side * int.from_bytes(hashlib.blake2b(repr(values).encode(), digest_size=8).digest(), "little")

    def _authorize(self, action: int, arg1: str | None, _arg2: str | None, dbname: str | None, _by: str | None) -> int:
        if action in _WRITES and dbname == "main" and arg1:
            self.written.add(arg1)
        return sqlite3.SQLITE_OK

    def stop(self) -> None:
        """Stop noting what statements write (the triggers go with the caller's transaction, or drop())."""
        self.conn.set_authorizer(None)

    def drop(self) -> None:
        """Drop the capture triggers (before a COMMIT: they would outlive it, in the connection's temp schema)."""
        for trigger in self.triggers:
            self.conn.execute(f"DROP TRIGGER IF EXISTS temp.{trigger}")

    # ------------------------------------------------------------ conclusions

    def compare(self, view: Callable[[], AbstractContextManager[sqlite3.Connection]]) -> DbDiff | None:
        """After the statements, still in the transaction: None when the database is as it was, else the diff.

        `view()` gives a second connection to the same file for reading the side before (WAL)."""
        self.stop()
        with reading(self.conn) as db:
            schema = self._schema(db)
            read = self._to_read(db, schema, zero=True)
            after = partial_fingerprint(db, schema, read)
            if not read:  # no rows to compare: the schema and the state (a sqlite_sequence value, user_version)
                # compared as the undo compares (DbFingerprint.digest): a view or trigger changed in a database
                # without tables is not "unchanged" (trial 15b, finding 3's SQLite side)
                before = replace(partial_fingerprint(db, self.schema, read), state=self.state)
                return None if before.digest == after.digest else diff(before, after)
        if not self.wal:
            raise ValueError("the side before a transaction is readable only in WAL mode")
        with view() as other, reading(other) as db:
            before = partial_fingerprint(db, self.schema, read)
        return None if before.digest == after.digest else diff(before, after)

    def after(self, before: DbFingerprint) -> DbFingerprint:
        """After the statements, still in the transaction: the fingerprint now, from `before` (the
        whole fingerprint of the database at the start of the transaction) and what changed."""
        self.stop()
        with reading(self.conn) as db:
            schema = self._schema(db)
            if object_hashes(schema) != before.objects:
                return fingerprint_of(db, schema)
            read = self._to_read(db, schema, zero=False)
            tables = dict(before.tables)
            for rel in schema.tables:
                if rel.ref in read:
                    tables[rel.ref] = table_fingerprint(db, rel)
                elif rel.name in self.seen and rel.ref in tables:
                    added, digests, _ = self.seen[rel.name]
                    tables[rel.ref] = _moved(tables[rel.ref], added, digests)
            state = db.state()
        return replace(before, tables=tables, state=state)

    def _schema(self, db: Backend) -> Schema:
        """The schema now: the one at the start unless the main schema's version moved (any DDL moves it)."""
        return self.schema if _schema_version(self.conn) == self.schema_version else db.schema()

    def _to_read(self, db: Backend, schema: Schema, zero: bool) -> frozenset[str]:
        """The tables whose rows must be read; with `zero`, also those the captures saw changed."""
        everything = frozenset(rel.ref for rel in (*schema.tables, *self.schema.tables))
        if self.everything or object_hashes(schema) != object_hashes(self.schema):
            return everything
        kinds = {rel.name: rel.kind for rel in schema.relations}
        if any(kinds.get(name) not in (TABLE, "view") for name in self.written if name in kinds):
            return everything  # a virtual table: its shadow tables are written without SQL
        in_place = self._triggers_in_place()
        read = set()
        for rel in schema.tables:
            if rel.name not in self.written:
                continue
            added, digests, hashed = self.seen.get(rel.name, [0, 0, 0])
            settled = (
                in_place
                and rel.name in self.counts
                and hashed <= self.counts[rel.name] // 2 + CAPTURE_SLACK
                and self._count(rel) == self.counts[rel.name] + added
            )
            if not settled or (zero and (added != 0 or digests & MASK64 != 0)):
                read.add(rel.ref)
        return frozenset(read)

    def _triggers_in_place(self) -> bool:
        if not self.triggers:
            return True
        found = rows(self.conn, "SELECT name, sql FROM temp.sqlite_master WHERE type = 'trigger'")
        return all(dict(found).get(name) == sql for name, sql in self.triggers.items())

    def _count(self, rel: Relation) -> int:
        ((count,),) = rows(self.conn, f"SELECT count(*) FROM main.{rel.ref}")  # noqa: S608 (quoted by the catalog)
        return int(count)


def _digested(rel: Relation) -> list[str]:
    """What a row's digest covers, in order, as sqlite_data.table_content reads it: the hidden rowid, the columns."""
    return ([rel.rowid] if rel.rowid else []) + [c.name for c in rel.columns]


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(rows(conn, "PRAGMA main.schema_version")[0][0])


def _moved(table: TableFingerprint, rows_added: int, digests: int) -> TableFingerprint:
    """A table's fingerprint moved by a captured net change (its per-row detail no longer holds)."""
    content = (int(table.content_hash, 16) + digests) & MASK64
    return TableFingerprint(
        table.schema_hash, table.row_count + rows_added, f"{content:016x}", table.primary_key, shadow_of=table.shadow_of
    )


def read_only(path: str) -> AbstractContextManager[sqlite3.Connection]:
    """A read-only connection to the database file at `path`, closed at the end of the context."""
    return closing(sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None))
