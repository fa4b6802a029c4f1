"""Stopping goexd says what it interrupts, and draining waits for it (issue 19), with a real goexd process.

A clean stop interrupts what cannot outlive goexd: actions running, and actions pending in a
transaction-strategy database. goexd says so in its log at SIGTERM, and the Stop RPC answers it.
Draining (goexd --drain on a signal, or Stop with drain) refuses new sessions and actions with
UNAVAILABLE, and stops once those are resolved, or at the timeout."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

import goex
from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of


def _open(d: DaemonProcess, db: Path, workspace: Path) -> str:
    resources = [
        pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}")),
        pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(workspace))),
    ]
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=resources)).session.id


def _sql(d: DaemonProcess, session: str, text: str) -> pb.Action:
    spec = pb.ActionSpec(sql=pb.SqlAction(sql=text))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec)).action


def _shell(d: DaemonProcess, session: str, command: str, detach: bool = False) -> pb.Action:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", command]))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec, detach=detach)).action


def _daemon(tmp_path: Path, *args: str) -> DaemonProcess:
    root = tmp_path / "d"
    root.mkdir()
    return DaemonProcess(root, *args).start()


def _exits(d: DaemonProcess, within: float) -> int:
    assert d.proc is not None
    return d.proc.wait(within)


def _state(d: DaemonProcess, action_id: str) -> int:
    return d.actions.GetAction(apb.GetActionRequest(action_id=action_id)).action.state


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    setup.close()
    return path


def test_sigterm_logs_the_pending_sql_it_interrupts(tmp_path: Path, db: Path, workspace: Path) -> None:
    d = _daemon(tmp_path)
    try:
        s = _open(d, db, workspace)
        write = _sql(d, s, "INSERT INTO t VALUES (1)")
        kept = _shell(d, s, "echo hi > new.txt")  # a workspace action outlives goexd: not named
        assert d.stop() == 0
        log = d.log()
        assert f"1 action(s) interrupted: 1 pending sql (transaction strategy) ({write.id})" in log, log
        assert "cannot outlive goexd" in log and kept.id not in log.split("shutting down")[-1]
        d.start()
        assert _state(d, write.id) == pb.ACTION_STATE_INTERRUPTED
        assert _state(d, kept.id) == pb.ACTION_STATE_EXECUTED
    finally:
        d.stop()


def test_stop_rpc_answers_what_it_interrupts_and_stops(tmp_path: Path, db: Path, workspace: Path) -> None:
    d = _daemon(tmp_path)
    try:
        s = _open(d, db, workspace)
        write = _sql(d, s, "INSERT INTO t VALUES (1)")
        running = _shell(d, s, "sleep 30", detach=True)
        deadline = time.monotonic() + 10
        while _state(d, running.id) != pb.ACTION_STATE_RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        code, msg = status_of(lambda: d.admin.Stop(adpb.StopRequest(drain=True, drain_timeout=Duration(seconds=-1))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "drain_timeout" in msg
        assert d.admin.GetHealth(adpb.GetHealthRequest()).draining is False  # the refused call changed nothing
        answer = d.admin.Stop(adpb.StopRequest())
        assert {i.kind: list(i.action_ids) for i in answer.interrupted} == {
            "running": [running.id],
            "pending sql (transaction strategy)": [write.id],
        }
        assert answer.summary.startswith("2 action(s) interrupted") and not answer.draining
        assert _exits(d, 30) == 0
        assert "Stop requested; shutting down: 2 action(s) interrupted" in d.log()
        d.start()
        assert _state(d, write.id) == pb.ACTION_STATE_INTERRUPTED
        assert _state(d, running.id) == pb.ACTION_STATE_INTERRUPTED
    finally:
        d.stop()


def test_drain_on_sigterm_refuses_new_work_and_stops_once_the_sql_is_committed(
    tmp_path: Path, db: Path, workspace: Path
) -> None:
    d = _daemon(tmp_path, "--drain")
    try:
        s = _open(d, db, workspace)
        write = _sql(d, s, "INSERT INTO t VALUES (1)")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not d.admin.GetHealth(adpb.GetHealthRequest()).draining and time.monotonic() < deadline:
            time.sleep(0.05)
        for call in (
            lambda: _sql(d, s, "INSERT INTO t VALUES (2)"),
            lambda: _shell(d, s, "true"),
            lambda: _open(d, db, workspace),
        ):
            code, msg = status_of(call)
            assert code == grpc.StatusCode.UNAVAILABLE and "draining" in msg and write.id in msg, msg
        assert d.proc.poll() is None  # still waiting for the pending write
        d.actions.CommitActions(apb.CommitActionsRequest(session_id=s))
        assert _exits(d, 30) == 0
        assert "drained: nothing running or pending in a database transaction" in d.log()
        other = sqlite3.connect(db)
        assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
        other.close()
    finally:
        d.stop()


def test_drain_by_rpc_stops_at_its_timeout_and_says_what_it_interrupted(
    tmp_path: Path, db: Path, workspace: Path
) -> None:
    d = _daemon(tmp_path)
    try:
        s = _open(d, db, workspace)
        write = _sql(d, s, "INSERT INTO t VALUES (1)")
        with goex.Client(d.socket) as client:  # the Python client's way to the same RPC
            answer = client.stop(drain=True, drain_timeout_s=1)
        assert answer.draining and answer.interrupted == {"pending sql (transaction strategy)": (write.id,)}
        code, msg = status_of(lambda: _sql(d, s, "SELECT 1"))
        assert code == grpc.StatusCode.UNAVAILABLE and "draining" in msg
        assert _exits(d, 30) == 0
        log = d.log()
        assert "the drain timed out; shutting down: 1 action(s) interrupted" in log, log
        d.start()
        assert _state(d, write.id) == pb.ACTION_STATE_INTERRUPTED
    finally:
        d.stop()
