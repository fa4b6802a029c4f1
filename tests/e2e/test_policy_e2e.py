"""Damage confinement through a real goexd: session policies over the daemon's policy file, BLOCKED
actions that never ran, approvals, CheckPolicy, and a bad policy refused with its line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.services.postgres import PgCluster


def open_db(d: DaemonProcess, url: str, policy: str = "", secret: str = "") -> pb.Session:
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=url, secret=secret))
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec], policy_toml=policy)).session


def sql(d: DaemonProcess, session_id: str, text: str, approval: str = "") -> pb.Action:
    spec = pb.ActionSpec(sql=pb.SqlAction(sql=text))
    req = apb.SubmitActionRequest(session_id=session_id, spec=spec, approval=approval)
    return d.actions.SubmitAction(req).action


def listed(d: DaemonProcess, session_id: str) -> list[pb.Action]:
    return list(d.actions.ListActions(apb.ListActionsRequest(session_id=session_id)).actions)


def tables(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]


def test_a_bad_session_policy_is_refused_with_its_line_and_opens_nothing(daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    got, msg = status_of(lambda: open_db(daemon, f"sqlite:///{db}", '[sql]\nwrite = "allow"\n\n[sql.extra]\n'))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "policy_toml: line 4" in msg, msg
    got, msg = status_of(lambda: open_db(daemon, f"sqlite:///{db}", "[http]\nmethods = [GET]\n"))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "policy_toml: line 2" in msg and "invalid TOML" in msg
    sessions = daemon.sessions.ListSessions(sepb.ListSessionsRequest(include_closed=True)).sessions
    assert list(sessions) == []
    open_db(daemon, f"sqlite:///{db}")  # the resource was not left held


def test_check_policy_explains_the_first_error_with_its_line(shared_daemon: DaemonProcess) -> None:
    ok = shared_daemon.admin.CheckPolicy(adpb.CheckPolicyRequest(toml='[sql]\nprivileged = "allow"\n'))
    assert ok.ok and list(ok.errors) == []
    bad = shared_daemon.admin.CheckPolicy(adpb.CheckPolicyRequest(toml='[http]\nirreversible = "maybe"\n'))
    assert not bad.ok and len(bad.errors) == 1
    assert bad.errors[0].line == 2 and "http.irreversible" in bad.errors[0].message
    assert '"allow", "deny" or "approval"' in bad.errors[0].message


def test_approval_is_needed_where_the_policy_says_and_is_recorded(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    s = open_db(shared_daemon, f"sqlite:///{db}", '[sql]\nddl = "approval"\n')
    got, msg = status_of(
        lambda: sql(shared_daemon, s.id, "CREATE TABLE users (id INTEGER PRIMARY KEY, balance INTEGER)")
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED
    assert "policy rule sql.ddl" in msg and "explicit approval" in msg and "recorded as blocked action" in msg
    blocked = listed(shared_daemon, s.id)
    assert [a.state for a in blocked] == [pb.ACTION_STATE_BLOCKED]
    assert "needs an explicit approval" in blocked[0].error and blocked[0].approval == ""
    got, _ = status_of(lambda: sql(shared_daemon, s.id, "CREATE TABLE t (x)", approval="x" * 501))
    assert got == grpc.StatusCode.INVALID_ARGUMENT

    approved = sql(shared_daemon, s.id, "CREATE TABLE users (id INTEGER PRIMARY KEY, balance INTEGER)", "ann, ticket 7")
    assert approved.state == pb.ACTION_STATE_EXECUTED and approved.approval == "ann, ticket 7"
    assert sql(shared_daemon, s.id, "INSERT INTO users (balance) VALUES (10)").state == pb.ACTION_STATE_EXECUTED
    shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id))
    assert tables(db) == ["users"]
    got_again = shared_daemon.actions.GetAction(apb.GetActionRequest(action_id=approved.id)).action
    assert got_again.approval == "ann, ticket 7"


def test_an_approval_never_overrides_a_deny(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    s = open_db(shared_daemon, f"sqlite:///{db}")
    got, msg = status_of(
        lambda: sql(shared_daemon, s.id, f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x", approval="please")
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED and "policy rule sql.privileged" in msg
    assert not (tmp_path / "x.db").exists()


def _pg_secret(cluster: PgCluster) -> secpb.PutSecretRequest:
    info = secpb.SecretInfo(
        name="pgpass",
        kind=secpb.SECRET_KIND_DSN,
        allowed_hosts=[f"{cluster.host}:{cluster.port}"],
        injection=secpb.Injection(dsn_password=secpb.DsnPasswordInjection()),
    )
    return secpb.PutSecretRequest(info=info, value=cluster.app_password.encode())


def test_privileged_sql_on_postgres_is_the_daemons_call_and_a_session_cannot_allow_it(
    tmp_path: Path, pg_cluster: PgCluster, pg_database: str
) -> None:
    dsn, cluster = pg_cluster.app_dsn_for(pg_database), pg_cluster
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[sql]\nprivileged = "allow"\n')
    strict_root, lenient_root = tmp_path / "strict", tmp_path / "lenient"
    strict_root.mkdir()
    lenient_root.mkdir()
    strict = DaemonProcess(strict_root).start()  # the built-in default: privileged = "deny"
    try:
        strict.secrets.PutSecret(_pg_secret(cluster))
        s = open_db(strict, dsn, '[sql]\nprivileged = "allow"\n', secret="pgpass")  # asks for more than it may
        sql(strict, s.id, "CREATE TABLE t (x int)")
        got, msg = status_of(lambda: sql(strict, s.id, "GRANT SELECT ON t TO PUBLIC"))
        assert got == grpc.StatusCode.PERMISSION_DENIED and "GRANT" in msg and "sql.privileged" in msg
        assert "the daemon's policy" in msg
        strict.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id))
        strict.sessions.CloseSession(sepb.CloseSessionRequest(session_id=s.id))
    finally:
        assert strict.stop() == 0

    lenient = DaemonProcess(lenient_root, env={"GOEXD_POLICY__FILE": str(policy_file)}).start()
    try:
        lenient.secrets.PutSecret(_pg_secret(cluster))
        s = open_db(lenient, dsn, secret="pgpass")
        granted = sql(lenient, s.id, "GRANT SELECT ON t TO PUBLIC")
        assert granted.state == pb.ACTION_STATE_EXECUTED, granted.error
        seen = sql(lenient, s.id, "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'PUBLIC'")
        assert [list(r.values) for r in seen.sql.rows] == [["1"]]
        undone = lenient.actions.UndoAction(apb.UndoActionRequest(session_id=s.id, action_id=granted.id, cascade=True))
        assert undone.undone[-1].state == pb.ACTION_STATE_UNDONE
        lenient.sessions.CloseSession(sepb.CloseSessionRequest(session_id=s.id))
        # ... and a session may still narrow what the daemon allows
        narrow = open_db(lenient, dsn, '[sql]\nprivileged = "deny"\n', secret="pgpass")
        got, msg = status_of(lambda: sql(lenient, narrow.id, "GRANT SELECT ON t TO PUBLIC"))
        assert got == grpc.StatusCode.PERMISSION_DENIED and "sql.privileged" in msg
        assert "the daemon's policy" not in msg
    finally:
        assert lenient.stop() == 0


def test_sandbox_limits_and_network_are_confined(shared_daemon: DaemonProcess, workspace: Path) -> None:
    policy = '[sandbox]\nmax_timeout_s = 5\nnetwork = "deny"\n'
    fs = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(workspace)))
    s = shared_daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[fs], policy_toml=policy)).session
    long = pb.ActionSpec(shell=pb.ShellAction(argv=["true"]), limits=pb.SandboxLimits(timeout=Duration(seconds=10)))
    got, msg = status_of(
        lambda: shared_daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=long))
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED and "sandbox.max_timeout_s" in msg
    net = pb.ActionSpec(shell=pb.ShellAction(argv=["true"]), egress=pb.Egress(hosts=["example.com"]))
    got, msg = status_of(lambda: shared_daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=net)))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "sandbox.network" in msg
    ok = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo hi > made.txt"]))
    done = shared_daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=ok)).action
    assert done.state == pb.ACTION_STATE_EXECUTED and (workspace / "made.txt").read_text() == "hi\n"
    assert [a.state for a in listed(shared_daemon, s.id)] == [
        pb.ACTION_STATE_BLOCKED,
        pb.ACTION_STATE_BLOCKED,
        pb.ACTION_STATE_EXECUTED,
    ]


def test_the_daemon_policy_file_is_the_default_and_a_session_policy_only_narrows_it(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[sql]\nwrite = "deny"\n\n[[deny]]\nname = "no-admin"\nin = "url"\ncontains = "/admin"\n')
    root = tmp_path / "d"
    root.mkdir()
    d = DaemonProcess(root, env={"GOEXD_POLICY__FILE": str(policy_file)}).start()
    try:
        db = tmp_path / "app.db"
        sqlite3.connect(db).executescript("CREATE TABLE t (x INTEGER);")
        s = open_db(d, f"sqlite:///{db}")
        got, msg = status_of(lambda: sql(d, s.id, "INSERT INTO t VALUES (1)"))
        assert got == grpc.StatusCode.PERMISSION_DENIED and "sql.write" in msg
        d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=s.id))
        s = open_db(d, f"sqlite:///{db}", '[sql]\nwrite = "allow"\nread = "deny"\n')
        got, msg = status_of(lambda: sql(d, s.id, "INSERT INTO t VALUES (1)"))  # the session cannot loosen it
        assert got == grpc.StatusCode.PERMISSION_DENIED and "sql.write" in msg and "the daemon's policy" in msg
        got, msg = status_of(lambda: sql(d, s.id, "SELECT * FROM t"))  # but it can narrow
        assert got == grpc.StatusCode.PERMISSION_DENIED and "sql.read" in msg
        assert [r[0] for r in sqlite3.connect(db).execute("SELECT count(*) FROM t")] == [0]
    finally:
        assert d.stop() == 0

    policy_file.write_text('[sql]\nwrite = "deny"\n\n[http]\nmethod = ["GET"]\n')
    broken = DaemonProcess(root, env={"GOEXD_POLICY__FILE": str(policy_file)})
    with pytest.raises(RuntimeError) as info:
        broken.start()
    assert f"policy file {policy_file}, line 5" in str(info.value) and "http.method" in str(info.value)
