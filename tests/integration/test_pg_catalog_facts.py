"""The PostgreSQL catalog facts beside the definitions (trial 15b, finding 2), on the suite's cluster:
the readers (pg_catalog.read_schema, pg_states.py, pg_largeobjects.py) report each fact, a wrong
inverse that leaves one changed fails the test naming it, a right one passes, and an undo by a wrong
inverse is not called verified. The corpus (tests/corpus/sql.toml) holds the trial's cases that a
policy lets run; here are those it refuses (GRANT, ALTER DEFAULT PRIVILEGES, ALTER DATABASE/ROLE
... SET), which the resources test directly, and what only a reader test can show (a large object
the role may not read, one hashed in chunks, an unpopulated materialized view)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from goexd.dbinspect import pg_catalog, pg_largeobjects
from goexd.dbinspect import postgres as inspect
from goexd.dbinspect.backend import reading
from goexd.dbinspect.model import Schema
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.sandbox import Limits
from goexd.resources.postgres.inverse import PostgresInverseResource
from tests.integration.verdicts import failed, passed
from tests.services.postgres import PgCluster

SETUP = """
CREATE TABLE t (id integer PRIMARY KEY, name text, qty integer);
CREATE INDEX t_q ON t (qty);
INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2);
CREATE VIEW v AS SELECT id, name FROM t;
CREATE FUNCTION f() RETURNS integer LANGUAGE sql AS 'SELECT 1';
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE SCHEMA side;
"""


@pytest.fixture
def app(pg_cluster: PgCluster, pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect_app(pg_database) as conn:
        conn.execute(SETUP)
        yield conn


@pytest.fixture
def res(app: psycopg.Connection[Any], pg_cluster: PgCluster, pg_database: str) -> Iterator[PostgresInverseResource]:
    resource = Resource("db", ResourceKind.POSTGRES, pg_cluster.app_dsn_for(pg_database), UndoStrategy.INVERSE)
    r = PostgresInverseResource(resource, pg_cluster.app_password)
    yield r
    r.close()


def schema(conn: psycopg.Connection[Any]) -> Schema:
    with reading(conn):
        return pg_catalog.read_schema(conn)


def facts(conn: psycopg.Connection[Any]) -> dict[str, str]:
    s = schema(conn)
    return {**dict(s.states), **dict(s.settings)}


def test_the_readers_report_each_fact(app: psycopg.Connection[Any]) -> None:
    app.execute("""
        CREATE TABLE par (a integer); CREATE TABLE kid () INHERITS (par);
        CREATE TABLE m (a integer) PARTITION BY RANGE (a); CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);
        CREATE MATERIALIZED VIEW mv AS SELECT qty FROM t;
        CREATE DOMAIN posint AS integer DEFAULT 1 NOT NULL CONSTRAINT pos CHECK (VALUE > 0);
        CREATE TYPE pair AS (a integer, b text COLLATE "C");
        CREATE SEQUENCE s CACHE 5 CYCLE OWNED BY t.qty;
        ALTER TABLE t SET (fillfactor = 70); ALTER TABLE t REPLICA IDENTITY FULL; ALTER TABLE t CLUSTER ON t_q;
        ALTER TABLE t ALTER COLUMN qty SET STATISTICS 500; ALTER TABLE t ALTER COLUMN name SET STORAGE MAIN;
        ALTER TABLE t ALTER COLUMN name SET COMPRESSION pglz; ALTER TABLE t ALTER COLUMN qty SET (n_distinct = 5);
        ALTER VIEW v SET (security_barrier = true);
        CREATE RULE no_ins AS ON INSERT TO t DO INSTEAD NOTHING;
        CREATE STATISTICS st ON qty, name FROM t;
        SELECT lo_from_bytea(424242, 'abc'::bytea);
    """)
    found = facts(app)
    expected = {
        "option fillfactor of table t": "70",
        "replica identity of table t": "full",
        "cluster on index t_q of table t": "set",
        "statistics target of table t column qty": "500",
        "storage of table t column name": "main",
        "compression of table t column name": "pglz",
        "option n_distinct of table t column qty": "5",
        "option security_barrier of view v": "true",
        "statistics st on table t": "CREATE STATISTICS public.st ON name, qty FROM t",
        "partition bound of table m1": "FOR VALUES FROM (0) TO (10)",
        "partition key of partitioned table m": "RANGE (a)",
        "parent m of table m1": "position 1",
        "parent par of table kid": "position 1",
        "inheritance of table kid column a": "inherited from 1 parent",
        "data of materialized view mv": "populated",
        "cache of sequence s": "5",
        "cycle of sequence s": "yes",
        "owning column of sequence s": "t.qty",
        "large object 424242": "3 bytes, md5 900150983cd24fb0d6963f7d28e17f72",
        "schema side": "owner app",
    }
    assert {k: found.get(k) for k in expected} == expected
    assert found["rule no_ins on table t"].startswith("CREATE RULE no_ins AS")
    types = schema(app).types
    assert "posint: DOMAIN integer DEFAULT 1 NOT NULL CONSTRAINT pos CHECK (VALUE > 0)" in types
    assert 'pair: COMPOSITE (a integer, b text COLLATE "C")' in types
    # Materialized views' rows are fingerprinted like a table's.
    assert inspect.fingerprint(app).tables["mv"].row_count == 2


def test_settings_at_their_default_are_not_listed(app: psycopg.Connection[Any]) -> None:
    """Each setting is present only when set: the schema of a fresh database holds none of them."""
    before = schema(app).settings
    app.execute("ALTER TABLE t SET (fillfactor = 70); ALTER TABLE t RESET (fillfactor)")
    assert before == schema(app).settings == ()


def test_privileges_of_schemas_types_functions_and_defaults_are_compared(res: PostgresInverseResource) -> None:
    """ACLs the trial saw uncompared (P56) and docs listed as not covered; each named, each undone by its REVOKE."""
    cases = [
        (
            "GRANT USAGE ON SCHEMA side TO PUBLIC",
            "REVOKE USAGE ON SCHEMA side FROM PUBLIC",
            "privileges on schema side: ",
        ),
        ("REVOKE USAGE ON TYPE mood FROM PUBLIC", "GRANT USAGE ON TYPE mood TO PUBLIC", "privileges on type mood: "),
        (
            "REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION f() TO PUBLIC",
            "privileges on function f(): ",
        ),
        (
            "GRANT SELECT (qty) ON t TO PUBLIC",
            "REVOKE SELECT (qty) ON t FROM PUBLIC",
            "privileges on table t column qty added",
        ),
        (
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
            "ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM PUBLIC",
            "default privileges of role app on tables added",
        ),
        (
            "DO $$BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO PUBLIC', current_database()); END$$",
            "DO $$BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM PUBLIC', current_database()); END$$",
            "privileges on this database: ",
        ),
    ]
    for action, right, named in cases:
        assert named in failed(res, action, "SELECT 1"), action
        passed(res, action, right)


def test_database_and_role_settings_are_compared(res: PostgresInverseResource, pg_cluster: PgCluster) -> None:
    """ALTER DATABASE ... SET (trial P35) and ALTER ROLE ... SET: what the next session here starts with."""
    detail = failed(
        res,
        "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''1MB''', current_database()); END$$",
        "SELECT 1",
    )
    assert "setting work_mem of this database: default → 1MB" in detail, detail
    try:
        detail = failed(res, "ALTER ROLE app SET statement_timeout = '5s'", "SELECT 1")
        assert "setting statement_timeout of role app: default → 5s" in detail, detail
        passed(res, "ALTER ROLE app SET statement_timeout = '5s'", "ALTER ROLE app RESET statement_timeout")
        detail = failed(
            res,
            "DO $$BEGIN EXECUTE format('ALTER DATABASE %I CONNECTION LIMIT 7', current_database()); END$$",
            "SELECT 1",
        )
        assert "connection limit of this database: default → 7" in detail, detail
    finally:
        with pg_cluster.connect() as su:
            su.execute("ALTER ROLE app RESET ALL")


def test_a_materialized_view_made_unpopulated_is_named_and_still_fingerprinted(
    res: PostgresInverseResource, app: psycopg.Connection[Any]
) -> None:
    app.execute("CREATE MATERIALIZED VIEW mv AS SELECT qty FROM t")
    detail = failed(res, "REFRESH MATERIALIZED VIEW mv WITH NO DATA", "SELECT 1")
    assert "data of materialized view mv: populated → not populated (WITH NO DATA)" in detail, detail
    passed(res, "REFRESH MATERIALIZED VIEW mv WITH NO DATA", "REFRESH MATERIALIZED VIEW mv")
    app.execute("REFRESH MATERIALIZED VIEW mv WITH NO DATA")
    fp = inspect.fingerprint(app)  # a SELECT from it would fail: its rows are not read
    assert "mv" in fp.unreadable and "mv" not in fp.tables


def test_a_large_object_the_role_may_not_read_is_compared_by_its_privileges_only(
    app: psycopg.Connection[Any], pg_cluster: PgCluster, pg_database: str
) -> None:
    with pg_cluster.connect(pg_database) as su:
        su.execute("SELECT lo_from_bytea(515151, 'secret'::bytea)")  # owned by the superuser, no grant
        found = facts(app)
        assert found["large object 515151"] == pg_largeobjects.UNREADABLE
        assert found["privileges on large object 515151"] == "postgres=rw/postgres"
        before = inspect.fingerprint(app)
        su.execute("SELECT lo_put(515151, 0, 'SECRET'::bytea)")  # its content is not seen: said, not compared
        assert inspect.fingerprint(app) == before
        su.execute("GRANT SELECT ON LARGE OBJECT 515151 TO app")
        after = inspect.fingerprint(app)
    assert after != before
    text = inspect.diff(before, after).text
    assert "large object 515151: content not compared: not readable by this role → 6 bytes, md5 " in text, text
    assert "privileges on large object 515151: postgres=rw/postgres → app=r/postgres,postgres=rw/postgres" in text, text


def test_a_large_object_over_a_chunk_is_hashed_by_chunks(
    app: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_largeobjects, "CHUNK", 4)
    app.execute("SELECT lo_from_bytea(424242, 'abcdefghij'::bytea)")
    before = facts(app)["large object 424242"]
    assert before.startswith("10 bytes, chunked md5 "), before
    app.execute("SELECT lo_put(424242, 9, 'J'::bytea)")  # the last chunk only
    after = facts(app)["large object 424242"]
    assert after.startswith("10 bytes, chunked md5 ") and after != before


def test_an_undo_by_a_wrong_inverse_is_not_verified(res: PostgresInverseResource) -> None:
    """The undo's check is the fingerprint too (trial P45: the rule stayed, "verified")."""
    limits = Limits(timeout_s=10)
    action = ActionSpec(ActionKind.SQL, sql="CREATE RULE no_ins AS ON INSERT TO t DO INSTEAD NOTHING")
    cp = res.checkpoint("act_rule", ActionSpec(ActionKind.SQL, sql="SELECT 1"))
    cp.update(res.execute(action, limits, cp, None, None).checkpoint_extra)
    report = res.rollback("act_rule", cp)
    assert not report.verified and "rule no_ins on table t added" in report.detail, report.detail


def test_other_objects_of_a_schema_are_compared(res: PostgresInverseResource, app: psycopg.Connection[Any]) -> None:
    """Aggregates, collations, operators, text search configurations and dictionaries, conversions and
    casts: a wrong inverse that leaves one made, dropped or changed fails naming it; the right one passes."""
    app.execute("""
        CREATE FUNCTION add2(integer, integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2';
        CREATE TEXT SEARCH CONFIGURATION tsc (COPY = simple);
    """)
    cases = [
        (
            "CREATE AGGREGATE sum2(integer) (sfunc = add2, stype = integer, initcond = '0')",
            "DROP AGGREGATE sum2(integer)",
            "aggregate sum2(integer) added",
        ),
        ("CREATE COLLATION c2 (locale = 'C')", "DROP COLLATION c2", "collation c2 added"),
        (
            "CREATE OPERATOR ### (function = add2, leftarg = integer, rightarg = integer)",
            "DROP OPERATOR ### (integer, integer)",
            "operator ###(integer,integer) added",
        ),
        (
            "ALTER TEXT SEARCH CONFIGURATION tsc DROP MAPPING FOR email",
            "ALTER TEXT SEARCH CONFIGURATION tsc ADD MAPPING FOR email WITH simple",
            "text search configuration tsc: ",
        ),
        (
            "CREATE TEXT SEARCH DICTIONARY tsd (TEMPLATE = simple, STOPWORDS = english)",
            "DROP TEXT SEARCH DICTIONARY tsd",
            "text search dictionary tsd added",
        ),
        ("CREATE CAST (mood AS text) WITH INOUT", "DROP CAST (mood AS text)", "cast (mood AS text) added"),
    ]
    for action, right, named in cases:
        assert named in failed(res, action, "SELECT 1"), action
        passed(res, action, right)
