"""What no inverse takes back under PostgreSQL's inverse strategy (trial 15b, findings 3 and 7): the test says so.

- `ALTER TYPE ... ADD VALUE` adds an enum value PostgreSQL cannot remove (no DROP VALUE): the test fails at
  once as irreversible, naming why, and runs nothing;
- NOTIFY and pg_notify() send a notification, delivered to listeners when the action commits: a pair that
  restores the database is "unknown" (best effort: the undo restores the database only), never "passed".
The test itself delivers nothing: a listener hears no notification from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ReversibilityClass, Verdict
from goexd.resources.postgres.inverse import PostgresInverseResource
from tests.integration.test_postgres_inverse import LIMITS, open_resource, q
from tests.services.postgres import PgCluster


@pytest.fixture
def owner(pg_cluster: PgCluster, pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect_app(pg_database) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int PRIMARY KEY, m mood)")
        conn.execute("INSERT INTO t VALUES (1, 'ok')")
        yield conn


@pytest.fixture
def res(pg_cluster: PgCluster, pg_database: str, owner: psycopg.Connection[Any]) -> Iterator[PostgresInverseResource]:
    r = open_resource(pg_cluster, pg_database)
    yield r
    r.close()


def labels(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT enumlabel FROM pg_enum ORDER BY enumsortorder").fetchall()]


@pytest.mark.parametrize(
    "inverse",
    ["SELECT 1", "ALTER TYPE mood RENAME VALUE 'happy' TO 'happy_gone'"],
)
def test_an_enum_value_added_is_irreversible_before_anything_runs(
    res: PostgresInverseResource, owner: psycopg.Connection[Any], inverse: str
) -> None:
    found = res.test(q("ALTER TYPE mood ADD VALUE 'happy'"), q(inverse), LIMITS, None)
    assert found.verdict is Verdict.FAILED and found.reversibility_class is ReversibilityClass.IRREVERSIBLE
    assert "not reversible: statement 1 cannot be taken back" in found.detail, found.detail
    assert "no ALTER TYPE ... DROP VALUE" in found.detail and "nothing was run" in found.detail
    assert labels(owner) == ["sad", "ok"]
    # Renaming a value is another matter: its inverse renames it back, and is tested as usual.
    renamed = res.test(
        q("ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'"), q("ALTER TYPE mood RENAME VALUE 'fine' TO 'ok'"), LIMITS, None
    )
    assert renamed.verdict is Verdict.PASSED, renamed.detail


@pytest.fixture
def listener(pg_cluster: PgCluster, pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect_app(pg_database) as conn:
        conn.execute("LISTEN ch")
        yield conn


def heard(conn: psycopg.Connection[Any]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.5, stop_after=10)]


@pytest.mark.parametrize(
    "action",
    [
        "NOTIFY ch, 'hello'",
        "SELECT pg_notify('ch', 'hello')",
        "UPDATE t SET m = 'sad'; SELECT pg_notify('ch', 'hello')",
        "DO $$BEGIN PERFORM pg_notify('ch', 'hello'); END$$",
    ],
)
def test_a_notification_makes_a_restoring_pair_unknown(
    res: PostgresInverseResource, listener: psycopg.Connection[Any], owner: psycopg.Connection[Any], action: str
) -> None:
    inverse = "UPDATE t SET m = 'ok'" if action.startswith("UPDATE") else "SELECT 1"
    found = res.test(q(action), q(inverse), LIMITS, None)
    assert found.verdict is Verdict.UNKNOWN, found.detail
    assert found.reversibility_class is ReversibilityClass.BEST_EFFORT
    assert found.detail.startswith("not reversible: ") and "delivered to its listeners when the action commits" in (
        found.detail
    )
    assert "its undo can restore only the database: action then inverse left the database unchanged" in found.detail
    assert heard(listener) == []  # the test, rolled back, sent nothing
    owner.execute("NOTIFY ch, 'control'")  # what the listener hears of a committed one
    assert heard(listener) == ["control"]


def test_a_notifying_pair_that_does_not_restore_the_database_still_fails(res: PostgresInverseResource) -> None:
    found = res.test(q("UPDATE t SET m = 'sad'; NOTIFY ch"), q("SELECT 1"), LIMITS, None)
    assert found.verdict is Verdict.FAILED, found.detail


def test_pg_notify_is_no_read(res: PostgresInverseResource) -> None:
    """A SELECT that sends a notification changes something: it needs an inverse like any write."""
    with pytest.raises(InvalidArgument, match="needs an inverse"):
        res.check_inverse(q("SELECT pg_notify('ch', 'x')"), None)
