# ruff: noqa: F811  # the `res` fixture is imported from test_sqlite_inverse and named by each test
"""SQLite state that a pair can leave changed beside the ordinary tables' rows (issue 15, trial 15b):
ANALYZE's sqlite_stat1/sqlite_stat4 (S31/S36: a wrong inverse was "verified"), and virtual tables,
compared by the rows their own SELECT gives, not by their shadow tables' bytes (S23: an FTS5 insert
and its exact inverse were refused because FTS5 wrote tombstone segments)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from goexd.dbinspect import sqlite as inspect
from goexd.dbinspect.sqlite_catalog import read_schema, shadow_tables
from goexd.domain.models import Reversibility, Verdict
from goexd.domain.sandbox import Limits
from goexd.engine.journal import Journal
from goexd.engine.verdict_memory import VerdictMemory, remembered
from goexd.resources.sqlite.inverse import SqliteInverseResource
from tests.integration.test_sqlite_inverse import q, res  # noqa: F401 (res: the resource on `db` below)
from tests.integration.verdicts import failed, passed

LIMITS = Limits(timeout_s=10)
SETUP = """
CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
CREATE INDEX t_v ON t (v);
INSERT INTO t VALUES (1, 1), (2, 2), (3, 2);
CREATE VIRTUAL TABLE docs USING fts5(body);
INSERT INTO docs (rowid, body) VALUES (1, 'hello');
CREATE VIRTUAL TABLE bare USING fts5(body, content='');
INSERT INTO bare (rowid, body) VALUES (1, 'hello');
CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1);
INSERT INTO boxes VALUES (1, 0, 1);
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode = WAL")
        setup.executescript(SETUP)
    return path


def whole(db: Path) -> inspect.DbFingerprint:
    with sqlite3.connect(db, isolation_level=None) as conn:
        return inspect.fingerprint(conn)


@pytest.mark.parametrize(
    ("inverse", "named"),
    [("SELECT 1", "sqlite_stat1 t: none → t_v: 3 2"), ("DELETE FROM sqlite_stat1", "sqlite_stat1: none → 0 rows")],
)
def test_analyze_left_behind_fails_the_test(res: SqliteInverseResource, db: Path, inverse: str, named: str) -> None:
    detail = failed(res, "ANALYZE", inverse)
    assert named in detail, detail
    passed(res, "ANALYZE", "DROP TABLE sqlite_stat1")


def test_statistics_changed_by_another_analyze_are_named() -> None:
    with sqlite3.connect(":memory:", isolation_level=None) as conn:
        conn.executescript(SETUP + "ANALYZE;")
        before = inspect.fingerprint(conn)
        conn.execute("INSERT INTO t VALUES (4, 4)")
        conn.execute("DELETE FROM t WHERE id = 4")
        assert inspect.fingerprint(conn) == before  # rows back: the statistics did not move
        conn.execute("INSERT INTO t VALUES (4, 4)")
        conn.execute("ANALYZE")
        conn.execute("DELETE FROM t WHERE id = 4")
        after = inspect.fingerprint(conn)
    assert after != before and after.digest != before.digest
    found = inspect.diff(before, after)
    assert found.state_changes == ("sqlite_stat1 t: t_v: 3 2 → t_v: 4 2",), found.state_changes


def test_an_undo_that_leaves_statistics_is_not_verified(res: SqliteInverseResource, db: Path) -> None:
    spec, right = q("ANALYZE"), q("DROP TABLE sqlite_stat1")
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", right)
    cp = {**cp, **res.execute(spec, LIMITS, cp, None, None).checkpoint_extra}
    cp["inverse_sql"] = "DELETE FROM sqlite_stat1"  # as if the inverse kept were the wrong one
    report = res.rollback(cp["marker"], cp)
    assert not report.verified and "sqlite_stat1: none → 0 rows" in report.detail, report.detail


def test_verdict_memory_does_not_reuse_a_verdict_across_statistics(
    res: SqliteInverseResource, db: Path, tmp_path: Path
) -> None:
    memory = VerdictMemory(Journal(tmp_path / "journal.sqlite3", sync="normal"))
    spec, inverse = q("UPDATE t SET v = 9 WHERE id = 1"), q("UPDATE t SET v = 1 WHERE id = 1")

    def now() -> Reversibility:
        return res.test(spec, inverse, LIMITS, None)

    first = remembered(memory, res.resource, res, spec, inverse, "t", now)
    assert first is not None and first.verdict is Verdict.PASSED, first
    with sqlite3.connect(db) as other:  # another writer analyses: no row differs
        other.execute("ANALYZE")
    again = remembered(memory, res.resource, res, spec, inverse, "t", now)
    assert again is not None and "reused" not in again.detail, again


@pytest.mark.parametrize(
    ("action", "right", "wrong", "named"),
    [
        (
            "INSERT INTO docs (rowid, body) VALUES (2, 'hello again')",
            "DELETE FROM docs WHERE rowid = 2",
            "DELETE FROM docs WHERE rowid = 1",
            "docs: 1 → 1 rows: 1 added, 1 removed (rowid 2 added; rowid 1 removed)",
        ),
        (
            "DELETE FROM docs WHERE rowid = 1",
            "INSERT INTO docs (rowid, body) VALUES (1, 'hello')",
            "INSERT INTO docs (rowid, body) VALUES (5, 'hello')",
            "(rowid 5 added; rowid 1 removed)",
        ),
        (
            "UPDATE docs SET body = 'bye' WHERE rowid = 1",
            "UPDATE docs SET body = 'hello' WHERE rowid = 1",
            "UPDATE docs SET body = 'Hello' WHERE rowid = 1",
            "docs: 1 → 1 rows: 1 changed",
        ),
        (
            "INSERT INTO boxes VALUES (2, 0, 5)",
            "DELETE FROM boxes WHERE id = 2",
            "UPDATE boxes SET x1 = 4 WHERE id = 2",
            "boxes: 1 → 2 rows: 1 added",
        ),
    ],
)
def test_a_virtual_table_is_compared_by_its_rows(
    res: SqliteInverseResource, db: Path, action: str, right: str, wrong: str, named: str
) -> None:
    passed(res, action, right)  # the shadow tables differ (FTS5 tombstones): not compared
    detail = failed(res, action, wrong)
    assert named in detail and "docs_data" not in detail and "boxes_node" not in detail, detail


def test_a_contentless_fts_table_is_compared_by_its_index_and_the_diff_says_so(
    res: SqliteInverseResource, db: Path
) -> None:
    """content='': SELECT shows no content of its own, so its shadow tables stay compared, named as such."""
    detail = failed(res, "INSERT INTO bare (rowid, body) VALUES (2, 'x')", "SELECT 1")
    assert "bare_docsize (a shadow table of virtual table bare): 1 → 2 rows" in detail, detail
    assert "Only shadow tables changed: the stored index of bare" in detail, detail


def test_shadow_tables_are_found_by_the_module_not_the_name(db: Path) -> None:
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("CREATE TABLE docs_extra (x)")  # named like a shadow table, but FTS5 has no such one
        modules = {"docs": "fts5", "bare": "fts5", "boxes": "rtree"}
        found = shadow_tables(conn, modules)
        schema = read_schema(conn)
    assert "docs_extra" not in found and found["docs_data"] == "docs" and found["boxes_node"] == "boxes"
    kinds = {rel.name: (rel.kind, rel.has_rows, rel.shadow_of) for rel in schema.relations}
    assert kinds["docs"] == ("virtual table", True, None) and kinds["boxes"] == ("virtual table", True, None)
    assert kinds["docs_extra"] == ("table", True, None) and "docs_data" not in kinds
    assert kinds["bare"] == ("virtual table", False, None) and kinds["bare_data"] == ("table", True, "bare")


def test_an_fts5_write_undone_through_the_resource_is_verified(res: SqliteInverseResource, db: Path) -> None:
    spec, inverse = q("INSERT INTO docs (rowid, body) VALUES (2, 'hello again')"), q("DELETE FROM docs WHERE rowid = 2")
    before = whole(db)
    cp = res.checkpoint(f"act_{uuid.uuid4().hex[:16]}", inverse)
    cp = {**cp, **res.execute(spec, LIMITS, cp, None, None).checkpoint_extra}
    assert cp["post"] == whole(db).digest != before.digest
    report = res.rollback(cp["marker"], cp)
    assert report.verified, report.detail
    assert whole(db) == before
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT rowid FROM docs WHERE docs MATCH 'again'").fetchall() == []
