"""The SQLite `inverse` strategy on real files: tested pairs, the paper's scenarios, clone tests, drift."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from goexd.dbinspect import sqlite as inspect
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import (
    ActionKind,
    ActionSpec,
    Resource,
    ResourceKind,
    ReversibilityClass,
    UndoStrategy,
    Verdict,
)
from goexd.domain.sandbox import Limits
from goexd.resources.sqlite.inverse import SqliteInverseResource
from tests.integration.verdicts import failed, passed

LIMITS = Limits(timeout_s=10)


def q(sql: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=sql)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL)")
        setup.execute("INSERT INTO users (name, balance) VALUES ('ann', 10), ('bob', 20)")
    return path


@pytest.fixture
def res(db: Path) -> Iterator[SqliteInverseResource]:
    r = SqliteInverseResource(Resource("db", ResourceKind.SQLITE, str(db), UndoStrategy.INVERSE))
    yield r
    r.close()


def seen(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as other:
        return other.execute(sql).fetchall()


def act(res: SqliteInverseResource, spec: ActionSpec, inverse: ActionSpec | None) -> dict[str, str]:
    """The engine's order: test, checkpoint, execute; returns the checkpoint undo needs."""
    verdict = res.test(spec, inverse, LIMITS, None)
    assert verdict.verdict is Verdict.PASSED, verdict.detail
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", inverse)  # each action its own id, as the engine gives
    out = res.execute(spec, LIMITS, cp, None, None)
    return {**cp, **out.checkpoint_extra}


def test_the_paper_scenarios_commit_at_once_and_undo_by_their_inverse(res: SqliteInverseResource, db: Path) -> None:
    before = res.fingerprint()
    bump = act(res, q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 500"))
    assert seen(db, "SELECT balance FROM users ORDER BY id") == [(510,), (520,)]  # committed at once
    report = res.rollback(bump["marker"], bump)
    assert report.verified and res.fingerprint() == before

    add = act(res, q("INSERT INTO users (name, balance) VALUES ('cy', 3)"), q("DELETE FROM users WHERE name = 'cy'"))
    assert res.rollback(add["marker"], add).verified and res.fingerprint() == before

    create = act(res, q("CREATE TABLE orders (id INTEGER PRIMARY KEY)"), q("DROP TABLE orders"))
    assert seen(db, "SELECT count(*) FROM sqlite_master WHERE name = 'orders'") == [(1,)]
    assert res.rollback(create["marker"], create).verified and res.fingerprint() == before


def test_a_wrong_inverse_fails_its_test_and_changes_nothing(res: SqliteInverseResource) -> None:
    before = res.fingerprint()
    verdict = res.test(
        q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 50"), LIMITS, None
    )
    assert verdict.verdict is Verdict.FAILED and verdict.reversibility_class is ReversibilityClass.IRREVERSIBLE
    assert "users: 2 → 2 rows: 2 changed" in verdict.detail  # the table-level diff says what the pair left behind
    assert res.fingerprint() == before  # the test ran in a transaction that was rolled back


def test_a_failing_inverse_and_a_failing_action(res: SqliteInverseResource) -> None:
    verdict = res.test(q("DELETE FROM users WHERE name = 'ann'"), q("INSERT INTO nope VALUES (1)"), LIMITS, None)
    assert verdict.verdict is Verdict.FAILED and "no such table: nope" in verdict.detail
    with pytest.raises(InvalidArgument, match="the action fails"):
        res.test(q("INSERT INTO users (name) VALUES ('no balance')"), q("SELECT 1"), LIMITS, None)


def test_writes_need_an_inverse_reads_do_not(res: SqliteInverseResource) -> None:
    with pytest.raises(InvalidArgument, match="needs an inverse"):
        res.test(q("DELETE FROM users"), None, LIMITS, None)
    verdict = res.test(q("SELECT * FROM users"), None, LIMITS, None)
    assert verdict.reversibility_class is ReversibilityClass.READ_ONLY


def test_statements_a_transaction_cannot_take_back_are_tested_on_a_clone(res: SqliteInverseResource, db: Path) -> None:
    verdict = res.test(q("VACUUM"), q("SELECT 1"), LIMITS, None)
    assert verdict.verdict is Verdict.PASSED and "clone" in verdict.detail
    bad = res.test(q("DELETE FROM users; VACUUM"), q("SELECT 1"), LIMITS, None)
    assert bad.verdict is Verdict.FAILED and "clone" in bad.detail
    assert seen(db, "SELECT count(*) FROM users") == [(2,)]  # the clone took the damage


def test_undo_after_others_changed_the_database_runs_but_says_it_could_not_verify(
    res: SqliteInverseResource, db: Path
) -> None:
    cp = act(res, q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 500"))
    with sqlite3.connect(db) as other:
        other.execute("INSERT INTO users (name, balance) VALUES ('zed', 1)")
    report = res.rollback(cp["marker"], cp)
    assert not report.verified and "changed since the action" in report.detail
    # The inverse ran as written (and so also took 500 from the newcomer): the report says it is unverified.
    assert seen(db, "SELECT name, balance FROM users ORDER BY id") == [("ann", 10), ("bob", 20), ("zed", -499)]


def test_a_failed_action_leaves_nothing_to_undo(res: SqliteInverseResource) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_f", q("DELETE FROM users WHERE name = 'x'"))
    with pytest.raises(InvalidArgument, match="NOT NULL"):
        res.execute(q("INSERT INTO users (name) VALUES ('x'); SELECT 1"), LIMITS, cp, None, None)
    assert res.rollback("act_f", cp).verified and res.fingerprint() == before


# ---------------------------------------------------------------- the shortcuts (dbinspect/sqlite_changes.py)
# The test, and the fingerprints around an action and its undo, read only what the statements
# could have written, settled by capture triggers where they can. Each case must still be judged
# as whole fingerprints would judge it.


def whole(db: Path) -> str:
    """The database's fingerprint, read whole on a connection of its own."""
    with closing(sqlite3.connect(db)) as other:
        return inspect.fingerprint(other).digest


def test_changes_the_script_does_not_name_fail_the_test(res: SqliteInverseResource, db: Path) -> None:
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE audit (who TEXT)")
        setup.execute("CREATE TRIGGER log_it AFTER UPDATE ON users BEGIN INSERT INTO audit VALUES (NEW.name); END")
        setup.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users ON DELETE CASCADE)"
        )
        setup.execute("INSERT INTO orders VALUES (10, 1), (11, 1), (12, 2)")
        setup.execute("CREATE VIEW rich AS SELECT * FROM users")
        setup.execute("CREATE TRIGGER rich_del INSTEAD OF DELETE ON rich BEGIN DELETE FROM orders; END")
    before = whole(db)
    detail = failed(res, "UPDATE users SET balance = 0 WHERE id = 1", "UPDATE users SET balance = 10 WHERE id = 1")
    assert "audit: 0 → 2 rows: 2 added" in detail and "users" not in detail.split("Tables changed:")[1]
    assert "orders: 3 → 1 rows: 2 removed" in failed(
        res, "DELETE FROM users WHERE id = 1", "INSERT INTO users VALUES (1, 'ann', 10)"
    )
    passed(
        res,
        "DELETE FROM users WHERE id = 1",
        "INSERT INTO users VALUES (1, 'ann', 10); INSERT INTO orders VALUES (10, 1), (11, 1)",
    )
    assert "orders: 3 → 0 rows: 3 removed" in failed(res, "DELETE FROM rich WHERE id = 2", "SELECT 1")
    assert whole(db) == before


def test_replace_added_then_deleted_and_statements_that_need_earlier_ones(res: SqliteInverseResource) -> None:
    with closing(sqlite3.connect(res.path)) as setup:
        setup.execute("CREATE UNIQUE INDEX users_name ON users (name)")
    # REPLACE deletes the row in its way without firing delete triggers: the row count tells.
    assert "users: 2 → 1 rows: 1 removed" in failed(
        res, "INSERT OR REPLACE INTO users VALUES (3, 'bob', 20)", "DELETE FROM users WHERE id = 3"
    )
    passed(res, "INSERT OR REPLACE INTO users VALUES (1, 'ann', 10)", "SELECT 1")
    passed(res, "INSERT INTO users VALUES (3, 'cy', 30), (4, 'di', 40)", "DELETE FROM users WHERE id IN (3, 4)")
    assert "users: 2 → 3 rows: 1 added" in failed(
        res, "INSERT INTO users VALUES (3, 'cy', 30), (4, 'di', 40)", "DELETE FROM users WHERE id = 3"
    )
    # A statement naming a table an earlier one creates cannot be compiled beforehand: every table is read.
    passed(
        res,
        "CREATE TABLE t2 (x); INSERT INTO t2 VALUES (1); UPDATE users SET balance = 1",
        "DROP TABLE t2; UPDATE users SET balance = id * 10",
    )
    assert "users: column email added (TEXT)" in failed(res, "ALTER TABLE users ADD COLUMN email TEXT", "SELECT 1")


def test_a_script_that_drops_the_capture_triggers_is_still_caught(res: SqliteInverseResource) -> None:
    detail = failed(
        res, "DROP TRIGGER IF EXISTS temp.goex_capture_0_update; UPDATE users SET balance = 0 WHERE id = 1", "SELECT 1"
    )
    assert "users: 2 → 2 rows: 1 changed" in detail


def test_a_write_to_most_rows_is_read_rather_than_captured(res: SqliteInverseResource, db: Path) -> None:
    with sqlite3.connect(db) as setup:
        setup.executemany("INSERT INTO users (name, balance) VALUES (?, ?)", [(f"u{i}", i) for i in range(3000)])
    passed(res, "UPDATE users SET balance = balance + 1", "UPDATE users SET balance = balance - 1")
    assert "users: 3002 → 3002 rows: 3002 changed" in failed(
        res, "UPDATE users SET balance = balance + 1", "UPDATE users SET balance = balance - 2 WHERE id < 10"
    )


def test_the_fingerprints_around_actions_are_known_without_reading_every_row(
    res: SqliteInverseResource, db: Path
) -> None:
    cp = act(
        res, q("UPDATE users SET balance = balance + 5 WHERE id = 1"), q("UPDATE users SET balance = 10 WHERE id = 1")
    )
    assert cp["post"] == whole(db)  # worked out from the captured change, and the same as reading it all
    assert res.rollback(cp["marker"], cp).verified and res.fingerprint() == whole(db) == cp["pre"]
    # Another connection's commit is noticed (PRAGMA data_version): the next fingerprint is read whole.
    with sqlite3.connect(db) as other:
        other.execute("INSERT INTO users (name, balance) VALUES ('zed', 1)")
    cp = act(res, q("DELETE FROM users WHERE name = 'zed'"), q("INSERT INTO users (name, balance) VALUES ('zed', 1)"))
    assert res.rollback(cp["marker"], cp).verified and cp["pre"] == whole(db)
    # Statements outside a transaction (VACUUM) are fingerprinted whole before and after.
    cp = act(res, q("DELETE FROM users WHERE id = 2; VACUUM"), q("INSERT INTO users VALUES (2, 'bob', 20)"))
    assert cp["post"] == whole(db)
