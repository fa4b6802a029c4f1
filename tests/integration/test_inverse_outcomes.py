"""The inverse strategy's outcome markers on real SQLite files and a real PostgreSQL cluster.

The resource managers are driven in the engine's order, and "goexd restarted" is a new manager
on the same database (what a restart opens). Crashes themselves are in tests/faults (a real
goexd killed at its fault points); here: an inverse runs at most once whatever happens between
two undos, an action in doubt is settled by its marker, the table stays out of describe and
fingerprints, and a database where the table cannot be kept is refused, naming the fix.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from goexd.domain.errors import FailedPrecondition, InvalidArgument, Unavailable
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy, Verdict
from goexd.domain.resource import Resolution
from goexd.domain.sandbox import Limits
from goexd.resources.postgres.inverse import PostgresInverseResource
from goexd.resources.sqlite.inverse import SqliteInverseResource
from tests.services.postgres import PgCluster

LIMITS = Limits(timeout_s=10)
BUMP = ActionSpec(ActionKind.SQL, sql="UPDATE counter SET n = n + 1")
UNBUMP = ActionSpec(ActionKind.SQL, sql="UPDATE counter SET n = n - 1")
Manager = SqliteInverseResource | PostgresInverseResource


@dataclass
class Db:
    kind: str
    open: Callable[[], Manager]  # a manager on the database: a new one is what a restart opens
    query: Callable[[str], list[tuple[object, ...]]]  # another connection's view
    run: Callable[[str], None]  # another connection's write

    def counter(self) -> int:
        [(n,)] = self.query("SELECT n FROM counter")
        return int(str(n))

    def markers(self) -> set[tuple[str, str]]:
        return {(str(a), str(s)) for a, s in self.query("SELECT action_id, step FROM goex_outcomes")}

    def add_marker(self, action_id: str, step: str) -> None:
        """A marker row written by someone else (another goexd)."""
        at = ", 0" if self.kind == "sqlite" else ", now()"
        self.run(f"INSERT INTO goex_outcomes (action_id, step, at) VALUES ('{action_id}', '{step}'{at})")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "sqlite":
        path = tmp_path / "app.db"

        def query(text: str) -> list[tuple[object, ...]]:
            with sqlite3.connect(path) as conn:
                return conn.execute(text).fetchall()

        def run(text: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.executescript(text)

        def open_sqlite() -> Manager:
            return SqliteInverseResource(Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.INVERSE))

        found = Db("sqlite", open_sqlite, query, run)
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        name: str = request.getfixturevalue("pg_database")

        def pg_query(text: str) -> list[tuple[object, ...]]:
            with cluster.connect_app(name) as conn:
                return conn.execute(text).fetchall()

        def pg_run(text: str) -> None:
            with cluster.connect_app(name) as conn:
                conn.execute(text)

        def open_pg() -> Manager:
            resource = Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(name), UndoStrategy.INVERSE)
            return PostgresInverseResource(resource, cluster.app_password)

        found = Db("postgres", open_pg, pg_query, pg_run)
    found.run(
        "CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0); CREATE TABLE other (x INTEGER)"
    )
    return found


@pytest.fixture
def opened(db: Db) -> Iterator[list[Manager]]:
    """Every manager a test opens, closed at its end."""
    managers: list[Manager] = []
    yield managers
    for m in managers:
        m.close()


def open_(db: Db, opened: list[Manager]) -> Manager:
    m = db.open()
    opened.append(m)
    return m


def act(res: Manager, spec: ActionSpec = BUMP, inverse: ActionSpec = UNBUMP) -> tuple[str, dict[str, str]]:
    """The engine's order: test, checkpoint, execute; the action's id and the checkpoint its undo needs."""
    assert res.test(spec, inverse, LIMITS, None).verdict is Verdict.PASSED
    action_id = f"act_{uuid.uuid4().hex[:16]}"
    cp = res.checkpoint(action_id, inverse)
    return action_id, {**cp, **res.execute(spec, LIMITS, cp, None, None).checkpoint_extra}


def test_an_inverse_that_committed_is_never_run_again(db: Db, opened: list[Manager]) -> None:
    res = open_(db, opened)
    action_id, cp = act(res)
    assert db.counter() == 1 and db.markers() == {(action_id, "action")}
    first = res.rollback(action_id, cp)
    assert first.verified and db.counter() == 0 and (action_id, "undo") in db.markers()
    # The journal did not get to record UNDONE (a crash, a full disk): goexd restarts, someone else writes
    # meanwhile (so the fingerprint alone could not tell), and the undo is tried again.
    db.run("INSERT INTO other VALUES (7)")
    again = open_(db, opened).rollback(action_id, cp)
    assert db.counter() == 0, "the inverse ran twice"
    assert not again.verified and "not run again" in again.detail  # others' row: it differs from the pre-state


def test_control_without_its_marker_the_inverse_runs_twice(db: Db, opened: list[Manager]) -> None:
    res = open_(db, opened)
    action_id, cp = act(res)
    res.rollback(action_id, cp)
    db.run("DELETE FROM goex_outcomes")
    open_(db, opened).rollback(action_id, cp)
    assert db.counter() == -1  # what the markers prevent (the counter)


def test_an_action_in_doubt_is_settled_by_its_marker(db: Db, opened: list[Manager]) -> None:
    res = open_(db, opened)
    kept_id, kept = act(res)
    running = {k: v for k, v in kept.items() if k != "post"}  # as the journal has it: RUNNING, no "post"
    after = open_(db, opened)  # the restart
    found = after.resolve_in_doubt(kept_id, running)
    assert found.resolution is Resolution.EXECUTED and found.checkpoint_extra == {"post": after.fingerprint()}
    # And undoable with what recovery journals.
    assert after.rollback(kept_id, {**running, **found.checkpoint_extra}).verified and db.counter() == 0
    # An action whose transaction did not commit (it failed here) has no marker: rolled back.
    failed_id = f"act_{uuid.uuid4().hex[:16]}"
    cp = after.checkpoint(failed_id, UNBUMP)
    with pytest.raises(InvalidArgument):
        after.execute(ActionSpec(ActionKind.SQL, sql="UPDATE counter SET n = n + 1; SELECT * FROM nowhere"), LIMITS,
                      cp, None, None)  # fmt: skip
    assert after.resolve_in_doubt(failed_id, cp).resolution is Resolution.ROLL_BACK and db.counter() == 0


def test_statements_outside_a_transaction_mark_their_start_and_their_end(db: Db, opened: list[Manager]) -> None:
    """VACUUM runs outside a transaction: "action-begun" commits before it, "action" after it. A crash between
    the two, with the database changed, is an outcome nothing can settle: UNKNOWN, said, never guessed."""
    res = open_(db, opened)
    action_id = f"act_{uuid.uuid4().hex[:16]}"  # the pair's test (on a copy) is not the point here
    cp = res.checkpoint(action_id, UNBUMP)
    vacuum = "UPDATE counter SET n = n + 1; VACUUM" + ("" if db.kind == "sqlite" else " counter")
    cp |= res.execute(ActionSpec(ActionKind.SQL, sql=vacuum), LIMITS, cp, None, None).checkpoint_extra
    assert db.markers() == {(action_id, "action-begun"), (action_id, "action")}
    running = {k: v for k, v in cp.items() if k != "post"}
    assert res.resolve_in_doubt(action_id, running).resolution is Resolution.EXECUTED
    db.run(f"DELETE FROM goex_outcomes WHERE step = 'action' AND action_id = '{action_id}'")  # killed before it
    unknown = res.resolve_in_doubt(action_id, running)
    assert unknown.resolution is Resolution.UNKNOWN and "check the data" in unknown.detail
    assert res.rollback(action_id, cp).verified and db.counter() == 0  # the undo itself is as ever


def test_the_marker_table_stays_out_of_describe_and_fingerprints(db: Db, opened: list[Manager]) -> None:
    res = open_(db, opened)
    before = res.fingerprint()
    db.add_marker("act_someone", "action")
    assert open_(db, opened).fingerprint() == before  # read whole by a new manager: the rows do not count
    assert "goex_outcomes" not in res.describe(samples=True) and "counter" in res.describe()
    assert db.query("SELECT count(*) FROM goex_outcomes") == [(1,)]  # it is there for the user to see


def test_markers_go_when_settled_and_another_goexds_stay(db: Db, opened: list[Manager]) -> None:
    res = open_(db, opened)
    mine, _ = act(res)
    db.add_marker("act_elsewhere", "action")
    assert sorted(res.marked()) == sorted([mine, "act_elsewhere"])
    res.settle([mine])
    assert db.markers() == {("act_elsewhere", "action")}


# ---------------------------------------------------------------- PostgreSQL only


def test_a_role_that_cannot_keep_the_table_is_refused_naming_the_fix(pg_cluster: PgCluster) -> None:
    """A database owned by someone else, where `app` may use a table but not create one."""
    name = pg_cluster.create_database(owner="postgres")
    try:
        with pg_cluster.connect(name) as su:
            su.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # the default since PostgreSQL 15
            su.execute("CREATE TABLE counter (n integer NOT NULL); INSERT INTO counter VALUES (0)")
            su.execute("GRANT SELECT, UPDATE ON counter TO app")
        resource = Resource("db", ResourceKind.POSTGRES, pg_cluster.app_dsn_for(name), UndoStrategy.INVERSE)
        with pytest.raises(FailedPrecondition) as refused:
            PostgresInverseResource(resource, pg_cluster.app_password)
        message = str(refused.value)
        assert "permission denied for schema public" in message and "transaction or clone strategy" in message
        create = message.split("an owner can: ")[1].split("; GRANT", maxsplit=1)[0]
        grant = "GRANT" + message.split("; GRANT")[1].split(" (or use", maxsplit=1)[0]
        with pg_cluster.connect(name) as su:  # control: an owner runs what the message says, and it opens
            su.execute(create)
            su.execute(grant)
        res = PostgresInverseResource(resource, pg_cluster.app_password)
        try:
            action_id, cp = act(res)
            assert res.rollback(action_id, cp).verified
        finally:
            res.close()
        with pg_cluster.connect(name) as su:  # without DELETE on it: refused again, naming the grant
            su.execute("REVOKE DELETE ON goex_outcomes FROM app")
        with pytest.raises(FailedPrecondition, match=r"lacks DELETE on it.*GRANT SELECT, INSERT, DELETE"):
            PostgresInverseResource(resource, pg_cluster.app_password)
    finally:
        pg_cluster.drop_database(name)


def test_a_connection_lost_during_commit_is_settled_by_the_marker(pg_cluster: PgCluster, pg_database: str) -> None:
    """The action's backend dies inside its COMMIT (a deferred trigger ends it): the server did not commit it,
    and goexd says so instead of "unknown"."""
    with pg_cluster.connect_app(pg_database) as setup:
        setup.execute("CREATE TABLE counter (n integer NOT NULL); INSERT INTO counter VALUES (0)")
        setup.execute(
            "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$"
        )
        setup.execute(
            "CREATE CONSTRAINT TRIGGER die AFTER UPDATE ON counter DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION die()"
        )
    resource = Resource("db", ResourceKind.POSTGRES, pg_cluster.app_dsn_for(pg_database), UndoStrategy.INVERSE)
    res = PostgresInverseResource(resource, pg_cluster.app_password)
    try:
        action_id = f"act_{uuid.uuid4().hex[:16]}"
        cp = res.checkpoint(action_id, UNBUMP)
        with pytest.raises(Unavailable, match="did not commit it \\(no outcome marker\\): nothing changed"):
            res.execute(BUMP, LIMITS, cp, None, None)
    finally:
        res.close()
    with pg_cluster.connect_app(pg_database) as other:
        assert other.execute("SELECT n FROM counter").fetchall() == [(0,)]
        assert other.execute("SELECT count(*) FROM goex_outcomes").fetchall() == [(0,)]
