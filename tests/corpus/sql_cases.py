"""The SQL cases of the inverse corpus (sql.toml): data, read here, run by
tests/integration/test_sql_inverse_corpus.py (the resources) and tests/e2e/test_sql_inverse_corpus.py
(a real goexd)."""

from __future__ import annotations

import sqlite3
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.dbinspect.sqlite_text import normalise

CASES_FILE = Path(__file__).with_name("sql.toml")
ENGINES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class SqlCase:
    name: str
    engine: str  # "sqlite" | "postgresql"
    action: str
    right: str
    wrong: str
    wrong_diff: str  # what the failed verdict's diff must name
    setup: str = ""  # run after the engine's setup script
    # False where the case's statements are ones goexd's policy refuses by default (privileged: e.g. SQL built at
    # run time in a DO block): tried on the resources directly only, not through goexd.
    through_goexd: bool = True

    @property
    def id(self) -> str:
        return f"{self.engine}: {self.name}"


def _load() -> tuple[dict[str, str], list[SqlCase]]:
    with open(CASES_FILE, "rb") as f:
        doc = tomllib.load(f)
    cases = [SqlCase(**c) for c in doc["case"]]
    bad = [c.name for c in cases if c.engine not in ENGINES]
    if bad or set(doc["setup"]) != set(ENGINES):
        raise ValueError(f"{CASES_FILE}: unknown engine in {bad or list(doc['setup'])}")
    return doc["setup"], cases


SETUP, CASES = _load()


def of(engine: str, *, through_goexd: bool = False) -> list[SqlCase]:
    """The engine's cases; `through_goexd`: only those a real goexd's default policy lets run."""
    return [c for c in CASES if c.engine == engine and (c.through_goexd or not through_goexd)]


def set_up_sqlite(path: Path, case: SqlCase) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")  # as goexd leaves a file it opened
        conn.executescript(SETUP["sqlite"] + ";" + case.setup)


def set_up_postgres(conn: psycopg.Connection[Any], case: SqlCase) -> None:
    """On a connection as the database's owner, autocommit."""
    conn.execute(SETUP["postgresql"])  # several statements: psycopg sends them as one simple query
    if case.setup:
        conn.execute(case.setup)


def sqlite_state(path: Path) -> list[tuple[Any, ...]]:
    """The schema (its CREATE texts normalised: a rename and back leaves them quoted), every row
    of every table (a virtual table's own rows, not its shadow tables'), user_version, application_id,
    sqlite_sequence and ANALYZE's sqlite_stat tables: what a test compares before and after."""
    with sqlite3.connect(path) as conn:
        schema = [
            (kind, name, table, normalise(sql or ""))
            for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY 2")
            if not name.startswith(("sqlite_", OUTCOMES_TABLE))
        ]
        # A virtual table's storage (its shadow tables, as its module names them) is not its state: the rows
        # its SELECT gives are (rowid included: FTS5 and R*Tree rows are told apart by it).
        shadow = {n for (n,) in conn.execute("SELECT name FROM pragma_table_list WHERE type = 'shadow'")}
        virtual = {n for (n,) in conn.execute("SELECT name FROM pragma_table_list WHERE type = 'virtual'")}
        tables = [name for kind, name, _, _ in schema if kind == "table" and name not in shadow]
        rows = [
            (t, sorted(conn.execute(f'SELECT {"rowid, " if t in virtual else ""}* FROM "{t}"').fetchall(), key=repr))
            for t in tables
        ]
        stats = [
            (n, sorted(conn.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr))
            for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%' ORDER BY 1")
        ]
        header = [conn.execute(f"PRAGMA {p}").fetchone() for p in ("user_version", "application_id")]
        sequence = conn.execute(
            "SELECT name, seq FROM sqlite_sequence ORDER BY 1"
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
            else "SELECT 1 WHERE 0"
        ).fetchall()
        return [*schema, *rows, ("header", header), ("sqlite_sequence", sequence), ("statistics", stats)]


_PG_STATE = [
    # the position among the live columns (ordinal_position counts dropped ones: it is attnum)
    "SELECT table_name, row_number() OVER (PARTITION BY table_name ORDER BY ordinal_position), column_name, "
    "data_type, is_nullable, column_default, collation_name "
    "FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> %(hidden)s ORDER BY 1, 2",
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> %(hidden)s ORDER BY 1",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> %(hidden)s ORDER BY 1, 2",
    "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1",
    # state besides the definitions: triggers enabled, row level security, persistence, privileges,
    # policies, comments, sequences' positions
    "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "SELECT relname, relrowsecurity, relforcerowsecurity, relpersistence, relacl::text FROM pg_class "
    "WHERE relnamespace = 'public'::regnamespace AND relkind <> 'i' AND relname <> %(hidden)s ORDER BY 1",
    "SELECT polrelid::regclass::text, polname, pg_get_expr(polqual, polrelid) FROM pg_policy ORDER BY 1, 2",
    "SELECT objoid::regclass::text, objsubid, description FROM pg_description "
    "WHERE classoid = 'pg_class'::regclass AND objoid::regclass::text <> %(hidden)s ORDER BY 1, 2",
    "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    # catalog facts (trial 15b, finding 2): options, replica identity, clustering, partition bounds,
    # inheritance, rules, extended statistics, column settings, sequence parameters, domains,
    # composite types, the database's settings, large objects' content
    "SELECT relname, reloptions::text, relreplident, relispopulated, pg_get_expr(relpartbound, oid) FROM pg_class "
    "WHERE relnamespace = 'public'::regnamespace AND relkind <> 'i' AND relname <> %(hidden)s ORDER BY 1",
    "SELECT indexrelid::regclass::text, indisclustered, indisreplident FROM pg_index JOIN pg_class c "
    "ON c.oid = indexrelid WHERE c.relnamespace = 'public'::regnamespace AND indrelid::regclass::text <> %(hidden)s "
    "ORDER BY 1",
    "SELECT inhrelid::regclass::text, inhparent::regclass::text, inhseqno FROM pg_inherits ORDER BY 1, 2",
    "SELECT ev_class::regclass::text, rulename, pg_get_ruledef(oid), ev_enabled FROM pg_rewrite "
    "WHERE rulename <> '_RETURN' ORDER BY 1, 2",
    "SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext ORDER BY 1",
    "SELECT c.relname, a.attname, a.attstattarget, a.attstorage, a.attcompression::text, a.attoptions::text, "
    "a.attislocal, a.attinhcount FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind <> 'i' AND c.relname <> %(hidden)s AND a.attnum > 0 "
    "AND NOT a.attisdropped ORDER BY 1, 2",
    "SELECT seqrelid::regclass::text, seqtypid, seqincrement, seqmin, seqmax, seqstart, seqcache, seqcycle "
    "FROM pg_sequence ORDER BY 1",
    "SELECT t.typname, t.typdefault, t.typnotnull, ARRAY(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
    "WHERE c.contypid = t.oid ORDER BY 1)::text FROM pg_type t "
    "WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'd' ORDER BY 1",
    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c "
    "JOIN pg_attribute a ON a.attrelid = c.oid WHERE c.relkind = 'c' AND c.relnamespace = 'public'::regnamespace "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, a.attnum",
    "SELECT setrole, setconfig::text FROM pg_db_role_setting "
    "WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1",
    "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1",
]


def postgres_state(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The user schema as the catalogs tell it (columns in order, indexes, constraints, views,
    triggers, functions, the facts beside them) and every table's and materialized view's rows, as
    `conn` sees them."""
    found = [row for query in _PG_STATE for row in conn.execute(query, {"hidden": OUTCOMES_TABLE}).fetchall()]
    tables = sorted({row[0] for row in conn.execute(_PG_STATE[0], {"hidden": OUTCOMES_TABLE}).fetchall()})
    views = {row[0] for row in conn.execute(_PG_STATE[3], {"hidden": OUTCOMES_TABLE}).fetchall()}
    rows = [(t, sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)) for t in tables if t not in views]
    matviews = [r[0] for r in conn.execute("SELECT matviewname FROM pg_matviews WHERE ispopulated ORDER BY 1")]
    rows += [(m, sorted(conn.execute(f'SELECT * FROM "{m}"').fetchall(), key=repr)) for m in matviews]
    return [*found, *rows]
