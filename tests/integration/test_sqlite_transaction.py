"""The SQLite `transaction` strategy on real database files: the paper's scenarios, isolation, bad input."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.resource import Outcome
from goexd.domain.sandbox import Limits
from goexd.resources.sqlite.transaction import SqliteTransactionResource


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def res(db: Path) -> SqliteTransactionResource:
    r = SqliteTransactionResource(Resource("db", ResourceKind.SQLITE, str(db), UndoStrategy.TRANSACTION))
    yield r  # type: ignore[misc]
    r.close()


class Runner:
    """Plays the engine's part: checkpoint, execute, then commit or roll back."""

    def __init__(self, res: SqliteTransactionResource) -> None:
        self.res = res
        self.n = 0
        self.cps: dict[str, dict[str, str]] = {}

    def run(self, sql: str, *params: str, limits: Limits | None = None) -> tuple[str, Outcome]:
        self.n += 1
        aid = f"act_{self.n:04d}"
        self.cps[aid] = self.res.checkpoint(aid)
        try:
            out = self.res.execute(
                ActionSpec(ActionKind.SQL, sql=sql, params=params), limits or Limits(), self.cps[aid], None, None
            )
        except Exception:
            self.res.rollback(aid, self.cps[aid])  # the engine's FAILED path
            raise
        return aid, out

    def undo(self, aid: str) -> None:
        self.res.rollback(aid, self.cps[aid])

    def commit(self, *aids: str) -> None:
        self.res.commit_check(aids)
        for a in aids:
            self.res.commit(a, self.cps[a])


def committed(db: Path, sql: str) -> list[tuple[object, ...]]:
    """What another connection sees."""
    with sqlite3.connect(db) as other:
        return other.execute(sql).fetchall()


def tables(db: Path) -> list[str]:
    return [r[0] for r in committed(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def test_paper_scenarios_with_undo(res: SqliteTransactionResource, db: Path) -> None:
    r = Runner(res)
    create, _ = r.run("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL)")
    add, out = r.run("INSERT INTO users (name, balance) VALUES ('ann', 100), ('bob', 200), ('cy', 300)")
    assert out.sql is not None and out.sql.affected_rows == 3
    bump, out = r.run("UPDATE users SET balance = balance + 500")
    assert out.sql is not None and out.sql.affected_rows == 3
    _, q = r.run("SELECT name, balance FROM users ORDER BY id")
    assert q.sql is not None and q.sql.rows == (("ann", "600"), ("bob", "700"), ("cy", "800"))
    r.undo(f"act_{r.n:04d}")
    r.undo(bump)
    _, q = r.run("SELECT sum(balance) FROM users")
    assert q.sql is not None and q.sql.rows == (("600",),)
    r.undo(f"act_{r.n:04d}")
    r.undo(add)
    _, q = r.run("SELECT count(*) FROM users")
    assert q.sql is not None and q.sql.rows == (("0",),)
    r.undo(f"act_{r.n:04d}")
    r.undo(create)
    assert tables(db) == []
    _, q = r.run("SELECT name FROM sqlite_master")
    assert q.sql is not None and q.sql.rows == ()


def test_paper_scenarios_with_commit_and_isolation_until_then(res: SqliteTransactionResource, db: Path) -> None:
    r = Runner(res)
    a, _ = r.run("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)")
    b, _ = r.run("INSERT INTO users (name, balance) VALUES ('ann', 1), ('bob', 2), ('cy', 3)")
    c, _ = r.run("UPDATE users SET balance = balance + 500")
    assert tables(db) == []  # another connection sees nothing before the commit
    with pytest.raises(FailedPrecondition, match="commits whole"):
        r.commit(a, b)  # c would stay pending inside the same transaction
    r.commit(a, b, c)
    assert committed(db, "SELECT name, balance FROM users ORDER BY id") == [("ann", 501), ("bob", 502), ("cy", 503)]


def test_a_failed_statement_does_not_poison_the_transaction(res: SqliteTransactionResource, db: Path) -> None:
    r = Runner(res)
    a, _ = r.run("CREATE TABLE t (x INTEGER)")
    b, _ = r.run("INSERT INTO t VALUES (1)")
    with pytest.raises(InvalidArgument, match=r"spec\.sql\.sql: sqlite: no such table: nope"):
        r.run("INSERT INTO t VALUES (2); UPDATE nope SET x = 1")  # its first statement is undone too
    with pytest.raises(InvalidArgument, match=r"spec\.sql\.sql"):
        r.run("SELEC 1")
    c, out = r.run("SELECT x FROM t")
    assert out.sql is not None and out.sql.rows == (("1",),)
    r.commit(a, b, c)
    assert committed(db, "SELECT x FROM t") == [(1,)]


def test_transaction_statements_are_refused(res: SqliteTransactionResource, tmp_path: Path) -> None:
    # Privileged statements (ATTACH...) are the session policy's call, in the engine (tests/e2e/test_policy_e2e.py).
    r = Runner(res)
    with pytest.raises(InvalidArgument, match="savepoint"):
        r.run("COMMIT")
    _, out = r.run("SELECT 1")
    assert out.sql is not None and out.sql.rows == (("1",),)


def test_parameters_row_cap_and_nulls(db: Path) -> None:
    res = SqliteTransactionResource(Resource("db", ResourceKind.SQLITE, str(db), UndoStrategy.TRANSACTION), row_limit=5)
    try:
        r = Runner(res)
        r.run("CREATE TABLE t (x INTEGER, y TEXT)")
        r.run(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) "
            "INSERT INTO t SELECT i, NULL FROM n"
        )
        _, out = r.run("SELECT x, y FROM t WHERE x > ?", "10")
        assert out.sql is not None
        assert out.sql.columns == ("x", "y") and out.sql.total_rows == 10 and out.sql.truncated
        assert out.sql.rows[0] == ("11", None) and len(out.sql.rows) == 5
        with pytest.raises(InvalidArgument, match=r"spec\.sql\.params"):
            r.run("SELECT ?; SELECT ?", "1")
    finally:
        res.close()


def test_a_runaway_write_is_stopped_and_the_lost_pending_actions_are_reported(
    res: SqliteTransactionResource, db: Path
) -> None:
    r = Runner(res)
    create, _ = r.run("CREATE TABLE t (x INTEGER)")
    forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) INSERT INTO t SELECT i FROM n"
    with pytest.raises(InvalidArgument, match=f"wall-clock timeout.*whole transaction.*{create}"):
        r.run(forever, limits=Limits(timeout_s=0.3))
    # SQLite rolls back the whole transaction when a write is interrupted: the earlier action went too.
    assert res.take_lost() == [create] and res.take_lost() == []
    _, out = r.run("SELECT count(*) FROM sqlite_master WHERE name = 't'")
    assert out.sql is not None and out.sql.rows == (("0",),)
    assert tables(db) == []


def test_a_runaway_read_is_stopped_without_losing_anything(res: SqliteTransactionResource) -> None:
    r = Runner(res)
    _create, _ = r.run("CREATE TABLE t (x INTEGER)")
    with pytest.raises(InvalidArgument, match="wall-clock timeout"):
        r.run(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            limits=Limits(timeout_s=0.3),
        )
    assert res.take_lost() == []
    _, out = r.run("SELECT count(*) FROM t")
    assert out.sql is not None and out.sql.rows == (("0",),)


def test_cancel_stops_a_statement(res: SqliteTransactionResource) -> None:
    cancel = threading.Event()
    cp = res.checkpoint("act_c")
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(InvalidArgument, match="cancelled"):
        res.execute(
            ActionSpec(
                ActionKind.SQL,
                sql="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            ),
            Limits(timeout_s=30),
            cp,
            None,
            cancel,
        )
    res.rollback("act_c", cp)


def test_a_competing_writer_is_noticed_at_the_first_action(db: Path) -> None:
    sqlite3.connect(db).execute("PRAGMA journal_mode = WAL").close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    res = SqliteTransactionResource(
        Resource("db", ResourceKind.SQLITE, str(db), UndoStrategy.TRANSACTION), busy_timeout_s=0.2
    )
    try:
        with pytest.raises(FailedPrecondition, match="cannot start the session's transaction"):
            res.checkpoint("act_1")
    finally:
        other.execute("ROLLBACK")
        other.close()
        res.close()


def test_undo_restores_the_exact_fingerprint_and_describe_tells_the_schema(res: SqliteTransactionResource) -> None:
    r = Runner(res)
    _base, _ = r.run("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER DEFAULT 0)")
    r.run("INSERT INTO users (name, balance) VALUES ('ann', 1), ('bob', 2)")
    before = res.fingerprint()
    change, _ = r.run("UPDATE users SET balance = balance + 500; DELETE FROM users WHERE name = 'bob'")
    assert res.fingerprint() != before
    r.undo(change)
    assert res.fingerprint() == before
    text = res.describe()
    assert "users" in text and "balance" in text and "INTEGER" in text.upper() and "2 pending action(s)" in text
    assert str(res.path) not in text.split("\n", 1)[1]  # the schema text carries no file location
