"""Read-only SQL is resolved at once (issue 19), on SQLite and PostgreSQL, with each strategy, through a real goexd.

`goex sql "SELECT ..."` then `goex undo` must undo the write before the SELECT. The read runs where the
writes run (the transaction strategy's open transaction: it sees the pending work) and leaves that
transaction as it was. What looks like a read but is not (a volatile function, nextval(), SELECT INTO, a
CTE with DML, EXPLAIN ANALYZE of DML, SELECT ... FOR UPDATE, a PRAGMA that sets) stays pending, each proven
here; a write hidden behind a view fails under the read-only fence instead of happening."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import put_pg_secret
from tests.services.postgres import PgCluster

STRATEGIES = {
    "transaction": pb.UNDO_STRATEGY_TRANSACTION,
    "inverse": pb.UNDO_STRATEGY_INVERSE,
    "clone": pb.UNDO_STRATEGY_CLONE,
}
_secrets = itertools.count()


@dataclass
class Db:
    """One database opened in a goexd session, and a way to look at it from another connection."""

    daemon: DaemonProcess
    session: str
    others_see: Callable[[str], list[tuple[object, ...]]]

    def sql(self, text: str, inverse: str | None = None) -> pb.Action:
        req = apb.SubmitActionRequest(session_id=self.session, spec=pb.ActionSpec(sql=pb.SqlAction(sql=text)))
        if inverse is not None:
            req.inverse.CopyFrom(pb.ActionSpec(sql=pb.SqlAction(sql=inverse)))
        return self.daemon.actions.SubmitAction(req).action

    def undo(self) -> list[str]:
        return [a.id for a in self.daemon.actions.UndoAction(apb.UndoActionRequest(session_id=self.session)).undone]

    def pending(self) -> list[str]:
        req = apb.ListActionsRequest(session_id=self.session, states=[pb.ACTION_STATE_EXECUTED])
        return [a.id for a in self.daemon.actions.ListActions(req).actions]


def rows(action: pb.Action) -> list[list[str]]:
    return [list(r.values) for r in action.sql.rows]


def resolved_at_once(action: pb.Action) -> bool:
    return (
        action.state == pb.ACTION_STATE_COMMITTED
        and action.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_READ_ONLY
    )


def _open(d: DaemonProcess, spec: pb.ResourceSpec) -> str:
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session.id


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        setup.execute("INSERT INTO t (v) VALUES (1), (2)")
    setup.close()
    return path


def open_sqlite(d: DaemonProcess, path: Path, strategy: str) -> Db:
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{path}"), strategy=STRATEGIES[strategy])

    def others_see(query: str) -> list[tuple[object, ...]]:
        other = sqlite3.connect(path)
        try:
            return other.execute(query).fetchall()
        finally:
            other.close()

    return Db(d, _open(d, spec), others_see)


@pytest.fixture
def pg_db(pg_cluster: PgCluster, pg_database: str) -> Iterator[tuple[PgCluster, str]]:
    with psycopg.connect(pg_cluster.app_dsn_for(pg_database), password=pg_cluster.app_password) as setup:
        setup.execute("CREATE TABLE t (id serial PRIMARY KEY, v int NOT NULL)")
        setup.execute("INSERT INTO t (v) VALUES (1), (2)")
    with pg_cluster.app_may_create_databases():  # the clone strategy copies the database
        yield pg_cluster, pg_database


def open_pg(d: DaemonProcess, cluster: PgCluster, dbname: str, strategy: str) -> Db:
    name = put_pg_secret(d, cluster, f"pg{next(_secrets)}")
    dsn = cluster.app_dsn_for(dbname)
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=dsn, secret=name), strategy=STRATEGIES[strategy])

    def others_see(query: str) -> list[tuple[object, ...]]:
        with psycopg.connect(dsn, password=cluster.app_password) as conn:
            return conn.execute(query).fetchall()

    return Db(d, _open(d, spec), others_see)


def _the_select_is_not_what_undo_takes(db: Db, strategy: str) -> None:
    inverse = "UPDATE t SET v = v - 10" if strategy == "inverse" else None
    update = db.sql("UPDATE t SET v = v + 10", inverse)
    assert update.state == pb.ACTION_STATE_EXECUTED, update.error
    read = db.sql("SELECT sum(v) FROM t")
    assert resolved_at_once(read), (read.state, read.error, read.reversibility)
    assert rows(read) == [["23"]]  # it sees the pending update (inside the transaction strategy's transaction)
    assert read.resolved_at.seconds > 0
    assert db.pending() == [update.id]  # the read is not pending, the update still is
    if strategy == "transaction":  # nothing was committed by the read: others still see the old rows
        assert db.others_see("SELECT sum(v) FROM t") == [(3,)]
    assert db.undo() == [update.id]
    assert db.others_see("SELECT sum(v) FROM t") == [(3,)]
    again = db.sql("SELECT v FROM t ORDER BY id")
    assert resolved_at_once(again) and rows(again) == [["1"], ["2"]]
    assert db.pending() == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sqlite_select_is_resolved_at_once_and_undo_takes_the_update(
    shared_daemon: DaemonProcess, sqlite_db: Path, strategy: str
) -> None:
    _the_select_is_not_what_undo_takes(open_sqlite(shared_daemon, sqlite_db, strategy), strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_postgres_select_is_resolved_at_once_and_undo_takes_the_update(
    shared_daemon: DaemonProcess, pg_db: tuple[PgCluster, str], strategy: str
) -> None:
    _the_select_is_not_what_undo_takes(open_pg(shared_daemon, *pg_db, strategy), strategy)


def test_sqlite_statements_that_look_read_only_but_write_stay_pending(
    shared_daemon: DaemonProcess, sqlite_db: Path
) -> None:
    db = open_sqlite(shared_daemon, sqlite_db, "transaction")
    for text in (
        "PRAGMA user_version = 7",
        "PRAGMA user_version(8)",
        "WITH n(x) AS (SELECT 5) INSERT INTO t (v) SELECT x FROM n",
        "SELECT 1; DELETE FROM t WHERE v = 1",  # one write makes the whole script a write
    ):
        action = db.sql(text)
        assert action.state == pb.ACTION_STATE_EXECUTED, (text, action.state, action.error)
        assert db.pending()[-1] == action.id
    for read in ("PRAGMA user_version", "PRAGMA table_info(t)", "EXPLAIN QUERY PLAN DELETE FROM t", "VALUES (1)"):
        assert resolved_at_once(db.sql(read)), read
    assert rows(db.sql("SELECT count(*) FROM t")) == [["2"]]  # the EXPLAIN deleted nothing
    assert len(db.undo()) == 1  # the script's DELETE
    assert rows(db.sql("SELECT count(*) FROM t")) == [["3"]]


def _set_up(cluster: PgCluster, dbname: str, also: str) -> None:
    """A table `log` and a function bump() that writes a row into it (volatile, as functions are by default)."""
    with psycopg.connect(cluster.app_dsn_for(dbname), password=cluster.app_password) as setup:
        setup.execute("CREATE TABLE log (x int)")
        setup.execute(
            "CREATE FUNCTION bump() RETURNS int LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO log VALUES (1); RETURN 1; END $$"
        )
        setup.execute(also)


def test_postgres_statements_that_look_read_only_but_write_stay_pending(
    shared_daemon: DaemonProcess, pg_db: tuple[PgCluster, str]
) -> None:
    cluster, dbname = pg_db
    _set_up(cluster, dbname, "CREATE FUNCTION two() RETURNS int STABLE LANGUAGE sql AS 'SELECT 2'")
    db = open_pg(shared_daemon, cluster, dbname, "transaction")
    for text in (
        "SELECT bump()",  # volatile in pg_proc: it may write (it does)
        "SELECT * INTO t2 FROM t",
        "WITH d AS (DELETE FROM t WHERE v = 1 RETURNING *) SELECT count(*) FROM d",
        "EXPLAIN ANALYZE DELETE FROM t WHERE v = 2",
        "SELECT * FROM t FOR UPDATE",  # row locks held until the transaction ends
    ):
        action = db.sql(text)
        assert action.state == pb.ACTION_STATE_EXECUTED, (text, action.state, action.error)
        assert db.pending()[-1] == action.id
    assert rows(db.sql("SELECT count(*) FROM log")) == [["1"]]
    stable = db.sql("SELECT two(), random() < 2, now() IS NOT NULL")  # STABLE, and volatile but harmless
    assert resolved_at_once(stable) and rows(stable) == [["2", "t", "t"]]
    for read in ("SHOW search_path", "EXPLAIN DELETE FROM t", "VALUES (1)", "TABLE t"):
        assert resolved_at_once(db.sql(read)), read
    assert len(db.undo()) == 1  # the FOR UPDATE
    while db.pending():
        db.undo()
    assert db.others_see("SELECT count(*) FROM t") == [(2,)]
    assert db.others_see("SELECT count(*) FROM log") == [(0,)]


def test_postgres_nextval_is_not_a_read(shared_daemon: DaemonProcess, pg_db: tuple[PgCluster, str]) -> None:
    cluster, dbname = pg_db
    db = open_pg(shared_daemon, cluster, dbname, "clone")  # the transaction strategy refuses nextval() outright
    moved = db.sql("SELECT nextval('t_id_seq')")
    assert moved.state == pb.ACTION_STATE_EXECUTED and rows(moved) == [["3"]]
    assert db.undo() == [moved.id]
    assert db.others_see("SELECT last_value, is_called FROM t_id_seq") == [(2, True)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_postgres_a_write_behind_a_view_fails_under_the_fence(
    shared_daemon: DaemonProcess, pg_db: tuple[PgCluster, str], strategy: str
) -> None:
    """The parse sees a plain SELECT; the read-only fence stops the write the view's function tries."""
    cluster, dbname = pg_db
    _set_up(cluster, dbname, "CREATE VIEW sneaky AS SELECT bump() AS b")
    db = open_pg(shared_daemon, cluster, dbname, strategy)
    update = db.sql("UPDATE t SET v = v + 10", "UPDATE t SET v = v - 10" if strategy == "inverse" else None)
    hidden = db.sql("SELECT * FROM sneaky")
    assert hidden.state == pb.ACTION_STATE_FAILED and "read-only transaction" in hidden.error, hidden.error
    failed = db.sql("SELECT * FROM no_such_table")
    assert failed.state == pb.ACTION_STATE_FAILED and "no_such_table" in failed.error
    # The pending update survived both failures, inside the transaction strategy's transaction too.
    assert db.pending() == [update.id]
    assert rows(db.sql("SELECT sum(v) FROM t")) == [["23"]]
    assert db.undo() == [update.id]
    assert db.others_see("SELECT count(*) FROM log") == [(0,)]
    assert db.others_see("SELECT sum(v) FROM t") == [(3,)]


def test_sqlite_a_failed_read_keeps_the_pending_transaction(shared_daemon: DaemonProcess, sqlite_db: Path) -> None:
    db = open_sqlite(shared_daemon, sqlite_db, "transaction")
    update = db.sql("UPDATE t SET v = v + 10")
    failed = db.sql("SELECT * FROM no_such_table")
    assert failed.state == pb.ACTION_STATE_FAILED and "no such table" in failed.error
    assert db.pending() == [update.id]
    assert rows(db.sql("SELECT sum(v) FROM t")) == [["23"]]
    assert db.undo() == [update.id]
    assert db.others_see("SELECT sum(v) FROM t") == [(3,)]
