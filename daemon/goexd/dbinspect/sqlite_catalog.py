"""Read the schema of a SQLite database's `main` schema into the model.

Skipped: sqlite_% objects (sqlite_stat1 and sqlite_stat4, ANALYZE's statistics, are compared as
database state: database_state), and goex's own marker table with its indexes and triggers (hidden.py).

Virtual tables: one whose module keeps its rows itself (FTS3/4/5 with their own content, R*Tree,
Geopoly: SELF_STORING) is compared by its definition and by the rows its own SELECT gives (rowid
included); its shadow tables (the module's storage: FTS5's <t>_data, _idx, _content, _docsize,
_config; FTS4's _segments, _segdir, ...; R*Tree's _node, _rowid, _parent) are left out: their
bytes differ after a write and its exact inverse (FTS5 writes tombstone segments) while the table
reads the same. Shadow tables are found as SQLite finds them, by the virtual table's module
(PRAGMA table_list's type 'shadow', which asks the module's xShadowName), not by their names.
A contentless or external-content FTS table (content='' / content=tbl) shows through SELECT no
content of its own: its shadow tables stay compared as tables, marked as the shadow tables of it
(Relation.shadow_of), so a diff says when only they changed. Other modules (dbstat, a loaded
extension's): definition only, as before.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections import defaultdict
from contextlib import closing
from dataclasses import replace
from typing import Any

from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.dbinspect.model import TABLE, VIEW, Column, Index, Relation, Schema
from goexd.dbinspect.sqlite_text import index_parts, normalise, quote_ident, table_parts

_VIRTUAL = re.compile(r"\s*CREATE\s+VIRTUAL\s+TABLE", re.IGNORECASE)
_MODULE = re.compile(r"\bUSING\s+\"?(\w+)", re.IGNORECASE)
# FTS's content option naming another table or none: the index is then the table's only own state.
_NOT_OWN_CONTENT = re.compile(r"\bcontent\s*=", re.IGNORECASE)  # content='' (contentless) or content=tbl
VIRTUAL_TABLE = "virtual table"
# Modules whose virtual tables keep their rows in their own shadow tables, so that their SELECT is their content.
SELF_STORING = frozenset({"fts3", "fts4", "fts5", "rtree", "rtree_i32", "geopoly"})
# Before SQLite 3.37 (no PRAGMA table_list): the shadow tables each module makes, by suffix.
_SHADOW_SUFFIXES = {
    "fts3": ("content", "segments", "segdir", "docsize", "stat"),
    "fts4": ("content", "segments", "segdir", "docsize", "stat"),
    "fts5": ("data", "idx", "content", "docsize", "config"),
    "rtree": ("node", "rowid", "parent"),
    "rtree_i32": ("node", "rowid", "parent"),
    "geopoly": ("node", "rowid", "parent"),
}


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
    sources = {name: sql for kind, name, sql in relations if kind == TABLE and _VIRTUAL.match(sql)}
    modules = {name: _module(sql) for name, sql in sources.items()}
    by_select = {
        name: _content_by_select(modules[name], sql) and _selectable(conn, name) for name, sql in sources.items()
    }
    shadows = shadow_tables(conn, modules)
    out = []
    for kind, name, sql in relations:
        owner = shadows.get(name)
        if kind == "view":
            out.append(_relation(conn, name, VIEW, sql, index_sql, triggers[name], None))
        elif owner is not None and by_select[owner]:
            continue  # the module's storage: its virtual table's rows are compared instead
        elif name in modules:
            rel = _relation(conn, name, VIRTUAL_TABLE, sql, index_sql, triggers[name], stats.get(name))
            out.append(replace(rel, module=modules[name], rows_by_select=by_select[name]))
        else:
            rel = _relation(conn, name, TABLE, sql, index_sql, triggers[name], stats.get(name))
            out.append(replace(rel, shadow_of=quote_ident(owner)) if owner is not None else rel)
    return Schema(engine=f"SQLite {sqlite3.sqlite_version}", relations=tuple(out))


def _module(sql: str) -> str:
    found = _MODULE.search(sql)
    return found.group(1).lower() if found else ""


def _content_by_select(module: str, sql: str) -> bool:
    """Whether a virtual table's own SELECT shows all it keeps: a SELF_STORING module, not an FTS table
    whose content option names another table or none (its index is then its only state of its own)."""
    return module in SELF_STORING and not (module.startswith("fts") and _NOT_OWN_CONTENT.search(sql))


def _selectable(conn: sqlite3.Connection, name: str) -> bool:
    """Whether a virtual table can be read here (its module may not be loaded in this process)."""
    try:
        rows(conn, f"SELECT 1 FROM main.{quote_ident(name)} LIMIT 0")  # noqa: S608 (quoted)
    except sqlite3.Error:
        return False
    return True


def shadow_tables(conn: sqlite3.Connection, modules: dict[str, str]) -> dict[str, str]:
    """Each shadow table of a virtual table in `modules` (name -> module) -> that virtual table's name.

    SQLite's own rule (sqlite3ShadowTableName): `<vtab>_<suffix>` where vtab's module says the suffix
    is one of its shadow tables; PRAGMA table_list asks the module (type 'shadow')."""
    try:
        names = [
            str(n)
            for (n,) in rows(conn, "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")
        ]
    except sqlite3.OperationalError:  # before SQLite 3.37
        names = [f"{v}_{suffix}" for v, m in modules.items() for suffix in _SHADOW_SUFFIXES.get(m, ())]
    out: dict[str, str] = {}
    for name in names:
        owners = [v for v in modules if name.lower().startswith(v.lower() + "_")]
        if owners:
            out[name] = max(owners, key=len)
    return out


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
        rowid=_hidden_rowid(conn, name, columns, pk) if kind in (TABLE, VIRTUAL_TABLE) else None,
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
    state.update(_statistics(conn))
    return state


def _statistics(conn: sqlite3.Connection) -> dict[str, str]:
    """ANALYZE's statistics, the query planner's inputs: whether each sqlite_stat table exists and how many
    rows it holds ("sqlite_stat1" -> "2 rows"), and per table what sqlite_stat1 says of it
    ("sqlite_stat1 t" -> "t: 3; t_a: 3 1") and a digest of sqlite_stat4's samples ("sqlite_stat4 t")."""
    out: dict[str, str] = {}
    present = [
        str(n)
        for (n,) in rows(
            conn, "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name LIKE 'sqlite\\_stat_' ESCAPE '\\'"
        )
    ]
    for stat in sorted(present):
        found = rows(conn, f"SELECT * FROM main.{stat}")  # noqa: S608 (a name read from sqlite_master)
        table_rows = [row for row in found if str(row[0]).lower() != OUTCOMES_TABLE]
        out[stat] = f"{len(table_rows)} row" + ("" if len(table_rows) == 1 else "s")
        per_table: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in table_rows:
            per_table[str(row[0])].append(tuple(row[1:]))
        for tbl, entries in per_table.items():
            if stat == "sqlite_stat1":  # (idx, stat): short, said as is
                text = "; ".join(sorted(f"{idx if idx is not None else tbl}: {s}" for idx, s in entries))
            else:  # samples (blobs): a digest
                digest = hashlib.sha256(repr(sorted(entries, key=repr)).encode()).hexdigest()[:12]
                text = f"{len(entries)} samples, digest {digest}"
            out[f"{stat} {quote_ident(tbl)}"] = text
    return out
