"""The SQLite `clone` strategy on real files: undo of what neither a transaction nor an inverse takes back."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from goexd.dbinspect import sqlite as inspect
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.sandbox import Limits
from goexd.resources.sqlite.clone import SqliteCloneResource

LIMITS = Limits(timeout_s=10)


def q(sql: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=sql)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL)")
        setup.executemany("INSERT INTO users (name, balance) VALUES (?, ?)", [(f"u{i}", i) for i in range(1000)])
    return path


@pytest.fixture
def res(db: Path, tmp_path: Path) -> Iterator[SqliteCloneResource]:
    r = SqliteCloneResource(Resource("db", ResourceKind.SQLITE, str(db), UndoStrategy.CLONE), tmp_path / "clones")
    yield r
    r.close()


def seen(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as other:
        return other.execute(sql).fetchall()


def test_undo_copies_the_clone_back_even_after_vacuum_and_ddl(res: SqliteCloneResource, db: Path) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_1")
    assert stat.S_IMODE(Path(cp["clone"]).stat().st_mode) == 0o600
    res.execute(q("DELETE FROM users WHERE id % 2 = 0; DROP TABLE users; VACUUM"), LIMITS, cp, None, None)
    assert seen(db, "SELECT count(*) FROM sqlite_master") == [(0,)]  # committed at once
    report = res.rollback("act_1", cp)
    assert report.verified and res.fingerprint() == before
    assert seen(db, "SELECT count(*) FROM users") == [(1000,)]
    assert not Path(cp["clone"]).exists()


def test_commit_drops_the_clone_and_a_failed_action_changes_nothing(res: SqliteCloneResource) -> None:
    before = res.fingerprint()
    cp = res.checkpoint("act_2")
    with pytest.raises(InvalidArgument, match="NOT NULL"):
        res.execute(q("UPDATE users SET balance = 0; INSERT INTO users (name) VALUES ('x')"), LIMITS, cp, None, None)
    assert res.fingerprint() == before  # its transaction was rolled back
    res.commit("act_2", cp)
    assert not Path(cp["clone"]).exists()
    with pytest.raises(InvalidArgument, match="client inverses go unused"):
        res.check_inverse(q("DELETE FROM users"), q("SELECT 1"))


def whole(db: Path) -> str:
    """The database's fingerprint, read whole on a connection of its own."""
    with closing(sqlite3.connect(db)) as other:
        return inspect.fingerprint(other).digest


def test_the_clone_fingerprint_is_known_without_reading_every_row_unless_others_wrote(
    res: SqliteCloneResource, db: Path
) -> None:
    for i, sql in enumerate(("UPDATE users SET balance = 0 WHERE id = 1", "DELETE FROM users WHERE id > 990")):
        cp = res.checkpoint(f"act_{i}")
        assert cp["pre"] == whole(db)
        res.execute(q(sql), LIMITS, cp, None, None)
        res.commit(f"act_{i}", cp)
    with sqlite3.connect(db) as other:  # noticed by PRAGMA data_version: the next one is read whole
        other.execute("INSERT INTO users (name, balance) VALUES ('zed', 1)")
    cp = res.checkpoint("act_z")
    assert cp["pre"] == whole(db)
    res.execute(q("DELETE FROM users WHERE name = 'zed'"), LIMITS, cp, None, None)
    report = res.rollback("act_z", cp)
    assert report.verified and whole(db) == cp["pre"] and res.fingerprint() == cp["pre"]
