"""The PostgreSQL `inverse` strategy on the suite's private cluster: tested pairs, the paper's
scenarios, tests on a copy for statements a transaction cannot take back, drift, failures.

Each test gets a fresh database owned by `app` and connects as `app` over TCP with its
password, as goexd does with the password from a vault secret.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from goexd.domain.errors import FailedPrecondition, InvalidArgument, Unavailable
from goexd.domain.models import (
    ActionKind,
    ActionSpec,
    Resource,
    ResourceKind,
    ReversibilityClass,
    UndoStrategy,
    Verdict,
)
from goexd.domain.sandbox import Limits
from goexd.resources.postgres.inverse import PostgresInverseResource
from tests.integration.verdicts import failed, passed
from tests.services.postgres import PgCluster

LIMITS = Limits(timeout_s=10)
USERS = "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, balance integer NOT NULL)"


def q(sql: str, *params: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=sql, params=params)


def open_resource(cluster: PgCluster, dbname: str, password: str | None = None) -> PostgresInverseResource:
    resource = Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(dbname), UndoStrategy.INVERSE)
    return PostgresInverseResource(resource, cluster.app_password if password is None else password)


@pytest.fixture
def res(pg_cluster: PgCluster, pg_database: str) -> Iterator[PostgresInverseResource]:
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute(USERS)
        setup.execute("INSERT INTO users VALUES (1, 'ann', 10), (2, 'bob', 20)")
    r = open_resource(pg_cluster, pg_database)
    yield r
    r.close()


@pytest.fixture
def createdb(pg_cluster: PgCluster) -> Iterator[None]:
    """`app` may create databases (the copies tests run on) for the test's duration."""
    with pg_cluster.app_may_create_databases():
        yield


@pytest.fixture(autouse=True)
def no_copies_left(pg_cluster: PgCluster) -> Iterator[None]:
    """Every copy goexd made is gone at the end of each test (dropped, or swapped in)."""
    yield
    assert not [d for d in databases(pg_cluster) if d.startswith("goex_")]


def seen(cluster: PgCluster, dbname: str, query: str) -> list[tuple[object, ...]]:
    """What another connection sees."""
    with cluster.connect_app(dbname) as other:
        return other.execute(query).fetchall()


def databases(cluster: PgCluster) -> list[str]:
    with cluster.connect() as su:
        return [r[0] for r in su.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()]


def act(res: PostgresInverseResource, spec: ActionSpec, inverse: ActionSpec | None) -> dict[str, str]:
    """The engine's order: test, checkpoint, execute; returns the checkpoint undo needs."""
    verdict = res.test(spec, inverse, LIMITS, None)
    assert verdict.verdict is Verdict.PASSED, verdict.detail
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", inverse)  # each action its own id, as the engine gives
    out = res.execute(spec, LIMITS, cp, None, None)
    return {**cp, **out.checkpoint_extra}


def test_the_paper_scenarios_commit_at_once_and_undo_by_their_inverse(pg_cluster: PgCluster, pg_database: str) -> None:
    res = open_resource(pg_cluster, pg_database)
    try:
        empty = res.fingerprint()
        create = act(res, q(USERS), q("DROP TABLE users"))
        assert seen(pg_cluster, pg_database, "SELECT to_regclass('users') IS NOT NULL") == [(True,)]  # at once
        after_create = res.fingerprint()
        add = act(
            res,
            q("INSERT INTO users VALUES (1, 'ann', 100), (2, 'bob', 200), (3, 'cy', 300)"),
            q("DELETE FROM users WHERE id IN (1, 2, 3)"),
        )
        after_add = res.fingerprint()
        bump = act(
            res,
            q("UPDATE users SET balance = balance + $1", "500"),
            q("UPDATE users SET balance = balance - $1", "500"),
        )
        assert seen(pg_cluster, pg_database, "SELECT sum(balance) FROM users") == [(2100,)]

        report = res.rollback(bump["marker"], bump)
        assert report.verified and "matches its pre-action state" in report.detail
        assert res.fingerprint() == after_add
        assert seen(pg_cluster, pg_database, "SELECT name, balance FROM users ORDER BY id") == [
            ("ann", 100),
            ("bob", 200),
            ("cy", 300),
        ]
        assert res.rollback(add["marker"], add).verified and res.fingerprint() == after_create
        assert res.rollback(create["marker"], create).verified and res.fingerprint() == empty
        assert seen(pg_cluster, pg_database, "SELECT to_regclass('users') IS NULL") == [(True,)]

        # With commit: the actions are in the database already; committing only stops offering the inverse.
        for spec, inverse in (
            (q(USERS), q("DROP TABLE users")),
            (q("INSERT INTO users VALUES (1, 'ann', 100)"), q("DELETE FROM users WHERE id = 1")),
            (q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 500")),
        ):
            res.commit("act_x", act(res, spec, inverse))
        res.commit_check(["act_x"])
        assert seen(pg_cluster, pg_database, "SELECT name, balance FROM users") == [("ann", 600)]
        assert res.take_lost() == []
    finally:
        res.close()


def test_a_wrong_inverse_fails_its_test_with_the_diff_and_changes_nothing(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    before = res.fingerprint()
    verdict = res.test(
        q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 50"), LIMITS, None
    )
    assert verdict.verdict is Verdict.FAILED and verdict.reversibility_class is ReversibilityClass.IRREVERSIBLE
    assert "in a rolled-back transaction" in verdict.detail
    assert "users: 2 → 2 rows: 2 changed" in verdict.detail  # the table-level diff says what the pair left behind
    schema = res.test(q("ALTER TABLE users ADD COLUMN email text"), q("SELECT 1"), LIMITS, None)
    assert schema.verdict is Verdict.FAILED and "users: column email added (text)" in schema.detail
    assert res.fingerprint() == before  # the tests ran in transactions that were rolled back
    assert seen(pg_cluster, pg_database, "SELECT sum(balance) FROM users") == [(30,)]
    # ...and left no lock behind: another connection can change the rows at once.
    with pg_cluster.connect_app(pg_database) as other:
        other.execute("SET lock_timeout = '1s'")
        other.execute("UPDATE users SET balance = balance WHERE id = 1")


def test_a_failing_inverse_a_failing_action_and_refused_statements(res: PostgresInverseResource) -> None:
    verdict = res.test(q("DELETE FROM users WHERE name = 'ann'"), q("INSERT INTO nope VALUES (1)"), LIMITS, None)
    assert verdict.verdict is Verdict.FAILED
    assert 'the inverse fails after the action (in a rolled-back transaction): postgres: relation "nope"' in (
        verdict.detail
    )
    with pytest.raises(InvalidArgument, match=r'the action fails .*null value in column "balance"'):
        res.test(q("INSERT INTO users (id, name) VALUES (3, 'no balance')"), q("SELECT 1"), LIMITS, None)
    with pytest.raises(InvalidArgument, match=r"inverse\.sql\.sql: .*syntax error"):
        res.test(q("DELETE FROM users"), q("DELET FROM users"), LIMITS, None)
    with pytest.raises(InvalidArgument, match="goexd runs each action in its own transaction"):
        res.precheck(q("COMMIT"))
    with pytest.raises(InvalidArgument, match="data stream"):
        res.precheck(q("COPY users FROM STDIN"))
    with pytest.raises(InvalidArgument, match=r"stopped: wall-clock timeout of 0\.3 s"):
        res.test(
            q("UPDATE users SET balance = 0 WHERE pg_sleep(5) IS NOT NULL"), q("SELECT 1"), Limits(timeout_s=0.3), None
        )
    assert res.fingerprint() == res.fingerprint()  # still usable: each test ended with its ROLLBACK


def test_writes_need_an_inverse_reads_do_not(res: PostgresInverseResource) -> None:
    with pytest.raises(InvalidArgument, match="needs an inverse"):
        res.test(q("DELETE FROM users"), None, LIMITS, None)
    verdict = res.test(q("SELECT * FROM users"), None, LIMITS, None)
    assert verdict.reversibility_class is ReversibilityClass.READ_ONLY
    cp = res.checkpoint("act_r")
    out = res.execute(q("SELECT name FROM users ORDER BY id"), LIMITS, cp, None, None)
    assert out.sql is not None and out.sql.rows == (("ann",), ("bob",))
    assert res.rollback("act_r", {**cp, **out.checkpoint_extra}).detail == "the action only read; nothing to undo"


@pytest.mark.usefixtures("createdb")
def test_statements_a_transaction_cannot_take_back_are_tested_on_a_copy(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute("CREATE SEQUENCE s")
    before_dbs = databases(pg_cluster)
    t0 = time.monotonic()
    verdict = res.test(q("VACUUM users"), q("SELECT 1"), LIMITS, None)
    assert verdict.verdict is Verdict.PASSED and "on a copy of the database" in verdict.detail
    assert time.monotonic() - t0 < 2
    bad = res.test(q("DELETE FROM users; VACUUM users"), q("SELECT 1"), LIMITS, None)
    assert bad.verdict is Verdict.FAILED and "on a copy" in bad.detail and "users: 2 → 0 rows: 2 removed" in bad.detail
    moved = res.test(q("SELECT nextval('s')"), q("SELECT setval('s', 1, false)"), LIMITS, None)
    assert moved.verdict is Verdict.PASSED
    assert seen(pg_cluster, pg_database, "SELECT count(*) FROM users") == [(2,)]  # the copy took the damage
    assert seen(pg_cluster, pg_database, "SELECT last_value, is_called FROM s") == [(1, False)]  # never moved
    assert databases(pg_cluster) == before_dbs  # the copies were dropped
    # Run for real (outside a transaction), and undone by the inverse.
    cp = act(res, q("CREATE INDEX CONCURRENTLY users_name ON users (name)"), q("DROP INDEX CONCURRENTLY users_name"))
    assert seen(pg_cluster, pg_database, "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name'") == [(1,)]
    assert res.rollback(cp["marker"], cp).verified
    assert seen(pg_cluster, pg_database, "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name'") == [(0,)]
    # The action's timeout was set for the session while it ran outside a transaction, and put back after.
    res.execute(q("VACUUM users"), Limits(timeout_s=2.5), res.checkpoint("act_v", q("SELECT 1")), None, None)
    assert res._db.conn().execute("SHOW statement_timeout").fetchall() == [("0",)]


@pytest.mark.usefixtures("createdb")
def test_a_copy_test_is_refused_at_once_while_others_are_connected(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    with pg_cluster.connect_app(pg_database), pg_cluster.connect(pg_database):
        t0 = time.monotonic()
        with pytest.raises(FailedPrecondition, match=r"runs on a copy of database .* it has 2 other connection\(s\)"):
            res.test(q("VACUUM users"), q("SELECT 1"), LIMITS, None)
        assert time.monotonic() - t0 < 1  # not PostgreSQL's 5 s wait
    assert res.test(q("VACUUM users"), q("SELECT 1"), LIMITS, None).verdict is Verdict.PASSED


def test_a_copy_test_without_createdb_fails_with_the_reason(res: PostgresInverseResource) -> None:
    with pytest.raises(FailedPrecondition, match="permission denied to create database"):
        res.test(q("VACUUM users"), q("SELECT 1"), LIMITS, None)
    assert res.fingerprint()  # its connection came back


def test_undo_after_others_changed_the_database_runs_but_says_it_could_not_verify(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    cp = act(res, q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 500"))
    with pg_cluster.connect_app(pg_database) as other:
        other.execute("INSERT INTO users VALUES (3, 'zed', 1)")
    report = res.rollback(cp["marker"], cp)
    assert not report.verified and "changed since the action" in report.detail
    # The inverse ran as written (and so also took 500 from the newcomer): the report says it is unverified.
    assert seen(pg_cluster, pg_database, "SELECT name, balance FROM users ORDER BY id") == [
        ("ann", 10),
        ("bob", 20),
        ("zed", -499),
    ]


def test_a_failed_action_leaves_nothing_to_undo(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_f", q("DELETE FROM users WHERE id = 3"))
    with pytest.raises(InvalidArgument, match=r"statement 2 of 3\): null value"):
        res.execute(
            q("INSERT INTO users VALUES (3, 'x', 1); INSERT INTO users (id) VALUES (4); SELECT 1"),
            LIMITS,
            cp,
            None,
            None,
        )
    report = res.rollback("act_f", cp)
    assert report.verified and "nothing to undo" in report.detail and res.fingerprint() == before
    # Outside a transaction (VACUUM), the statements before the failing one stay: undo says so.
    cp = res.checkpoint("act_g", q("SELECT 1"))
    with pytest.raises(InvalidArgument, match='relation "nope" does not exist'):
        res.execute(q("DELETE FROM users WHERE id = 1; VACUUM nope"), LIMITS, cp, None, None)
    report = res.rollback("act_g", cp)
    assert not report.verified and "outside a transaction had taken effect" in report.detail
    assert seen(pg_cluster, pg_database, "SELECT name FROM users") == [("bob",)]


def test_a_lost_connection_fails_the_running_action_and_the_next_call_reconnects(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    def terminate() -> None:
        with pg_cluster.connect() as su:
            su.execute("SELECT pg_terminate_backend(%s)", (res._db.conn().info.backend_pid,))

    before = res.fingerprint()
    terminate()  # between calls: nothing was pending, the next call reconnects without a word
    cp = act(res, q("UPDATE users SET balance = 0"), q("UPDATE users SET balance = id * 10"))
    assert res.rollback(cp["marker"], cp).verified
    cp = res.checkpoint("act_l", q("DELETE FROM users WHERE id = 9"))
    threading.Timer(0.3, terminate).start()
    with pytest.raises(Unavailable, match=r"lost the connection .* while the action ran .* rolled back"):
        res.execute(q("INSERT INTO users VALUES (9, 'z', 0); SELECT pg_sleep(10)"), LIMITS, cp, None, None)
    assert res.rollback("act_l", cp).verified and res.fingerprint() == before


def test_wrong_password_is_unavailable_without_the_password(pg_cluster: PgCluster, pg_database: str) -> None:
    wrong = "s3cr%t w@rd/" + pg_cluster.app_password[:6]
    with pytest.raises(Unavailable) as caught:
        open_resource(pg_cluster, pg_database, password=wrong)
    assert "password authentication failed" in str(caught.value) and wrong not in str(caught.value)


def test_describe_names_the_strategy_and_the_schema(res: PostgresInverseResource, pg_cluster: PgCluster) -> None:
    text = res.describe(samples=True)
    assert "strategy inverse" in text and "users" in text and "balance" in text and "ann" in text
    for secret in (pg_cluster.host, str(pg_cluster.port), pg_cluster.app_password, "postgresql://"):
        assert secret not in text


# ---------------------------------------------------------------- the test's shortcuts (dbinspect/pg_changes.py)
# The test reads only what the pair could have changed: tables the counters say were written,
# settled by capture triggers where it can. Each case below must still be judged as a whole
# fingerprint would judge it.


def test_changes_the_script_does_not_name_fail_the_test(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute("CREATE TABLE audit (n serial, who text)")
        setup.execute(
            "CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO audit (who) VALUES (NEW.name); RETURN NEW; END $$"
        )
        setup.execute("CREATE TRIGGER log_it AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION log_it()")
        setup.execute("CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users ON DELETE CASCADE)")
        setup.execute("INSERT INTO orders VALUES (10, 1), (11, 1), (12, 2)")
    before = res.fingerprint()
    # A trigger writes a table the script never names: the audit rows stay after the inverse.
    detail = failed(res, "UPDATE users SET balance = 0 WHERE id = 1", "UPDATE users SET balance = 10 WHERE id = 1")
    assert "audit: 0 → 2 rows: 2 added" in detail and "users" not in detail.split("Tables changed:")[1]
    # A foreign key cascades a delete; putting the parent back does not bring its orders back.
    detail = failed(res, "DELETE FROM users WHERE id = 1", "INSERT INTO users VALUES (1, 'ann', 10)")
    assert "orders: 3 → 1 rows: 2 removed" in detail
    # Put back whole, the cascade passes.
    passed(
        res,
        "DELETE FROM users WHERE id = 1",
        "INSERT INTO users VALUES (1, 'ann', 10); INSERT INTO orders VALUES (10, 1), (11, 1)",
    )
    assert res.fingerprint() == before


def test_rows_added_then_deleted_truncate_and_put_back(res: PostgresInverseResource) -> None:
    passed(res, "INSERT INTO users VALUES (3, 'cy', 30), (4, 'di', 40)", "DELETE FROM users WHERE id IN (3, 4)")
    detail = failed(res, "INSERT INTO users VALUES (3, 'cy', 30), (4, 'di', 40)", "DELETE FROM users WHERE id = 3")
    assert "users: 2 → 3 rows: 1 added" in detail
    # A row deleted and inserted again under another key is a change, even with the same count.
    assert "1 added, 1 removed" in failed(
        res, "DELETE FROM users WHERE id = 2", "INSERT INTO users VALUES (5, 'bob', 20)"
    )
    # TRUNCATE writes no row the counters see: the table's new file tells.
    assert "users: 2 → 0 rows: 2 removed" in failed(res, "TRUNCATE users", "SELECT 1")
    passed(res, "TRUNCATE users", "INSERT INTO users VALUES (1, 'ann', 10), (2, 'bob', 20)")
    assert "users: 2 → 1 rows: 1 removed" in failed(res, "TRUNCATE users", "INSERT INTO users VALUES (1, 'ann', 10)")
    # Dropped and created again (a new oid), with the same rows: the same database.
    passed(
        res,
        "CREATE TABLE keep AS SELECT * FROM users; DROP TABLE users",
        f"{USERS}; INSERT INTO users SELECT * FROM keep; DROP TABLE keep",
    )


def test_writes_the_capture_triggers_cannot_see_are_read(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    # Triggers switched off around a write: the capture saw the other writes only, the counters all.
    detail = failed(
        res,
        "UPDATE users SET balance = 0 WHERE id = 1; ALTER TABLE users DISABLE TRIGGER ALL; "
        "UPDATE users SET balance = 0 WHERE id = 2; ALTER TABLE users ENABLE TRIGGER ALL",
        "UPDATE users SET balance = 10 WHERE id = 1",
    )
    assert "users: 2 → 2 rows: 1 changed" in detail
    # A write rolled back inside a subtransaction: counted, not captured; the rows are the same.
    passed(
        res,
        "DO $$ BEGIN BEGIN UPDATE users SET balance = 0; RAISE EXCEPTION 'no'; "
        "EXCEPTION WHEN OTHERS THEN NULL; END; END $$",
        "SELECT 1",
    )
    # A table goexd may not put a trigger on (owned by another role) is read.
    with pg_cluster.connect(pg_database) as su:
        su.execute("CREATE TABLE theirs (id int PRIMARY KEY, v int)")
        su.execute("INSERT INTO theirs VALUES (1, 1)")
        su.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON theirs TO app")
    assert "theirs: 1 → 1 rows: 1 changed" in failed(res, "UPDATE theirs SET v = 2", "UPDATE theirs SET v = 3")
    passed(res, "UPDATE theirs SET v = 2", "UPDATE theirs SET v = 1")


def test_a_session_writing_the_table_does_not_hold_the_test_up(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    """The capture trigger waits for its table's lock only briefly; then the table is read instead."""
    with pg_cluster.connect_app(pg_database, autocommit=False) as other:
        other.execute("INSERT INTO users VALUES (7, 'other', 0)")  # an open write transaction on users
        t0 = time.monotonic()
        passed(res, "UPDATE users SET balance = 0 WHERE id = 1", "UPDATE users SET balance = 10 WHERE id = 1")
        assert "users: 2 → 2 rows: 1 changed" in failed(
            res, "UPDATE users SET balance = 0 WHERE id = 1", "UPDATE users SET balance = 1 WHERE id = 1"
        )
        assert time.monotonic() - t0 < 2
        other.commit()  # and the test left nothing in its way
    assert seen(pg_cluster, pg_database, "SELECT count(*) FROM users") == [(3,)]


def test_schema_and_privilege_changes_fail_the_test(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    assert "Tables added: t2 (0 rows)" in failed(res, "CREATE TABLE t2 (id int)", "SELECT 1")
    # The schema is read again when the statements wrote the catalogs, whatever statement did it.
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute(
            "CREATE FUNCTION widen() RETURNS void LANGUAGE plpgsql AS "
            "$$ BEGIN EXECUTE 'ALTER TABLE users ADD COLUMN note text'; END $$"
        )
    assert "users: column note added (text)" in failed(res, "SELECT widen()", "SELECT 1")
    passed(res, "ANALYZE users", "SELECT 1")  # catalogs written (statistics), the schema the same
    assert "users: index users_name added (btree (name))" in failed(
        res, "CREATE INDEX users_name ON users (name)", "SELECT 1"
    )
    assert "Not readable" in failed(res, "REVOKE SELECT ON users FROM app", "SELECT 1")
    passed(res, "CREATE TABLE t2 (id int); INSERT INTO t2 VALUES (1)", "DROP TABLE t2")


def test_a_test_in_a_transaction_sets_back_every_sequence_it_moved(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    """nextval is not transactional: the ROLLBACK leaves a sequence moved; the test sets it back (trial 2, P1/5)."""
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute("CREATE TABLE t (id serial PRIMARY KEY, v int); INSERT INTO t (v) VALUES (1)")
        setup.execute("CREATE TABLE g (id int GENERATED ALWAYS AS IDENTITY, v int); CREATE SEQUENCE unused")
    state = "SELECT last_value, is_called FROM t_id_seq UNION ALL SELECT last_value, is_called FROM g_id_seq"
    assert seen(pg_cluster, pg_database, state) == [(1, True), (1, False)]
    for _ in range(3):
        detail = failed(res, "INSERT INTO t (v) VALUES (2); INSERT INTO g (v) VALUES (2)", "DELETE FROM t WHERE v = 2")
        assert "sequence t_id_seq: next 2 → next 3" in detail and "sequence g_id_seq: next 1 → next 2" in detail, detail
        assert seen(pg_cluster, pg_database, state) == [(1, True), (1, False)]
    passed(res, "INSERT INTO t (v) VALUES (2)", "DELETE FROM t WHERE v = 2; ALTER SEQUENCE t_id_seq RESTART WITH 2")
    assert seen(pg_cluster, pg_database, state) == [(1, True), (1, False)]


@pytest.mark.usefixtures("createdb")
def test_a_sequence_left_moved_fails_the_test_on_a_copy_and_the_undo_names_it(
    res: PostgresInverseResource, pg_cluster: PgCluster, pg_database: str
) -> None:
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute("CREATE TABLE t (id serial PRIMARY KEY, v int); INSERT INTO t (v) VALUES (1)")
    detail = failed(res, "SELECT setval('t_id_seq', 100)", "SELECT 1")
    assert "on a copy" in detail and "sequence t_id_seq: next 2 → next 101" in detail, detail
    assert seen(pg_cluster, pg_database, "SELECT last_value FROM t_id_seq") == [(1,)]
    # A wrong undo (the inverse is taken on trust here, as after drift) is not called verified.
    cp = res.checkpoint("act_seq", q("DELETE FROM t WHERE v = 2"))
    cp.update(res.execute(q("INSERT INTO t (v) VALUES (2)"), LIMITS, cp, None, None).checkpoint_extra)
    report = res.rollback("act_seq", cp)
    assert not report.verified and "sequence t_id_seq: next 2 → next 3" in report.detail, report.detail


def test_privileges_comments_and_table_options_left_changed_fail_the_test(res: PostgresInverseResource) -> None:
    """Trial 2 (P9, P11, P17, P15): ACLs, comments, persistence, row level security are compared."""
    assert "privileges on table users: " in failed(res, "GRANT SELECT ON users TO PUBLIC", "SELECT 1")
    passed(res, "GRANT SELECT ON users TO PUBLIC", "REVOKE SELECT ON users FROM PUBLIC")  # the default ACL again
    assert "comment on table users added" in failed(res, "COMMENT ON TABLE users IS 'x'", "SELECT 1")
    assert "persistence of table users: logged → unlogged" in failed(res, "ALTER TABLE users SET UNLOGGED", "SELECT 1")
    assert "row level security of table users: off → on" in failed(
        res, "ALTER TABLE users ENABLE ROW LEVEL SECURITY", "SELECT 1"
    )
