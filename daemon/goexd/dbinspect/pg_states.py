"""PostgreSQL state beside the definitions (Schema.states and Schema.settings), read in a few queries.

Each fact is a short text keyed by what it is of, so a diff can name it ("option fillfactor of
table t: default → 70", "rule no_ins on table t added", "large object 16401: 7 bytes, md5 … → 0
bytes"); a key that ends with an object's key ("… of table t") is hashed into that object.
States are always there when their object is; settings only when not at their default.

- relations: row level security, persistence, privileges, comments (theirs and their columns'),
  options (reloptions: fillfactor, a view's security_barrier...), replica identity, the index
  they are CLUSTERed on, partition bound and key, inheritance parents, access method, and whether
  a materialized view is populated; triggers enabled or not; policies; rules (pg_rewrite);
  extended statistics (CREATE STATISTICS);
- columns: statistics target, storage and compression other than their type's, options
  (n_distinct...), privileges (column GRANTs), whether an inherited column is also local;
- sequences' parameters (type, increment, minimum, maximum, start, cache, cycle, owning column);
- schemas (owner, privileges), default privileges (pg_default_acl), extensions, this
  database's privileges, connection limit and settings (ALTER DATABASE / ALTER ROLE ... SET);
- large objects: owner and privileges, and a content hash (pg_largeobjects.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from goexd.dbinspect import pg_largeobjects
from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.dbinspect.pg_names import KINDS, USER_NAMESPACES, acl, qualified

State = tuple[str, str]

_PARENT = "CASE WHEN pn.nspname = 'public' THEN quote_ident(pc.relname) ELSE quote_ident(pn.nspname) || '.' || quote_ident(pc.relname) END"  # noqa: E501 (qualified(), in SQL)

_RELATION_ACL_KIND = "(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\""
_RELATIONS = f"""
SELECT c.oid, quote_ident(n.nspname), quote_ident(c.relname), c.relkind,
       CASE WHEN c.relrowsecurity THEN 'on' ELSE 'off' END
         || CASE WHEN c.relforcerowsecurity THEN ', forced' ELSE '' END,
       CASE c.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'logged' END,
       {acl("c.relacl", _RELATION_ACL_KIND, "c.relowner")},
       c.reloptions, c.relreplident, ix.replident, ix.clustered,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       ARRAY(SELECT {_PARENT} FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
             JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
       CASE WHEN c.relkind IN ('r', 'm') AND am.amname <> 'heap' THEN am.amname END,
       c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam
LEFT JOIN LATERAL (
    SELECT max(quote_ident(ic.relname)) FILTER (WHERE i.indisreplident) AS replident,
           max(quote_ident(ic.relname)) FILTER (WHERE i.indisclustered) AS clustered
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid = c.oid AND (i.indisreplident OR i.indisclustered)
) ix ON c.relkind IN ('r', 'p', 'm')
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {USER_NAMESPACES} AND c.relname <> '{OUTCOMES_TABLE}'
"""  # noqa: S608 (constant text)

_TRIGGERS = """
SELECT t.tgrelid, quote_ident(t.tgname),
       CASE t.tgenabled WHEN 'O' THEN 'enabled' WHEN 'D' THEN 'disabled'
                        WHEN 'R' THEN 'enabled on replica only' ELSE 'enabled always' END
FROM pg_trigger t WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal
"""

_POLICIES = """
SELECT p.polrelid, quote_ident(p.polname),
       concat_ws(' ', CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, 'FOR',
                 CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                               WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                 'TO', (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(r::regrole::text) END, ', ')
                        FROM unnest(p.polroles) r),
                 'USING (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                 'WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')
FROM pg_policy p WHERE p.polrelid = ANY(%s)
"""

_COMMENTS = """
SELECT d.objoid, d.objsubid, quote_ident(a.attname), d.description
FROM pg_description d LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
WHERE d.classoid = 'pg_class'::regclass AND d.objoid = ANY(%s)
"""

_RULES = """
SELECT r.ev_class, quote_ident(r.rulename), pg_get_ruledef(r.oid, true),
       CASE r.ev_enabled WHEN 'O' THEN '' WHEN 'D' THEN ' (disabled)'
                         WHEN 'R' THEN ' (enabled on replica only)' ELSE ' (enabled always)' END
FROM pg_rewrite r WHERE r.ev_class = ANY(%s) AND r.rulename <> '_RETURN'
"""

_STATISTICS = """
SELECT s.stxrelid, quote_ident(n.nspname), quote_ident(s.stxname), pg_get_statisticsobjdef(s.oid),
       coalesce(s.stxstattarget, -1)
FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.stxrelid = ANY(%s)
"""

# Only columns with something off their default (most have none).
_COLUMNS = """
SELECT a.attrelid, quote_ident(a.attname), coalesce(a.attstattarget, -1),
       CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END,
       nullif(a.attcompression, ''), a.attoptions, a.attislocal, a.attinhcount,
       array_to_string(ARRAY(SELECT x::text FROM unnest(a.attacl) x ORDER BY 1), ',')
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
  AND (coalesce(a.attstattarget, -1) <> -1 OR a.attstorage <> t.typstorage OR a.attcompression <> ''
       OR a.attoptions IS NOT NULL OR a.attinhcount > 0 OR a.attacl IS NOT NULL)
"""

_SEQUENCES = """
SELECT s.seqrelid, format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache,
       s.seqcycle,
       (SELECT CASE WHEN tn.nspname = 'public' THEN quote_ident(tc.relname)
                    ELSE quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) END || '.' || quote_ident(a.attname)
        FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0 LIMIT 1)
FROM pg_sequence s WHERE s.seqrelid = ANY(%s)
"""

_SCHEMAS = f"""
SELECT quote_ident(n.nspname), quote_ident(pg_get_userbyid(n.nspowner)), {acl("n.nspacl", "'n'", "n.nspowner")}
FROM pg_namespace n WHERE {USER_NAMESPACES}
"""  # noqa: S608 (constant text)

_DEFAULT_ACLS = """
SELECT quote_ident(pg_get_userbyid(d.defaclrole)), quote_ident(n.nspname),
       CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                            WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' ELSE d.defaclobjtype::text END,
       array_to_string(ARRAY(SELECT x::text FROM unnest(d.defaclacl) x ORDER BY 1), ',')
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
"""

_EXTENSIONS = """
SELECT quote_ident(e.extname), e.extversion, quote_ident(n.nspname)
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
"""

# This database: its privileges and connection limit; the settings ALTER DATABASE ... SET and ALTER ROLE
# ... [IN DATABASE] SET gave it and the connected role (the cluster-wide role settings included: they
# apply to the next session here too).
_DATABASE = f"""
SELECT {acl("d.datacl", "'d'", "d.datdba")}, d.datconnlimit FROM pg_database d WHERE d.datname = current_database()
"""  # noqa: S608 (constant text)

_DATABASE_SETTINGS = """
SELECT CASE WHEN s.setrole <> 0 THEN quote_ident(r.rolname) END, s.setdatabase <> 0, c.item
FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c(item)
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
   OR (s.setdatabase = 0 AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user))
"""

_REPLICA_IDENTITY = {"f": "full", "n": "nothing"}
_STORAGE = {"p": "plain", "e": "external", "m": "main", "x": "extended"}
_COMPRESSION = {"p": "pglz", "l": "lz4"}


def read(cur: psycopg.Cursor[Any]) -> tuple[list[State], list[State]]:
    """(states, settings) of the user schemas and the database; see the module's docstring."""
    states: list[State] = []
    settings: list[State] = []
    names: dict[int, str] = {}
    sequences: list[int] = []
    for row in cur.execute(_RELATIONS).fetchall():
        oid, nsp_q, rel_q, relkind, rls, persistence, privileges, options, replident, replident_index = row[:10]
        clustered, bound, partition_key, parents, access_method, populated = row[10:]
        key = f"{KINDS[relkind]} {qualified(nsp_q, rel_q)}"
        names[oid] = key
        states.append((f"privileges on {key}", privileges))
        if relkind == "S":
            sequences.append(oid)
            continue
        if relkind in ("r", "p", "m"):
            states += [(f"row level security of {key}", rls), (f"persistence of {key}", persistence)]
        if clustered:
            states.append((f"cluster on index {clustered} of {key}", "set"))
        if bound:
            states.append((f"partition bound of {key}", bound))
        if partition_key:
            states.append((f"partition key of {key}", partition_key))
        states += [(f"parent {parent} of {key}", f"position {i}") for i, parent in enumerate(parents, 1)]
        if relkind == "m":
            states.append((f"data of {key}", "populated" if populated else "not populated (WITH NO DATA)"))
        settings += _options(key, options)
        if relkind in ("r", "p") and replident != "d":
            how = f"index {replident_index}" if replident == "i" else _REPLICA_IDENTITY.get(replident, replident)
            settings.append((f"replica identity of {key}", how))
        if access_method:
            settings.append((f"access method of {key}", access_method))
    oids = list(names)
    states += [(f"trigger {name} on {names[rel]}", st) for rel, name, st in cur.execute(_TRIGGERS, (oids,))]
    states += [(f"policy {name} on {names[rel]}", text) for rel, name, text in cur.execute(_POLICIES, (oids,))]
    for rel, sub, column, text in cur.execute(_COMMENTS, (oids,)):
        states.append((f"comment on {names[rel]}" + (f" column {column}" if sub else ""), repr(text)))
    states += [
        (f"rule {name} on {names[rel]}", definition + enabled)
        for rel, name, definition, enabled in cur.execute(_RULES, (oids,))
    ]
    for rel, nsp_q, name_q, definition, target in cur.execute(_STATISTICS, (oids,)):
        key = f"statistics {qualified(nsp_q, name_q)} on {names[rel]}"
        states.append((key, definition))
        if target != -1:
            settings.append((f"statistics target of {key}", str(target)))
    for row in cur.execute(_COLUMNS, (oids,)):
        col_states, col_settings = _column(f"{names[row[0]]} column {row[1]}", *row[2:])
        states += col_states
        settings += col_settings
    for rel, *params in cur.execute(_SEQUENCES, (sequences,)):
        states += [(f"{name} of {names[rel]}", value) for name, value in _sequence_parameters(*params)]
    for nsp_q, owner, privileges in cur.execute(_SCHEMAS):
        states += [(f"schema {nsp_q}", f"owner {owner}"), (f"privileges on schema {nsp_q}", privileges)]
    for role, nsp_q, objects, privileges in cur.execute(_DEFAULT_ACLS):
        where = f" in schema {nsp_q}" if nsp_q else ""
        states.append((f"default privileges of role {role}{where} on {objects}", privileges))
    states += [(f"extension {name}", f"version {v} in schema {nsp}") for name, v, nsp in cur.execute(_EXTENSIONS)]
    db_states, db_settings = _database(cur)
    return [*states, *db_states, *pg_largeobjects.read(cur)], [*settings, *db_settings]


def _options(key: str, options: Iterable[str] | None) -> list[State]:
    """reloptions / attoptions ("fillfactor=70") as settings: "option fillfactor of table t" -> "70"."""
    return [(f"option {name} of {key}", value) for name, _, value in (o.partition("=") for o in options or ())]


def _column(
    key: str,
    target: int,
    storage: str | None,
    compression: str | None,
    options: list[str] | None,
    local: bool,
    inherited: int,
    privileges: str,
) -> tuple[list[State], list[State]]:
    states: list[State] = []
    settings = _options(key, options)
    if target != -1:
        settings.append((f"statistics target of {key}", str(target)))
    if storage:
        settings.append((f"storage of {key}", _STORAGE.get(storage, storage)))
    if compression:
        settings.append((f"compression of {key}", _COMPRESSION.get(compression, compression)))
    if inherited:
        parents = f"{inherited} parent{'' if inherited == 1 else 's'}"
        states.append((f"inheritance of {key}", f"inherited from {parents}" + (", also local" if local else "")))
    if privileges:
        states.append((f"privileges on {key}", privileges))
    return states, settings


def _sequence_parameters(
    typ: str, increment: int, low: int, high: int, start: int, cache: int, cycle: bool, owned_by: str | None
) -> list[State]:
    named = {"type": typ, "increment": increment, "minimum": low, "maximum": high, "start": start, "cache": cache}
    out = [(name, str(value)) for name, value in named.items()] + [("cycle", "yes" if cycle else "no")]
    return out + ([("owning column", owned_by)] if owned_by else [])


def _database(cur: psycopg.Cursor[Any]) -> tuple[list[State], list[State]]:
    row = cur.execute(_DATABASE).fetchone()
    if row is None:
        return [], []
    privileges, limit = row
    settings: list[State] = [] if limit == -1 else [("connection limit of this database", str(limit))]
    for role, in_database, item in cur.execute(_DATABASE_SETTINGS):
        name, _, value = item.partition("=")
        of = "this database" if not role else f"role {role} in this database" if in_database else f"role {role}"
        settings.append((f"setting {name} of {of}", value))
    return [("privileges on this database", privileges)], settings
