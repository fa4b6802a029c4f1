"""Read the schema of a SQLite database's `main` schema into the model.

Skipped: sqlite_% objects, and goex's own marker table with its indexes and triggers (hidden.py).
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from contextlib import closing
from typing import Any

from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.dbinspect.model import TABLE, VIEW, Column, Index, Relation, Schema

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VIRTUAL = re.compile(r"\s*CREATE\s+VIRTUAL\s+TABLE", re.IGNORECASE)
_WHERE = re.compile(r"\bWHERE\b", re.IGNORECASE)
_CHECK = re.compile(r"CHECK\s*\(", re.IGNORECASE)


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
_KEYWORDS = frozenset(_KEYWORD_LIST.split())


def quote_ident(name: str) -> str:
    """The identifier as SQL: bare when plain and not a keyword, else double-quoted."""
    if _PLAIN.fullmatch(name) and name.upper() not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def rows(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """All rows as plain tuples, whatever row_factory the caller's connection uses."""
    with closing(conn.cursor()) as cur:
        cur.row_factory = None
        return cur.execute(sql, params).fetchall()


def read_schema(conn: sqlite3.Connection) -> Schema:
    objects = rows(
        conn,
        "SELECT type, name, tbl_name, sql FROM main.sqlite_master "
        "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND lower(tbl_name) <> ? ORDER BY name",
        (OUTCOMES_TABLE,),
    )
    index_sql: dict[str, str] = {}
    triggers: dict[str, list[str]] = defaultdict(list)
    relations: list[tuple[str, str, str]] = []
    for kind, name, tbl_name, sql in objects:
        if kind == "index" and sql:
            index_sql[name] = sql
        elif kind == "trigger":
            triggers[tbl_name].append(sql or "")
        elif kind in ("table", "view"):
            relations.append((kind, name, sql or ""))
    stats = _stat1(conn)
    out = []
    for kind, name, sql in relations:
        if kind == "view":
            out.append(_relation(conn, name, VIEW, sql, index_sql, triggers[name], None))
        else:
            rel_kind = "virtual table" if _VIRTUAL.match(sql) else TABLE
            out.append(_relation(conn, name, rel_kind, sql, index_sql, triggers[name], stats.get(name)))
    return Schema(engine=f"SQLite {sqlite3.sqlite_version}", relations=tuple(out))


def _relation(
    conn: sqlite3.Connection,
    name: str,
    kind: str,
    sql: str,
    index_sql: dict[str, str],
    triggers: list[str],
    estimated_rows: int | None,
) -> Relation:
    columns = []
    pk: list[tuple[int, str]] = []
    try:
        xinfo = rows(
            conn,
            "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?, 'main')",
            (name,),
        )
    except sqlite3.OperationalError:  # a view over a table that was dropped since
        xinfo = []
    for _cid, cname, ctype, notnull, dflt, pk_pos, hidden in xinfo:
        if hidden == 1:  # a virtual table's hidden column
            continue
        generated = {2: "GENERATED ALWAYS (virtual)", 3: "GENERATED ALWAYS (stored)"}.get(hidden)
        columns.append(Column(quote_ident(cname), ctype or "", bool(notnull), dflt, generated))
        if pk_pos:
            pk.append((pk_pos, quote_ident(cname)))
    constraints = [*_foreign_keys(conn, name), *_checks(sql)] if kind == TABLE else []
    indexes = []
    if kind == TABLE:
        for _seq, iname, unique, origin, partial in rows(
            conn,
            "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?, 'main') ORDER BY name",
            (name,),
        ):
            cols = [
                quote_ident(c) if c is not None else "<expression>"
                for (c,) in rows(conn, "SELECT name FROM pragma_index_info(?, 'main') ORDER BY seqno", (iname,))
            ]
            definition = "(" + ", ".join(cols) + ")"
            if partial and iname in index_sql:
                where = list(_WHERE.finditer(index_sql[iname]))
                definition += " " + index_sql[iname][where[-1].start() :] if where else ""
            indexes.append(Index(quote_ident(iname), definition, bool(unique), origin in ("pk", "u")))
            if origin == "u":
                constraints.append(f"UNIQUE {definition}")
    return Relation(
        ref=quote_ident(name),
        schema=None,
        name=name,
        kind=kind,
        columns=tuple(columns),
        primary_key=tuple(c for _, c in sorted(pk)),
        constraints=tuple(constraints),
        indexes=tuple(indexes),
        triggers=tuple(sorted(triggers)),
        source=sql,
        estimated_rows=estimated_rows,
    )


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[str]:
    groups: dict[int, list[tuple[str, str, str | None, str, str]]] = defaultdict(list)
    for fk_id, _seq, parent, frm, to, on_update, on_delete in rows(
        conn,
        'SELECT id, seq, "table", "from", "to", on_update, on_delete '
        "FROM pragma_foreign_key_list(?, 'main') ORDER BY id, seq",
        (table,),
    ):
        groups[fk_id].append((parent, frm, to, on_update, on_delete))
    out = []
    for fk in groups.values():
        parent, _, _, on_update, on_delete = fk[0]
        frm = ", ".join(quote_ident(r[1]) for r in fk)
        text = f"FOREIGN KEY ({frm}) REFERENCES {quote_ident(parent)}"
        if all(r[2] is not None for r in fk):
            text += "(" + ", ".join(quote_ident(r[2] or "") for r in fk) + ")"
        if on_update != "NO ACTION":
            text += f" ON UPDATE {on_update}"
        if on_delete != "NO ACTION":
            text += f" ON DELETE {on_delete}"
        out.append(text)
    return out


def _checks(create_sql: str) -> list[str]:
    """The CHECK (...) clauses of a CREATE TABLE statement (SQLite has no pragma for them)."""
    out = []
    i, n = 0, len(create_sql)
    while i < n:
        ch = create_sql[i]
        if ch in "'\"`[":  # skip a quoted string or identifier
            close = "]" if ch == "[" else ch
            j = create_sql.find(close, i + 1)
            while j != -1 and close != "]" and j + 1 < n and create_sql[j + 1] == close:
                j = create_sql.find(close, j + 2)
            i = n if j == -1 else j + 1
            continue
        m = _CHECK.match(create_sql, i)
        if m and (i == 0 or not (create_sql[i - 1].isalnum() or create_sql[i - 1] == "_")):
            end = _matching_paren(create_sql, m.end() - 1)
            out.append("CHECK " + create_sql[m.end() - 1 : end + 1])
            i = end + 1
            continue
        i += 1
    return out


def _matching_paren(text: str, open_at: int) -> int:
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            j = text.find(ch, i + 1)
            i = len(text) if j == -1 else j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text) - 1


def _stat1(conn: sqlite3.Connection) -> dict[str, int]:
    """Row estimates ANALYZE left in sqlite_stat1 (first number of a table's stat), if any."""
    if not rows(conn, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"):
        return {}
    out: dict[str, int] = {}
    for tbl, stat in rows(conn, "SELECT tbl, stat FROM main.sqlite_stat1"):
        head = str(stat or "").split(" ", 1)[0]
        if head.isdigit():
            out[tbl] = max(out.get(tbl, 0), int(head))
    return out
