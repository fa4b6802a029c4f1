"""The SQL cases of the inverse corpus (tests/corpus/sql.toml) through a real goexd, SQLite and
PostgreSQL: TestReversibility passes every right inverse and fails every wrong one with a diff
naming the change; a submit with the wrong inverse is blocked with that diff and changes nothing;
a submit with the right one runs, and its undo restores the database, verified."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.corpus import sql_cases
from tests.corpus.sql_cases import SqlCase
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import put_pg_secret
from tests.services.postgres import PgCluster

SECRET = "corpus-pg"


def sql_spec(text: str) -> pb.ActionSpec:
    return pb.ActionSpec(sql=pb.SqlAction(sql=text))


def run_case(d: DaemonProcess, session_id: str, case: SqlCase, state: Callable[[], Any]) -> None:
    before = state()

    def test(inverse: str) -> pb.Reversibility:
        req = apb.TestReversibilityRequest(session_id=session_id, spec=sql_spec(case.action), inverse=sql_spec(inverse))
        return d.actions.TestReversibility(req).reversibility

    def submit(inverse: str) -> pb.Action:
        req = apb.SubmitActionRequest(session_id=session_id, spec=sql_spec(case.action), inverse=sql_spec(inverse))
        return d.actions.SubmitAction(req).action

    right = test(case.right)
    assert right.verdict == pb.VERDICT_PASSED, right.detail
    wrong = test(case.wrong)
    assert wrong.verdict == pb.VERDICT_FAILED and case.wrong_diff in wrong.detail, wrong.detail
    assert state() == before  # a test changes nothing

    blocked = submit(case.wrong)
    assert blocked.state == pb.ACTION_STATE_BLOCKED and case.wrong_diff in blocked.error, blocked.error
    assert state() == before  # a blocked action has no side effect

    done = submit(case.right)
    assert done.state == pb.ACTION_STATE_EXECUTED and done.reversibility.verdict == pb.VERDICT_PASSED, done.error
    assert state() != before  # committed at once
    [undone] = d.actions.UndoAction(apb.UndoActionRequest(session_id=session_id, action_id=done.id)).undone
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED
    assert state() == before
    d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=session_id))


@pytest.mark.parametrize("case", sql_cases.of("sqlite", through_goexd=True), ids=lambda c: c.name)
def test_sqlite_case_through_goexd(case: SqlCase, shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    sql_cases.set_up_sqlite(path, case)
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{path}"), strategy=pb.UNDO_STRATEGY_INVERSE)
    session = shared_daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session
    run_case(shared_daemon, session.id, case, lambda: sql_cases.sqlite_state(path))


@pytest.fixture(scope="module")
def pg_secret(shared_daemon: DaemonProcess, pg_cluster: PgCluster) -> str:
    return put_pg_secret(shared_daemon, pg_cluster, SECRET)


@pytest.fixture
def pg_app(pg_cluster: PgCluster, pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect_app(pg_database) as conn:
        yield conn


@pytest.mark.parametrize("case", sql_cases.of("postgresql", through_goexd=True), ids=lambda c: c.name)
def test_postgres_case_through_goexd(
    case: SqlCase,
    shared_daemon: DaemonProcess,
    pg_secret: str,
    pg_cluster: PgCluster,
    pg_database: str,
    pg_app: psycopg.Connection[Any],
) -> None:
    sql_cases.set_up_postgres(pg_app, case)
    db = pb.DbResourceSpec(url=pg_cluster.app_dsn_for(pg_database), secret=pg_secret)
    spec = pb.ResourceSpec(db=db, strategy=pb.UNDO_STRATEGY_INVERSE)
    session = shared_daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session
    run_case(shared_daemon, session.id, case, lambda: sql_cases.postgres_state(pg_app))
