"""goexd.dbinspect on real databases: a SQLite file and the session's private PostgreSQL cluster.

Every test that does not depend on one engine runs on both (the `db` fixture). PostgreSQL tests
connect as the password-protected role `app` over TCP, as the daemon will.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows
import pytest

from goexd.dbinspect import DbFingerprint, describe, diff, fingerprint, pg_changes, sqlite_changes
from tests.services.postgres import PgCluster

SQLITE_SCHEMA = [
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        balance INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'active')""",
    """CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        total REAL NOT NULL,
        note TEXT)""",
    "CREATE INDEX orders_user_id_idx ON orders (user_id)",
]
PG_SCHEMA = [
    """CREATE TABLE users (
        id bigint PRIMARY KEY,
        name text NOT NULL,
        email text NOT NULL UNIQUE,
        balance numeric(12,2) NOT NULL DEFAULT 0,
        status text NOT NULL DEFAULT 'active')""",
    """CREATE TABLE orders (
        id bigint PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        total numeric(10,2) NOT NULL,
        note text)""",
    "CREATE INDEX orders_user_id_idx ON orders (user_id)",
]
USERS = [
    (1, "alice", "alice@example.org", 100),
    (2, "bob", "bob@example.org", 50),
    (3, "carol", "carol@example.org", 0),
]
ORDERS = [(10, 1, 12.5, None), (11, 1, 3.0, "gift"), (12, 2, 7.25, None)]


@dataclass
class Db:
    """One open connection (SQLite autocommit mode; psycopg autocommit) and how to drive it."""

    engine: str
    conn: Any  # sqlite3.Connection | psycopg.Connection
    secrets: tuple[str, ...]  # what describe() must never print: paths, ports, passwords, names

    def run(self, *statements: str) -> None:
        for s in statements:
            self.conn.execute(s)

    def insert(self, table: str, rows: Sequence[tuple[object, ...]]) -> None:
        mark = "?" if self.engine == "sqlite" else "%s"
        for row in rows:
            self.conn.execute(f"INSERT INTO {table} VALUES ({', '.join([mark] * len(row))})", row)

    def load(self, users: Sequence[tuple[object, ...]] = USERS, orders: Sequence[tuple[object, ...]] = ORDERS) -> None:
        self.run(*(SQLITE_SCHEMA if self.engine == "sqlite" else PG_SCHEMA))
        self.insert("users (id, name, email, balance)", users)
        self.insert("orders", orders)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Db]:
    yield from _sqlite(tmp_path / "app.db")


def _sqlite(path: Path) -> Iterator[Db]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        yield Db("sqlite", conn, (str(path), path.name))
    finally:
        conn.close()


@pytest.fixture
def pg_db(pg_cluster: PgCluster, pg_database: str) -> Iterator[Db]:
    yield from _pg(pg_cluster, pg_database)


def _pg(cluster: PgCluster, dbname: str) -> Iterator[Db]:
    with cluster.connect_app(dbname) as conn:
        yield Db("postgresql", conn, (cluster.app_password, str(cluster.port), cluster.host, dbname, cluster.app_role))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Db:
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


@pytest.fixture
def other_db(db: Db, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Db]:
    """A second, empty database of the same engine."""
    if db.engine == "sqlite":
        yield from _sqlite(tmp_path / "other.db")
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        name = cluster.create_database()
        try:
            yield from _pg(cluster, name)
        finally:
            cluster.drop_database(name)


# ---------------------------------------------------------------- describe


def test_describe_tells_tables_columns_keys_indexes_and_counts(db: Db) -> None:
    db.load()
    text = describe(db.conn)

    assert "TABLE users (3 rows)" in text
    assert "TABLE orders (3 rows)" in text
    assert re.search(r"^\s+id\s+\S+\s+PRIMARY KEY", text, re.M | re.I)
    assert re.search(r"^\s+email\s+text\s+NOT NULL$", text, re.M | re.I)
    assert re.search(r"^\s+balance\s+(integer|numeric\(12,2\))\s+NOT NULL\s+DEFAULT 0$", text, re.M | re.I)
    assert re.search(r"^\s+status\s+text\s+NOT NULL\s+DEFAULT 'active'", text, re.M | re.I)
    assert re.search(r"^\s+note\s+text$", text, re.M | re.I)  # nullable, no default
    assert "UNIQUE (email)" in text
    assert "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE" in text
    assert re.search(r"INDEX orders_user_id_idx .*\(user_id\)", text)
    assert "sample rows" not in text and "alice" not in text
    for secret in db.secrets:
        assert secret not in text


def test_describe_shows_sample_rows_on_request(db: Db) -> None:
    db.load()
    text = describe(db.conn, sample_rows=2)
    users = text[text.index("TABLE users") :]
    assert "sample rows (2):" in users
    assert "id | name | email | balance | status" in users
    assert re.search(r"1 \| alice \| alice@example.org \| 100(\.00)? \| active", users)
    assert "carol" not in users  # two rows, in primary-key order
    assert "NULL" in text[text.index("TABLE orders") :]  # orders.note


def test_describe_leaves_out_system_objects(db: Db) -> None:
    db.load()
    if db.engine == "sqlite":
        db.run("CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)", "INSERT INTO seq (v) VALUES ('x')")
        db.run("ANALYZE")  # creates sqlite_stat1
    text = describe(db.conn)
    for hidden in ("sqlite_", "pg_catalog", "information_schema", "pg_toast"):
        assert hidden not in text
    assert text.startswith("SQLite 3." if db.engine == "sqlite" else "PostgreSQL 15.")


def test_describe_estimates_the_count_of_a_large_table(db: Db) -> None:
    n = 120_000
    db.run("CREATE TABLE big (id integer PRIMARY KEY, v text)")
    if db.engine == "sqlite":
        db.run("BEGIN")
        db.conn.executemany("INSERT INTO big VALUES (?, ?)", ((i, "v") for i in range(n)))
        db.run("COMMIT")
        assert "TABLE big (more than 100000 rows)" in describe(db.conn)  # no statistics yet
        db.run("ANALYZE")
    else:
        db.run(f"INSERT INTO big SELECT g, 'v' FROM generate_series(1, {n}) g", "ANALYZE big")
    assert re.search(r"TABLE big \(~1[12]\d{4} rows \(estimate\)\)", describe(db.conn))


def test_describe_sees_the_open_transaction(db: Db) -> None:
    db.load()
    db.run("BEGIN", "CREATE TABLE audit (id integer PRIMARY KEY, what text NOT NULL)", "DELETE FROM orders")
    text = describe(db.conn)
    assert "TABLE audit (0 rows)" in text
    assert "TABLE orders (0 rows)" in text
    db.run("ROLLBACK")
    assert "audit" not in describe(db.conn)


# ---------------------------------------------------------------- fingerprint and diff


def test_fingerprint_ignores_insertion_order(db: Db, other_db: Db) -> None:
    db.load()
    other_db.load(users=USERS[::-1], orders=[ORDERS[1], ORDERS[2], ORDERS[0]])
    a, b = fingerprint(db.conn), fingerprint(other_db.conn)
    assert a == b
    assert a.digest == b.digest
    assert set(a.tables) == {"users", "orders"}
    assert a.tables["users"].row_count == 3
    assert diff(a, b).identical


def test_fingerprint_is_stable_and_reads_nothing_it_changes(db: Db) -> None:
    db.load()
    assert fingerprint(db.conn) == fingerprint(db.conn)
    tx_before = db.conn.in_transaction if db.engine == "sqlite" else db.conn.info.transaction_status
    fingerprint(db.conn)
    describe(db.conn, sample_rows=3)
    tx_after = db.conn.in_transaction if db.engine == "sqlite" else db.conn.info.transaction_status
    assert tx_after == tx_before


CHANGES = {
    # name: (statements, table, added, removed, changed, schema changed)
    "update": (["UPDATE users SET balance = balance + 500 WHERE id = 2"], "users", 0, 0, 1, False),
    "insert": (["INSERT INTO users (id, name, email) VALUES (4, 'dave', 'dave@example.org')"], "users", 1, 0, 0, False),
    "delete": (["DELETE FROM orders WHERE id = 11"], "orders", 0, 1, 0, False),
    "create index": (["CREATE INDEX users_name_idx ON users (name)"], "users", 0, 0, 0, True),
    "add column": (["ALTER TABLE orders ADD COLUMN paid integer"], "orders", 0, 0, 3, True),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_changes_the_fingerprint_and_the_diff_names_it(db: Db, change: str) -> None:
    statements, table, added, removed, changed, schema_changed = CHANGES[change]
    db.load()
    before = fingerprint(db.conn)
    db.run(*statements)
    after = fingerprint(db.conn)

    assert before != after
    assert before.digest != after.digest
    d = diff(before, after)
    assert not d.identical
    assert [t.name for t in d.tables_changed] == [table]
    t = d.tables_changed[0]
    assert (t.added, t.removed, t.changed) == (added, removed, changed)
    assert t.schema_changed is schema_changed
    assert d.schema_changed is schema_changed
    assert table in d.text
    assert "1 other table unchanged" in d.text


def test_diff_names_tables_added_and_removed(db: Db) -> None:
    db.load()
    before = fingerprint(db.conn)
    db.run("DROP TABLE orders", "CREATE TABLE audit (id integer PRIMARY KEY, what text)")
    db.insert("audit", [(1, "dropped orders")])
    d = diff(before, fingerprint(db.conn))
    assert d.tables_added == ("audit",)
    assert d.tables_removed == ("orders",)
    assert d.tables_changed == ()
    assert d.schema_changed
    assert "Tables added: audit (1 rows)" in d.text
    assert "Tables removed: orders (had 3 rows)" in d.text


def test_diff_of_a_table_without_primary_key_counts_added_and_removed_rows(db: Db) -> None:
    db.run("CREATE TABLE log (msg text, n integer)")
    db.insert("log", [("a", 1), ("a", 1), ("b", 2)])  # duplicates are kept apart
    before = fingerprint(db.conn)
    db.run("DELETE FROM log WHERE msg = 'b'")
    db.insert("log", [("a", 1)])
    after = fingerprint(db.conn)
    t = diff(before, after).tables_changed[0]
    if db.engine == "sqlite":  # a rowid table's rows are told apart by their rowid (part of the row)
        assert (t.rows_before, t.rows_after, t.added, t.removed, t.changed) == (3, 3, 0, 0, 1)  # rowid 3 reused
    else:
        assert (t.rows_before, t.rows_after, t.added, t.removed, t.changed) == (3, 3, 1, 1, None)
        assert "an updated row counts as one removed and one added" in diff(before, after).text
    db.run("DELETE FROM log WHERE msg = 'a'")
    db.insert("log", [("a", 1), ("a", 1), ("b", 2)])
    assert fingerprint(db.conn) == before  # on SQLite under the same rowids too (the table was empty)


def test_views_and_other_objects_are_part_of_the_schema(db: Db) -> None:
    db.load()
    before = fingerprint(db.conn)
    db.run("CREATE VIEW rich AS SELECT id, name FROM users WHERE balance > 60")
    d = diff(before, fingerprint(db.conn))
    assert d.schema_changed and d.objects_added == ("view rich",)
    assert d.tables_changed == ()
    assert "view rich" in d.text


def test_row_detail_limit_gives_up_counts_but_not_equality(db: Db) -> None:
    db.load()
    small, large = fingerprint(db.conn), fingerprint(db.conn, row_detail_limit=2)
    assert small == large  # both ways of hashing agree, so a table may cross the limit
    assert small.tables["users"].has_row_detail and not large.tables["users"].has_row_detail
    db.run("UPDATE users SET name = 'bobby' WHERE id = 2")
    t = diff(large, fingerprint(db.conn, row_detail_limit=2)).tables_changed[0]
    assert (t.name, t.added, t.removed, t.changed) == ("users", None, None, None)
    assert (
        "users: 3 → 3 rows, content changed (row-level counts not available)" in diff(large, fingerprint(db.conn)).text
    )


def test_fingerprint_inside_a_transaction_then_rollback(db: Db) -> None:
    """The reversibility test's sequence: fingerprint, action, inverse, fingerprint, ROLLBACK."""
    db.load()
    original = fingerprint(db.conn)
    db.run("BEGIN")
    assert fingerprint(db.conn) == original
    db.run("SAVEPOINT action_1", "UPDATE users SET balance = balance + 500")
    during = fingerprint(db.conn)
    assert diff(original, during).tables_changed[0].changed == 3
    db.run("UPDATE users SET balance = balance - 500")  # the inverse
    assert fingerprint(db.conn) == original
    db.run("CREATE TABLE t2 (id integer)")
    assert diff(original, fingerprint(db.conn)).tables_added == ("t2",)
    db.run("ROLLBACK TO SAVEPOINT action_1")  # the caller's savepoints survive fingerprinting
    assert fingerprint(db.conn) == original
    db.run("UPDATE users SET balance = 0", "ROLLBACK")
    assert fingerprint(db.conn) == original
    if db.engine == "sqlite":
        assert not db.conn.in_transaction
    else:
        assert db.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_sqlite_view_over_a_dropped_table(sqlite_db: Db) -> None:
    sqlite_db.run("CREATE TABLE a (x integer)", "CREATE VIEW v AS SELECT x FROM a", "DROP TABLE a")
    assert "VIEW v" in describe(sqlite_db.conn)
    assert "view v" in fingerprint(sqlite_db.conn).objects


def test_pg_fingerprint_does_not_depend_on_session_settings(pg_db: Db) -> None:
    pg_db.run(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, d float8, b bytea)",
        "INSERT INTO ev VALUES (1, '2024-05-01 12:00+00', 0.1, '\\x00ff')",
    )
    before = fingerprint(pg_db.conn)
    pg_db.run(
        "SET TimeZone = 'Asia/Tokyo'",
        "SET DateStyle = 'SQL, DMY'",
        "SET extra_float_digits = 0",
        "SET search_path = ''",
    )
    pg_db.run("SET bytea_output = 'escape'")
    assert fingerprint(pg_db.conn) == before
    assert pg_db.conn.execute("SHOW TimeZone").fetchone() == ("Asia/Tokyo",)  # the session's own, untouched


def test_pg_inside_the_callers_psycopg_transaction(pg_cluster: PgCluster, pg_database: str) -> None:
    """With a non-autocommit connection (psycopg opens the transaction itself)."""
    with pg_cluster.connect_app(pg_database, autocommit=False) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.commit()
        original = fingerprint(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute("INSERT INTO t VALUES (1, 'x')")
        assert diff(original, fingerprint(conn)).tables_changed[0].added == 1
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        assert fingerprint(conn) == original


def test_pg_refuses_an_aborted_transaction_with_a_clear_error(pg_db: Db) -> None:
    pg_db.run("BEGIN")
    with pytest.raises(psycopg.errors.UndefinedTable):
        pg_db.run("SELECT * FROM nowhere")
    with pytest.raises(ValueError, match="aborted"):
        fingerprint(pg_db.conn)
    pg_db.run("ROLLBACK")


def test_pg_user_schemas_enums_and_non_public_names(pg_db: Db) -> None:
    pg_db.run(
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        'CREATE SCHEMA "Audit"',
        'CREATE TABLE "Audit"."Log Entries" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, m mood)',
    )
    text = describe(pg_db.conn)
    assert "mood: ENUM ('sad', 'ok')" in text
    assert 'TABLE "Audit"."Log Entries" (0 rows)' in text
    assert "GENERATED ALWAYS AS IDENTITY" in text
    fp = fingerprint(pg_db.conn)
    assert set(fp.tables) == {'"Audit"."Log Entries"'}
    assert "type mood" in fp.objects


def test_keywords_spaces_and_quotes_in_names(db: Db) -> None:
    db.run(
        'CREATE TABLE "order" ("group" integer PRIMARY KEY, "Value ""x""" text NOT NULL)',
        'CREATE TABLE "Line Items" (id integer PRIMARY KEY, "order" integer REFERENCES "order"("group"))',
        "INSERT INTO \"order\" VALUES (1, 'a'), (2, 'b')",
        'INSERT INTO "Line Items" VALUES (1, 1)',
    )
    text = describe(db.conn, sample_rows=1)
    assert 'TABLE "order" (2 rows)' in text
    assert 'TABLE "Line Items" (1 row)' in text
    assert '"Value ""x"""' in text
    before = fingerprint(db.conn)
    assert set(before.tables) == {'"order"', '"Line Items"'}
    db.run('UPDATE "order" SET "Value ""x""" = \'c\' WHERE "group" = 2')
    t = diff(before, fingerprint(db.conn)).tables_changed[0]
    assert (t.name, t.changed) == ('"order"', 1)


def test_connections_with_their_own_row_factories(db: Db) -> None:
    db.load()
    plain = fingerprint(db.conn)
    if db.engine == "sqlite":
        db.conn.row_factory = sqlite3.Row
    else:
        db.conn.row_factory = psycopg.rows.dict_row
    assert fingerprint(db.conn) == plain
    assert "alice" in describe(db.conn, sample_rows=1)


def test_pg_tables_the_role_cannot_read(pg_cluster: PgCluster, pg_database: str, pg_db: Db) -> None:
    pg_db.load()
    with pg_cluster.connect(pg_database) as su:
        su.execute("CREATE TABLE secret_stuff (id int PRIMARY KEY, v text)")
    text = describe(pg_db.conn, sample_rows=2)
    assert "TABLE secret_stuff (rows not readable: no SELECT privilege)" in text
    fp = fingerprint(pg_db.conn)
    assert fp.unreadable == ("secret_stuff",)
    assert set(fp.tables) == {"users", "orders"}
    assert "table secret_stuff" in fp.objects
    assert "compared by definition only: secret_stuff" in diff(fp, fingerprint(pg_db.conn)).text


# ---------------------------------------------------------------- the cluster itself


def test_app_role_needs_its_password_over_tcp(pg_cluster: PgCluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg_cluster.app_dsn, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_cluster.app_dsn, password="not-" + pg_cluster.app_password, connect_timeout=5)
    # The superuser is trusted on the private unix socket only, not over TCP.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@{pg_cluster.host}:{pg_cluster.port}/postgres", connect_timeout=5)
    assert pg_cluster.app_password not in pg_cluster.app_dsn
    with psycopg.connect(pg_cluster.app_dsn, password=pg_cluster.app_password) as conn:
        assert conn.execute("SELECT current_user, inet_server_addr()::text").fetchone() == ("app", "127.0.0.1/32")
    with pg_cluster.connect() as su:  # the password is stored as a SCRAM verifier
        (stored,) = su.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").fetchone() or ("",)
        assert str(stored).startswith("SCRAM-SHA-256$")


def test_create_database_from_a_template_needs_it_idle(pg_cluster: PgCluster, pg_database: str, pg_db: Db) -> None:
    pg_db.load()
    template = pg_database
    with pytest.raises(RuntimeError, match="other connections"):
        pg_cluster.create_database(template=template)
    pg_db.conn.close()
    clone = pg_cluster.create_database(template=template)
    try:
        with pg_cluster.connect_app(clone) as a, pg_cluster.connect_app(template) as b:
            assert fingerprint(a) == fingerprint(b)
    finally:
        pg_cluster.drop_database(clone)


# ---------------------------------------------------------------- timings (printed, not asserted)


def _timed_fingerprint(conn: Any) -> tuple[DbFingerprint, float]:
    t0 = time.perf_counter()
    fp = fingerprint(conn)
    return fp, time.perf_counter() - t0


@pytest.mark.parametrize("rows", [100_000, 1_000_000])
def test_pg_fingerprint_timing(pg_cluster: PgCluster, pg_db: Db, rows: int, capsys: pytest.CaptureFixture[str]) -> None:
    pg_db.run(
        "CREATE TABLE big (id bigint PRIMARY KEY, name text NOT NULL, balance numeric(12,2) NOT NULL DEFAULT 0)",
        f"INSERT INTO big SELECT g, 'user ' || g, g * 1.5 FROM generate_series(1, {rows}) g",
        "VACUUM ANALYZE big",
    )
    fp, autocommit_s = _timed_fingerprint(pg_db.conn)
    assert fp.tables["big"].row_count == rows
    pg_db.run("BEGIN", "UPDATE big SET balance = balance + 1 WHERE id <= 10")
    fp_tx, in_tx_s = _timed_fingerprint(pg_db.conn)
    pg_db.run("ROLLBACK")
    assert diff(fp, fp_tx).tables_changed[0].content_changed
    with capsys.disabled():
        print(
            f"\n[timing] PostgreSQL fingerprint of {rows} rows: {autocommit_s * 1000:.0f} ms "
            f"(inside a transaction that wrote: {in_tx_s * 1000:.0f} ms); cluster start {pg_cluster.start_s:.2f} s"
        )


def test_sqlite_fingerprint_timing(sqlite_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    rows = 100_000
    sqlite_db.run("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance REAL NOT NULL DEFAULT 0)")
    sqlite_db.run("BEGIN")
    sqlite_db.conn.executemany("INSERT INTO big VALUES (?, ?, ?)", ((i, f"user {i}", i * 1.5) for i in range(rows)))
    sqlite_db.run("COMMIT")
    fp, seconds = _timed_fingerprint(sqlite_db.conn)
    assert fp.tables["big"].row_count == rows
    with capsys.disabled():
        print(f"\n[timing] SQLite fingerprint of {rows} rows: {seconds * 1000:.0f} ms")


# ---------------------------------------------------------------- pg_changes: what a transaction changed


def _probe(conn: Any, written: Sequence[tuple[str | None, str]], *statements: str) -> Any:
    """BEGIN, Probe.start, the statements, finish, ROLLBACK; the Pending comparison."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    try:
        probe = pg_changes.Probe.start(conn, written)
        for s in statements:
            conn.execute(s)
        return probe.finish(
            conn, lambda: contextlib.closing(psycopg.connect(conn.info.dsn, password=conn.info.password))
        )
    finally:
        conn.rollback()


def test_pg_changes_settles_captured_writes_without_reading_rows(pg_db: Db) -> None:
    pg_db.load()
    pg_db.run("CREATE TABLE notes (id int PRIMARY KEY, text text)", "INSERT INTO notes VALUES (1, 'a')")
    # Captured (users is written by name, orders through its cascade) and undone: nothing to read.
    pending = _probe(
        pg_db.conn,
        [(None, "users")],
        "UPDATE users SET balance = balance + 1 WHERE id = 2",
        "UPDATE users SET balance = balance - 1 WHERE id = 2",
        "DELETE FROM users WHERE id = 3",
        "INSERT INTO users (id, name, email, balance) VALUES (3, 'carol', 'carol@example.org', 0)",
    )
    assert pending.after is None and pending.result() is None
    # Written but not captured (not named): read on both sides, and found the same.
    pending = _probe(pg_db.conn, [], "UPDATE notes SET text = 'b'", "UPDATE notes SET text = 'a'")
    assert pending.read == {"notes"} and pending.result() is None
    # Captured and changed: both sides read, the diff counts the row.
    pending = _probe(pg_db.conn, [(None, "notes")], "UPDATE notes SET text = 'b'")
    assert pending.read == {"notes"}
    found = pending.result()
    assert found is not None and "notes: 1 → 1 rows: 1 changed" in found.text
    # A captured digest is the fingerprint's digest of the same row: the net change is zero only
    # when the rows are equal, whatever the session's settings make of their text.
    pg_db.run("SET DateStyle = 'German'", "SET extra_float_digits = 0")
    pg_db.run("CREATE TABLE t (id int PRIMARY KEY, at timestamptz, f float8)", "INSERT INTO t VALUES (1, now(), 0.1)")
    pending = _probe(
        pg_db.conn,
        [(None, "t")],
        "UPDATE t SET f = 0.3",
        "SET DateStyle = 'SQL'",
        "UPDATE t SET f = 0.1",
    )
    assert pending.after is None


# ---------------------------------------------------------------- sqlite_changes: what a transaction changed


def test_sqlite_written_tables_follows_triggers_cascades_and_views(sqlite_db: Db) -> None:
    sqlite_db.load()
    sqlite_db.run(
        "CREATE TABLE audit (who TEXT)",
        "CREATE TRIGGER log_it AFTER UPDATE ON users BEGIN INSERT INTO audit VALUES (NEW.name); END",
        "CREATE VIEW v AS SELECT * FROM users",
        "CREATE TRIGGER v_del INSTEAD OF DELETE ON v BEGIN DELETE FROM users WHERE id = OLD.id; END",
    )
    conn = sqlite_db.conn

    def written(*statements: str) -> frozenset[str] | None:
        return sqlite_changes.written_tables(conn, [(s, ()) for s in statements])

    assert written("UPDATE users SET balance = 1 WHERE id = ?") is None  # a parameter it was not given
    assert written("UPDATE users SET balance = 1") == {"users", "audit"}
    assert written("DELETE FROM v WHERE id = 1") == {"v", "users", "orders"}  # the view, its trigger, the cascade
    assert written("SELECT * FROM orders", "EXPLAIN DELETE FROM users") == set()
    assert written("CREATE TABLE t (x)", "INSERT INTO t VALUES (1)") is None  # needs what the first creates
    assert written("PRAGMA user_version = 7") is None  # a PRAGMA acts while it is compiled: not even that
    assert sqlite_db.conn.execute("PRAGMA user_version").fetchone() == (0,)


def test_sqlite_probe_after_equals_the_whole_fingerprint(sqlite_db: Db) -> None:
    sqlite_db.load()
    sqlite_db.run("CREATE UNIQUE INDEX users_name ON users (name)")
    conn = sqlite_db.conn
    for statements in (
        ["UPDATE users SET balance = balance + 1 WHERE id < 3", "INSERT INTO orders VALUES (13, 3, 1.5, 'x')"],
        ["DELETE FROM users WHERE id = 1"],  # cascades to orders
        ["INSERT OR REPLACE INTO users (id, name, email) VALUES (9, 'bob', 'b@x')"],  # deletes bob's row unseen
        ["CREATE TABLE t (x)", "INSERT INTO t VALUES (1)"],  # not known beforehand: read whole
    ):
        before = fingerprint(conn)
        conn.execute("BEGIN IMMEDIATE")
        probe = sqlite_changes.Probe.start(conn, sqlite_changes.written_tables(conn, [(s, ()) for s in statements]))
        for s in statements:
            conn.execute(s)
        after = probe.after(before)
        probe.stop()
        probe.drop()
        conn.execute("COMMIT")
        assert after == fingerprint(conn), statements
        assert conn.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)  # no trigger stays


def test_pg_changes_with_schemas_and_names_that_need_quotes(pg_db: Db) -> None:
    pg_db.run(
        'CREATE SCHEMA "Audit"',
        'CREATE TABLE "Audit"."Log Book" (id int PRIMARY KEY, "Note" text)',
        "INSERT INTO \"Audit\".\"Log Book\" VALUES (1, 'a'), (2, 'b')",
    )
    pending = _probe(
        pg_db.conn,
        [("Audit", "Log Book")],
        'UPDATE "Audit"."Log Book" SET "Note" = \'z\' WHERE id = 1',
        'UPDATE "Audit"."Log Book" SET "Note" = \'a\' WHERE id = 1',
    )
    assert pending.after is None  # captured, and settled without reading
    pending = _probe(pg_db.conn, [("Audit", "Log Book")], 'DELETE FROM "Audit"."Log Book" WHERE id = 2')
    found = pending.result()
    assert found is not None and '"Audit"."Log Book": 2 → 1 rows: 1 removed' in found.text
