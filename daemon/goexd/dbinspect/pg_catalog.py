"""Read the user schemas of a PostgreSQL database into the model, in a few catalog queries.

Skipped: pg_catalog, information_schema, TOAST and temporary schemas, goex's own marker table
(hidden.py; its indexes and constraints go with it, being read by table), and functions an
extension brought or that have no pg_get_functiondef (aggregates). Definitions come from the
server's own deparsers (format_type, pg_get_expr, pg_get_constraintdef, pg_get_indexdef,
pg_get_triggerdef, pg_get_viewdef, pg_get_functiondef), so they are valid SQL for this server and
written one way whatever the text that made them (a rename and its inverse leave them as they were).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from goexd.dbinspect import pg_states
from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.dbinspect.model import Column, Index, Relation, Schema
from goexd.dbinspect.pg_names import KINDS, USER_NAMESPACES, acl, qualified

__all__ = ["USER_NAMESPACES", "qualified", "read_schema", "restore_sequences", "sequence_positions", "sequence_states"]

_KINDS = KINDS
_RELATIONS = f"""
SELECT c.oid, n.nspname, c.relname, quote_ident(n.nspname), quote_ident(c.relname), c.relkind, c.reltuples,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END,
       has_table_privilege(c.oid, 'SELECT') AND c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_NAMESPACES} AND c.relname <> '{OUTCOMES_TABLE}'
ORDER BY n.nspname, c.relname
"""  # noqa: S608 (constant text)

_COLUMNS = """
SELECT a.attrelid, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation <> ty.typcollation THEN
         (SELECT CASE WHEN cn.nspname = 'pg_catalog' THEN quote_ident(co.collname)
                      ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END
          FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation)
       END
FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS = """
SELECT con.conrelid, con.contype, con.conname, pg_get_constraintdef(con.oid, true),
       ARRAY(SELECT quote_ident(a.attname)
             FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_constraint con
WHERE con.conrelid = ANY(%s) AND con.contype IN ('p', 'u', 'f', 'c', 'x')
ORDER BY con.conrelid, con.contype, con.conname
"""

_INDEXES = """
SELECT i.indrelid, quote_ident(ic.relname), pg_get_indexdef(i.indexrelid), i.indisunique,
       EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY(%s)
ORDER BY i.indrelid, ic.relname
"""

_TRIGGERS = """
SELECT t.tgrelid, pg_get_triggerdef(t.oid, true)
FROM pg_trigger t WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal
ORDER BY t.tgrelid, t.tgname
"""

# User-defined types: enums (labels in order), domains (base type, collation, default, NOT NULL,
# constraints), composite types (attributes), range types; and their privileges. Row types of tables
# and multiranges go with what made them.
_TYPES = f"""
SELECT quote_ident(n.nspname), quote_ident(t.typname),
       CASE t.typtype
         WHEN 'e' THEN 'ENUM (' || coalesce((
             SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
             FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
         WHEN 'd' THEN concat_ws(' ', 'DOMAIN', format_type(t.typbasetype, t.typtypmod),
                                 'COLLATE ' || nullif(t.typcollation, bt.typcollation)::regcollation::text,
                                 'DEFAULT ' || t.typdefault, CASE WHEN t.typnotnull THEN 'NOT NULL' END,
                                 (SELECT string_agg('CONSTRAINT ' || quote_ident(con.conname) || ' '
                                                    || pg_get_constraintdef(con.oid, true), ' ' ORDER BY con.conname)
                                  FROM pg_constraint con WHERE con.contypid = t.oid))
         WHEN 'c' THEN 'COMPOSITE (' || coalesce((
             SELECT string_agg(concat_ws(' ', quote_ident(a.attname), format_type(a.atttypid, a.atttypmod),
                                         'COLLATE ' || nullif(a.attcollation, at.typcollation)::regcollation::text),
                               ', ' ORDER BY a.attnum)
             FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
         ELSE concat_ws(', ', 'RANGE (SUBTYPE = ' || format_type(r.rngsubtype, NULL),
                        'COLLATION = ' || nullif(r.rngcollation, 0)::regcollation::text,
                        'SUBTYPE_OPCLASS = ' || (SELECT quote_ident(opcname) FROM pg_opclass WHERE oid = r.rngsubopc),
                        'CANONICAL = ' || nullif(r.rngcanonical, 0)::regproc::text,
                        'SUBTYPE_DIFF = ' || nullif(r.rngsubdiff, 0)::regproc::text) || ')'
       END,
       {acl("t.typacl", "'T'", "t.typowner")}
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype LEFT JOIN pg_range r ON r.rngtypid = t.oid
WHERE {USER_NAMESPACES}
  AND (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
ORDER BY 1, 2
"""  # noqa: S608 (constant text)

# Functions and procedures (aggregates and window functions have no pg_get_functiondef), not
# those an extension brought: they are the extension's, not the user's.
_ROUTINES = f"""
SELECT quote_ident(n.nspname), quote_ident(p.proname), pg_get_function_identity_arguments(p.oid),
       pg_get_functiondef(p.oid), {acl("p.proacl", "'f'", "p.proowner")}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {USER_NAMESPACES} AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend dep
                  WHERE dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid AND dep.deptype = 'e')
ORDER BY 1, 2, 3
"""  # noqa: S608 (constant text)

# State outside the definitions (Schema.states). Sequences' positions are not transactional (a
# test's ROLLBACK leaves them moved); each readable sequence is read (last_value, is_called).
_SEQUENCES = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), quote_ident(schemaname),
       quote_ident(sequencename), increment_by
FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
  AND schemaname !~ '^pg_(toast|temp_|toast_temp_)'
  AND has_sequence_privilege(quote_ident(schemaname) || '.' || quote_ident(sequencename), 'SELECT')
ORDER BY 1
"""

_USING = re.compile(r" USING (\w+) (.*)$", re.DOTALL)


def server_version(conn: psycopg.Connection[Any]) -> str:
    v = conn.info.server_version  # e.g. 150018
    major = v // 10000
    return f"PostgreSQL {major}.{v % 10000}" if major >= 10 else f"PostgreSQL {major}.{v // 100 % 100}.{v % 100}"


def read_schema(conn: psycopg.Connection[Any]) -> Schema:
    cur = conn.cursor(row_factory=tuple_row)
    rels = cur.execute(_RELATIONS).fetchall()
    oids = [r[0] for r in rels]

    columns: dict[int, list[Column]] = defaultdict(list)
    for relid, name, typ, notnull, expr, identity, generated, collation in cur.execute(_COLUMNS, (oids,)):
        gen, default = None, expr
        if identity:
            gen = "GENERATED ALWAYS AS IDENTITY" if identity == "a" else "GENERATED BY DEFAULT AS IDENTITY"
        elif generated == "s":
            gen, default = f"GENERATED ALWAYS AS ({expr}) STORED", None
        columns[relid].append(Column(name, typ, notnull, default, gen, collation))

    pks: dict[int, tuple[str, ...]] = {}
    constraints: dict[int, list[str]] = defaultdict(list)
    for relid, contype, _conname, definition, cols in cur.execute(_CONSTRAINTS, (oids,)):
        if contype == "p":
            pks[relid] = tuple(cols)
        else:
            constraints[relid].append(definition)

    indexes: dict[int, list[Index]] = defaultdict(list)
    for relid, iname, indexdef, unique, backs in cur.execute(_INDEXES, (oids,)):
        m = _USING.search(indexdef)
        definition = f"{m.group(1)} {m.group(2)}" if m else indexdef
        indexes[relid].append(Index(iname, definition, unique, backs))

    triggers: dict[int, list[str]] = defaultdict(list)
    for relid, definition in cur.execute(_TRIGGERS, (oids,)):
        triggers[relid].append(definition)

    relations = []
    for oid, nspname, relname, nsp_q, rel_q, relkind, reltuples, viewdef, readable in rels:
        relations.append(
            Relation(
                ref=qualified(nsp_q, rel_q),
                schema=nspname,
                name=relname,
                kind=_KINDS[relkind],
                columns=tuple(columns[oid]),
                primary_key=pks.get(oid, ()),
                constraints=tuple(constraints[oid]),
                indexes=tuple(indexes[oid]),
                triggers=tuple(triggers[oid]),
                source=viewdef,
                estimated_rows=int(reltuples) if reltuples is not None and reltuples >= 0 else None,
                readable=readable,
            )
        )
    types, privileges = [], []
    for nsp_q, typ_q, definition, type_acl in cur.execute(_TYPES):
        types.append(f"{qualified(nsp_q, typ_q)}: {definition}")
        privileges.append((f"privileges on type {qualified(nsp_q, typ_q)}", type_acl))
    routines = []
    for nsp_q, name_q, args, body, routine_acl in cur.execute(_ROUTINES):
        routines.append((f"{qualified(nsp_q, name_q)}({args})", body))
        privileges.append((f"privileges on function {routines[-1][0]}", routine_acl))
    states, settings = pg_states.read(cur)
    return Schema(
        engine=server_version(conn),
        relations=tuple(relations),
        types=tuple(types),
        routines=tuple(routines),
        states=tuple(sorted([*sequence_states(cur), *states, *privileges])),
        settings=tuple(sorted(settings)),
    )


def sequence_states(cur: psycopg.Cursor[Any]) -> tuple[tuple[str, str], ...]:
    """The sequences' part of Schema.states: "sequence t_id_seq" -> the value its nextval would give."""
    return tuple(
        (f"sequence {qualified(nsp_q, name_q)}", f"next {last + step if called else last}")
        for (nsp_q, name_q), (last, called, step) in _sequences(cur).items()
    )


Positions = dict[str, tuple[int, bool]]  # schema-qualified sequence -> (last_value, is_called)


def _sequences(cur: psycopg.Cursor[Any]) -> dict[tuple[str, str], tuple[int, bool, int]]:
    names = cur.execute(_SEQUENCES).fetchall()
    if not names:
        return {}
    one = "SELECT {}, last_value, is_called FROM {}"  # the names come quoted from quote_ident
    query = sql.SQL(" UNION ALL ").join(sql.SQL(one).format(i, sql.SQL(ref)) for i, (ref, *_) in enumerate(names))
    rows = {i: (last, called) for i, last, called in cur.execute(query)}
    return {(n[1], n[2]): (*rows[i], n[3]) for i, n in enumerate(names)}


def sequence_positions(conn: psycopg.Connection[Any]) -> Positions:
    return {f"{k[0]}.{k[1]}": (v[0], v[1]) for k, v in _sequences(conn.cursor(row_factory=tuple_row)).items()}


def restore_sequences(conn: psycopg.Connection[Any], before: Positions, left: Positions) -> list[str]:
    """Set back each sequence that moved from `before` to `left`, unless it has moved again since (another
    client's nextval: rewinding it would hand that value out twice). Returns those it could not set back."""
    kept = []
    for name, (last, called) in before.items():
        now = left.get(name)
        if now is None or now == (last, called):
            continue
        row = conn.execute(
            sql.SQL("SELECT setval({s}, %s, %s) FROM {seq} WHERE last_value = %s AND is_called = %s").format(
                s=sql.Literal(name), seq=sql.SQL(name)
            ),
            (last, called, *now),
        ).fetchone()
        if row is None:
            kept.append(name)
    return kept
