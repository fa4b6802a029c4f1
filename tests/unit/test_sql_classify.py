"""goexd.sql.classify: what each statement is, why, and whether a transaction can undo it."""

from __future__ import annotations

import pytest

from goexd.domain.errors import InvalidArgument
from goexd.sql import Classified, Dialect, StatementClass, classify, classify_script

R, W, D = StatementClass.READ, StatementClass.WRITE, StatementClass.DDL
P, T, OT = StatementClass.PRIVILEGED, StatementClass.TRANSACTION, StatementClass.OTHER

# (statement, class, transactional, a piece of the reason)
POSTGRES = [
    # read
    ("SELECT * FROM users", R, True, "reads"),
    ("select a, count(*) from t group by a having count(*) > 1 order by 2", R, True, "reads"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", R, True, "reads"),
    ("TABLE users", R, True, "reads"),
    ("VALUES (1), (2)", R, True, "reads"),
    ("SELECT * FROM t FOR UPDATE", R, True, "reads"),
    ("SELECT currval('s')", R, True, "reads"),
    ("EXPLAIN SELECT 1", R, True, "without running"),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", R, True, "without running"),
    ("EXPLAIN (FORMAT JSON) UPDATE t SET a = 1", R, True, "without running"),
    ("EXPLAIN ANALYZE SELECT 1", R, True, "EXPLAIN ANALYZE runs"),
    ("SHOW search_path", R, True, "SHOW"),
    ("COPY t TO STDOUT", R, True, "COPY TO STDOUT"),
    ("COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", R, True, "COPY TO STDOUT"),
    ("DECLARE c CURSOR FOR SELECT 1", R, True, "cursor"),
    ("FETCH 10 FROM c", R, True, "cursor"),
    # write
    ("INSERT INTO users (name) VALUES ('a')", W, True, "INSERT"),
    ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", W, True, "INSERT"),
    ("UPDATE users SET balance = balance + 500", W, True, "UPDATE"),
    ("DELETE FROM users WHERE id = 1 RETURNING *", W, True, "DELETE"),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", W, True, "MERGE"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", W, True, "data-modifying WITH"),
    ("SELECT * FROM (WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u) x", W, True, "data-modifying"),
    ("COPY t FROM STDIN", W, True, "COPY FROM STDIN"),
    ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", W, True, "COPY FROM STDIN"),
    ("EXPLAIN ANALYZE DELETE FROM t", W, True, "EXPLAIN ANALYZE runs the statement: DELETE"),
    ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", W, True, "UPDATE"),
    ("REFRESH MATERIALIZED VIEW m", W, True, "REFRESH"),
    ("CALL p(1)", W, True, "CALL"),
    ("EXECUTE p(1)", W, True, "EXECUTE"),
    ("DO $$ BEGIN UPDATE t SET a = 1; END $$", W, True, "DO"),
    # sequences: ROLLBACK does not undo them
    ("SELECT nextval('users_id_seq')", W, False, "nextval() changes a sequence"),
    ("SELECT setval('s', 42)", W, False, "setval()"),
    ("INSERT INTO t (id) VALUES (nextval('s'))", W, False, "INSERT adds rows; nextval()"),
    ("SELECT pg_catalog.nextval('s')", W, False, "nextval()"),
    # DDL
    ("CREATE TABLE users (id serial PRIMARY KEY, balance int)", D, True, "CREATE TABLE changes the schema"),
    ("CREATE TABLE IF NOT EXISTS t (a int)", D, True, "CREATE TABLE"),
    ("CREATE TEMP TABLE t (a int)", D, True, "CREATE TEMP TABLE"),
    ("CREATE TABLE t2 AS SELECT * FROM t", D, True, "CREATE TABLE"),
    ("SELECT * INTO t2 FROM t", D, True, "SELECT INTO creates a table"),
    ("CREATE UNLOGGED TABLE t (a int)", D, True, "CREATE"),
    ("ALTER TABLE users ADD COLUMN email text", D, True, "ALTER TABLE"),
    ("ALTER TABLE users RENAME TO people", D, True, "ALTER TABLE"),
    ("ALTER TABLE t OWNER TO someone", D, True, "ALTER TABLE"),
    ("DROP TABLE users", D, True, "DROP TABLE"),
    ("DROP TABLE IF EXISTS a, b CASCADE", D, True, "DROP TABLE"),
    ("CREATE INDEX i ON t (a)", D, True, "CREATE INDEX"),
    ("CREATE UNIQUE INDEX i ON t (a)", D, True, "CREATE UNIQUE INDEX"),
    ("DROP INDEX i", D, True, "DROP INDEX"),
    ("CREATE VIEW v AS SELECT 1", D, True, "CREATE VIEW"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", D, True, "CREATE VIEW"),
    ("CREATE MATERIALIZED VIEW m AS SELECT 1", D, True, "CREATE MATERIALIZED VIEW"),
    ("DROP VIEW v", D, True, "DROP VIEW"),
    ("CREATE SEQUENCE s", D, True, "CREATE SEQUENCE"),
    ("ALTER SEQUENCE s RESTART WITH 1", D, True, "ALTER SEQUENCE"),
    ("CREATE SCHEMA app", D, True, "CREATE SCHEMA"),
    ("CREATE TYPE mood AS ENUM ('a', 'b')", D, True, "CREATE TYPE"),
    ("CREATE TYPE pair AS (a int, b int)", D, True, "CREATE TYPE"),
    ("ALTER TYPE mood ADD VALUE 'c'", D, True, "ALTER TYPE"),
    ("CREATE DOMAIN d AS int CHECK (VALUE > 0)", D, True, "CREATE DOMAIN"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", D, True, "CREATE FUNCTION"),
    ("CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql", D, True, "CREATE FUNCTION"),
    ("CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", D, True, "CREATE TRIGGER"),
    ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", D, True, "CREATE RULE"),
    ("CREATE POLICY p ON t USING (true)", D, True, "CREATE POLICY"),
    ("CREATE AGGREGATE agg (int) (sfunc = int4pl, stype = int)", D, True, "CREATE AGGREGATE"),
    ("COMMENT ON TABLE t IS 'x'", D, True, "COMMENT"),
    ("TRUNCATE users", D, True, "TRUNCATE empties tables"),
    ("TRUNCATE TABLE a, b RESTART IDENTITY", D, True, "TRUNCATE"),
    ("DROP EXTENSION hstore", D, True, "DROP EXTENSION"),
    ("CLUSTER t USING i", D, True, "CLUSTER"),
    # statements a transaction cannot hold
    ("CREATE INDEX CONCURRENTLY i ON t (a)", D, False, "CONCURRENTLY"),
    ("DROP INDEX CONCURRENTLY i", D, False, "CONCURRENTLY"),
    ("VACUUM", OT, False, "VACUUM"),
    ("VACUUM FULL ANALYZE t", OT, False, "VACUUM"),
    ("VACUUM (ANALYZE) t", OT, False, "VACUUM"),
    ("REINDEX TABLE CONCURRENTLY t", OT, False, "REINDEX"),
    ("REINDEX (CONCURRENTLY) INDEX i", OT, False, "REINDEX"),
    ("REINDEX DATABASE app", OT, False, "REINDEX"),
    ("REINDEX SCHEMA app", OT, False, "REINDEX"),
    ("CLUSTER", OT, False, "CLUSTER"),
    ("DISCARD ALL", OT, False, "DISCARD ALL"),
    # other
    ("REINDEX INDEX i", OT, True, "REINDEX"),
    ("ANALYZE t", OT, True, "ANALYZE"),
    ("DISCARD TEMP", OT, True, "DISCARD"),
    ("SET search_path = app, public", OT, True, "search_path"),
    ("SET LOCAL statement_timeout = '5s'", OT, True, "statement_timeout"),
    ("RESET ALL", OT, True, "RESET ALL"),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", OT, True, "LOCK"),
    ("LISTEN chan", OT, True, "LISTEN"),
    ("UNLISTEN *", OT, True, "UNLISTEN"),
    ("NOTIFY chan, 'x'", OT, True, "NOTIFY"),
    ("PREPARE p AS SELECT 1", OT, True, "PREPARE"),
    ("DEALLOCATE p", OT, True, "DEALLOCATE"),
    ("CLOSE c", OT, True, "CLOSE"),
    ("SET CONSTRAINTS ALL DEFERRED", OT, True, "SET CONSTRAINTS"),
    ("CHECKPOINT", OT, True, "CHECKPOINT"),
    # transaction control: goexd manages transactions itself
    ("BEGIN", T, False, "goexd manages transactions itself"),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", T, False, "BEGIN"),
    ("START TRANSACTION", T, False, "START TRANSACTION"),
    ("COMMIT", T, False, "COMMIT"),
    ("END", T, False, "COMMIT"),
    ("ROLLBACK", T, False, "ROLLBACK"),
    ("ABORT", T, False, "ROLLBACK"),
    ("SAVEPOINT a", T, False, "SAVEPOINT"),
    ("RELEASE SAVEPOINT a", T, False, "RELEASE"),
    ("ROLLBACK TO SAVEPOINT a", T, False, "ROLLBACK TO"),
    ("PREPARE TRANSACTION 'x'", T, False, "PREPARE TRANSACTION"),
    ("COMMIT PREPARED 'x'", T, False, "COMMIT PREPARED"),
    ("ROLLBACK PREPARED 'x'", T, False, "ROLLBACK PREPARED"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", T, False, "SET TRANSACTION"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", T, False, "SET TRANSACTION"),
    ("SET transaction_read_only = on", T, False, "SET TRANSACTION"),
    # privileged
    ("DROP DATABASE app", P, False, "DROP DATABASE deletes a whole database"),
    ("DROP DATABASE IF EXISTS app WITH (FORCE)", P, False, "DROP DATABASE"),
    ("CREATE DATABASE copy TEMPLATE app", P, False, "CREATE DATABASE"),
    ("ALTER DATABASE app SET work_mem = '1GB'", P, True, "ALTER DATABASE"),
    ("ALTER DATABASE app CONNECTION LIMIT 1", P, True, "ALTER DATABASE"),
    ("ALTER DATABASE app RENAME TO other", P, True, "a database"),
    ("ALTER DATABASE app OWNER TO someone", P, True, "a database"),
    ("CREATE ROLE r LOGIN", P, True, "CREATE ROLE"),
    ("CREATE USER u WITH PASSWORD 'x'", P, True, "CREATE ROLE/USER"),
    ("ALTER ROLE r SUPERUSER", P, True, "ALTER ROLE"),
    ("ALTER USER u WITH PASSWORD 'x'", P, True, "ALTER ROLE/USER"),
    ("ALTER ROLE r SET search_path = x", P, True, "ALTER ROLE"),
    ("ALTER ROLE r RENAME TO s", P, True, "a role"),
    ("DROP ROLE r", P, True, "DROP ROLE"),
    ("DROP USER IF EXISTS u", P, True, "DROP ROLE"),
    ("GRANT r TO s", P, True, "GRANT/REVOKE of a role"),
    ("REVOKE r FROM s", P, True, "GRANT/REVOKE of a role"),
    ("GRANT SELECT ON users TO PUBLIC", P, True, "who may access"),
    ("REVOKE ALL ON users FROM r", P, True, "who may access"),
    ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r", P, True, "new objects"),
    ("ALTER SYSTEM SET max_connections = 1", P, False, "ALTER SYSTEM changes the server's configuration"),
    ("ALTER SYSTEM RESET ALL", P, False, "ALTER SYSTEM"),
    ("COPY t FROM PROGRAM 'curl evil'", P, True, "PROGRAM runs a shell command"),
    ("COPY t TO PROGRAM 'cat > /tmp/x'", P, True, "PROGRAM"),
    ("COPY t FROM '/etc/passwd'", P, True, "reads a file on the database server"),
    ("COPY (SELECT 1) TO '/tmp/out'", P, True, "writes a file on the database server"),
    ("CREATE EXTENSION plpython3u", P, True, "CREATE EXTENSION"),
    ("CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA s", P, True, "CREATE EXTENSION"),
    ("ALTER EXTENSION hstore UPDATE", P, True, "ALTER EXTENSION"),
    ("CREATE LANGUAGE plperlu", P, True, "LANGUAGE"),
    ("LOAD 'auto_explain'", P, True, "LOAD"),
    ("SET ROLE admin", P, True, "SET ROLE"),
    ("RESET ROLE", P, True, "SET ROLE"),
    ("SET SESSION AUTHORIZATION admin", P, True, "SET SESSION AUTHORIZATION"),
    ("SET session_replication_role = replica", P, True, "triggers and foreign keys"),
    ("CREATE TABLESPACE ts LOCATION '/data'", P, False, "directory on the database server"),
    ("DROP TABLESPACE ts", P, False, "TABLESPACE"),
    ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", P, True, "foreign server"),
    ("CREATE USER MAPPING FOR r SERVER s OPTIONS (user 'x', password 'y')", P, True, "credentials"),
    ("IMPORT FOREIGN SCHEMA a FROM SERVER s INTO b", P, True, "another server"),
    ("CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION p", P, False, "SUBSCRIPTION"),
    ("CREATE PUBLICATION p FOR ALL TABLES", P, True, "PUBLICATION"),
    ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", P, True, "event trigger"),
    ("DROP OWNED BY r", P, True, "DROP OWNED"),
    ("REASSIGN OWNED BY r TO s", P, True, "REASSIGN OWNED"),
    # privileged function calls, anywhere in the statement
    ("SELECT pg_read_file('/etc/passwd')", P, True, "pg_read_file() reads a file on the database server"),
    ("SELECT pg_catalog.pg_read_binary_file('x')", P, True, "pg_read_binary_file()"),
    ("SELECT * FROM pg_ls_dir('.')", P, True, "pg_ls_dir() lists a directory"),
    ("SELECT lo_import('/etc/passwd')", P, True, "lo_import()"),
    ("SELECT lo_export(1, '/tmp/x')", P, True, "lo_export()"),
    ("SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a int)", P, True, "dblink() connects to another database server"),
    ("SELECT dblink_exec('DROP TABLE x')", P, True, "dblink_exec()"),
    ("SELECT pg_terminate_backend(123)", P, True, "pg_terminate_backend()"),
    ("SELECT pg_reload_conf()", P, True, "pg_reload_conf()"),
    ("INSERT INTO t SELECT pg_read_file('x')", P, True, "pg_read_file()"),
    ("UPDATE t SET a = (SELECT pg_read_file('x')) WHERE id = 1", P, True, "pg_read_file()"),
    ("DELETE FROM t WHERE a IN (SELECT pg_ls_dir('.'))", P, True, "pg_ls_dir()"),
    ("WITH x AS (SELECT pg_read_file('x') AS c) SELECT * FROM x", P, True, "pg_read_file()"),
    ("SELECT 1 ORDER BY length(pg_read_file('x'))", P, True, "pg_read_file()"),
    ("CREATE TABLE t (a text DEFAULT pg_read_file('x'))", P, True, "pg_read_file()"),
    ("CREATE VIEW v AS SELECT pg_read_file('x')", P, True, "pg_read_file()"),
    ("EXPLAIN SELECT pg_read_file('x')", P, True, "pg_read_file()"),
    ("PREPARE p AS SELECT pg_read_file($1)", P, True, "pg_read_file()"),
    ("SELECT set_config('role', 'admin', false)", P, True, "set_config()"),
    ("SELECT set_config(current_setting('x'), 'admin', false)", P, True, "set_config()"),
    ("SELECT set_config('search_path', 'app', false)", R, True, "reads"),
    # code handed to the server as a string
    ("DO $$ BEGIN PERFORM pg_read_file('x'); END $$", P, True, "its body calls pg_read_file()"),
    ("CREATE FUNCTION f() RETURNS text AS $$ SELECT pg_read_file('x') $$ LANGUAGE sql", P, True, "pg_read_file()"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT pg_ls_dir('.'); END", P, True, "pg_ls_dir()"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$", P, True, "untrusted language plpython3u"),
    ("CREATE FUNCTION f() RETURNS int AS 'lib', 'sym' LANGUAGE c", P, True, "untrusted language c"),
    ("DO LANGUAGE plperlu $$ system('id') $$", P, True, "untrusted language plperlu"),
]

# (statement, class, transactional, a piece of the reason)
SQLITE = [
    # read
    ("SELECT * FROM users", R, True, "reads"),
    ("select a, count(*) from t group by a having count(*) > 1", R, True, "reads"),
    ("VALUES (1), (2)", R, True, "reads"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", R, True, "reads"),
    ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 5) SELECT n FROM c", R, True, "reads"),
    ("SELECT * FROM t WHERE name GLOB 'a*'", R, True, "reads"),
    ("SELECT ?1, :name, @x, $y", R, True, "reads"),
    ("SELECT * FROM pragma_table_info('t')", R, True, "reads"),
    ("EXPLAIN SELECT 1", R, True, "without running it"),
    ("EXPLAIN QUERY PLAN SELECT * FROM t", R, True, "EXPLAIN"),
    ("EXPLAIN DELETE FROM t", R, True, "EXPLAIN"),
    ("PRAGMA table_info(users)", R, True, "PRAGMA table_info"),
    ("PRAGMA main.table_info('users')", R, True, "PRAGMA table_info"),
    ("PRAGMA index_list(users)", R, True, "PRAGMA index_list"),
    ("PRAGMA foreign_key_check", R, True, "foreign_key_check"),
    ("PRAGMA integrity_check", R, True, "integrity_check"),
    ("PRAGMA quick_check(10)", R, True, "quick_check"),
    ("PRAGMA journal_mode", R, True, "journal_mode"),
    ("PRAGMA foreign_keys", R, True, "foreign_keys"),
    ("PRAGMA user_version", R, True, "user_version"),
    # write
    ("INSERT INTO users (name) VALUES ('a')", W, True, "INSERT adds rows"),
    ("INSERT OR IGNORE INTO t VALUES (1)", W, True, "INSERT"),
    ("INSERT INTO t DEFAULT VALUES", W, True, "INSERT"),
    ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b", W, True, "INSERT"),
    ("REPLACE INTO t VALUES (1)", W, True, "REPLACE"),
    ("UPDATE users SET balance = balance + 500", W, True, "UPDATE changes rows"),
    ("UPDATE OR IGNORE t SET a = 1", W, True, "UPDATE"),
    ("UPDATE t SET (a, b) = (1, 2) FROM u WHERE t.id = u.id", W, True, "UPDATE"),
    ("DELETE FROM users WHERE id = 1", W, True, "DELETE removes rows"),
    ("WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)", W, True, "DELETE"),
    ("WITH x AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM x", W, True, "INSERT"),
    ("WITH x(a) AS MATERIALIZED (SELECT 1) UPDATE OR IGNORE t SET a = (SELECT a FROM x)", W, True, "UPDATE"),
    ("WITH x AS (SELECT 1) REPLACE INTO t SELECT * FROM x", W, True, "REPLACE"),
    ("PRAGMA user_version = 7", W, True, "database header"),
    ("PRAGMA application_id = 1", W, True, "database header"),
    # DDL
    ("CREATE TABLE users (id INTEGER PRIMARY KEY, balance INTEGER)", D, True, "CREATE TABLE changes the schema"),
    ("CREATE TABLE IF NOT EXISTS t (a)", D, True, "CREATE TABLE"),
    ("CREATE TEMP TABLE t (a)", D, True, "CREATE TEMP TABLE"),
    ("CREATE TABLE t (a INTEGER PRIMARY KEY AUTOINCREMENT) STRICT", D, True, "CREATE TABLE"),
    ("CREATE TABLE t2 AS SELECT * FROM t", D, True, "CREATE TABLE"),
    ("CREATE VIRTUAL TABLE f USING fts5(body)", D, True, "CREATE VIRTUAL TABLE"),
    ("CREATE INDEX i ON t (a)", D, True, "CREATE INDEX"),
    ("CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a) WHERE a > 0", D, True, "CREATE UNIQUE INDEX"),
    ("CREATE VIEW v AS SELECT 1", D, True, "CREATE VIEW"),
    ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET a = 1; DELETE FROM v; END", D, True, "CREATE TRIGGER"),
    ("ALTER TABLE users ADD COLUMN email TEXT", D, True, "ALTER TABLE"),
    ("ALTER TABLE users RENAME TO people", D, True, "ALTER TABLE"),
    ("ALTER TABLE t DROP COLUMN a", D, True, "ALTER TABLE"),
    ("DROP TABLE users", D, True, "DROP TABLE"),
    ("DROP TABLE IF EXISTS users", D, True, "DROP TABLE"),
    ("DROP INDEX i", D, True, "DROP INDEX"),
    ("DROP VIEW v", D, True, "DROP VIEW"),
    ("DROP TRIGGER tr", D, True, "DROP TRIGGER"),
    # other
    ("REINDEX t", OT, True, "REINDEX"),
    ("ANALYZE", OT, True, "ANALYZE"),
    ("PRAGMA optimize", OT, True, "optimize"),
    ("PRAGMA incremental_vacuum(10)", OT, True, "incremental_vacuum"),
    ("PRAGMA wal_checkpoint(TRUNCATE)", OT, False, "wal_checkpoint"),
    ("PRAGMA cache_size = -2000", OT, False, "ROLLBACK does not undo"),
    ("PRAGMA busy_timeout = 5000", OT, False, "connection setting"),
    ("PRAGMA recursive_triggers = ON", OT, False, "connection setting"),
    ("VACUUM", OT, False, "VACUUM"),
    ("VACUUM main", OT, False, "VACUUM"),
    # transaction control
    ("BEGIN", T, False, "goexd manages transactions itself"),
    ("BEGIN IMMEDIATE TRANSACTION", T, False, "BEGIN"),
    ("BEGIN EXCLUSIVE", T, False, "BEGIN"),
    ("COMMIT", T, False, "COMMIT"),
    ("END TRANSACTION", T, False, "END"),
    ("ROLLBACK", T, False, "ROLLBACK"),
    ("ROLLBACK TO SAVEPOINT s", T, False, "ROLLBACK"),
    ("SAVEPOINT s", T, False, "SAVEPOINT"),
    ("RELEASE s", T, False, "RELEASE"),
    ("RELEASE SAVEPOINT s", T, False, "RELEASE"),
    # privileged
    ("ATTACH DATABASE '/tmp/other.db' AS other", P, False, "ATTACH opens another database file"),
    ("ATTACH 'x.db' AS x", P, False, "ATTACH"),
    ("DETACH DATABASE other", P, False, "DETACH"),
    ("VACUUM INTO '/tmp/copy.db'", P, False, "VACUUM INTO writes a copy"),
    ("VACUUM main INTO 'copy.db'", P, False, "VACUUM INTO"),
    ("SELECT load_extension('/tmp/evil.so')", P, True, "load_extension()"),
    ("SELECT LOAD_EXTENSION('x', 'entry')", P, True, "load_extension()"),
    ("INSERT INTO t SELECT load_extension('x')", P, True, "load_extension()"),
    ("INSERT OR REPLACE INTO t SELECT load_extension('x')", P, True, "load_extension()"),
    ("REPLACE INTO t SELECT load_extension('x')", P, True, "load_extension()"),
    ("UPDATE OR IGNORE t SET a = load_extension('x')", P, True, "load_extension()"),
    ("CREATE VIEW v AS SELECT load_extension('x')", P, True, "load_extension()"),
    ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('x'); END", P, True, "load_extension()"),
    ("SELECT fts3_tokenizer('simple', x'00')", P, True, "fts3_tokenizer()"),
    ("SELECT writefile('/tmp/x', 'data')", P, True, "writefile()"),
    ("SELECT readfile('/etc/passwd')", P, True, "readfile()"),
    ("PRAGMA journal_mode = WAL", P, False, "PRAGMA journal_mode changes how the database file is written"),
    ("PRAGMA main.journal_mode = 'delete'", P, False, "journal_mode"),
    ("PRAGMA writable_schema = ON", P, False, "writable_schema"),
    ("PRAGMA writable_schema = 1", P, False, "writable_schema"),
    ("PRAGMA synchronous = OFF", P, False, "synchronous"),
    ("PRAGMA locking_mode = EXCLUSIVE", P, False, "locking_mode"),
    ("PRAGMA schema_version = 1", P, False, "schema_version"),
    ("PRAGMA trusted_schema = ON", P, False, "trusted_schema"),
    ("PRAGMA foreign_keys = OFF", P, False, "foreign_keys"),
    ("PRAGMA ignore_check_constraints = ON", P, False, "CHECK constraints"),
    ("PRAGMA query_only = OFF", P, False, "query_only"),
    ("PRAGMA temp_store_directory = '/tmp'", P, False, "process-wide"),
    ("PRAGMA page_size = 8192", P, False, "format"),
    ("PRAGMA hard_heap_limit = 1", P, False, "process-wide"),
]


@pytest.mark.parametrize(("sql", "cls", "transactional", "reason"), POSTGRES)
def test_postgres(sql: str, cls: StatementClass, transactional: bool, reason: str) -> None:
    _check(classify(sql, "postgres"), sql, cls, transactional, reason)


@pytest.mark.parametrize(("sql", "cls", "transactional", "reason"), SQLITE)
def test_sqlite(sql: str, cls: StatementClass, transactional: bool, reason: str) -> None:
    _check(classify(sql, "sqlite"), sql, cls, transactional, reason)


def _check(found: Classified, sql: str, cls: StatementClass, transactional: bool, reason: str) -> None:
    assert (found.cls, found.transactional) == (cls, transactional), found
    assert reason in found.reason, found.reason
    assert found.sql == sql


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_every_class_is_covered(dialect: Dialect) -> None:
    table = POSTGRES if dialect == "postgres" else SQLITE
    assert {cls for _, cls, _, _ in table} == set(StatementClass)


def test_a_table_name_is_not_a_function_call() -> None:
    assert classify("CREATE TABLE load_extension (a)", "sqlite").cls == D
    assert classify("CREATE TABLE pg_read_file (a int)", "postgres").cls == D
    assert classify("SELECT pg_read_file FROM t", "postgres").cls == R


def test_classify_script_keeps_order_and_text() -> None:
    script = """
        CREATE TABLE users (id serial PRIMARY KEY, balance int);  -- make it
        INSERT INTO users (balance) VALUES (1), (2), (3);
        UPDATE users SET balance = balance + 500;
        SELECT * FROM users;
        DROP DATABASE prod;
        COMMIT;
    """
    found = classify_script(script, "postgres")
    assert [c.cls for c in found] == [D, W, W, R, P, T]
    assert found[2].sql == "UPDATE users SET balance = balance + 500"
    assert all(c.reason for c in found)


def test_classify_script_sqlite() -> None:
    script = (
        "CREATE TABLE users (id INTEGER PRIMARY KEY, balance INTEGER);\n"
        "CREATE TRIGGER tr AFTER UPDATE ON users BEGIN SELECT 1; SELECT 2; END;\n"
        "INSERT INTO users (balance) VALUES (1);\n"
        "PRAGMA table_info(users); ATTACH 'x.db' AS x; SAVEPOINT s;"
    )
    assert [c.cls for c in classify_script(script, "sqlite")] == [D, D, W, R, P, T]


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
@pytest.mark.parametrize("sql", ["", "  ;; -- nothing", "SELECT 1; SELECT 2"])
def test_classify_wants_exactly_one_statement(dialect: Dialect, sql: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        classify(sql, dialect)
    assert caught.value.field == "spec.sql.sql"
    assert "expected one statement" in caught.value.problem


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_classify_reports_syntax_errors(dialect: Dialect) -> None:
    with pytest.raises(InvalidArgument) as caught:
        classify("UPDATE SET x = 1", dialect)
    assert caught.value.field == "spec.sql.sql"
    assert "line 1, column" in caught.value.problem


def test_statement_class_values_are_stable() -> None:
    assert [c.value for c in StatementClass] == ["read", "write", "ddl", "privileged", "transaction", "other"]


@pytest.mark.parametrize(
    ("sql", "escapes", "permanent"),
    [
        ("NOTIFY ch, 'x'", "NOTIFY ch sends a notification", ""),
        ("SELECT pg_notify('ch', 'x')", "pg_notify() sends a notification", ""),
        ("INSERT INTO t SELECT pg_notify('ch', 'x')", "pg_notify() sends a notification", ""),
        ("DO $$BEGIN PERFORM pg_notify('ch', 'x'); END$$", "pg_notify() sends a notification", ""),
        ("ALTER TYPE mood ADD VALUE 'happy'", "", "cannot remove a value from an enum type"),
        ("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'happy' BEFORE 'ok'", "", "no ALTER TYPE ... DROP VALUE"),
        # Not sent or added by the statement itself: a body kept for later, a rename, a subscription.
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SELECT pg_notify(''ch'', ''x'')'", "", ""),
        ("ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'", "", ""),
        ("LISTEN ch", "", ""),
    ],
)
def test_what_no_inverse_takes_back(sql: str, escapes: str, permanent: str) -> None:
    """Trial 15b, findings 3 and 7: what the inverse strategy's test reports as not reversible."""
    found = classify(sql, "postgres")
    assert (escapes in found.escapes) if escapes else found.escapes == "", found
    assert (permanent in found.permanent) if permanent else found.permanent == "", found


def test_a_select_that_notifies_is_no_read() -> None:
    found = classify("SELECT pg_notify('ch', 'x')", "postgres")
    assert found.cls is W and found.transactional and "pg_notify() sends a notification" in found.reason
