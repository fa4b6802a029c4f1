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
from goexd.dbinspect.sqlite_text import index_parts, normalise, quote_ident, table_parts

_VIRTUAL = re.compile(r"\s*CREATE\s+VIRTUAL\s+TABLE", re.IGNORECASE)


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
    parts = table_parts(sql) if kind == TABLE else None
    collations = {c.name.lower(): c.collation for c in parts.columns} if parts else {}
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
        cref = quote_ident(cname)
        default = normalise(dflt) if dflt is not None else None
        columns.append(Column(cref, ctype or "", bool(notnull), default, generated, collations.get(cref.lower())))
        if pk_pos:
            pk.append((pk_pos, cref))
    constraints = [*_foreign_keys(conn, name), *parts.checks] if parts else []
    indexes = []
    if kind == TABLE:
        for _seq, iname, unique, origin, partial in rows(
            conn,
            "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?, 'main') ORDER BY name",
            (name,),
        ):
            definition = _index_definition(conn, iname, index_sql.get(iname), bool(partial))
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
        triggers=tuple(sorted(normalise(t) for t in triggers)),
        source=normalise(sql) if sql else sql,
        estimated_rows=estimated_rows,
        rowid=_hidden_rowid(conn, name, columns, pk) if kind == TABLE else None,
    )


def _hidden_rowid(conn: sqlite3.Connection, table: str, columns: list[Column], pk: list[tuple[int, str]]) -> str | None:
    """How to select a rowid table's rowid when it is a row's only identity: a table with no PRIMARY KEY (a row
    deleted and inserted again gets another rowid, which applications may rely on). A declared key is the
    identity otherwise: an INTEGER PRIMARY KEY is the rowid itself, and the hidden rowid of a table keyed by
    anything else is not stable in SQLite's own terms (VACUUM may renumber it), so a row put back under its key
    is the same row."""
    if pk:
        return None
    try:
        without = rows(conn, "SELECT wr FROM pragma_table_list(?, 'main')", (table,))
    except sqlite3.OperationalError:  # SQLite before 3.37: from the CREATE text
        without = [(bool(re.search(r"\)\s*(STRICT\s*,\s*)?WITHOUT\s+ROWID\b", _create_sql(conn, table), re.I)),)]
    if without and without[0][0]:
        return None
    taken = {c.name.strip('"').lower() for c in columns}
    return next((n for n in ("rowid", "_rowid_", "oid") if n not in taken), None)


def _create_sql(conn: sqlite3.Connection, table: str) -> str:
    found = rows(conn, "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return str(found[0][0] or "") if found else ""


def _index_definition(conn: sqlite3.Connection, index: str, sql: str | None, partial: bool) -> str:
    """`(a, b DESC, lower(c))` and a partial index's WHERE clause, from index_xinfo and, for the
    expressions and the WHERE clause, the CREATE INDEX text (an automatic index has none)."""
    parts = index_parts(sql) if sql else None
    cols = []
    key = rows(
        conn, "SELECT cid, name, \"desc\", coll FROM pragma_index_xinfo(?, 'main') WHERE key ORDER BY seqno", (index,)
    )
    for n, (cid, cname, desc, coll) in enumerate(key):
        if cid == -2:  # an expression: as the CREATE INDEX writes it
            cols.append(parts.columns[n] if parts and n < len(parts.columns) else "<expression>")
            continue
        text = quote_ident(cname) if cname is not None else "rowid"
        if coll and coll.upper() != "BINARY":
            text += f" COLLATE {coll.upper()}"
        cols.append(text + (" DESC" if desc else ""))
    definition = "(" + ", ".join(cols) + ")"
    if partial and parts and parts.where:
        definition += " " + parts.where
    return definition


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


def database_state(conn: sqlite3.Connection) -> dict[str, str]:
    """State outside the tables' rows that an action can change and a transaction keeps: the header's
    user_version and application_id, and each AUTOINCREMENT table's sqlite_sequence value (the next
    rowid it hands out). "user_version" -> "7", "sqlite_sequence t" -> "2".

    Not here: journal_mode (goexd itself puts a database in WAL), page_size and auto_vacuum (how
    the file is laid out, not what a query reads; they change only with VACUUM)."""
    ((user_version,),) = rows(conn, "PRAGMA main.user_version")
    ((application_id,),) = rows(conn, "PRAGMA main.application_id")
    state = {"user_version": str(user_version), "application_id": str(application_id)}
    if rows(conn, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"):
        for name, seq in rows(
            conn, "SELECT name, seq FROM main.sqlite_sequence WHERE lower(name) <> ?", (OUTCOMES_TABLE,)
        ):
            state[f"sqlite_sequence {quote_ident(str(name))}"] = repr(seq) if not isinstance(seq, int) else str(seq)
    return state
