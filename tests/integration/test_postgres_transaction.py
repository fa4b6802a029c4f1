"""The PostgreSQL `transaction` strategy on the suite's private cluster: the paper's scenarios,
isolation until commit, bad input, timeout and cancel, a lost connection, credentials.

Each test gets a fresh database owned by `app` and connects as `app` over TCP with its
password, as goexd does with the password from a vault secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from goexd.domain.errors import FailedPrecondition, InvalidArgument, Unavailable
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.resource import Outcome
from goexd.domain.sandbox import Limits
from goexd.resources.postgres.transaction import PostgresTransactionResource, validate_postgres_url
from tests.services.postgres import PgCluster

USERS = "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, balance integer NOT NULL)"
ADD_USERS = "INSERT INTO users VALUES (1, 'ann', 100), (2, 'bob', 200), (3, 'cy', 300)"


def open_resource(
    cluster: PgCluster, dbname: str, password: str | None = None, **kw: int
) -> PostgresTransactionResource:
    resource = Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(dbname), UndoStrategy.TRANSACTION)
    return PostgresTransactionResource(resource, cluster.app_password if password is None else password, **kw)


@pytest.fixture
def res(pg_cluster: PgCluster, pg_database: str) -> Iterator[PostgresTransactionResource]:
    r = open_resource(pg_cluster, pg_database)
    yield r
    r.close()


class Runner:
    """Plays the engine's part: checkpoint, execute, then commit or roll back."""

    def __init__(self, res: PostgresTransactionResource) -> None:
        self.res = res
        self.n = 0
        self.cps: dict[str, dict[str, str]] = {}

    def run(
        self, sql: str, *params: str, limits: Limits | None = None, cancel: threading.Event | None = None
    ) -> tuple[str, Outcome]:
        self.n += 1
        aid = f"act_{self.n:04d}"
        spec = ActionSpec(ActionKind.SQL, sql=sql, params=params)
        self.res.precheck(spec)
        self.cps[aid] = self.res.checkpoint(aid)
        try:
            out = self.res.execute(spec, limits or Limits(), self.cps[aid], None, cancel)
        except Exception:
            self.res.rollback(aid, self.cps[aid])  # the engine's FAILED path
            raise
        return aid, out

    def rows(self, sql: str, *params: str) -> tuple[tuple[str | None, ...], ...]:
        _, out = self.run(sql, *params)
        assert out.sql is not None
        return out.sql.rows

    def undo(self, aid: str) -> None:
        assert self.res.rollback(aid, self.cps[aid]).verified

    def undo_last(self) -> None:
        self.undo(f"act_{self.n:04d}")

    def commit(self, *aids: str) -> None:
        self.res.commit_check(aids)
        for a in aids:
            self.res.commit(a, self.cps[a])


def seen(cluster: PgCluster, dbname: str, query: str) -> list[tuple[object, ...]]:
    """What another connection sees."""
    with cluster.connect_app(dbname) as other:
        return other.execute(query).fetchall()


def has_users(cluster: PgCluster, dbname: str) -> bool:
    return seen(cluster, dbname, "SELECT to_regclass('public.users') IS NOT NULL") == [(True,)]


def terminate(cluster: PgCluster, res: PostgresTransactionResource) -> None:
    """End the resource's backend from a superuser connection, as a server restart or a DBA would."""
    with cluster.connect() as su:
        su.execute("SELECT pg_terminate_backend(%s)", (res._conn.info.backend_pid,))


def test_paper_scenarios_with_undo(res: PostgresTransactionResource, pg_cluster: PgCluster, pg_database: str) -> None:
    r = Runner(res)
    create, _ = r.run(USERS)
    add, out = r.run(ADD_USERS)
    assert out.sql is not None and out.sql.affected_rows == 3
    bump, out = r.run("UPDATE users SET balance = balance + 500")
    assert out.sql is not None and out.sql.affected_rows == 3
    assert r.rows("SELECT name, balance FROM users ORDER BY id") == (("ann", "600"), ("bob", "700"), ("cy", "800"))
    r.undo_last()
    r.undo(bump)
    assert r.rows("SELECT sum(balance) FROM users") == (("600",),)
    r.undo_last()
    r.undo(add)
    assert r.rows("SELECT count(*) FROM users") == (("0",),)
    r.undo_last()
    r.undo(create)
    assert r.rows("SELECT to_regclass('public.users') IS NULL") == (("t",),)
    assert not has_users(pg_cluster, pg_database)


def test_paper_scenarios_with_commit_and_isolation_until_then(
    res: PostgresTransactionResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    r = Runner(res)
    a, _ = r.run(USERS)
    b, _ = r.run(ADD_USERS)
    c, _ = r.run("UPDATE users SET balance = balance + 500")
    assert not has_users(pg_cluster, pg_database)  # another connection sees nothing before the commit
    with pytest.raises(FailedPrecondition, match="commits whole"):
        r.commit(a, b)  # c would stay pending inside the same transaction
    r.commit(a, b, c)
    assert seen(pg_cluster, pg_database, "SELECT name, balance FROM users ORDER BY id") == [
        ("ann", 600),
        ("bob", 700),
        ("cy", 800),
    ]
    # Committed data is what the next actions start from; their changes are again invisible until committed.
    d, _ = r.run("UPDATE users SET balance = 0 WHERE name = 'ann'")
    assert seen(pg_cluster, pg_database, "SELECT balance FROM users WHERE name = 'ann'") == [(600,)]
    r.undo(d)
    assert r.rows("SELECT balance FROM users WHERE name = 'ann'") == (("600",),)


def test_a_failed_statement_does_not_poison_the_savepoint_stack(
    res: PostgresTransactionResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    r = Runner(res)
    a, _ = r.run("CREATE TABLE t (x integer)")
    b, _ = r.run("INSERT INTO t VALUES (1)")
    c, _ = r.run("INSERT INTO t VALUES (2)")
    with pytest.raises(
        InvalidArgument, match=r'spec\.sql\.sql: postgres \(statement 2 of 2\): relation "nope" does not'
    ):
        r.run("INSERT INTO t VALUES (3); UPDATE nope SET x = 1")  # its first statement is undone too
    with pytest.raises(InvalidArgument, match="division by zero"):
        r.run("SELECT 1 / 0")
    with pytest.raises(InvalidArgument, match=r"DETAIL: Key \(x\)=\(1\) already exists"):
        r.run("CREATE UNIQUE INDEX ON t (x); INSERT INTO t VALUES (1)")
    assert r.rows("SELECT x FROM t ORDER BY x") == (("1",), ("2",))
    r.undo_last()
    r.undo(c)  # an older savepoint is still there after the failures
    assert r.rows("SELECT x FROM t ORDER BY x") == (("1",),)
    r.commit(a, b, f"act_{r.n:04d}")
    assert seen(pg_cluster, pg_database, "SELECT x FROM t") == [(1,)]


def test_transaction_and_non_transactional_statements_are_refused(
    res: PostgresTransactionResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    # Privileged statements are the session policy's call, in the engine (tests/e2e/test_policy_e2e.py).
    r = Runner(res)
    r.run("CREATE TABLE t (x integer)")
    for stmt in (f"DROP DATABASE {pg_database}", "ALTER SYSTEM SET work_mem = '1GB'"):  # privileged and no tx
        with pytest.raises(InvalidArgument, match=r"transaction strategy .* the clone strategy can"):
            r.run(stmt)
    for stmt in ("COMMIT", "SAVEPOINT mine", "ROLLBACK TO SAVEPOINT goex_act_0001", "SET TRANSACTION READ ONLY"):
        with pytest.raises(InvalidArgument, match="goexd runs each action in its own savepoint"):
            r.run(stmt)
    for stmt in ("VACUUM t", "CREATE INDEX CONCURRENTLY t_x ON t (x)", "CREATE SEQUENCE s; SELECT nextval('s')"):
        with pytest.raises(InvalidArgument, match=r"transaction strategy .* the clone strategy can"):
            r.run(stmt)
    for stmt, use in (("COPY t FROM STDIN", "INSERT"), ("COPY t TO STDOUT", "SELECT")):
        with pytest.raises(InvalidArgument, match=f"data stream .* use {use}"):
            r.run(stmt)
    assert res._live == ["act_0001"]  # each was refused by precheck, before a savepoint was taken
    assert res.take_lost() == []
    assert r.rows("SELECT count(*) FROM t") == (("0",),)
    assert seen(pg_cluster, pg_database, "SELECT current_setting('work_mem')") == [("4MB",)]


def test_parameters_row_cap_nulls_and_text_rendering(pg_cluster: PgCluster, pg_database: str) -> None:
    res = open_resource(pg_cluster, pg_database, row_limit=5)
    try:
        r = Runner(res)
        r.run("CREATE TABLE t (x integer, y text)")
        _, out = r.run("INSERT INTO t SELECT i, CASE WHEN i % 2 = 0 THEN 'even' END FROM generate_series(1, 20) i")
        assert out.sql is not None and out.sql.affected_rows == 20 and out.sql.columns == ()
        _, out = r.run("SELECT x, y FROM t WHERE x > $1 ORDER BY x", "10")  # $1 is inferred as an integer
        assert out.sql is not None
        assert out.sql.columns == ("x", "y") and out.sql.total_rows == 10 and out.sql.truncated
        assert out.sql.rows[:2] == (("11", None), ("12", "even")) and len(out.sql.rows) == 5
        assert r.rows("SELECT count(*) FROM t WHERE y LIKE $1 || '%'", "ev") == (("10",),)
        assert r.rows("SELECT 7 % 4, 'a%'") == (("3", "a%"),)  # no placeholder escaping without parameters
        assert r.rows("SELECT true, '\\x00ff'::bytea, NULL::int, ARRAY[1, 2], '{\"k\": 1}'::jsonb, 1.50::numeric") == (
            ("t", "\\x00ff", None, "{1,2}", '{"k": 1}', "1.50"),
        )
        _, out = r.run("UPDATE t SET y = $1 WHERE x <= 3 RETURNING x", "low")
        assert out.sql is not None and out.sql.affected_rows == 3 and out.sql.total_rows == 3
        with pytest.raises(InvalidArgument, match=r"spec\.sql\.params: parameters need exactly one statement"):
            r.run("SELECT $1; SELECT $1", "1")
        with pytest.raises(InvalidArgument, match=r"spec\.sql\.sql: postgres: .*parameters"):
            r.run("SELECT $1::int + $2::int", "1")
        assert r.rows("SELECT count(*) FROM t WHERE y = 'low'") == (("3",),)
    finally:
        res.close()


def test_a_runaway_statement_times_out_without_losing_earlier_actions(res: PostgresTransactionResource) -> None:
    r = Runner(res)
    r.run(USERS)
    r.run(ADD_USERS)
    t0 = time.monotonic()
    with pytest.raises(InvalidArgument, match=r"stopped: wall-clock timeout of 0\.3 s"):
        r.run("UPDATE users SET balance = 0 WHERE pg_sleep(5) IS NOT NULL", limits=Limits(timeout_s=0.3))
    # A script of short statements is held to the action's deadline as a whole.
    with pytest.raises(InvalidArgument, match=r"stopped: wall-clock timeout of 0\.5 s"):
        r.run(
            "SELECT pg_sleep(0.2); SELECT pg_sleep(0.2); SELECT pg_sleep(0.2); SELECT 1", limits=Limits(timeout_s=0.5)
        )
    assert time.monotonic() - t0 < 3
    assert res.take_lost() == []  # unlike SQLite, only the action's own savepoint was rolled back
    assert r.rows("SELECT sum(balance) FROM users") == (("600",),)
    # statement_timeout is the action's own, and goes back to the session's value after it.
    _, out = r.run("SHOW statement_timeout", limits=Limits(timeout_s=2.5))
    assert out.sql is not None and out.sql.rows == (("2500ms",),)
    assert r.rows("SHOW statement_timeout") == (("1min",),)
    assert res._conn.execute("SHOW statement_timeout").fetchall() == [("0",)]
    # An action's own statement_timeout is its business: reported as PostgreSQL says it.
    with pytest.raises(
        InvalidArgument, match=r"postgres \(statement 2 of 2\): canceling statement due to statement timeout"
    ):
        r.run("SET statement_timeout = 50; SELECT pg_sleep(1)")
    _, out = r.run("SELECT 1", limits=Limits(timeout_s=1e9))  # clamped to the server's range
    assert out.sql is not None and out.sql.rows == (("1",),)


def test_cancel_stops_a_statement(res: PostgresTransactionResource) -> None:
    r = Runner(res)
    a, _ = r.run("CREATE TABLE t (x integer)")
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(InvalidArgument, match="stopped: cancelled"):
        r.run("INSERT INTO t SELECT 1 FROM pg_sleep(10)", limits=Limits(timeout_s=30), cancel=cancel)
    assert time.monotonic() - t0 < 2
    assert r.rows("SELECT count(*) FROM t") == (("0",),)
    r.undo_last()
    r.undo(a)


def test_a_connection_lost_mid_action_fails_it_and_reports_the_lost_pending_actions(
    res: PostgresTransactionResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    r = Runner(res)
    a, _ = r.run(USERS)
    b, _ = r.run(ADD_USERS)
    threading.Timer(0.3, terminate, (pg_cluster, res)).start()
    with pytest.raises(Unavailable, match=f"lost the connection .* while the action ran .* pending actions {a}, {b}"):
        r.run("SELECT pg_sleep(10)")
    assert res.take_lost() == [a, b] and res.take_lost() == []
    # The next action reconnects, in a new transaction: the lost ones' effects are gone.
    assert r.rows("SELECT to_regclass('public.users') IS NULL") == (("t",),)
    with pytest.raises(FailedPrecondition, match="cannot be committed"):
        res.commit_check([a, b])
    r.undo(b)  # undoing a lost action is a no-op that succeeds: its effects are gone
    c, _ = r.run("CREATE TABLE t (x integer)")
    r.commit(f"act_{r.n - 1:04d}", c)
    assert seen(pg_cluster, pg_database, "SELECT count(*) FROM t") == [(0,)]


def test_a_connection_lost_between_actions_is_reported_by_the_next_one(
    res: PostgresTransactionResource, pg_cluster: PgCluster
) -> None:
    r = Runner(res)
    terminate(pg_cluster, res)  # nothing pending: the next action reconnects without a word
    a, _ = r.run(USERS)
    terminate(pg_cluster, res)
    with pytest.raises(Unavailable, match=f"before the action ran .* pending actions {a}; the next action reconnects"):
        res.checkpoint("act_next")
    assert res.take_lost() == [a]
    assert r.rows("SELECT to_regclass('public.users') IS NULL") == (("t",),)


def test_deferred_constraints_are_checked_before_the_commit(
    res: PostgresTransactionResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    r = Runner(res)
    schema, _ = r.run(
        "CREATE TABLE parent (id integer PRIMARY KEY); "
        "CREATE TABLE child (p integer REFERENCES parent DEFERRABLE INITIALLY DEFERRED)"
    )
    bad, _ = r.run("INSERT INTO child VALUES (42)")  # accepted now, would fail at COMMIT
    with pytest.raises(FailedPrecondition, match=r'would fail, so nothing was committed: .*"child_p_fkey"'):
        r.commit(schema, bad)
    r.undo(bad)  # still pending and undoable
    r.commit(schema)
    assert seen(pg_cluster, pg_database, "SELECT count(*) FROM child") == [(0,)]


def test_wrong_password_or_no_server_is_unavailable_without_the_password(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    wrong = "s3cr%t w@rd/" + pg_cluster.app_password[:6]
    with pytest.raises(Unavailable) as caught:
        open_resource(pg_cluster, pg_database, password=wrong)
    text = str(caught.value)
    assert f"{pg_cluster.host}:{pg_cluster.port}" in text and "password authentication failed" in text
    assert wrong not in text and pg_cluster.app_password not in text
    with pytest.raises(Unavailable, match=r"no password supplied.*--db-secret"):
        open_resource(pg_cluster, pg_database, password="")
    dead = Resource(
        "db", ResourceKind.POSTGRES, f"postgresql://app@127.0.0.1:1/{pg_database}", UndoStrategy.TRANSACTION
    )
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1 .*refused"):
        PostgresTransactionResource(dead, wrong)


def test_postgres_urls_are_validated_and_never_carry_a_password() -> None:
    f = "spec.resources[0].uri"
    assert validate_postgres_url("postgresql://app@db.example:5433/app", f) == "postgresql://app@db.example:5433/app"
    assert validate_postgres_url("postgres://app@localhost/app?sslmode=require", f).startswith("postgres://")
    for url in ("postgresql://app:hunter2@db/app", "postgresql://app@db/app?password=hunter2"):
        with pytest.raises(InvalidArgument, match=r"must not carry a password.*vault") as caught:
            validate_postgres_url(url, f)
        assert "hunter2" not in str(caught.value)
    for url, problem in (
        ("mysql://app@db/app", "postgresql://USER@HOST"),
        ("postgresql://app@db/", "no database"),
        ("postgresql:///app", "no host"),
        ("postgresql://app@db:notaport/app", "not a valid URL"),
    ):
        with pytest.raises(InvalidArgument, match=problem):
            validate_postgres_url(url, f)


def test_undo_restores_the_exact_fingerprint_and_describe_tells_the_schema(
    res: PostgresTransactionResource, pg_cluster: PgCluster
) -> None:
    r = Runner(res)
    r.run("CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, balance integer DEFAULT 0)")
    r.run(ADD_USERS)
    before = res.fingerprint()
    change, _ = r.run(
        "UPDATE users SET balance = balance + 500; DELETE FROM users WHERE name = 'bob'; "
        "ALTER TABLE users ADD COLUMN email text; CREATE INDEX users_name ON users (name)"
    )
    assert res.fingerprint() != before
    r.undo(change)
    assert res.fingerprint() == before
    text = res.describe(samples=True)
    assert "users" in text and "balance" in text and "integer" in text and "2 pending action(s)" in text
    assert "ann" in text  # a sample row
    for secret in (pg_cluster.host, str(pg_cluster.port), pg_cluster.app_password, "postgresql://"):
        assert secret not in text
