"""SQLite definitions compared after normalising (dbinspect/sqlite_text.py), and schema diffs that
name what changed (dbinspect/schema_diff.py), on real SQLite files. The inverse corpus
(tests/corpus/sql.toml) runs the same through the inverse strategy on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.dbinspect import diff, fingerprint
from goexd.dbinspect.sqlite_text import normalise

SCHEMA = """
CREATE TABLE teams (id INTEGER PRIMARY KEY, title TEXT NOT NULL COLLATE NOCASE);
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL CHECK (length(name) > 0),
  email TEXT,
  team_id INTEGER REFERENCES teams(id) ON DELETE SET NULL,
  shout TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL
);
CREATE UNIQUE INDEX users_email ON users (email) WHERE email IS NOT NULL;
CREATE INDEX users_lower ON users (lower(name) DESC, team_id);
CREATE VIEW named AS SELECT u.id, u.name, t.title FROM users u JOIN teams t ON t.id = u.team_id;
CREATE TABLE log (msg TEXT);
CREATE TRIGGER users_log AFTER INSERT ON users BEGIN INSERT INTO log VALUES (NEW.name); END;
INSERT INTO teams VALUES (1, 'red');
INSERT INTO users (id, name, email, team_id) VALUES (1, 'ann', 'a@x', 1), (2, 'bob', NULL, NULL);
"""


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    c.execute("PRAGMA foreign_keys = ON")
    c.executescript(SCHEMA)
    yield c
    c.close()


@pytest.mark.parametrize(
    "round_trip",
    [
        ["ALTER TABLE users RENAME TO customers", "ALTER TABLE customers RENAME TO users"],
        ["ALTER TABLE teams RENAME TO squads", "ALTER TABLE squads RENAME TO teams"],  # referenced by FK and view
        ["ALTER TABLE users RENAME COLUMN name TO full_name", "ALTER TABLE users RENAME COLUMN full_name TO name"],
        ["ALTER TABLE users RENAME COLUMN team_id TO [order]", 'ALTER TABLE users RENAME COLUMN "order" TO team_id'],
        [
            "DROP INDEX users_lower; CREATE INDEX users_lower2 ON users (lower(name) DESC, team_id)",
            'DROP INDEX users_lower2; CREATE INDEX "users_lower" ON [users] (lower(name)  desc, `team_id`)',
        ],
        [
            "DROP VIEW named",
            "CREATE VIEW [named] AS SELECT u.id, u.name, t.title\n  FROM [users] u JOIN teams t ON t.id = u.team_id",
        ],
        [
            "DROP TRIGGER users_log",
            'CREATE TRIGGER "users_log" AFTER INSERT ON "users" BEGIN INSERT INTO [log] VALUES (NEW.name); END',
        ],
    ],
    ids=["table", "referenced table", "column", "column to a keyword", "index", "view", "trigger"],
)
def test_a_rename_and_its_inverse_leave_the_fingerprint_as_it_was(
    conn: sqlite3.Connection, round_trip: list[str]
) -> None:
    before = fingerprint(conn)
    for script in round_trip:
        conn.executescript(script)
    after = fingerprint(conn)
    assert after == before, diff(before, after).text
    assert diff(before, after).identical


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("DROP INDEX users_email; CREATE UNIQUE INDEX users_email ON users (email)", "WHERE email IS NOT NULL"),
        (
            "DROP INDEX users_lower; CREATE INDEX users_lower ON users (lower(name), team_id)",
            "index users_lower: (lower(name) DESC, team_id) → (lower(name), team_id)",
        ),
        (
            "DROP INDEX users_lower; CREATE INDEX users_lower ON users (name COLLATE NOCASE, team_id)",
            "index users_lower: (lower(name) DESC, team_id) → (name COLLATE NOCASE, team_id)",
        ),
        ("ALTER TABLE users RENAME TO tmp; ALTER TABLE tmp RENAME TO Users", "Table users renamed to Users"),
        ("ALTER TABLE users RENAME COLUMN email TO mail", "users: column email renamed to mail"),
        (
            "DROP TRIGGER users_log; CREATE TRIGGER users_log2 AFTER INSERT ON users "
            "BEGIN INSERT INTO log VALUES (NEW.name); END",
            "users: trigger users_log renamed to users_log2",
        ),
        (
            "DROP INDEX users_lower; CREATE INDEX users_lower2 ON users (lower(name) DESC, team_id)",
            "users: index users_lower renamed to users_lower2",
        ),
        (
            "ALTER TABLE users ADD COLUMN age INTEGER NOT NULL DEFAULT 0",
            "column age added (INTEGER NOT NULL DEFAULT 0)",
        ),
        (
            "ALTER TABLE log ADD x; ALTER TABLE log DROP msg; ALTER TABLE log ADD msg BLOB; ALTER TABLE log DROP x",
            "log: column msg retyped TEXT → BLOB",
        ),
        ("DROP VIEW named; CREATE VIEW named AS SELECT id, name FROM users", "view named: column title dropped"),
        (
            "DROP TRIGGER users_log; CREATE TRIGGER users_log BEFORE INSERT ON users "
            "BEGIN INSERT INTO log VALUES (NEW.name); END",
            "trigger users_log changed: CREATE TRIGGER users_log AFTER… → CREATE TRIGGER users_log BEFORE…",
        ),
    ],
)
def test_a_real_change_is_caught_and_named(conn: sqlite3.Connection, change: str, named: str) -> None:
    before = fingerprint(conn)
    conn.executescript(change)
    found = diff(before, fingerprint(conn))
    assert not found.identical
    assert named in found.text, found.text
    assert found.schema_changes, found


def test_normalise_writes_identifiers_keywords_and_strings_one_way() -> None:
    same = [
        'CREATE TABLE "users" (id integer primary key, "name" TEXT)',
        "create table [users](id integer PRIMARY   KEY, `name` TEXT) -- a comment",
        "CREATE TABLE users (id integer /* inline */ PRIMARY KEY, name TEXT)",
    ]
    assert len({normalise(s) for s in same}) == 1, [normalise(s) for s in same]
    assert normalise(same[0]) == "CREATE TABLE users(id integer PRIMARY KEY, name TEXT)"  # case kept but keywords
    different = [
        "CREATE TABLE users (id INTEGER, name TEXT DEFAULT 'a')",
        'CREATE TABLE users (id INTEGER, name TEXT DEFAULT "a")',  # an identifier, not the string 'a'
        "CREATE TABLE Users (id INTEGER, name TEXT DEFAULT 'a')",  # a name's case is kept
        "CREATE TABLE users (id INTEGER, name TEXT DEFAULT 'A')",
        "CREATE TABLE users (id INTEGER, \"name x\" TEXT DEFAULT 'a')",
        "CREATE TABLE users (id INTEGER, [select] TEXT DEFAULT 'a')",
    ]
    assert len({normalise(s) for s in different}) == len(different)
    assert normalise("CREATE TABLE t ([select] TEXT, \"it's\" TEXT DEFAULT 'it''s')") == (
        "CREATE TABLE t(\"select\" TEXT, \"it's\" TEXT DEFAULT 'it''s')"
    )
