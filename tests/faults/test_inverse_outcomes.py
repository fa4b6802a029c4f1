"""kill -9 at the exact points where an inverse-strategy action's outcome is in doubt, SQLite and PostgreSQL.

A real goexd dies (SIGKILL, by its test-only fault points) after or before the database COMMIT
of an action, or of its inverse during an undo, with the journal not yet told; it is started
again, and its recovery must leave the journal agreeing with the database:
- the action committed  -> EXECUTED (its rows stay), and undoable again;
- it did not            -> INTERRUPTED, nothing in the database;
- the inverse committed -> UNDONE, the inverse not run a second time (the counter at 0, not -1);
- it did not            -> UNDONE, the inverse run once.
Controls (SQLite): the same crashes with goex's marker rows deleted before the restart give the
wrong answers the markers prevent, so these tests cannot pass without them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.faults.crash import armed, crash, restart, stop_cleanly
from tests.services.postgres import PgCluster

ACTION = "UPDATE counter SET n = n + 1; INSERT INTO items (name) VALUES ('a')"
INVERSE = "DELETE FROM items WHERE name = 'a'; UPDATE counter SET n = n - 1"
SETUP = ["CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)", "CREATE TABLE items (name TEXT)"]
BEFORE = (0, 0)  # (counter, items): as before the action
APPLIED = (1, 1)  # the action's effect, once


@dataclass
class Db:
    """The database under test, as seen from outside goexd."""

    tag: str  # its fault points' tag
    spec: pb.ResourceSpec
    query: Callable[[str], list[tuple[object, ...]]]

    def state(self) -> tuple[int, int]:
        [(n,)] = self.query("SELECT n FROM counter")
        [(items,)] = self.query("SELECT count(*) FROM items")
        return int(str(n)), int(str(items))

    def markers(self) -> int:
        [(count,)] = self.query("SELECT count(*) FROM goex_outcomes")
        return int(str(count))


def sqlite_db(path: Path) -> Db:
    with sqlite3.connect(path) as setup:
        for statement in SETUP:
            setup.execute(statement)
        setup.execute("INSERT INTO counter VALUES (1, 0)")

    def query(text: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute(text).fetchall()

    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{path}"), strategy=pb.UNDO_STRATEGY_INVERSE)
    return Db("sqlite-inverse", spec, query)


def postgres_db(d: DaemonProcess, cluster: PgCluster, name: str) -> Db:
    with cluster.connect_app(name) as setup:
        for statement in SETUP:
            setup.execute(statement)
        setup.execute("INSERT INTO counter VALUES (1, 0)")
    info = secpb.SecretInfo(
        name="pgpass",
        kind=secpb.SECRET_KIND_DSN,
        allowed_hosts=[f"{cluster.host}:{cluster.port}"],
        injection=secpb.Injection(dsn_password=secpb.DsnPasswordInjection()),
    )
    d.secrets.PutSecret(secpb.PutSecretRequest(info=info, value=cluster.app_password.encode()))

    def query(text: str) -> list[tuple[object, ...]]:
        with cluster.connect_app(name) as conn:
            return conn.execute(text).fetchall()

    spec = pb.ResourceSpec(
        db=pb.DbResourceSpec(url=cluster.app_dsn_for(name), secret="pgpass"), strategy=pb.UNDO_STRATEGY_INVERSE
    )
    return Db("postgres-inverse", spec, query)


@dataclass
class Run:
    """One goexd armed at one fault point, over one database, with a session open on it."""

    d: DaemonProcess
    db: Db
    session: str

    def submit(self) -> pb.Action:
        req = apb.SubmitActionRequest(session_id=self.session, spec=pb.ActionSpec(sql=pb.SqlAction(sql=ACTION)))
        req.inverse.CopyFrom(pb.ActionSpec(sql=pb.SqlAction(sql=INVERSE)))
        return self.d.actions.SubmitAction(req).action

    def undo(self) -> list[pb.Action]:
        return list(self.d.actions.UndoAction(apb.UndoActionRequest(session_id=self.session)).undone)

    def actions(self) -> list[pb.Action]:
        return list(self.d.actions.ListActions(apb.ListActionsRequest(session_id=self.session)).actions)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(backend: str, point: str, tmp_path: Path, request: pytest.FixtureRequest) -> Run:
    """goexd armed at `point` for the backend's tag, with the database set up and a session open."""
    tag = f"{backend}-inverse"
    d = armed(tmp_path / "daemon", f"{point}:{tag}")
    request.addfinalizer(d.kill)  # whatever happens; a clean stop is each test's own last step
    if backend == "sqlite":
        (tmp_path / "projects").mkdir()
        db = sqlite_db(tmp_path / "projects" / "app.db")
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        db = postgres_db(d, cluster, request.getfixturevalue("pg_database"))
    session = d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[db.spec])).session.id
    return Run(d, db, session)


@pytest.fixture
def make(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Run]]:
    yield lambda point: start(backend, point, tmp_path, request)


def test_killed_after_the_action_committed_it_is_executed_and_undoable(make: Callable[[str], Run]) -> None:
    run = make("action-after-commit")
    crash(run.d, f"action-after-commit:{run.db.tag}", run.submit)
    assert run.db.state() == APPLIED and run.db.markers() == 1  # the database kept it, and says so
    restart(run.d)
    [a] = run.actions()
    assert a.state == pb.ACTION_STATE_EXECUTED, a
    assert "committed the action before goexd stopped" in a.reversibility.detail
    assert a.reversibility.verdict == pb.VERDICT_PASSED  # the test it passed before it ran, journaled with RUNNING
    assert run.db.state() == APPLIED
    # goex's describe does not show its marker table (the user's catalog does: documented).
    described = run.d.sessions.DescribeSession(sepb.DescribeSessionRequest(session_id=run.session)).resources[0]
    assert "goex_outcomes" not in described.text and "counter" in described.text
    [undone] = run.undo()  # undoable again: its inverse runs, verified (the fingerprints leave the markers out)
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED, undone
    assert run.db.state() == BEFORE and run.db.markers() == 0  # settled: no marker left behind
    stop_cleanly(run.d)


def test_killed_before_the_action_committed_it_is_interrupted_with_nothing_applied(
    make: Callable[[str], Run],
) -> None:
    run = make("action-before-commit")
    crash(run.d, f"action-before-commit:{run.db.tag}", run.submit)
    assert run.db.state() == BEFORE and run.db.markers() == 0
    restart(run.d)
    [a] = run.actions()
    assert a.state == pb.ACTION_STATE_INTERRUPTED and "nothing to undo" in a.error, a
    assert run.db.state() == BEFORE
    stop_cleanly(run.d)


def test_killed_in_an_undo_after_the_inverse_committed_it_is_undone_and_not_run_again(
    make: Callable[[str], Run],
) -> None:
    run = make("undo-after-commit")
    a = run.submit()
    assert a.state == pb.ACTION_STATE_EXECUTED and run.db.state() == APPLIED
    crash(run.d, f"undo-after-commit:{run.db.tag}", run.undo)
    assert run.db.state() == BEFORE  # the inverse committed; the journal still says undo started
    restart(run.d)
    [after] = run.actions()
    assert after.state == pb.ACTION_STATE_UNDONE and after.reversibility.verdict == pb.VERDICT_PASSED, after
    assert "not run again" in after.reversibility.detail
    assert run.db.state() == BEFORE  # the counter at 0: the inverse ran once, not twice (-1)
    assert run.db.markers() == 0
    stop_cleanly(run.d)


def test_killed_in_an_undo_before_the_inverse_committed_recovery_runs_it_once(make: Callable[[str], Run]) -> None:
    run = make("undo-before-commit")
    run.submit()
    crash(run.d, f"undo-before-commit:{run.db.tag}", run.undo)
    assert run.db.state() == APPLIED  # the inverse's transaction died with goexd
    restart(run.d)
    [after] = run.actions()
    assert after.state == pb.ACTION_STATE_UNDONE and after.reversibility.verdict == pb.VERDICT_PASSED, after
    assert "ran the inverse" in after.reversibility.detail
    assert run.db.state() == BEFORE and run.db.markers() == 0
    stop_cleanly(run.d)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_engines_own_points_around_the_resource_settle_the_same_way(
    backend: str, make: Callable[[str], Run]
) -> None:
    """Killed after the manager returned, at the engine's points (the database's COMMIT long done): after
    execute (run-returned), then after the undo (undo-returned), with a restart between."""
    run = make("run-returned")
    crash(run.d, f"run-returned:{run.db.tag}", run.submit)
    restart(run.d, f"undo-returned:{run.db.tag}")
    [a] = run.actions()
    assert a.state == pb.ACTION_STATE_EXECUTED and run.db.state() == APPLIED
    crash(run.d, f"undo-returned:{run.db.tag}", run.undo)
    restart(run.d)
    [after] = run.actions()
    assert after.state == pb.ACTION_STATE_UNDONE and "not run again" in after.reversibility.detail
    assert run.db.state() == BEFORE and run.db.markers() == 0
    stop_cleanly(run.d)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_restart_drops_the_markers_of_resolved_actions_and_keeps_others(backend: str, tmp_path: Path) -> None:
    """Killed at the second action's COMMIT (@2); markers a crash between UNDONE and their removal would
    leave, and another goexd's, were in the database: the reopened session drops the first only."""
    (tmp_path / "projects").mkdir()
    db = sqlite_db(tmp_path / "projects" / "app.db")
    d = armed(tmp_path / "daemon", f"action-after-commit:{db.tag}@2")
    try:
        run = Run(d, db, d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[db.spec])).session.id)
        first = run.submit()  # the point's first hit: goes on
        [undone] = run.undo()
        assert undone.state == pb.ACTION_STATE_UNDONE and db.markers() == 0
        with sqlite3.connect(tmp_path / "projects" / "app.db") as conn:
            conn.execute("INSERT INTO goex_outcomes VALUES (?, 'undo', 0), ('act_elsewhere', 'action', 0)", (first.id,))
        crash(d, f"action-after-commit:{db.tag}", run.submit)
        restart(d)
        second = next(a for a in run.actions() if a.id != first.id)
        assert second.state == pb.ACTION_STATE_EXECUTED and db.state() == APPLIED
        left = set(db.query("SELECT action_id, step FROM goex_outcomes"))
        assert left == {(second.id, "action"), ("act_elsewhere", "action")}
        stop_cleanly(d)
    finally:
        d.kill()


# ---------------------------------------------------------------- controls: without the markers


@pytest.mark.parametrize("backend", ["sqlite"])
def test_control_without_the_marker_a_committed_action_is_taken_for_rolled_back(
    backend: str, make: Callable[[str], Run]
) -> None:
    run = make("action-after-commit")
    crash(run.d, f"action-after-commit:{run.db.tag}", run.submit)
    with sqlite3.connect(run.db.spec.db.url.removeprefix("sqlite://")) as conn:
        conn.execute("DELETE FROM goex_outcomes")
    restart(run.d)
    [a] = run.actions()
    # The journal now disagrees with the database: what recovery said before the markers.
    assert a.state == pb.ACTION_STATE_INTERRUPTED and run.db.state() == APPLIED
    stop_cleanly(run.d)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_control_without_the_marker_an_inverse_that_committed_runs_twice(
    backend: str, make: Callable[[str], Run]
) -> None:
    run = make("undo-after-commit")
    run.submit()
    crash(run.d, f"undo-after-commit:{run.db.tag}", run.undo)
    with sqlite3.connect(run.db.spec.db.url.removeprefix("sqlite://")) as conn:
        conn.execute("DELETE FROM goex_outcomes")
    restart(run.d)
    [after] = run.actions()
    assert after.state == pb.ACTION_STATE_UNDONE and run.db.state() == (-1, 0)  # the counter at -1
    stop_cleanly(run.d)
