"""The SQLite `inverse` strategy on real files: tested pairs, the paper's scenarios, clone tests, drift."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.engine.models import (
    ActionKind,
    ActionSpec,
    Resource,
    ResourceKind,
    ReversibilityClass,
    UndoStrategy,
    Verdict,
)
from goexd.errors import InvalidArgument
from goexd.resources.sqlite_inverse import SqliteInverseResource
from goexd.sandbox.base import Limits

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
    cp = res.checkpoint("act_x", inverse)
    out = res.execute(spec, LIMITS, cp, None, None)
    return {**cp, **out.checkpoint_extra}


def test_the_paper_scenarios_commit_at_once_and_undo_by_their_inverse(res: SqliteInverseResource, db: Path) -> None:
    before = res.fingerprint()
    bump = act(res, q("UPDATE users SET balance = balance + 500"), q("UPDATE users SET balance = balance - 500"))
    assert seen(db, "SELECT balance FROM users ORDER BY id") == [(510,), (520,)]  # committed at once
    report = res.rollback("act_x", bump)
    assert report.verified and res.fingerprint() == before

    add = act(res, q("INSERT INTO users (name, balance) VALUES ('cy', 3)"), q("DELETE FROM users WHERE name = 'cy'"))
    assert res.rollback("act_x", add).verified and res.fingerprint() == before

    create = act(res, q("CREATE TABLE orders (id INTEGER PRIMARY KEY)"), q("DROP TABLE orders"))
    assert seen(db, "SELECT count(*) FROM sqlite_master WHERE name = 'orders'") == [(1,)]
    assert res.rollback("act_x", create).verified and res.fingerprint() == before


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
    report = res.rollback("act_x", cp)
    assert not report.verified and "changed since the action" in report.detail
    # The inverse ran as written (and so also took 500 from the newcomer): the report says it is unverified.
    assert seen(db, "SELECT name, balance FROM users ORDER BY id") == [("ann", 10), ("bob", 20), ("zed", -499)]


def test_a_failed_action_leaves_nothing_to_undo(res: SqliteInverseResource) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_f", q("DELETE FROM users WHERE name = 'x'"))
    with pytest.raises(InvalidArgument, match="NOT NULL"):
        res.execute(q("INSERT INTO users (name) VALUES ('x'); SELECT 1"), LIMITS, cp, None, None)
    assert res.rollback("act_f", cp).verified and res.fingerprint() == before
