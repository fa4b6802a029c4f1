"""SQLite's own parser as the judge of SQLite syntax.

sqlglot tokenizes and splits SQLite scripts, but its grammar is not SQLite's: it refuses valid
statements (``UPDATE OR IGNORE``, ``RELEASE SAVEPOINT s``, ``?1``/``:name`` parameters) and
accepts invalid ones (``DELETE t``; ``FOO BAR`` parses as an alias). So each statement is also
compiled by the SQLite library goexd runs SQL with, on a private in-memory database, and only
SQLite's syntax errors count.

Nothing runs: the statement is compiled behind ``EXPLAIN`` (which produces bytecode and never
executes the statement itself), and an authorizer denies PRAGMA, ATTACH and DETACH, the only
statements with effects while being compiled (``PRAGMA temp_store_directory`` would set a
process-wide variable). A denial comes after the statement was fully parsed, so it means "the
syntax is fine".

Limit: SQLite stops at the first error of any kind. A statement naming a table the empty
database lacks is checked up to that name only (e.g. ``ALTER TABLE missing ADD COLUMN ...``,
or a trigger's body); errors after it surface when the statement runs.
"""

from __future__ import annotations

import sqlite3

_DENIED = frozenset({sqlite3.SQLITE_PRAGMA, sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH})
_SYNTAX_MARKERS = ("syntax error", "incomplete input", "unrecognized token")


def _authorize(action: int, *_args: object) -> int:
    return sqlite3.SQLITE_DENY if action in _DENIED else sqlite3.SQLITE_OK


def sqlite_syntax_errors(statements: list[tuple[str, bool]]) -> list[str | None]:
    """For each (statement, starts_with_explain): SQLite's syntax error message, or None.

    One private in-memory connection serves the whole list (made here, so any thread may call).
    """
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.set_authorizer(_authorize)
        return [_check(conn, text, explained) for text, explained in statements]
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, text: str, explained: bool) -> str | None:
    # "EXPLAIN EXPLAIN ..." is not SQL; an EXPLAIN statement runs as is, which only lists bytecode.
    try:
        conn.execute(text if explained else "EXPLAIN " + text).close()
    except sqlite3.ProgrammingError as err:
        # Unbound parameters (?1, :name) are fine here; two statements where one was expected are not.
        return str(err) if "one statement at a time" in str(err) else None
    except sqlite3.Error as err:
        message = str(err)
        if any(marker in message for marker in _SYNTAX_MARKERS):
            return message
    return None
