"""An undo asks the policy about the client inverse it is about to run (trial 15b, finding 1): an action accepted
under a daemon policy that allowed privileged SQL is not undone by its privileged inverse after goexd restarts
with one that refuses it. The refusal names the rule and the field, nothing runs (no file is written, the row
stays), the action stays pending; under the first policy again the same undo runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of


def _value(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT a FROM t").fetchone()[0])
    finally:
        conn.close()


def _daemon(root: Path, policy: Path, text: str) -> DaemonProcess:
    policy.write_text(text)
    return DaemonProcess(root, config_toml=f'[policy]\nfile = "{policy}"\n').start()


def _undo(d: DaemonProcess, session: str, action: str) -> list[pb.Action]:
    return list(d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=action), timeout=60).undone)


def test_an_undo_runs_no_inverse_the_policy_now_refuses(tmp_path: Path) -> None:
    root, policy, db, out = tmp_path / "daemon", tmp_path / "policy.toml", tmp_path / "app.db", tmp_path / "owned.db"
    root.mkdir()
    with sqlite3.connect(db) as conn:
        conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (0);")
    inverse = f"UPDATE t SET a = 0; ATTACH DATABASE '{out}' AS o; CREATE TABLE IF NOT EXISTS o.x (v)"

    d = _daemon(root, policy, '[sql]\nprivileged = "allow"\n')
    try:
        spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"), strategy=pb.UNDO_STRATEGY_INVERSE)
        session = d.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec])).session.id
        req = apb.SubmitActionRequest(
            session_id=session,
            spec=pb.ActionSpec(sql=pb.SqlAction(sql="UPDATE t SET a = 1")),
            inverse=pb.ActionSpec(sql=pb.SqlAction(sql=inverse)),
        )
        action = d.actions.SubmitAction(req, timeout=60).action
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    finally:
        assert d.stop() == 0
    assert _value(db) == 1
    out.unlink()  # written by the test before the action, which this policy allowed

    d = _daemon(root, policy, "")  # the defaults: privileged SQL denied
    try:
        code, msg = status_of(lambda: _undo(d, session, action.id))
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, msg)
        assert f"cannot undo action {action.id}: statement 2 of the inverse (inverse.sql.sql) is privileged" in msg
        assert "[policy rule sql.privileged]" in msg and "the action stays pending" in msg, msg
        assert not out.exists() and _value(db) == 1
        found = d.actions.GetAction(apb.GetActionRequest(action_id=action.id), timeout=60).action
        assert found.state == pb.ACTION_STATE_EXECUTED
    finally:
        assert d.stop() == 0
    assert "Traceback" not in d.log()

    d = _daemon(root, policy, '[sql]\nprivileged = "allow"\n')  # the control: the same undo runs
    try:
        [undone] = _undo(d, session, action.id)
        assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED
        assert _value(db) == 0 and out.exists()
    finally:
        assert d.stop() == 0
