"""PostgreSQL large objects as states: "large object 16401" -> "7 bytes, md5 …", and their privileges.

pg_largeobject (the data) is readable by superusers only, so the content is read through the
server-side functions any role may call on a large object it may SELECT: lo_get, hashed on the
server so only 32 hex digits per object come back: the md5 of its content, or for an object over
CHUNK bytes (one bytea of it could pass the 1 GB limit) the md5 of its chunks' md5s. The size
comes from lo_lseek64 on a read-only descriptor, which the read scope's rollback closes. A read
costs about what hashing every large object's bytes costs (~0.5 GB/s); a database without large
objects pays one catalog query.

Whether the role may read an object is decided from pg_largeobject_metadata as the server does
(superuser, lo_compat_privileges, or SELECT in its ACL, its owner's default ACL when none is set,
for PUBLIC or a role the current one has the privileges of). An object it may not read is
compared by owner and privileges only, its state saying "content not compared: not readable by
this role"; if reading fails anyway, every object's content is left uncompared that way, with the
server's error in the text, and the rest of the fingerprint still works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from goexd.dbinspect.pg_names import acl

CHUNK = 16 * 1024 * 1024

# SQL of pg_largeobject_metadata `m`, read with the other facts (pg_states.py): its privileges, and
# whether the current role may read it.
PRIVILEGES = acl("m.lomacl", "'L'", "m.lomowner")
READABLE = """current_setting('is_superuser')::boolean OR current_setting('lo_compat_privileges')::boolean
       OR EXISTS (SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
                  WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))"""

_CONTENT = """
SELECT o.oid, o.size,
       CASE WHEN o.size = 0 THEN NULL
            WHEN o.size <= %(chunk)s THEN md5(lo_get(o.oid))
            ELSE (SELECT 'chunked md5 ' || md5(string_agg(md5(lo_get(o.oid, off, %(chunk)s)), '' ORDER BY off))
                  FROM generate_series(0::bigint, o.size - 1, %(chunk)s) off) END
FROM (SELECT oid, lo_lseek64(lo_open(oid, 262144), 0, 2) AS size FROM unnest(%(oids)s::oid[]) AS u(oid)) o
"""  # 262144: INV_READ

UNREADABLE = "content not compared: not readable by this role"


def read(cur: psycopg.Cursor[Any], metadata: Sequence[tuple[int, str, bool]]) -> list[tuple[str, str]]:
    """Each large object's content and privileges as states, from its (oid, privileges, readable)."""
    states = [(f"privileges on large object {oid}", privileges) for oid, privileges, _ in metadata]
    readable = [oid for oid, _, may in metadata if may]
    content: dict[int, str] = {}
    if readable:
        try:
            with cur.connection.transaction():  # a savepoint: a failure leaves the read scope usable
                rows = cur.execute(_CONTENT, {"oids": readable, "chunk": CHUNK}).fetchall()
            content = {oid: f"{size} bytes" + (f", {_md5(digest)}" if digest else "") for oid, size, digest in rows}
        except psycopg.errors.Error as exc:
            why = str(exc.diag.message_primary or exc).splitlines()[0]
            content = dict.fromkeys(readable, f"content not compared: reading it failed ({why})")
    return states + [(f"large object {oid}", content.get(oid, UNREADABLE)) for oid, _, _ in metadata]


def _md5(digest: str) -> str:
    return digest if digest.startswith("chunked ") else f"md5 {digest}"
