"""Names and SQL fragments the PostgreSQL catalog readers share."""

from __future__ import annotations

from goexd.dbinspect.model import MATVIEW, TABLE, VIEW

USER_NAMESPACES = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
"""

KINDS = {"r": TABLE, "p": "partitioned table", "v": VIEW, "m": MATVIEW, "f": "foreign table", "S": "sequence"}


def acl(column: str, kind: str, owner: str) -> str:
    """SQL for an ACL's text, its items sorted; the owner's default ACL when none is set (acldefault's
    `kind`, an SQL expression: "'n'"), so that a GRANT and its REVOKE compare equal."""
    items = f"unnest(coalesce({column}, acldefault({kind}, {owner})))"
    return f"array_to_string(ARRAY(SELECT a::text FROM {items} a ORDER BY 1), ',')"  # noqa: S608 (no input)


def qualified(schema_q: str, name_q: str) -> str:
    """A quoted name, qualified unless it is in `public`."""
    return name_q if schema_q == "public" else f"{schema_q}.{name_q}"
