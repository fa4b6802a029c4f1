"""The engine-neutral schema model both catalogs read into, and its canonical (hashable) form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, replace

# The kinds of relation a catalog reports. Tables and materialized views have their rows fingerprinted.
TABLE = "table"
VIEW = "view"
MATVIEW = "materialized view"
# What a database-level fact's key ends with (PostgreSQL: "setting work_mem of this database").
THIS_DATABASE = "this database"


# Names of columns, indexes and relations (`ref`) are as SQL writes them: quoted where needed.


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as declared (SQLite; may be "") or as format_type() renders it (PostgreSQL)
    not_null: bool
    default: str | None  # the default expression's text
    generated: str | None = None  # "GENERATED ALWAYS AS IDENTITY", "GENERATED ALWAYS AS (expr) STORED", ...
    collation: str | None = None  # declared on the column (SQLite) or other than its type's default (PostgreSQL)


@dataclass(frozen=True)
class Index:
    name: str
    definition: str  # e.g. "btree (user_id)", "(lower(email)) WHERE active"
    unique: bool
    backs_constraint: bool  # made for a PRIMARY KEY/UNIQUE constraint (described as that constraint)


@dataclass(frozen=True)
class Relation:
    """A table, view or other relation of a user schema."""

    ref: str  # how SQL names it: quoted where needed, schema-qualified outside `public`
    schema: str | None  # PostgreSQL namespace, unquoted; None on SQLite (always `main`)
    name: str  # unquoted
    kind: str  # TABLE, VIEW, "partitioned table", "materialized view", "foreign table", "virtual table"
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()  # FOREIGN KEY / UNIQUE / CHECK / EXCLUDE definitions, not the primary key
    indexes: tuple[Index, ...] = ()
    triggers: tuple[str, ...] = ()
    # The definition the database keeps: SQLite's CREATE statement (normalised: sqlite_text.py),
    # a PostgreSQL view's query (as pg_get_viewdef deparses it).
    source: str | None = None
    estimated_rows: int | None = None  # planner statistics (PG reltuples, SQLite sqlite_stat1); None: unknown
    readable: bool = True  # False: the connection's role has no SELECT privilege on it (PostgreSQL)
    # SQLite: the name that selects a rowid no column aliases ("rowid", else "_rowid_" or "oid" when a
    # column takes that name), part of each row's content; None: WITHOUT ROWID, or an INTEGER PRIMARY KEY.
    rowid: str | None = None
    module: str | None = None  # a SQLite virtual table's module ("fts5", "rtree")
    # A SQLite virtual table whose own SELECT is its content (sqlite_catalog.SELF_STORING): its rows are compared.
    rows_by_select: bool = False
    shadow_of: str | None = None  # a SQLite shadow table compared as a table: the virtual table it stores

    @property
    def row_key(self) -> tuple[str, ...]:
        """What tells its rows apart: the primary key, else a SQLite table's hidden rowid, else nothing."""
        return self.primary_key or ((self.rowid,) if self.rowid else ())

    @property
    def has_rows(self) -> bool:
        """Whether its rows are content (fingerprinted): ordinary tables, materialized views (whose stored rows a
        REFRESH replaces), and the virtual tables whose own SELECT gives what they keep."""
        return self.kind in (TABLE, MATVIEW) or self.rows_by_select


@dataclass(frozen=True)
class Schema:
    engine: str  # "PostgreSQL 15.18", "SQLite 3.40.1"
    relations: tuple[Relation, ...]
    types: tuple[str, ...] = ()  # user-defined types worth telling, e.g. "mood: ENUM ('sad', 'ok')"
    # PostgreSQL functions and procedures of the user schemas (a trigger's body is one):
    # "public.bump(integer)" -> its definition, as pg_get_functiondef deparses it.
    routines: tuple[tuple[str, str], ...] = ()
    # Other state compared as a short text, keyed by what it is of (PostgreSQL): "sequence t_id_seq" -> "next 6",
    # "trigger tr on table t" -> "enabled", "privileges on table t" -> the ACL, "comment on table t"...
    states: tuple[tuple[str, str], ...] = ()
    # Settings that have a default, compared like states but present only when not at their default
    # (a diff says "default" for the missing side): "option fillfactor of table t" -> "70",
    # "storage of table t column name" -> "main", "setting work_mem of this database" -> "1MB".
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def tables(self) -> tuple[Relation, ...]:
        return tuple(r for r in self.relations if r.has_rows)

    def without_database_facts(self) -> Schema:
        """The schema without the facts of the database itself (its privileges, connection limit and
        settings): what a copy made by CREATE DATABASE ... TEMPLATE has in common with it."""
        return replace(
            self,
            states=tuple(kv for kv in self.states if not kv[0].endswith(THIS_DATABASE)),
            settings=tuple(kv for kv in self.settings if not kv[0].endswith(THIS_DATABASE)),
        )


def relation_hash(rel: Relation) -> str:
    """A hash of the relation's definition (statistics excluded): changes with any DDL on it."""
    doc = {
        "kind": rel.kind,
        "ref": rel.ref,
        "columns": [[c.name, c.type, c.not_null, c.default, c.generated, c.collation] for c in rel.columns],
        "primary_key": list(rel.primary_key),
        "constraints": sorted(rel.constraints),
        "indexes": sorted([i.name, i.definition, i.unique] for i in rel.indexes),
        "triggers": sorted(rel.triggers),
        "source": rel.source,
    }
    return _sha256(doc)


def type_key(type_line: str) -> str:
    return "type " + type_line.split(":", 1)[0]


def relation_key(rel: Relation) -> str:
    return f"{rel.kind} {rel.ref}"


def routine_key(signature: str) -> str:
    return "function " + signature


def object_hashes(schema: Schema) -> dict[str, str]:
    """Every schema object ("table users", "view v", "type mood", "function f(integer)") -> the hash
    of its definition."""
    out = {relation_key(r): relation_hash(r) for r in schema.relations}
    out.update({type_key(t): _sha256(t) for t in schema.types})
    out.update({routine_key(sig): _sha256(body) for sig, body in schema.routines})

    # A state or setting goes into the hash of the object it is of ("privileges on table t": "table t");
    # one of no other object ("sequence s") is an object of its own.
    states = {**dict(schema.states), **{k: f"setting {v}" for k, v in schema.settings}}
    out.update({k: _sha256(v) for k, v in states.items() if owner_of(k, out.keys() | states.keys()) is None})
    for key, value in sorted(states.items()):
        if (o := owner_of(key, out.keys())) is not None:
            out[o] = _sha256([out[o], key, value])
    return out


def owner_of(key: str, objects: Collection[str]) -> str | None:
    """The object a state's key is of: the longest other object key that ends the key ("privileges on
    table t" -> "table t") or comes before " column " in it ("comment on table t column c" -> "table t").
    Found by the key's own words, not by a scan of every object (a schema holds thousands of states)."""
    words = key.split(" ")
    for i, word in enumerate(words):
        if word == "column":
            for start in range(1, i):
                if (candidate := " ".join(words[start:i])) in objects:
                    return candidate
    for start in range(1, len(words)):
        if (candidate := " ".join(words[start:])) in objects:
            return candidate
    return None


def schema_hash(objects: dict[str, str]) -> str:
    return _sha256(sorted(objects.items()))


def _sha256(doc: object) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
