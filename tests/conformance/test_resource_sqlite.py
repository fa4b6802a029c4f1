"""The SQLite strategies (transaction, inverse, clone) plugged into the ResourceManager suite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import Resource, ResourceKind, UndoStrategy
from goexd.domain.resource import ResourceManager
from goexd.domain.sandbox import Limits
from goexd.resources.sqlite.clone import SqliteCloneResource
from goexd.resources.sqlite.inverse import SqliteInverseResource
from goexd.resources.sqlite.transaction import SqliteTransactionResource
from tests.conformance import sql_backends as q
from tests.conformance.resource_suite import (
    Capabilities,
    Driver,
    InverseUse,
    Lose,
    ResourceBackend,
    ResourceManagerContract,
)


def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.executescript(q.SEED)
    db.close()
    return path


def state(path: Path) -> object:
    """Every table's definition and rows, as another connection sees them (goexd's marker table left out)."""
    db = sqlite3.connect(path)
    try:
        tables = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name <> ? ORDER BY name", (OUTCOMES_TABLE,)
        ).fetchall()
        return [(name, text, db.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()) for name, text in tables]
    finally:
        db.close()


def backend(path: Path, open_manager: Callable[[], ResourceManager], lose: Lose | None = None) -> ResourceBackend:
    return ResourceBackend(
        open=open_manager,
        change=q.change,
        failing=q.FAILING,
        read_action=q.READ,
        bad=q.BAD,
        bad_field=q.BAD_FIELD,
        state=lambda: state(path),
        lose=lose,
    )


def runaway_write(m: ResourceManager, driver: Driver) -> None:
    """An interrupted write: SQLite rolls back the session's whole transaction, the earlier actions with it."""
    aid = "act_runaway"
    cp = m.checkpoint(aid)
    forever = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) INSERT INTO t SELECT i + 1000, 'x' FROM n"
    )
    with pytest.raises(InvalidArgument, match="whole transaction"):
        m.execute(q.sql(forever), Limits(timeout_s=0.3), cp, None, None)
    assert m.rollback(aid, cp).verified  # the engine's FAILED path


class TestSqliteTransaction(ResourceManagerContract):
    caps = Capabilities(
        strategy_words="strategy transaction",
        pending_visible=False,
        commit_releases=True,
        loses_pending=True,
        taken_back_after_a_crash=False,
    )

    @pytest.fixture
    def backend(self, tmp_path: Path) -> ResourceBackend:
        path = database(tmp_path)
        resource = Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.TRANSACTION)
        return backend(path, lambda: SqliteTransactionResource(resource), lose=runaway_write)


class TestSqliteInverse(ResourceManagerContract):
    caps = Capabilities(strategy_words="strategy inverse", inverse=InverseUse.NEEDED)

    @pytest.fixture
    def backend(self, tmp_path: Path) -> ResourceBackend:
        path = database(tmp_path)
        resource = Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.INVERSE)
        return backend(path, lambda: SqliteInverseResource(resource))


class TestSqliteClone(ResourceManagerContract):
    caps = Capabilities(strategy_words="strategy clone", commit_releases=True)

    @pytest.fixture
    def backend(self, tmp_path: Path) -> ResourceBackend:
        path = database(tmp_path)
        resource = Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.CLONE)
        return backend(path, lambda: SqliteCloneResource(resource, tmp_path / "clones"))
