"""The CREATE statements SQLite keeps, normalised and taken apart, for the definitions it has no pragma for.

SQLite keeps each object's CREATE text as written, and rewrites it when a table or column is
renamed: `ALTER TABLE users RENAME TO customers` and back leaves `CREATE TABLE "users" (...)`
where `CREATE TABLE users (...)` was. Text is compared only after `normalise`: sqlglot's SQLite
tokenizer (goexd.sql.sqlite_parse) reads it, every identifier, quoted or not ("x", [x], `x`, x),
is written one way (sqlite_catalog.quote_ident: bare when plain and not a keyword), keywords in
upper case, strings re-quoted, comments and layout dropped. An identifier's case is kept: SQLite
keeps a name's case, so a rename back to `Users` is a change. Two texts with the same tokens
normalise alike; two with different tokens never do.

`table_parts` and `index_parts` split a normalised CREATE TABLE or CREATE INDEX into the pieces a
diff names (a column's collation, the CHECK clauses, an index's expressions and WHERE clause).
Results are cached by text: the same definitions come back at every fingerprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from sqlglot import TokenType

from goexd.domain.errors import InvalidArgument
from goexd.sql.sqlite_parse import tokenize

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# https://sqlite.org/lang_keywords.html (Python 3.11's sqlite3 does not expose sqlite3_keyword_name).
_KEYWORD_LIST = """
    ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN BETWEEN BY
    CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT CURRENT_DATE
    CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH
    ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL
    GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD
    INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL
    NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE
    RECURSIVE REFERENCES REGEXP REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS
    SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE
    USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT"""
KEYWORDS = frozenset(_KEYWORD_LIST.split())

# The words that open a table constraint rather than a column definition in CREATE TABLE (...).
_TABLE_CONSTRAINT = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})
# Words that end a column's type name (the start of its constraints).
_COLUMN_CONSTRAINT = frozenset(
    {"CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES", "GENERATED", "AS"}
)
_NO_SPACE_BEFORE = frozenset({")", ",", ".", ";"})
_NO_SPACE_AFTER = frozenset({"(", "."})


def quote_ident(name: str) -> str:
    """The identifier as SQL: bare when plain and not a keyword, else double-quoted."""
    if _PLAIN.fullmatch(name) and name.upper() not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ColumnClause:
    name: str  # as quote_ident writes it
    collation: str | None  # COLLATE x, as written (upper case); None: the default, BINARY
    text: str  # the whole definition, normalised: `age INTEGER NOT NULL DEFAULT 0`


@dataclass(frozen=True)
class TableParts:
    columns: tuple[ColumnClause, ...]
    checks: tuple[str, ...]  # every CHECK (...) clause, the columns' and the table's, normalised
    options: str  # what follows the column list: `WITHOUT ROWID`, `STRICT`, ""


@dataclass(frozen=True)
class IndexParts:
    columns: tuple[str, ...]  # each indexed column or expression, normalised as written (with DESC, COLLATE)
    where: str | None  # a partial index's WHERE clause, normalised


@lru_cache(maxsize=4096)
def words(text: str) -> tuple[str, ...]:
    """The tokens of `text`, each written one way (see the module's docstring); () when it cannot be read."""
    try:
        found = tokenize(text)
    except InvalidArgument:  # not from SQLite's own catalog, which keeps only statements it parsed
        return ()
    out = []
    for tok in found:
        kind, raw = tok.token_type, tok.text
        if kind == TokenType.IDENTIFIER:
            out.append(quote_ident(raw))
        elif kind == TokenType.STRING:
            out.append("'" + raw.replace("'", "''") + "'")
        elif kind == TokenType.HEX_STRING:
            out.append(f"X'{raw.upper()}'")
        elif _PLAIN.fullmatch(raw):
            out.append(raw.upper() if raw.upper() in KEYWORDS else raw)
        elif raw[:1].isalpha():  # a multi-word token: `PRIMARY KEY`, `NOT NULL`...
            out.extend(w.upper() if w.upper() in KEYWORDS else w for w in raw.split())
        else:
            out.append(raw)
    return tuple(out)


@lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """`text` with identifiers, keywords, strings and spacing written one way (the text itself, its
    spacing collapsed, when the tokenizer cannot read it)."""
    found = words(text)
    return join(found) if found else " ".join(text.split())


def join(tokens: tuple[str, ...] | list[str]) -> str:
    out: list[str] = []
    for tok in tokens:
        call = tok == "(" and bool(out) and _is_name(out[-1])  # a function call: lower(x)
        if out and tok not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER and not call:
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _is_name(tok: str) -> bool:
    return (bool(_PLAIN.fullmatch(tok)) and tok.upper() not in KEYWORDS) or tok.startswith('"')


@lru_cache(maxsize=1024)
def table_parts(create_sql: str) -> TableParts:
    toks = words(create_sql)
    pieces, end = _list_after(toks, 0)
    columns, checks = [], []
    for piece in pieces:
        checks.extend(_checks(piece))
        if not piece or piece[0].upper() in _TABLE_CONSTRAINT:
            continue
        collation = None
        for i, tok in enumerate(piece[:-1]):
            if tok == "COLLATE":
                collation = piece[i + 1].upper()
        columns.append(ColumnClause(piece[0], collation, join(piece)))
    return TableParts(tuple(columns), tuple(checks), join(toks[end + 1 :]) if end < len(toks) else "")


@lru_cache(maxsize=1024)
def index_parts(create_sql: str) -> IndexParts:
    toks = words(create_sql)
    on = toks.index("ON") if "ON" in toks else 0
    pieces, end = _list_after(toks, on)
    rest = toks[end + 1 :]
    where = join(rest[rest.index("WHERE") :]) if "WHERE" in rest else None
    return IndexParts(tuple(join(p) for p in pieces), where)


def column_type(clause: ColumnClause) -> str:
    """The declared type in a column's definition (the words between its name and its constraints)."""
    toks = words(clause.text)[1:]
    depth, out = 0, []
    for tok in toks:
        if depth == 0 and tok.upper() in _COLUMN_CONSTRAINT:
            break
        depth += (tok == "(") - (tok == ")")
        out.append(tok)
    return join(out)


def _list_after(toks: tuple[str, ...], start: int) -> tuple[list[list[str]], int]:
    """The comma-separated items of the first parenthesised list at or after `start`, and where it closes."""
    try:
        i = toks.index("(", start)
    except ValueError:
        return [], len(toks)
    pieces: list[list[str]] = [[]]
    depth = 0
    for j in range(i, len(toks)):
        tok = toks[j]
        if tok == "(":
            depth += 1
            if depth == 1:
                continue
        elif tok == ")":
            depth -= 1
            if depth == 0:
                return [p for p in pieces if p], j
        if depth == 1 and tok == ",":
            pieces.append([])
        else:
            pieces[-1].append(tok)
    return [p for p in pieces if p], len(toks)


def _checks(piece: list[str]) -> list[str]:
    out = []
    for i, tok in enumerate(piece):
        if tok == "CHECK" and i + 1 < len(piece) and piece[i + 1] == "(":
            depth = 0
            for j in range(i + 1, len(piece)):
                depth += (piece[j] == "(") - (piece[j] == ")")
                if depth == 0:
                    out.append(join(piece[i : j + 1]))
                    break
    return out
