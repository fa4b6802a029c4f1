"""The PostgreSQL `clone` strategy on the suite's private cluster: a copy of the database before
each action (CREATE DATABASE ... TEMPLATE), undo by swapping it back in, commit drops it.

`app` gets CREATEDB for these tests (the strategy refuses to start without it); each test gets
a fresh database owned by `app`, reached over TCP with the password, as goexd does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from goexd.domain.errors import FailedPrecondition, InvalidArgument, Unavailable
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.sandbox import Limits
from goexd.resources.postgres.clone import PostgresCloneResource, clone_name, old_name
from tests.services.postgres import PgCluster

LIMITS = Limits(timeout_s=10)
USERS = "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, balance integer NOT NULL)"


def q(sql: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=sql)


def open_resource(cluster: PgCluster, dbname: str) -> PostgresCloneResource:
    resource = Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(dbname), UndoStrategy.CLONE)
    return PostgresCloneResource(resource, cluster.app_password)


@pytest.fixture
def createdb(pg_cluster: PgCluster) -> Iterator[None]:
    with pg_cluster.app_may_create_databases():
        yield


@pytest.fixture
def db(pg_cluster: PgCluster, pg_database: str) -> str:
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute(USERS)
        setup.execute("INSERT INTO users SELECT i, 'u' || i, i FROM generate_series(1, 1000) i")
        setup.execute("CREATE SEQUENCE s")
    return pg_database


@pytest.fixture
def res(createdb: None, pg_cluster: PgCluster, db: str) -> Iterator[PostgresCloneResource]:
    r = open_resource(pg_cluster, db)
    yield r
    r.close()


@pytest.fixture(autouse=True)
def no_copies_left(pg_cluster: PgCluster) -> Iterator[None]:
    """Every copy goexd made is gone at the end of each test (dropped, or swapped in)."""
    yield
    assert not [d for d in databases(pg_cluster) if d.startswith("goex_")]


def seen(cluster: PgCluster, dbname: str, query: str) -> list[tuple[object, ...]]:
    with cluster.connect_app(dbname) as other:
        return other.execute(query).fetchall()


def databases(cluster: PgCluster) -> set[str]:
    with cluster.connect() as su:
        return {r[0] for r in su.execute("SELECT datname FROM pg_database").fetchall()}


def database_properties(cluster: PgCluster, dbname: str) -> tuple[object, ...]:
    """Who may do what (grantors left out), the connection limit, the comment, the owner."""
    with cluster.connect() as su:
        row = su.execute(
            "SELECT (SELECT array_agg(ARRAY[CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, "
            "a.privilege_type] ORDER BY 1) FROM aclexplode(d.datacl) a), "
            "d.datconnlimit, shobj_description(d.oid, 'pg_database'), d.datdba::regrole::text "
            "FROM pg_database d WHERE d.datname = %s",
            (dbname,),
        ).fetchone()
    assert row is not None
    return ({tuple(p) for p in row[0] or ()}, *row[1:])


def run(res: PostgresCloneResource, action_id: str, sql: str) -> dict[str, str]:
    """The engine's order: checkpoint, execute; returns the checkpoint undo needs."""
    cp = res.checkpoint(action_id)
    out = res.execute(q(sql), LIMITS, cp, None, None)
    return {**cp, **out.checkpoint_extra}


def test_undo_swaps_the_copy_back_after_drop_table_vacuum_and_sequences(
    res: PostgresCloneResource, pg_cluster: PgCluster, db: str
) -> None:
    before = res.fingerprint()
    t0 = time.monotonic()
    cp = run(res, "act_1", "DELETE FROM users WHERE id % 2 = 0; VACUUM users; DROP TABLE users; SELECT nextval('s')")
    assert clone_name("act_1") in databases(pg_cluster) and float(cp["clone_s"]) < 1
    assert seen(pg_cluster, db, "SELECT to_regclass('users') IS NULL, (SELECT last_value FROM s)") == [(True, 1)]
    report = res.rollback("act_1", cp)
    undo_s = time.monotonic() - t0
    assert report.verified and "fingerprint matches" in report.detail, report.detail
    assert res.fingerprint() == before
    assert seen(pg_cluster, db, "SELECT count(*), (SELECT is_called FROM s) FROM users") == [(1000, False)]
    assert not {clone_name("act_1"), old_name("act_1")} & databases(pg_cluster)
    assert undo_s < 3


def test_the_paper_scenarios_with_undo_and_with_commit(pg_cluster: PgCluster, pg_database: str, createdb: None) -> None:
    res = open_resource(pg_cluster, pg_database)
    try:
        empty = res.fingerprint()
        create = run(res, "act_c", USERS)
        after_create = res.fingerprint()
        add = run(res, "act_a", "INSERT INTO users VALUES (1, 'ann', 100), (2, 'bob', 200), (3, 'cy', 300)")
        after_add = res.fingerprint()
        bump = run(res, "act_b", "UPDATE users SET balance = balance + 500")
        assert seen(pg_cluster, pg_database, "SELECT sum(balance) FROM users") == [(2100,)]  # committed at once
        assert res.rollback("act_b", bump).verified and res.fingerprint() == after_add
        assert res.rollback("act_a", add).verified and res.fingerprint() == after_create
        assert res.rollback("act_c", create).verified and res.fingerprint() == empty
        assert seen(pg_cluster, pg_database, "SELECT to_regclass('users') IS NULL") == [(True,)]

        names = ("act_d", "act_e", "act_f")
        sqls = (USERS, "INSERT INTO users VALUES (1, 'ann', 100)", "UPDATE users SET balance = balance + 500")
        cps = [run(res, a, s) for a, s in zip(names, sqls, strict=True)]
        assert {clone_name(a) for a in names} <= databases(pg_cluster)
        res.commit_check(list(names))
        for a, cp in zip(names, cps, strict=True):
            res.commit(a, cp)
        assert not {clone_name(a) for a in names} & databases(pg_cluster)  # commit drops the copies
        assert seen(pg_cluster, pg_database, "SELECT name, balance FROM users") == [("ann", 600)]
    finally:
        res.close()


def test_other_connections_are_refused_at_once_and_by_name(
    res: PostgresCloneResource, pg_cluster: PgCluster, db: str
) -> None:
    with pg_cluster.connect_app(db):
        t0 = time.monotonic()
        with pytest.raises(FailedPrecondition, match=rf"database {db} has 1 other connection\(s\); the clone strategy"):
            res.checkpoint("act_busy")
        assert time.monotonic() - t0 < 1  # not PostgreSQL's 5 s wait
    assert clone_name("act_busy") not in databases(pg_cluster)
    cp = run(res, "act_2", "DELETE FROM users")
    other = pg_cluster.connect(db)
    try:
        t0 = time.monotonic()
        with pytest.raises(FailedPrecondition, match=rf"database {db} \(the database\) has 1 other connection"):
            res.rollback("act_2", cp)
        assert time.monotonic() - t0 < 1
    finally:
        other.close()
    assert res.rollback("act_2", cp).verified  # once they are gone, the undo goes through
    assert seen(pg_cluster, db, "SELECT count(*) FROM users") == [(1000,)]


def test_failed_actions_commit_and_client_inverses(res: PostgresCloneResource, pg_cluster: PgCluster, db: str) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_3")
    with pytest.raises(InvalidArgument, match="null value"):
        res.execute(q("UPDATE users SET balance = 0; INSERT INTO users (id) VALUES (0)"), LIMITS, cp, None, None)
    assert res.fingerprint() == before  # its transaction was rolled back
    report = res.rollback("act_3", cp)
    assert report.verified and "nothing to undo" in report.detail
    assert clone_name("act_3") not in databases(pg_cluster)
    # Outside a transaction, statements before the failing one stay: undo swaps the copy back in.
    cp = res.checkpoint("act_4")
    with pytest.raises(InvalidArgument, match='relation "nope" does not exist'):
        res.execute(q("DELETE FROM users; VACUUM nope"), LIMITS, cp, None, None)
    assert res.rollback("act_4", cp).verified and res.fingerprint() == before
    with pytest.raises(InvalidArgument, match="client inverses go unused"):
        res.check_inverse(q("DELETE FROM users"), q("SELECT 1"))
    assert res.test(q("VACUUM"), None, LIMITS, None) is None
    res.precheck(q("VACUUM users; CREATE INDEX CONCURRENTLY i ON users (name)"))  # what clone is for


def test_a_lost_connection_fails_the_action_and_undo_still_works(
    res: PostgresCloneResource, pg_cluster: PgCluster, db: str
) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_5")

    def terminate() -> None:
        with pg_cluster.connect() as su:
            su.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND usename = 'app'", (db,)
            )

    threading.Timer(0.3, terminate).start()
    with pytest.raises(Unavailable, match=r"lost the connection .* while the action ran"):
        res.execute(q("DELETE FROM users; SELECT pg_sleep(10)"), LIMITS, cp, None, None)
    assert res.rollback("act_5", cp).verified and res.fingerprint() == before


def test_a_new_resource_undoes_from_the_copy_and_database_properties_survive(
    res: PostgresCloneResource, pg_cluster: PgCluster, db: str
) -> None:
    with pg_cluster.connect() as su:
        su.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
        su.execute(f"GRANT CONNECT ON DATABASE {db} TO app")
        su.execute(f"COMMENT ON DATABASE {db} IS 'the app''s data'")
        su.execute(f"ALTER DATABASE {db} SET work_mem = '8MB'")
        su.execute(f"ALTER DATABASE {db} CONNECTION LIMIT 20")
    props = database_properties(pg_cluster, db)
    cp = run(res, "act_6", "TRUNCATE users")
    res.close()  # as after a goexd restart: the copy lives in the cluster
    again = open_resource(pg_cluster, db)
    try:
        report = again.rollback("act_6", cp)
        assert report.verified and "not carried over" not in report.detail, report.detail
        assert seen(pg_cluster, db, "SELECT count(*), current_setting('work_mem') FROM users") == [(1000, "8MB")]
        assert database_properties(pg_cluster, db) == props
        assert ("PUBLIC", "CONNECT") not in props[0]
        # Undoing again (an undo recorded as unfinished) finds the copy already swapped in.
        assert again.rollback("act_6", cp).detail.startswith("the copy had already been swapped in")
    finally:
        again.close()


def test_without_createdb_or_ownership_the_strategy_is_refused_at_the_start(pg_cluster: PgCluster, db: str) -> None:
    with pytest.raises(FailedPrecondition, match="needs the role app to have CREATEDB: grant it"):
        open_resource(pg_cluster, db)
    with pg_cluster.connect() as su:
        su.execute("ALTER ROLE app CREATEDB")
        su.execute(f"ALTER DATABASE {db} OWNER TO postgres")
    try:
        with pytest.raises(FailedPrecondition, match="needs the role app to own it"):
            open_resource(pg_cluster, db)
    finally:
        with pg_cluster.connect() as su:
            su.execute(f"ALTER DATABASE {db} OWNER TO app")
            su.execute("ALTER ROLE app NOCREATEDB")


def test_the_pre_action_fingerprint_is_taken_from_the_copy_off_the_critical_path(
    res: PostgresCloneResource, pg_cluster: PgCluster, db: str
) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_7")
    assert "pre" not in cp and cp["clone_oid"]  # the copy only: its fingerprint is taken on a thread
    out = res.execute(q("DELETE FROM users WHERE id > 10; SELECT pg_sleep(0.5)"), LIMITS, cp, None, None)
    assert out.checkpoint_extra == {"pre": before}  # ready by the end of the action: journaled with it
    # The copy is what undo verifies against: one changed behind goexd's back does not pass.
    with pg_cluster.connect_app(clone_name("act_7")) as sneaky:
        sneaky.execute("UPDATE users SET balance = -1 WHERE id = 1")
    report = res.rollback("act_7", {**cp, **out.checkpoint_extra})
    assert not report.verified and "differs from the pre-action one" in report.detail
    # Without a recorded fingerprint (goexd restarted before it was ready), undo takes it from the copy.
    cp = run(res, "act_8", "DELETE FROM users")
    again = open_resource(pg_cluster, db)
    try:
        report = again.rollback("act_8", {k: v for k, v in cp.items() if k != "pre"})
        assert report.verified and "fingerprint matches" in report.detail
    finally:
        again.close()
    assert seen(pg_cluster, db, "SELECT count(*) FROM users") == [(1000,)]
    # Committed while its fingerprint is being taken: the thread is stopped and the copy dropped.
    res.commit("act_9", res.checkpoint("act_9"))
    assert clone_name("act_9") not in databases(pg_cluster)
