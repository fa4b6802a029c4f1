"""describe(): the text a planner needs to write correct SQL for a database.

Tables and views of the user schemas with their columns (type, NOT NULL, default, collation),
primary, unique, foreign-key and check constraints, indexes, triggers, row counts (exact up to
COUNT_CAP rows, else the planner's estimate), the functions' signatures (PostgreSQL) and
optionally a few sample rows per table. It names no database, host, user or anything else of
the connection.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence

from goexd.dbinspect.backend import Backend, DbConnection, reading
from goexd.dbinspect.model import TABLE, Relation

COUNT_CAP = 100_000  # exact counts up to this many rows
_MAX_VALUE = 60  # characters of a sample value shown


def describe(conn: DbConnection, sample_rows: int = 0) -> str:
    with reading(conn) as db:
        schema = db.schema()
        kinds = Counter(r.kind for r in schema.relations)
        counts = [_plural(kinds.pop(TABLE, 0), TABLE)] + [_plural(n, k) for k, n in kinds.items()]
        blocks = [f"{schema.engine} database: {', '.join(counts)}."]
        if schema.types:
            blocks.append("Types:\n" + "\n".join(f"  {t}" for t in schema.types))
        if schema.routines:
            blocks.append("Functions:\n" + "\n".join(f"  {signature}" for signature, _ in schema.routines))
        for rel in schema.relations:
            blocks.append(_relation(db, rel, sample_rows))
    return "\n\n".join(blocks) + "\n"


def _relation(db: Backend, rel: Relation, sample_rows: int) -> str:
    title = f"{rel.kind.upper()} {rel.ref}"
    if rel.has_rows:
        count = db.count_rows(rel, COUNT_CAP).text() if rel.readable else "rows not readable: no SELECT privilege"
        title += f" ({count})"
    lines = [title]
    width = max((len(c.name) for c in rel.columns), default=0)
    type_width = max((len(c.type) for c in rel.columns), default=0)
    for c in rel.columns:
        parts = [c.name.ljust(width), (c.type or "(no type)").ljust(type_width)]
        if c.name in rel.primary_key and len(rel.primary_key) == 1:
            parts.append("PRIMARY KEY")
        if c.not_null and not (c.name in rel.primary_key and len(rel.primary_key) == 1):
            parts.append("NOT NULL")
        if c.generated:
            parts.append(c.generated)
        if c.default is not None:
            parts.append(f"DEFAULT {c.default}")
        if c.collation:
            parts.append(f"COLLATE {c.collation}")
        lines.append("  " + "  ".join(parts).rstrip())
    if len(rel.primary_key) > 1:
        lines.append(f"  PRIMARY KEY ({', '.join(rel.primary_key)})")
    lines.extend(f"  {c}" for c in rel.constraints)
    for i in rel.indexes:
        if not i.backs_constraint:
            lines.append(f"  {'UNIQUE INDEX' if i.unique else 'INDEX'} {i.name} {i.definition}")
    lines.extend(f"  {t}" for t in rel.triggers)
    if not rel.has_rows and rel.source and rel.kind != "virtual table":
        text = " ".join(rel.source.split())  # SQLite keeps the CREATE statement, PostgreSQL the query
        lines.append("  " + (text if text.upper().startswith("CREATE") else "AS " + text))
    if rel.has_rows and rel.readable and sample_rows > 0:
        names, rows = db.sample_rows(rel, sample_rows)
        if rows:
            lines.append(f"  sample rows ({len(rows)}):")
            lines.extend("    " + line for line in _table_text(names, rows))
    return "\n".join(lines)


def _table_text(names: Sequence[str], rows: Sequence[tuple[object, ...]]) -> list[str]:
    return [" | ".join(names), *(" | ".join(format_value(v) for v in row) for row in rows)]


def format_value(v: object) -> str:
    """A value as a sample row shows it: NULL, text, hex bytes; cut to a few dozen characters."""
    if v is None:
        text = "NULL"
    elif isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        text = "\\x" + b[:24].hex() + ("…" if len(b) > 24 else "")
    elif isinstance(v, datetime.datetime):
        text = v.isoformat(sep=" ")
    else:
        text = str(v)
    text = " ".join(text.split()) if ("\n" in text or "\t" in text) else text
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
