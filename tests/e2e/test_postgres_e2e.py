"""PostgreSQL through goexd (transaction strategy), its password from the vault: the paper's scenarios,
isolation, refusals, an unreachable server, a crash, and no password anywhere it should not be."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import psycopg
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.services.postgres import PgCluster


@pytest.fixture
def pg(daemon: DaemonProcess, pg_cluster: PgCluster, pg_database: str) -> Iterator[tuple[str, PgCluster]]:
    info = secpb.SecretInfo(
        name="pgpass",
        kind=secpb.SECRET_KIND_DSN,
        allowed_hosts=[f"{pg_cluster.host}:{pg_cluster.port}"],
        injection=secpb.Injection(dsn_password=secpb.DsnPasswordInjection()),
    )
    daemon.secrets.PutSecret(secpb.PutSecretRequest(info=info, value=pg_cluster.app_password.encode()))
    yield pg_cluster.app_dsn_for(pg_database), pg_cluster


def open_pg(d: DaemonProcess, dsn: str, secret: str = "pgpass") -> pb.Session:
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=dsn, secret=secret))
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session


def sql(d: DaemonProcess, session_id: str, text: str) -> pb.Action:
    spec = pb.ActionSpec(sql=pb.SqlAction(sql=text))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session_id, spec=spec)).action


def others_see(cluster: PgCluster, dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, password=cluster.app_password) as conn:
        return conn.execute(query).fetchall()


def test_paper_scenarios_on_postgres(daemon: DaemonProcess, pg: tuple[str, PgCluster]) -> None:
    dsn, cluster = pg
    s = open_pg(daemon, dsn)
    assert s.resources[0].uri == dsn and s.resources[0].kind == pb.RESOURCE_KIND_POSTGRES
    create = sql(daemon, s.id, "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, balance int)")
    add = sql(daemon, s.id, "INSERT INTO users (name, balance) VALUES ('ann', 10), ('bob', 20), ('cy', 30)")
    bump = sql(daemon, s.id, "UPDATE users SET balance = balance + 500")
    assert (add.sql.affected_rows, bump.sql.affected_rows) == (3, 3)
    assert others_see(cluster, dsn, "SELECT count(*) FROM pg_tables WHERE tablename = 'users'") == [(0,)]
    daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id, action_id=bump.id))
    total = sql(daemon, s.id, "SELECT sum(balance) FROM users")
    assert [list(r.values) for r in total.sql.rows] == [["60"]]
    described = daemon.sessions.DescribeSession(sepb.DescribeSessionRequest(session_id=s.id)).resources[0].text
    assert "users" in described and cluster.app_password not in described
    daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id))
    assert others_see(cluster, dsn, "SELECT name, balance FROM users ORDER BY id") == [
        ("ann", 10),
        ("bob", 20),
        ("cy", 30),
    ]
    assert create.state == pb.ACTION_STATE_EXECUTED
    # The password reached psycopg only: not the journal, the log, or any answer.
    password = cluster.app_password.encode()
    journal = b"".join(p.read_bytes() for p in daemon.state_dir.glob("journal.sqlite3*"))
    assert password not in journal and password not in daemon.log_path.read_bytes()


def test_refusals_on_postgres(daemon: DaemonProcess, pg: tuple[str, PgCluster]) -> None:
    dsn, _ = pg
    s = open_pg(daemon, dsn)
    first = sql(daemon, s.id, "CREATE TABLE t (x int)")
    for text, code, words in (
        ("SELEC 1", grpc.StatusCode.INVALID_ARGUMENT, "spec.sql.sql: "),
        ("ALTER SYSTEM SET work_mem = '1GB'", grpc.StatusCode.PERMISSION_DENIED, "privileged"),
        ("COPY t FROM PROGRAM 'id'", grpc.StatusCode.PERMISSION_DENIED, "privileged"),
        ("VACUUM t", grpc.StatusCode.INVALID_ARGUMENT, "clone"),
    ):
        got, msg = status_of(lambda t=text: sql(daemon, s.id, t))
        assert got == code and words in msg, (text, got, msg)
    failed = sql(daemon, s.id, "INSERT INTO t VALUES (1); INSERT INTO nope VALUES (2)")
    assert failed.state == pb.ACTION_STATE_FAILED and 'relation "nope" does not exist' in failed.error
    ok = sql(daemon, s.id, "SELECT count(*) FROM t")
    assert [list(r.values) for r in ok.sql.rows] == [["0"]] and first.state == pb.ACTION_STATE_EXECUTED


def test_session_open_on_postgres_bad_input(daemon: DaemonProcess, pg: tuple[str, PgCluster]) -> None:
    dsn, cluster = pg
    for url, secret, code, words in (
        (
            dsn.replace("app@", f"app:{cluster.app_password}@"),
            "",
            grpc.StatusCode.INVALID_ARGUMENT,
            "must not carry a password",
        ),
        (dsn, "", grpc.StatusCode.UNAVAILABLE, "--db-secret"),
        (dsn, "missing", grpc.StatusCode.NOT_FOUND, "secret 'missing' not found"),
        (dsn.replace(str(cluster.port), "1"), "pgpass", grpc.StatusCode.PERMISSION_DENIED, "may not be sent"),
    ):
        got, msg = status_of(lambda u=url, sec=secret: open_pg(daemon, u, sec))
        assert got == code and words in msg, (url, got, msg)
        assert cluster.app_password not in msg
    sessions = daemon.sessions.ListSessions(sepb.ListSessionsRequest(include_closed=True)).sessions
    assert [x for x in sessions if x.state == pb.SESSION_STATE_OPEN] == []


def test_pending_postgres_actions_are_reported_lost_after_a_crash(
    daemon: DaemonProcess, pg: tuple[str, PgCluster]
) -> None:
    dsn, cluster = pg
    s = open_pg(daemon, dsn)
    a = sql(daemon, s.id, "CREATE TABLE t (x int)")
    daemon.kill()
    daemon.start()
    after = daemon.actions.GetAction(apb.GetActionRequest(action_id=a.id)).action
    assert after.state == pb.ACTION_STATE_INTERRUPTED
    assert others_see(cluster, dsn, "SELECT count(*) FROM pg_tables WHERE tablename = 't'") == [(0,)]
    assert sql(daemon, s.id, "CREATE TABLE t (x int)").state == pb.ACTION_STATE_EXECUTED


def open_pg_with(d: DaemonProcess, dsn: str, strategy: int) -> pb.Session:
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=dsn, secret="pgpass"), strategy=strategy)  # type: ignore[arg-type]
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session


@pytest.fixture
def app_may_create_databases(pg: tuple[str, PgCluster]) -> Iterator[None]:
    """The clone strategy copies the database; the cluster is shared, so the grant is taken back."""
    with pg[1].app_may_create_databases():
        yield


@pytest.mark.usefixtures("app_may_create_databases")
def test_inverse_and_clone_strategies_on_postgres(daemon: DaemonProcess, pg: tuple[str, PgCluster]) -> None:
    dsn, cluster = pg
    with psycopg.connect(dsn, password=cluster.app_password, autocommit=True) as setup:
        setup.execute("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, balance int NOT NULL)")
        setup.execute("INSERT INTO users (name, balance) VALUES ('ann', 10), ('bob', 20)")

    inv = open_pg_with(daemon, dsn, pb.UNDO_STRATEGY_INVERSE)
    req = apb.SubmitActionRequest(
        session_id=inv.id,
        spec=pb.ActionSpec(sql=pb.SqlAction(sql="UPDATE users SET balance = balance + 500")),
        inverse=pb.ActionSpec(sql=pb.SqlAction(sql="UPDATE users SET balance = balance - 500")),
    )
    bump = daemon.actions.SubmitAction(req).action
    assert bump.state == pb.ACTION_STATE_EXECUTED and bump.reversibility.verdict == pb.VERDICT_PASSED
    assert others_see(cluster, dsn, "SELECT sum(balance) FROM users") == [(1030,)]  # committed at once
    daemon.actions.UndoAction(apb.UndoActionRequest(session_id=inv.id))
    assert others_see(cluster, dsn, "SELECT sum(balance) FROM users") == [(30,)]
    req.inverse.sql.sql = "SELECT 1"
    assert daemon.actions.SubmitAction(req).action.state == pb.ACTION_STATE_BLOCKED
    daemon.sessions.CloseSession(sepb.CloseSessionRequest(session_id=inv.id))

    clone = open_pg_with(daemon, dsn, pb.UNDO_STRATEGY_CLONE)
    wipe = sql(daemon, clone.id, "DROP TABLE users")
    assert wipe.state == pb.ACTION_STATE_EXECUTED, wipe.error
    [undone] = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=clone.id)).undone
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert others_see(cluster, dsn, "SELECT name, balance FROM users ORDER BY id") == [("ann", 10), ("bob", 20)]
