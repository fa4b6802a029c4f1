# ruff: noqa: F811  # the `res` fixture is imported from test_sqlite_inverse and named by each test
"""SQLite state beside the rows that a pair can leave changed (issue 15, the outside trial's S2/S18,
mem1 and the undo's message): sqlite_sequence values, user_version and application_id are compared
by the test, by the undo's check and by the fingerprint verdict memory keys on; an undo that does
not match says what differs."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from goexd.dbinspect import sqlite as inspect
from goexd.dbinspect.sqlite_catalog import read_schema as inspect_schema
from goexd.domain.models import Reversibility, Verdict
from goexd.domain.sandbox import Limits
from goexd.engine.journal import Journal
from goexd.engine.verdict_memory import VerdictMemory, remembered
from goexd.resources.sqlite.inverse import SqliteInverseResource
from tests.integration.test_sqlite_inverse import q, res  # noqa: F401 (res: the resource on `db` below)
from tests.integration.verdicts import failed, passed

LIMITS = Limits(timeout_s=10)
SETUP = """
CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, n TEXT);
INSERT INTO a (n) VALUES ('x');
CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
INSERT INTO t VALUES (1, 1), (2, 2);
"""
PUT_BACK = "UPDATE sqlite_sequence SET seq = 1 WHERE name = 'a'"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as setup:
        setup.executescript(SETUP)
    return path


def whole(db: Path) -> inspect.DbFingerprint:
    with sqlite3.connect(db, isolation_level=None) as conn:
        return inspect.fingerprint(conn)


def test_an_autoincrement_counter_left_moved_fails_the_test(res: SqliteInverseResource, db: Path) -> None:
    before = whole(db)
    detail = failed(res, "INSERT INTO a (n) VALUES ('y')", "DELETE FROM a WHERE n = 'y'")
    assert "sqlite_sequence a: 1 → 2" in detail, detail
    # Putting the counter back too is the right inverse.
    passed(res, "INSERT INTO a (n) VALUES ('y')", f"DELETE FROM a WHERE n = 'y'; {PUT_BACK}")
    assert whole(db) == before and whole(db).state["sqlite_sequence a"] == "1"


@pytest.mark.parametrize("pragma", ["user_version", "application_id"])
def test_header_values_left_changed_fail_the_test(res: SqliteInverseResource, db: Path, pragma: str) -> None:
    detail = failed(res, f"PRAGMA {pragma} = 7", "SELECT 1")
    assert f"{pragma}: 0 → 7" in detail, detail
    passed(res, f"PRAGMA {pragma} = 7", f"PRAGMA {pragma} = 0")
    with sqlite3.connect(db) as other:
        assert other.execute(f"PRAGMA {pragma}").fetchone() == (0,)  # the tests changed nothing


def test_the_diff_names_each_state_change_and_only_those() -> None:
    with sqlite3.connect(":memory:", isolation_level=None) as conn:
        conn.executescript(SETUP)
        before = inspect.fingerprint(conn)
        conn.execute("INSERT INTO a (n) VALUES ('y')")
        conn.execute("DELETE FROM a WHERE n = 'y'")
        conn.execute("PRAGMA user_version = 3")
        after = inspect.fingerprint(conn)
    assert before != after and before.digest != after.digest
    found = inspect.diff(before, after)
    assert not found.identical and not found.tables_changed and not found.schema_changed
    assert found.state_changes == ("sqlite_sequence a: 1 → 2", "user_version: 0 → 3")
    assert found.text == "Database state changed: sqlite_sequence a: 1 → 2; user_version: 0 → 3.", found.text


def test_the_tracked_fingerprint_after_an_action_holds_the_state(res: SqliteInverseResource, db: Path) -> None:
    """The fingerprint after an action comes from the one before and what changed: its state is read."""
    spec, inverse = q("INSERT INTO a (n) VALUES ('y')"), q("DELETE FROM a WHERE n = 'y'")
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", inverse)
    out = res.execute(spec, LIMITS, cp, None, None)
    assert out.checkpoint_extra["post"] == res.fingerprint() == whole(db).digest


def test_an_undo_that_does_not_restore_says_what_differs(res: SqliteInverseResource, db: Path) -> None:
    spec = q("INSERT INTO a (n) VALUES ('y')")
    right = q(f"DELETE FROM a WHERE n = 'y'; {PUT_BACK}")
    passed(res, spec.sql, right.sql)
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", right)
    cp = {**cp, **res.execute(spec, LIMITS, cp, None, None).checkpoint_extra}
    cp["inverse_sql"] = "DELETE FROM a WHERE n = 'y'"  # as if the inverse kept were the wrong one
    report = res.rollback(cp["marker"], cp)
    assert not report.verified
    assert "the inverse did not restore it" in report.detail and "sqlite_sequence a: 1 → 2" in report.detail, (
        report.detail
    )


def test_an_undo_after_another_writer_names_the_other_writers_change(res: SqliteInverseResource, db: Path) -> None:
    spec, inverse = q("UPDATE t SET v = v + 5"), q("UPDATE t SET v = v - 5")
    passed(res, spec.sql, inverse.sql)
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", inverse)
    cp = {**cp, **res.execute(spec, LIMITS, cp, None, None).checkpoint_extra}
    with sqlite3.connect(db) as other:
        other.execute("INSERT INTO t VALUES (3, 3)")
    report = res.rollback(cp["marker"], cp)
    assert not report.verified and "changed since the action" in report.detail
    assert "t: 2 → 3 rows" in report.detail, report.detail


def test_verdict_memory_does_not_reuse_a_verdict_across_a_moved_counter(
    res: SqliteInverseResource, db: Path, tmp_path: Path
) -> None:
    """The trial's mem1: a pair passed with the counter at 1; with only the counter moved (no row
    differs) the fingerprint differs, so the pair is tested again, and fails there."""
    memory = VerdictMemory(Journal(tmp_path / "journal.sqlite3", sync="normal"))
    spec, inverse = q("INSERT INTO a (n) VALUES ('z')"), q(f"DELETE FROM a WHERE id = 2; {PUT_BACK}")

    def now() -> Reversibility:
        return res.test(spec, inverse, LIMITS, None)

    first = remembered(memory, res.resource, res, spec, inverse, "t", now)
    assert first is not None and first.verdict is Verdict.PASSED, first
    again = remembered(memory, res.resource, res, spec, inverse, "t", now)
    assert again is not None and again.detail.startswith("reused: passed"), again  # the same state: reused
    with sqlite3.connect(db) as other:  # another writer moves only the counter
        other.execute("UPDATE sqlite_sequence SET seq = 5 WHERE name = 'a'")
    moved = remembered(memory, res.resource, res, spec, inverse, "t", now)
    assert moved is not None and "reused" not in moved.detail, moved
    assert moved.verdict is Verdict.FAILED and "sqlite_sequence a: 5 → 1" in moved.detail, moved.detail


ROWID_TABLES = """
CREATE TABLE r (name TEXT);
INSERT INTO r VALUES ('a'), ('b');
CREATE TABLE k (code TEXT PRIMARY KEY, v INTEGER);
INSERT INTO k VALUES ('a', 1), ('b', 2);
CREATE TABLE w (code TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
INSERT INTO w VALUES ('a', 1), ('b', 2);
CREATE TABLE shadow (rowid TEXT, v INTEGER);
INSERT INTO shadow VALUES ('x', 1), ('y', 2);
"""


@pytest.mark.parametrize(
    ("action", "inverse", "named"),
    [
        (
            "DELETE FROM r WHERE name = 'a'",
            "INSERT INTO r VALUES ('a')",
            "r: 2 → 2 rows: 1 added, 1 removed (rowid 3 added; rowid 1 removed)",
        ),
        (
            "DELETE FROM shadow WHERE v = 1",
            "INSERT INTO shadow VALUES ('x', 1)",
            "shadow: 2 → 2 rows: 1 added, 1 removed (_rowid_ 3 added; _rowid_ 1 removed)",
        ),
    ],
)
def test_a_row_put_back_under_another_rowid_fails_the_test(
    res: SqliteInverseResource, db: Path, action: str, inverse: str, named: str
) -> None:
    """The trial's S9: a rowid no INTEGER PRIMARY KEY holds is part of the row (a column named rowid
    shadows the name: _rowid_ selects it then)."""
    with sqlite3.connect(db) as setup:
        setup.executescript(ROWID_TABLES)
    detail = failed(res, action, inverse)
    assert named in detail, detail


def test_keyed_and_without_rowid_tables_have_no_hidden_rowid(res: SqliteInverseResource, db: Path) -> None:
    with sqlite3.connect(db) as setup:
        setup.executescript(ROWID_TABLES)
    passed(res, "DELETE FROM w WHERE code = 'a'", "INSERT INTO w VALUES ('a', 1)")
    passed(res, "DELETE FROM t WHERE id = 1", "INSERT INTO t VALUES (1, 1)")
    passed(res, "DELETE FROM k WHERE code = 'a'", "INSERT INTO k VALUES ('a', 1)")  # keyed: the key is the row
    with sqlite3.connect(db, isolation_level=None) as conn:
        schema = inspect_schema(conn)
    assert {rel.name: rel.rowid for rel in schema.tables} == {
        "a": None,
        "t": None,
        "w": None,
        "r": "rowid",
        "k": None,
        "shadow": "_rowid_",
    }


def test_the_tracked_fingerprint_holds_hidden_rowids(res: SqliteInverseResource, db: Path) -> None:
    """Captured changes digest the rowid as a whole read does: the tracked fingerprint after an action
    on a table without an INTEGER PRIMARY KEY is the one read whole."""
    with sqlite3.connect(db) as setup:
        setup.executescript(ROWID_TABLES)
    spec, inverse = q("DELETE FROM r WHERE name = 'a'; INSERT INTO r VALUES ('a')"), q("SELECT 1")
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", inverse)
    out = res.execute(spec, LIMITS, cp, None, None)
    assert out.checkpoint_extra["post"] == res.fingerprint() == whole(db).digest != cp["pre"]


def test_rows_of_a_table_without_a_primary_key_are_matched_by_rowid() -> None:
    """An update counts as changed (not one removed and one added); rowids added and removed are named."""
    with sqlite3.connect(":memory:", isolation_level=None) as conn:
        conn.executescript(ROWID_TABLES)
        before = inspect.fingerprint(conn)
        conn.execute("UPDATE r SET name = 'z' WHERE name = 'b'")
        conn.executemany("INSERT INTO r VALUES (?)", [(str(n),) for n in range(5)])
        conn.execute("DELETE FROM r WHERE name = 'a'")
        found = inspect.diff(before, inspect.fingerprint(conn))
    [r] = found.tables_changed
    assert (r.added, r.removed, r.changed) == (5, 1, 1)
    assert r.text() == "r: 2 → 6 rows: 5 added, 1 removed, 1 changed (rowid 3, 4, 5 and 2 more added; rowid 1 removed)"
