"""The SQL cases of the inverse corpus (tests/corpus/sql.toml) on the resources themselves: every
right inverse passes its test, every wrong one fails with a diff naming the change, and neither
test changes the database. (tests/e2e/test_sql_inverse_corpus.py runs the same cases through goexd.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from goexd.domain.models import Resource, ResourceKind, UndoStrategy
from goexd.resources.postgres.inverse import PostgresInverseResource
from goexd.resources.sqlite.inverse import SqliteInverseResource
from tests.corpus import sql_cases
from tests.corpus.sql_cases import SqlCase
from tests.integration.verdicts import failed, passed
from tests.services.postgres import PgCluster


def right_passes_wrong_fails(res: SqliteInverseResource | PostgresInverseResource, case: SqlCase) -> None:
    """The right inverse passes the test, the wrong one fails it with a diff naming the change; closes `res`."""
    try:
        passed(res, case.action, case.right)
        detail = failed(res, case.action, case.wrong)
    finally:
        res.close()
    assert case.wrong_diff in detail, detail


@pytest.mark.parametrize("case", sql_cases.of("sqlite"), ids=lambda c: c.name)
def test_sqlite_case(case: SqlCase, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    sql_cases.set_up_sqlite(path, case)
    before = sql_cases.sqlite_state(path)
    right_passes_wrong_fails(
        SqliteInverseResource(Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.INVERSE)), case
    )
    assert sql_cases.sqlite_state(path) == before


@pytest.mark.parametrize("case", sql_cases.of("postgresql"), ids=lambda c: c.name)
def test_postgres_case(case: SqlCase, pg_cluster: PgCluster, pg_database: str) -> None:
    with pg_cluster.connect_app(pg_database) as setup:
        sql_cases.set_up_postgres(setup, case)
        before = sql_cases.postgres_state(setup)
    resource = Resource("db", ResourceKind.POSTGRES, pg_cluster.app_dsn_for(pg_database), UndoStrategy.INVERSE)
    right_passes_wrong_fails(PostgresInverseResource(resource, pg_cluster.app_password), case)
    with pg_cluster.connect_app(pg_database) as after:
        assert sql_cases.postgres_state(after) == before
