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
- sequences' parameters (type, increment, minimum, maximum, start, cache, cycle: settings off
  CREATE SEQUENCE's defaults), and the column that owns one;
- schemas (owner, privileges), default privileges (pg_default_acl), extensions, this
  database's privileges, connection limit and settings (ALTER DATABASE / ALTER ROLE ... SET);
- aggregates, collations, operators, text search configurations (with their mappings) and
  dictionaries, conversions of the user schemas, and casts created after initdb, by catalog row;
- large objects: owner and privileges, and a content hash (pg_largeobjects.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from goexd.dbinspect import pg_largeobjects
from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.dbinspect.model import THIS_DATABASE
from goexd.dbinspect.pg_names import KINDS, USER_NAMESPACES, acl, qualified

State = tuple[str, str]


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
       ARRAY(SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
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

_QUALIFIED = (
    "CASE WHEN n.nspname = 'public' THEN quote_ident({0}) ELSE quote_ident(n.nspname) || '.' || quote_ident({0}) END"
)

# Everything but the relations themselves in two round trips (a query each cost more, in round trips
# and planning; one union of all cost more to plan than two), as (what, relation oid, a, ..., h), NULL
# where unused: of the relations,
# triggers enabled or not, policies, comments (theirs and their columns'), rules, extended statistics,
# sequences' parameters and owning column (a regclass's text is the name as qualified() writes it: the
# read scope pins search_path to public), columns with something off their default (most have none);
# schemas; default privileges; extensions; this database (privileges, connection limit) and the
# settings ALTER DATABASE ... SET and ALTER ROLE ... [IN DATABASE] SET gave it and the connected role
# (the cluster-wide role settings too: they apply to the next session here); the other objects a user
# may create in a schema (aggregates, collations, operators, text search configurations and
# dictionaries, conversions) and casts made after initdb (oid >= 16384, FirstNormalObjectId: a cheap
# filter first), each by what it does (its catalog row, to_jsonb, without oids that a re-creation
# changes); large objects.
_OF_RELATIONS = f"""
SELECT 'trigger', t.tgrelid, quote_ident(t.tgname),
       CASE t.tgenabled WHEN 'O' THEN 'enabled' WHEN 'D' THEN 'disabled'
                        WHEN 'R' THEN 'enabled on replica only' ELSE 'enabled always' END,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_trigger t WHERE t.tgrelid = ANY(%(oids)s) AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', p.polrelid, quote_ident(p.polname),
       concat_ws(' ', CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, 'FOR',
                 CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                               WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                 'TO', (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(r::regrole::text) END, ', ')
                        FROM unnest(p.polroles) r),
                 'USING (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                 'WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')'),
       NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_policy p WHERE p.polrelid = ANY(%(oids)s)
UNION ALL
SELECT 'comment', d.objoid, CASE WHEN d.objsubid <> 0 THEN quote_ident(a.attname) END, d.description,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_description d LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
WHERE d.classoid = 'pg_class'::regclass AND d.objoid = ANY(%(oids)s)
UNION ALL
SELECT 'sequence', s.seqrelid, format_type(s.seqtypid, NULL), s.seqincrement::text, s.seqmin::text, s.seqmax::text,
       s.seqstart::text, s.seqcache::text, s.seqcycle::text,
       (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname)
        FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype IN ('a', 'i') LIMIT 1)
FROM pg_sequence s WHERE s.seqrelid = ANY(%(oids)s)
UNION ALL
SELECT 'column', a.attrelid, quote_ident(a.attname), coalesce(a.attstattarget, -1)::text,
       CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END, nullif(a.attcompression, '')::text,
       array_to_string(a.attoptions, E'\\n'), a.attislocal::text, a.attinhcount::text,
       array_to_string(ARRAY(SELECT x::text FROM unnest(a.attacl) x ORDER BY 1), ',')
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
  AND (coalesce(a.attstattarget, -1) <> -1 OR a.attstorage <> t.typstorage OR a.attcompression <> ''
       OR a.attoptions IS NOT NULL OR a.attinhcount > 0 OR a.attacl IS NOT NULL)
UNION ALL
SELECT 'rule', r.ev_class, quote_ident(r.rulename), pg_get_ruledef(r.oid, true),
       CASE r.ev_enabled WHEN 'O' THEN '' WHEN 'D' THEN ' (disabled)'
                         WHEN 'R' THEN ' (enabled on replica only)' ELSE ' (enabled always)' END,
       NULL, NULL, NULL, NULL, NULL
FROM pg_rewrite r WHERE r.ev_class = ANY(%(oids)s) AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'statistics', s.stxrelid, {_QUALIFIED.format("s.stxname")}, pg_get_statisticsobjdef(s.oid),
       coalesce(s.stxstattarget, -1)::text, NULL, NULL, NULL, NULL, NULL
FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.stxrelid = ANY(%(oids)s)
"""  # noqa: S608 (constant text)

_OF_DATABASE = f"""
SELECT 'schema', NULL::oid, quote_ident(n.nspname), quote_ident(pg_get_userbyid(n.nspowner)),
       {acl("n.nspacl", "'n'", "n.nspowner")}, NULL, NULL, NULL, NULL, NULL
FROM pg_namespace n WHERE {USER_NAMESPACES}
UNION ALL
SELECT 'default privileges', NULL,
       quote_ident(pg_get_userbyid(d.defaclrole)) || coalesce(' in schema ' || quote_ident(n.nspname), '') || ' on '
       || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                               WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' ELSE d.defaclobjtype::text END,
       array_to_string(ARRAY(SELECT x::text FROM unnest(d.defaclacl) x ORDER BY 1), ','),
       NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
UNION ALL
SELECT 'extension', NULL, quote_ident(e.extname), 'version ' || e.extversion || ' in schema ' || quote_ident(n.nspname),
       NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
UNION ALL
SELECT 'database', NULL, {acl("d.datacl", "'d'", "d.datdba")}, d.datconnlimit::text, NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_database d WHERE d.datname = current_database()
UNION ALL
SELECT 'database setting', NULL, CASE WHEN s.setrole <> 0 THEN s.setrole::regrole::text END, (s.setdatabase <> 0)::text,
       c.item, NULL, NULL, NULL, NULL, NULL
FROM pg_db_role_setting s, unnest(s.setconfig) c(item)
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
   OR (s.setdatabase = 0 AND s.setrole = quote_ident(current_user)::regrole)
UNION ALL
SELECT 'large object', m.oid, {pg_largeobjects.PRIVILEGES}, ({pg_largeobjects.READABLE})::text,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_largeobject_metadata m
UNION ALL
SELECT 'other objects', NULL,
       ((SELECT count(*) FROM pg_aggregate WHERE aggfnoid >= 16384)
        + (SELECT count(*) FROM pg_collation WHERE oid >= 16384) + (SELECT count(*) FROM pg_operator WHERE oid >= 16384)
        + (SELECT count(*) FROM pg_ts_config WHERE oid >= 16384) + (SELECT count(*) FROM pg_ts_dict WHERE oid >= 16384)
        + (SELECT count(*) FROM pg_conversion WHERE oid >= 16384)
        + (SELECT count(*) FROM pg_cast WHERE oid >= 16384))::text,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
"""  # noqa: S608 (constant text)

# Read only when the count above finds any (most databases have none: its planning cost more than
# the rest of these facts together).
_OTHER_OBJECTS = f"""
SELECT 'object', NULL::oid, 'aggregate ' || a.aggfnoid::regprocedure::text,
       (to_jsonb(a) - 'aggfnoid' - 'aggtranstype' - 'aggmtranstype')::text
       || ' stype ' || a.aggtranstype::regtype::text, NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE a.aggfnoid >= 16384 AND {USER_NAMESPACES}
UNION ALL
SELECT 'object', NULL::oid, 'collation ' || c.oid::regcollation::text,
       (to_jsonb(c) - 'oid' - 'collversion' - 'collnamespace' - 'collowner')::text, NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid >= 16384 AND {USER_NAMESPACES}
UNION ALL
SELECT 'object', NULL::oid, 'operator ' || o.oid::regoperator::text,
       (to_jsonb(o) - 'oid' - 'oprnamespace' - 'oprowner' - 'oprleft' - 'oprright' - 'oprresult')::text
       || ' returns ' || o.oprresult::regtype::text, NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid >= 16384 AND {USER_NAMESPACES}
UNION ALL
SELECT 'object', NULL::oid, 'text search configuration ' || c.oid::regconfig::text,
       'parser ' || (SELECT quote_ident(prsname) FROM pg_ts_parser WHERE oid = c.cfgparser) || ', mapping '
       || coalesce((SELECT string_agg(m.maptokentype || ':' || m.mapdict::regdictionary::text, ' '
                                      ORDER BY m.maptokentype, m.mapseqno)
                    FROM pg_ts_config_map m WHERE m.mapcfg = c.oid), ''), NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE c.oid >= 16384 AND {USER_NAMESPACES}
UNION ALL
SELECT 'object', NULL::oid, 'text search dictionary ' || d.oid::regdictionary::text,
       'template ' || (SELECT quote_ident(tmplname) FROM pg_ts_template WHERE oid = d.dicttemplate)
       || ', options ' || coalesce(d.dictinitoption, ''), NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace WHERE d.oid >= 16384 AND {USER_NAMESPACES}
UNION ALL
SELECT 'object', NULL::oid, 'conversion ' || {_QUALIFIED.format("c.conname")},
       (to_jsonb(c) - 'oid' - 'connamespace' - 'conowner')::text, NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_conversion c JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.oid >= 16384 AND {USER_NAMESPACES}
UNION ALL
SELECT 'object', NULL::oid, 'cast (' || c.castsource::regtype::text || ' AS ' || c.casttarget::regtype::text || ')',
       concat_ws(', ', 'function ' || nullif(c.castfunc, 0)::regprocedure::text,
                 'context ' || c.castcontext::text, 'method ' || c.castmethod::text), NULL, NULL, NULL, NULL, NULL, NULL
FROM pg_cast c WHERE c.oid >= 16384
"""  # noqa: S608 (constant text)

_REPLICA_IDENTITY = {"f": "full", "n": "nothing"}
_STORAGE = {"p": "plain", "e": "external", "m": "main", "x": "extended"}
_COMPRESSION = {"p": "pglz", "l": "lz4"}


def read(cur: psycopg.Cursor[Any]) -> tuple[list[State], list[State]]:
    """(states, settings) of the user schemas and the database; see the module's docstring."""
    states: list[State] = []
    settings: list[State] = []
    names: dict[int, str] = {}
    for row in cur.execute(_RELATIONS).fetchall():
        oid, nsp_q, rel_q, relkind, rls, persistence, privileges, options, replident, replident_index = row[:10]
        clustered, bound, partition_key, parents, access_method, populated = row[10:]
        key = f"{KINDS[relkind]} {qualified(nsp_q, rel_q)}"
        names[oid] = key
        states.append((f"privileges on {key}", privileges))
        if relkind == "S":
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
    large_objects = []
    rows = cur.execute(_OF_RELATIONS, {"oids": oids}).fetchall() + cur.execute(_OF_DATABASE).fetchall()
    if any(what == "other objects" and a != "0" for what, _, a, *_ in rows):
        rows += cur.execute(_OTHER_OBJECTS).fetchall()
    for what, rel, *v in rows:
        a, b, c = v[:3]
        if what == "trigger":
            states.append((f"trigger {a} on {names[rel]}", b))
        elif what == "policy":
            states.append((f"policy {a} on {names[rel]}", b))
        elif what == "comment":
            states.append((f"comment on {names[rel]}" + (f" column {a}" if a else ""), repr(b)))
        elif what == "sequence":
            sequence_states, sequence_settings = _sequence(names[rel], *v)
            states += sequence_states
            settings += sequence_settings
        elif what == "column":
            col_states, col_settings = _column(f"{names[rel]} column {a}", *v[1:])
            states += col_states
            settings += col_settings
        elif what == "rule":
            states.append((f"rule {a} on {names[rel]}", b + c))
        elif what == "statistics":
            states.append((f"statistics {a} on {names[rel]}", b))
            if c != "-1":
                settings.append((f"statistics target of statistics {a} on {names[rel]}", c))
        elif what == "schema":
            states += [(f"schema {a}", f"owner {b}"), (f"privileges on schema {a}", c)]
        elif what == "default privileges":
            states.append((f"default privileges of role {a}", b))
        elif what in ("extension", "object"):
            states.append((a if what == "object" else f"extension {a}", b))
        elif what == "database":
            states.append((f"privileges on {THIS_DATABASE}", a))
            if b != "-1":
                settings.append((f"connection limit of {THIS_DATABASE}", b))
        elif what == "database setting":
            name, _, value = c.partition("=")
            of = THIS_DATABASE if not a else f"role {a} in {THIS_DATABASE}" if b == "true" else f"role {a}"
            settings.append((f"setting {name} of {of}", value))
        elif what == "large object":
            large_objects.append((rel, a, b == "true"))
    return states + pg_largeobjects.read(cur, large_objects), settings


def _options(key: str, options: Iterable[str] | None) -> list[State]:
    """reloptions / attoptions ("fillfactor=70") as settings: "option fillfactor of table t" -> "70"."""
    return [(f"option {name} of {key}", value) for name, _, value in (o.partition("=") for o in options or ())]


def _column(
    key: str,
    target: str,
    storage: str | None,
    compression: str | None,
    options: str | None,
    local: str,
    inherited: str,
    privileges: str,
) -> tuple[list[State], list[State]]:
    """A column's settings off their default, its privileges and inheritance (the catalog's values as text)."""
    states: list[State] = []
    settings = _options(key, options.split("\n") if options else None)
    if target != "-1":
        settings.append((f"statistics target of {key}", target))
    if storage:
        settings.append((f"storage of {key}", _STORAGE.get(storage, storage)))
    if compression:
        settings.append((f"compression of {key}", _COMPRESSION.get(compression, compression)))
    if inherited != "0":
        parents = f"{inherited} parent{'' if inherited == '1' else 's'}"
        also = ", also local" if local == "true" else ""
        states.append((f"inheritance of {key}", f"inherited from {parents}{also}"))
    if privileges:
        states.append((f"privileges on {key}", privileges))
    return states, settings


_TYPE_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


def _sequence(
    key: str,
    typ: str,
    increment: str,
    low: str,
    high: str,
    start: str,
    cache: str,
    cycle: str,
    owned_by: str | None,
) -> tuple[list[State], list[State]]:
    """A sequence's parameters as settings (those off CREATE SEQUENCE's defaults for its type and
    direction), and the column that owns it as a state (the catalog's values as text)."""
    top = _TYPE_MAX.get(typ, 2**63 - 1)
    default_low, default_high = (1, top) if int(increment) > 0 else (-top - 1, -1)
    given = {
        "type": (typ, "bigint"),
        "increment": (increment, "1"),
        "minimum": (low, str(default_low)),
        "maximum": (high, str(default_high)),
        "start": (start, str(default_low if int(increment) > 0 else default_high)),
        "cache": (cache, "1"),
        "cycle": ("yes" if cycle == "true" else "no", "no"),
    }
    settings = [(f"{name} of {key}", value) for name, (value, default) in given.items() if value != default]
    return ([(f"owning column of {key}", owned_by)] if owned_by else []), settings
