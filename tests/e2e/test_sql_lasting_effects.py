"""Through a real goexd (PostgreSQL, inverse strategy), trial 15b findings 3 and 7: an enum value added is
refused before it runs (the test says it cannot be taken back), and a NOTIFY runs with the verdict "unknown:
not reversible" recorded once approved ([sql] irreversible), best effort: its undo restores the database, the
notification stays delivered."""

from __future__ import annotations

from typing import Any

import grpc
import psycopg

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_sql_inverse_corpus import pg_app, pg_secret, sql_spec  # noqa: F401 (fixtures)
from tests.services.postgres import PgCluster


def _session(d: DaemonProcess, cluster: PgCluster, database: str, secret: str) -> str:
    db = pb.DbResourceSpec(url=cluster.app_dsn_for(database), secret=secret)
    spec = pb.ResourceSpec(db=db, strategy=pb.UNDO_STRATEGY_INVERSE)
    return str(d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session.id)


def _submit(d: DaemonProcess, session: str, action: str, inverse: str, approval: str = "") -> pb.Action:
    req = apb.SubmitActionRequest(
        session_id=session, spec=sql_spec(action), inverse=sql_spec(inverse), approval=approval
    )
    return d.actions.SubmitAction(req).action


def test_enum_add_value_is_blocked_and_notify_runs_unknown(
    shared_daemon: DaemonProcess,
    pg_secret: str,  # noqa: F811
    pg_cluster: PgCluster,
    pg_database: str,
    pg_app: psycopg.Connection[Any],  # noqa: F811
) -> None:
    pg_app.execute("CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int PRIMARY KEY, m mood)")
    pg_app.execute("INSERT INTO t VALUES (1, 'ok'); LISTEN ch")
    session = _session(shared_daemon, pg_cluster, pg_database, pg_secret)

    blocked = _submit(shared_daemon, session, "ALTER TYPE mood ADD VALUE 'happy'", "SELECT 1")
    assert blocked.state == pb.ACTION_STATE_BLOCKED, blocked
    assert "cannot be taken back once it commits" in blocked.error and "DROP VALUE" in blocked.error, blocked.error
    labels = pg_app.execute("SELECT enumlabel FROM pg_enum ORDER BY enumsortorder").fetchall()
    assert [r[0] for r in labels] == ["sad", "ok"]

    notify, restore = "UPDATE t SET m = 'sad'; NOTIFY ch, 'hello'", "UPDATE t SET m = 'ok'"
    # TestReversibility tries it (nothing is sent: it never commits) and says what it cannot take back.
    req = apb.TestReversibilityRequest(session_id=session, spec=sql_spec(notify), inverse=sql_spec(restore))
    tried = shared_daemon.actions.TestReversibility(req).reversibility
    assert tried.verdict == pb.VERDICT_UNKNOWN and tried.detail.startswith("not reversible: NOTIFY ch"), tried
    # The policy holds it for an approval, as an irreversible HTTP call ([sql] irreversible = "approval").
    code, msg = status_of(lambda: _submit(shared_daemon, session, notify, restore))
    assert code == grpc.StatusCode.PERMISSION_DENIED, (code, msg)
    assert "statement 2 is not reversible: NOTIFY ch sends a notification" in msg, msg
    assert "[policy rule sql.irreversible]" in msg and "--approve" in msg, msg
    assert list(pg_app.notifies(timeout=0.5, stop_after=1)) == []  # neither sent anything
    assert pg_app.execute("SELECT m::text FROM t").fetchall() == [("ok",)]

    done = _submit(shared_daemon, session, notify, restore, approval="ann: the listeners expect it")
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    assert done.reversibility.verdict == pb.VERDICT_UNKNOWN
    assert done.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_BEST_EFFORT
    assert done.reversibility.detail.startswith("not reversible: NOTIFY ch sends a notification"), done.reversibility
    assert [n.payload for n in pg_app.notifies(timeout=2, stop_after=1)] == ["hello"]  # delivered at its commit

    [undone] = shared_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=done.id)).undone
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED
    assert undone.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_BEST_EFFORT
    assert pg_app.execute("SELECT m::text FROM t").fetchall() == [("ok",)]
    shared_daemon.sessions.CloseSession(sepb.CloseSessionRequest(session_id=session))
