"""SQLite databases through goexd with the transaction strategy: the paper's scenarios, isolation,
bad input, partial commits, lost transactions and a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from goexd.engine.journal import Journal
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of


def open_db(d: DaemonProcess, db: Path, fs: Path | None = None) -> pb.Session:
    resources = [pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"))]
    if fs is not None:
        resources.append(pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(fs))))
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=resources)).session


def sql(d: DaemonProcess, session_id: str, text: str, timeout_s: float = 0) -> pb.Action:
    spec = pb.ActionSpec(sql=pb.SqlAction(sql=text))
    if timeout_s:
        spec.limits.timeout.CopyFrom(Duration(nanos=int(timeout_s * 1e9)))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session_id, spec=spec)).action


def rows(action: pb.Action) -> list[list[str]]:
    return [list(r.values) for r in action.sql.rows]


def seen_by_others(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as other:
        return other.execute(query).fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


def test_paper_scenarios_undo_and_commit(shared_daemon: DaemonProcess, db: Path) -> None:
    s = open_db(shared_daemon, db)
    assert [(r.kind, r.strategy) for r in s.resources] == [(pb.RESOURCE_KIND_SQLITE, pb.UNDO_STRATEGY_TRANSACTION)]
    create = sql(
        shared_daemon, s.id, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER)"
    )
    add = sql(shared_daemon, s.id, "INSERT INTO users (name, balance) VALUES ('ann', 10), ('bob', 20), ('cy', 30)")
    bump = sql(shared_daemon, s.id, "UPDATE users SET balance = balance + 500")
    assert (add.sql.affected_rows, bump.sql.affected_rows) == (3, 3)
    assert bump.state == pb.ACTION_STATE_EXECUTED and "savepoint" in bump.reversibility.detail
    assert seen_by_others(db, "SELECT name FROM sqlite_master") == []  # nothing visible before the commit

    undone = shared_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id)).undone
    assert [a.id for a in undone] == [bump.id]
    assert rows(sql(shared_daemon, s.id, "SELECT sum(balance) FROM users")) == [["60"]]
    described = shared_daemon.sessions.DescribeSession(sepb.DescribeSessionRequest(session_id=s.id)).resources
    assert "users" in described[0].text and "balance" in described[0].text and "ann" not in described[0].text
    with_rows = shared_daemon.sessions.DescribeSession(
        sepb.DescribeSessionRequest(session_id=s.id, include_samples=True)
    )
    assert "ann" in with_rows.resources[0].text and str(db) not in with_rows.resources[0].text
    undone_to = shared_daemon.actions.UndoTo(apb.UndoToRequest(action_id=add.id)).undone  # the queries since then
    assert add.id not in [a.id for a in undone_to]
    assert rows(sql(shared_daemon, s.id, "SELECT count(*) FROM users")) == [["3"]]

    committed = shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id)).committed
    assert [create.id, add.id] == [a.id for a in committed][:2]
    assert seen_by_others(db, "SELECT name, balance FROM users ORDER BY id") == [("ann", 10), ("bob", 20), ("cy", 30)]
    shared_daemon.actions.UndoTo(apb.UndoToRequest(action_id=create.id))  # nothing pending: a no-op


def test_bad_sql_is_refused_before_it_runs_and_the_transaction_stays_usable(
    shared_daemon: DaemonProcess, db: Path, tmp_path: Path
) -> None:
    s = open_db(shared_daemon, db)
    first = sql(shared_daemon, s.id, "CREATE TABLE t (x INTEGER)")
    for text, code, words in (
        ("SELEC 1", grpc.StatusCode.INVALID_ARGUMENT, "spec.sql.sql: "),
        (f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x", grpc.StatusCode.PERMISSION_DENIED, "privileged"),
        ("COMMIT", grpc.StatusCode.INVALID_ARGUMENT, "savepoint"),
        ("", grpc.StatusCode.INVALID_ARGUMENT, "spec.sql.sql: must not be empty"),
    ):
        got, msg = status_of(lambda t=text: sql(shared_daemon, s.id, t))
        assert got == code and words in msg, (text, got, msg)
    failed = sql(shared_daemon, s.id, "INSERT INTO t VALUES (1); INSERT INTO nope VALUES (2)")
    assert failed.state == pb.ACTION_STATE_FAILED and "no such table: nope" in failed.error
    ok = sql(shared_daemon, s.id, "SELECT count(*) FROM t")
    assert rows(ok) == [["0"]]  # the failed action's first statement was rolled back with it
    listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=s.id)).actions
    # Bad input leaves no trace; the policy's refusal is recorded as a BLOCKED action that never ran.
    assert [a.state for a in listed] == [
        pb.ACTION_STATE_EXECUTED,
        pb.ACTION_STATE_BLOCKED,
        pb.ACTION_STATE_FAILED,
        pb.ACTION_STATE_COMMITTED,  # a read is resolved at once
    ]
    assert [listed[0].id, listed[2].id, listed[3].id] == [first.id, failed.id, ok.id]
    assert "privileged" in listed[1].error and "policy rule sql.privileged" in listed[1].error
    assert not (tmp_path / "x.db").exists()


def test_one_transaction_commits_whole(shared_daemon: DaemonProcess, db: Path, workspace: Path) -> None:
    s = open_db(shared_daemon, db, fs=workspace)
    a = sql(shared_daemon, s.id, "CREATE TABLE t (x INTEGER)")
    b = sql(shared_daemon, s.id, "INSERT INTO t VALUES (1)")
    code, msg = status_of(
        lambda: shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id, up_to_action_id=a.id))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "commits whole" in msg and b.id in msg
    pending = shared_daemon.actions.ListActions(
        apb.ListActionsRequest(session_id=s.id, states=[pb.ACTION_STATE_EXECUTED])
    )
    assert [x.id for x in pending.actions] == [a.id, b.id]  # the refused commit changed nothing
    shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id))
    assert seen_by_others(db, "SELECT x FROM t") == [(1,)]


def test_a_write_stopped_by_its_timeout_takes_the_pending_actions_with_it(
    shared_daemon: DaemonProcess, db: Path
) -> None:
    s = open_db(shared_daemon, db)
    create = sql(shared_daemon, s.id, "CREATE TABLE t (x INTEGER)")
    forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) INSERT INTO t SELECT i FROM n"
    stopped = sql(shared_daemon, s.id, forever, timeout_s=0.5)
    assert stopped.state == pb.ACTION_STATE_FAILED and "timeout" in stopped.error and create.id in stopped.error
    lost = shared_daemon.actions.GetAction(apb.GetActionRequest(action_id=create.id)).action
    assert lost.state == pb.ACTION_STATE_INTERRUPTED and "discarded" in lost.error
    assert rows(sql(shared_daemon, s.id, "SELECT count(*) FROM sqlite_master WHERE name = 't'")) == [["0"]]


def test_pending_actions_are_reported_lost_after_a_crash(daemon: DaemonProcess, db: Path) -> None:
    s = open_db(daemon, db)
    a = sql(daemon, s.id, "CREATE TABLE t (x INTEGER)")
    daemon.kill()
    daemon.start()
    after = daemon.actions.GetAction(apb.GetActionRequest(action_id=a.id)).action
    assert after.state == pb.ACTION_STATE_INTERRUPTED and "rolled that transaction back" in after.error
    assert seen_by_others(db, "SELECT name FROM sqlite_master") == []
    again = sql(daemon, s.id, "CREATE TABLE t (x INTEGER)")  # the session goes on with a new transaction
    assert again.state == pb.ACTION_STATE_EXECUTED


def test_session_open_refuses_bad_database_urls(shared_daemon: DaemonProcess, tmp_path: Path, workspace: Path) -> None:
    for url, words in (
        ("sqlite://relative.db", "not a sqlite:///ABSOLUTE/PATH URL"),
        (f"sqlite://{tmp_path}/missing/app.db", "does not exist"),
        (f"sqlite://{tmp_path}", "is a directory"),
        (f"sqlite://{shared_daemon.state_dir}/x.db", "state directory"),
    ):
        code, msg = status_of(
            lambda u=url: shared_daemon.sessions.CreateSession(
                sepb.CreateSessionRequest(resources=[pb.ResourceSpec(db=pb.DbResourceSpec(url=u))])
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in msg, (url, msg)
    code, msg = status_of(lambda: open_db(shared_daemon, workspace / "inside.db", fs=workspace))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "overlap" in msg


def open_inverse(d: DaemonProcess, db: Path) -> pb.Session:
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL)")
        setup.execute("INSERT INTO users (name, balance) VALUES ('ann', 10), ('bob', 20)")
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"), strategy=pb.UNDO_STRATEGY_INVERSE)
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session


def sql_with_inverse(d: DaemonProcess, session_id: str, text: str, inverse: str | None) -> pb.Action:
    req = apb.SubmitActionRequest(session_id=session_id, spec=pb.ActionSpec(sql=pb.SqlAction(sql=text)))
    if inverse is not None:
        req.inverse.CopyFrom(pb.ActionSpec(sql=pb.SqlAction(sql=inverse)))
    return d.actions.SubmitAction(req).action


def test_inverse_strategy_tests_the_pair_commits_at_once_and_undoes_by_the_inverse(
    shared_daemon: DaemonProcess, db: Path
) -> None:
    s = open_inverse(shared_daemon, db)
    bump = sql_with_inverse(
        shared_daemon, s.id, "UPDATE users SET balance = balance + 500", "UPDATE users SET balance = balance - 500"
    )
    assert bump.state == pb.ACTION_STATE_EXECUTED and bump.reversibility.verdict == pb.VERDICT_PASSED
    assert "rolled-back transaction" in bump.reversibility.detail and bump.inverse.sql.sql.endswith("- 500")
    assert seen_by_others(db, "SELECT balance FROM users ORDER BY id") == [(510,), (520,)]  # committed at once

    [undone] = shared_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id)).undone
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED
    assert seen_by_others(db, "SELECT balance FROM users ORDER BY id") == [(10,), (20,)]

    wrong = sql_with_inverse(shared_daemon, s.id, "DELETE FROM users WHERE name = 'bob'", "SELECT 1")
    assert wrong.state == pb.ACTION_STATE_BLOCKED and "users: 2 → 1 rows: 1 removed" in wrong.error
    assert seen_by_others(db, "SELECT count(*) FROM users") == [(2,)]  # a blocked action has no side effect

    code, msg = status_of(lambda: sql_with_inverse(shared_daemon, s.id, "DELETE FROM users", None))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("inverse: ")
    read = sql_with_inverse(shared_daemon, s.id, "SELECT name FROM users ORDER BY id", None)
    assert (
        rows(read) == [["ann"], ["bob"]] and read.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_READ_ONLY
    )


def test_test_reversibility_changes_nothing(shared_daemon: DaemonProcess, db: Path, tmp_path: Path) -> None:
    s = open_inverse(shared_daemon, db)
    before = seen_by_others(db, "SELECT * FROM users")
    req = apb.TestReversibilityRequest(
        session_id=s.id,
        spec=pb.ActionSpec(sql=pb.SqlAction(sql="INSERT INTO users (name, balance) VALUES ('cy', 1)")),
        inverse=pb.ActionSpec(sql=pb.SqlAction(sql="DELETE FROM users WHERE name = 'cy'")),
    )
    verdict = shared_daemon.actions.TestReversibility(req).reversibility
    assert verdict.verdict == pb.VERDICT_PASSED and verdict.HasField("tested_at")
    req.inverse.sql.sql = "SELECT 1"
    assert shared_daemon.actions.TestReversibility(req).reversibility.verdict == pb.VERDICT_FAILED
    assert seen_by_others(db, "SELECT * FROM users") == before
    assert list(shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=s.id)).actions) == []

    tx = open_db(shared_daemon, tmp_path / "tx.db")
    code, msg = status_of(
        lambda: shared_daemon.actions.TestReversibility(
            apb.TestReversibilityRequest(session_id=tx.id, spec=pb.ActionSpec(sql=pb.SqlAction(sql="SELECT 1")))
        )
    )
    assert code == grpc.StatusCode.UNIMPLEMENTED and "inverse strategy" in msg


def test_clone_strategy_takes_back_even_a_vacuum_and_survives_a_restart(daemon: DaemonProcess, db: Path) -> None:
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
        setup.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"), strategy=pb.UNDO_STRATEGY_CLONE)
    s = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session
    wipe = sql(daemon, s.id, "DELETE FROM t; VACUUM")
    assert wipe.state == pb.ACTION_STATE_EXECUTED and seen_by_others(db, "SELECT count(*) FROM t") == [(0,)]
    assert len(list((daemon.state_dir / "db").glob("*.sqlite"))) == 1
    daemon.stop()
    daemon.start()  # the clone is on disk: the pending action stays undoable
    [undone] = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id)).undone
    assert undone.reversibility.verdict == pb.VERDICT_PASSED
    assert seen_by_others(db, "SELECT count(*) FROM t") == [(100,)]
    assert list((daemon.state_dir / "db").glob("*.sqlite")) == []


def test_a_crash_while_committing_is_reported_as_unknown_not_as_rolled_back(daemon: DaemonProcess, db: Path) -> None:
    s = open_db(daemon, db)
    a = sql(daemon, s.id, "CREATE TABLE t (x INTEGER)")
    daemon.kill()
    # What the journal holds when goexd dies between its "commit started" note and the COMMITTED row.
    journal = Journal(daemon.state_dir / "journal.sqlite3")
    journal.update(a.id, note="commit started")
    journal.close()
    daemon.start()
    after = daemon.actions.GetAction(apb.GetActionRequest(action_id=a.id)).action
    assert after.state == pb.ACTION_STATE_INTERRUPTED and "unknown" in after.error
