"""goexd.sql.split: statements found by a real parser, kept exactly as written."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goexd.domain.errors import InvalidArgument
from goexd.sql import Dialect, split

BOTH: list[Dialect] = ["postgres", "sqlite"]

# (script, statements) that split the same way in both dialects.
COMMON_CASES = [
    ("SELECT 1", ["SELECT 1"]),
    ("SELECT 1;", ["SELECT 1"]),
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("  select  1\n  from t ;\n\n", ["select  1\n  from t"]),
    ("", []),
    ("   \n\t ", []),
    (";;; ;", []),
    ("SELECT 1;;; ;SELECT 2;;", ["SELECT 1", "SELECT 2"]),
    ("-- only a comment", []),
    ("/* only ; a comment */", []),
    ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
    ("SELECT 'it''s; fine'", ["SELECT 'it''s; fine'"]),
    ('SELECT "x;y" FROM t; SELECT 2', ['SELECT "x;y" FROM t', "SELECT 2"]),
    ('SELECT "a""b;" FROM t', ['SELECT "a""b;" FROM t']),
    ("SELECT 1 -- not; a split\n, 2", ["SELECT 1 -- not; a split\n, 2"]),
    ("SELECT 1 /* ; */ + 2; SELECT 3", ["SELECT 1 /* ; */ + 2", "SELECT 3"]),
    ("-- lead;\nSELECT 1; -- tail;", ["SELECT 1"]),
    ("/* a */ SELECT 1 /* b */ ; /* c */ SELECT 2 /* d */", ["SELECT 1", "SELECT 2"]),
    ("SELECT 'é;ü' AS \"ñ;\"; SELECT '日本'", ["SELECT 'é;ü' AS \"ñ;\"", "SELECT '日本'"]),
    ("SELECT 1\r\n;\r\nSELECT 2\r\n", ["SELECT 1", "SELECT 2"]),
    (
        "CREATE TABLE users (id integer PRIMARY KEY, name text);\n"
        "INSERT INTO users VALUES (1, 'a;b');\n"
        "UPDATE users SET name = 'c' WHERE id = 1;\n",
        [
            "CREATE TABLE users (id integer PRIMARY KEY, name text)",
            "INSERT INTO users VALUES (1, 'a;b')",
            "UPDATE users SET name = 'c' WHERE id = 1",
        ],
    ),
]

POSTGRES_CASES = [
    # Dollar-quoted bodies, with and without a tag, hold semicolons.
    (
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$ LANGUAGE plpgsql; SELECT f()",
        [
            "CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$ LANGUAGE plpgsql",
            "SELECT f()",
        ],
    ),
    ("SELECT $tag$ ; $$ ; $tag$; SELECT 2", ["SELECT $tag$ ; $$ ; $tag$", "SELECT 2"]),
    ("DO $$ BEGIN RAISE NOTICE 'a;b'; END $$;", ["DO $$ BEGIN RAISE NOTICE 'a;b'; END $$"]),
    # A SQL-standard body: semicolons at the top level of the text, inside one statement.
    (
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT g()",
        ["CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", "SELECT g()"],
    ),
    ("SELECT E'a\\';b'; SELECT 2", ["SELECT E'a\\';b'", "SELECT 2"]),
    ("SELECT U&'d\\0061t;a'", ["SELECT U&'d\\0061t;a'"]),
    # PostgreSQL nests block comments.
    ("SELECT 1 /* a /* b; */ c; */; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1::text; SELECT (ARRAY[1,2])[1]", ["SELECT 1::text", "SELECT (ARRAY[1,2])[1]"]),
    (
        "CREATE TABLE t (a int); COPY t FROM STDIN; VACUUM; BEGIN; COMMIT",
        ["CREATE TABLE t (a int)", "COPY t FROM STDIN", "VACUUM", "BEGIN", "COMMIT"],
    ),
]

SQLITE_CASES = [
    # SQLite has no backslash escapes: 'a\' is a whole string.
    ("SELECT 'a\\'; SELECT 2", ["SELECT 'a\\'", "SELECT 2"]),
    ("SELECT [a;b], `c;d` FROM t; SELECT 2", ["SELECT [a;b], `c;d` FROM t", "SELECT 2"]),
    ("SELECT x'00ff'; SELECT 2", ["SELECT x'00ff'", "SELECT 2"]),
    ("SELECT ?1, :name, @x, $y; SELECT 2", ["SELECT ?1, :name, @x, $y", "SELECT 2"]),
    # A trigger's body holds statements; CASE ... END; inside it does not end the trigger.
    (
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
        "  UPDATE u SET a = CASE WHEN new.x THEN 1 END;\n"
        "  DELETE FROM v;\n"
        "END;\n"
        "SELECT 2",
        [
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
            "  UPDATE u SET a = CASE WHEN new.x THEN 1 END;\n"
            "  DELETE FROM v;\n"
            "END",
            "SELECT 2",
        ],
    ),
    (
        "create temp trigger tr before delete on t begin select raise(abort, 'no;'); end",
        ["create temp trigger tr before delete on t begin select raise(abort, 'no;'); end"],
    ),
    (
        "EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; SELECT 2",
        ["EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", "SELECT 2"],
    ),
    ("VACUUM INTO 'a;b.db'; SELECT 1", ["VACUUM INTO 'a;b.db'", "SELECT 1"]),
    ("REPLACE INTO t VALUES ('a;b') -- c;\n; SELECT 1", ["REPLACE INTO t VALUES ('a;b')", "SELECT 1"]),
    ("UPDATE OR IGNORE t SET a = 1; RELEASE SAVEPOINT s", ["UPDATE OR IGNORE t SET a = 1", "RELEASE SAVEPOINT s"]),
    ("SELECT a ->> '$.b' FROM t", ["SELECT a ->> '$.b' FROM t"]),
    # SQLite reads an unterminated /* comment as running to the end; so does the splitter.
    ("SELECT 1; /* trailing ; comment", ["SELECT 1"]),
    ("PRAGMA journal_mode = WAL; PRAGMA table_info(t)", ["PRAGMA journal_mode = WAL", "PRAGMA table_info(t)"]),
]


@pytest.mark.parametrize("dialect", BOTH)
@pytest.mark.parametrize(("script", "expected"), COMMON_CASES)
def test_common_scripts_split_alike(dialect: Dialect, script: str, expected: list[str]) -> None:
    assert split(script, dialect) == expected


@pytest.mark.parametrize(("script", "expected"), POSTGRES_CASES)
def test_postgres_scripts(script: str, expected: list[str]) -> None:
    assert split(script, "postgres") == expected


@pytest.mark.parametrize(("script", "expected"), SQLITE_CASES)
def test_sqlite_scripts(script: str, expected: list[str]) -> None:
    assert split(script, "sqlite") == expected


def test_statements_are_slices_of_the_script() -> None:
    script = "SELECT  1 ;\n\n  INSERT INTO t\n  VALUES ('x') ; "
    for dialect in BOTH:
        for stmt in split(script, dialect):
            assert stmt in script


# (dialect, script, start of the message, line, column)
SYNTAX_ERRORS = [
    ("postgres", "SELEC 1", 'syntax error at or near "SELEC"', 1, 1),
    ("postgres", "SELECT 1;\nSELECT (2;\n", 'syntax error at or near ";"', 2, 10),
    ("postgres", "SELECT 'é';\n  SELEC 2", 'syntax error at or near "SELEC"', 2, 3),
    ("postgres", "SELECT 1;\nSELECT 'unterminated", "unterminated quoted string", 2, 8),
    ("postgres", "SELECT $$ never closed", "unterminated dollar-quoted string", 1, 8),
    ("postgres", "SELECT 1 /* open", "unterminated /* comment", 1, 10),
    ("postgres", "CREATE TABLE t (a int,)", 'syntax error at or near ")"', 1, 23),
    ("sqlite", "SELEC 1", 'near "SELEC": syntax error', 1, 1),
    ("sqlite", "SELECT 1;\n  SELEC 2", 'near "SELEC": syntax error', 2, 3),
    ("sqlite", "SELECT 1 2 3", 'near "2": syntax error', 1, 10),
    ("sqlite", "SELECT (1", "incomplete input", 1, 10),
    ("sqlite", "SELECT 1;\nSELECT 'abc", "unterminated quoted text: missing '", 2, 8),
    ("sqlite", 'SELECT "abc', 'unterminated quoted text: missing "', 1, 8),
    ("sqlite", "CREATE TABLE t (a INT,)", 'near ")": syntax error', 1, 23),
    ("sqlite", "WITH x AS (SELECT 1) SELECT * FROM x x x", 'near "x": syntax error', 1, 40),
    # sqlglot would accept these; SQLite's parser does not.
    ("sqlite", "SELECT 1;\nDELETE t", 'near "t": syntax error', 2, 8),
    ("sqlite", "SELECT 1;\n  FOO BAR", 'near "FOO": syntax error', 2, 3),
    ("sqlite", "SELECT 1; SELECT #", 'unrecognized token: "#"', 1, 18),
    ("postgres", "SELECT 1;\nSELECT 2\x00", "the script contains a NUL character", 2, 9),
    ("sqlite", "SELECT 1;\nSELECT 2\x00", "the script contains a NUL character", 2, 9),
]


@pytest.mark.parametrize(("dialect", "script", "message", "line", "column"), SYNTAX_ERRORS)
def test_syntax_errors_name_the_field_and_the_place(
    dialect: Dialect, script: str, message: str, line: int, column: int
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        split(script, dialect)
    err = caught.value
    assert err.field == "spec.sql.sql"
    assert err.problem.startswith(message), err.problem
    assert re.search(rf"line {line}, column {column}\)$", err.problem), err.problem


def test_sqlite_error_without_a_clear_place_names_the_statement() -> None:
    # SQLite names "FOO", which appears twice, and sqlglot accepts the statement (as an alias).
    with pytest.raises(InvalidArgument) as caught:
        split("SELECT 1;\n  FOO FOO", "sqlite")
    assert caught.value.problem.startswith('near "FOO": syntax error')
    assert caught.value.problem.endswith("(in the statement at line 2, column 3)")


@pytest.mark.parametrize("dialect", BOTH)
def test_an_error_anywhere_refuses_the_whole_script(dialect: Dialect) -> None:
    with pytest.raises(InvalidArgument):
        split("CREATE TABLE a (x int); INSERT INTO a VALUES (1); SELEC", dialect)


def test_an_unknown_dialect_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect"):
        split("SELECT 1", "mysql")  # type: ignore[arg-type]


def test_sqlite_check_runs_nothing() -> None:
    # Compiled by SQLite behind EXPLAIN with PRAGMA/ATTACH denied: no file appears.
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "copy.db")
        attached = os.path.join(tmp, "attached.db")
        statements = split(
            f"VACUUM INTO '{target}'; ATTACH '{attached}' AS x; PRAGMA temp_store_directory = '{tmp}'", "sqlite"
        )
        assert len(statements) == 3
        assert os.listdir(tmp) == []


# --- round trip: simple statements joined with ';', blanks and comments split back unchanged ---

_TEXT = st.text(alphabet="abc XYZ019;'\"-/*\\$é\n", max_size=12)
_WORDS = st.text(alphabet="abcxyz_;-", min_size=1, max_size=8)


def _quote(text: str, quote: str) -> str:
    return quote + text.replace(quote, quote * 2) + quote


_STATEMENTS = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda n: f"SELECT {n}"),
    _TEXT.map(lambda s: f"SELECT {_quote(s, chr(39))}"),
    _WORDS.map(lambda s: f"SELECT 1 AS {_quote(s, chr(34))}"),
    st.tuples(st.integers(0, 99), _TEXT).map(
        lambda p: f"INSERT INTO t (a, b) VALUES ({p[0]}, {_quote(p[1], chr(39))})"
    ),
    st.tuples(_TEXT, st.integers(0, 99)).map(lambda p: f"UPDATE t SET b = {_quote(p[0], chr(39))} WHERE a = {p[1]}"),
    st.integers(0, 99).map(lambda n: f"DELETE FROM t WHERE a > {n}"),
    _TEXT.map(lambda s: f"SELECT a /* {s.replace('*', '').replace('/', '')} */ FROM t"),
)
_COMMENT_TEXT = st.text(alphabet="abc ;'\"-$é", max_size=10)
_SEPARATOR_PART = st.one_of(
    st.sampled_from([" ", "\n", "\t", ";", " ;", "\n;\n"]),
    _COMMENT_TEXT.map(lambda s: f"-- {s}\n"),
    _COMMENT_TEXT.map(lambda s: f"/* {s} */"),
)
_SEPARATOR = st.lists(_SEPARATOR_PART, max_size=4).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    statements=st.lists(_STATEMENTS, max_size=6),
    separators=st.lists(_SEPARATOR, min_size=7, max_size=7),
    dialect=st.sampled_from(BOTH),
)
def test_joined_statements_split_back(statements: list[str], separators: list[str], dialect: Dialect) -> None:
    script = separators[0]
    for stmt, sep in zip(statements, separators[1:], strict=False):
        script += stmt + ";" + sep
    assert split(script, dialect) == statements
