"""diff(): what changed between two fingerprints, per table, with a paragraph for people.

Row-level counts need the per-row detail both fingerprints keep for small tables:
- a table with the same primary key on both sides: rows are matched by key, so added, removed
  and changed rows are counted exactly (a changed primary key value counts as one removed and
  one added row);
- a SQLite rowid table without one: the same, keyed by rowid (the first rowids added and removed
  are named);
- a table without a primary key (or rowid): rows are compared as multisets of digests, so added and
  removed rows are counted but an updated row shows as one of each (`changed` is None);
- otherwise (more rows than the detail limit on either side, or the primary key itself changed)
  only the row counts and "the content changed" are known (added/removed/changed are None).
When a table's content hash and row count are unchanged, its rows are reported unchanged.
Schema changes are named object by object (schema_diff.py): "users: column age retyped INTEGER →
TEXT", "Table users renamed to customers", "view v: body changed: …".
Two different row sets could in principle share a content hash (a 64-bit sum); the odds for
accidental changes are negligible, it is not a defence against crafted collisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, replace

from goexd.dbinspect.fingerprint import DbFingerprint, TableFingerprint
from goexd.dbinspect.model import MATVIEW, TABLE
from goexd.dbinspect.schema_diff import Changes, changes


@dataclass(frozen=True)
class TableDiff:
    name: str
    schema_changed: bool
    rows_before: int
    rows_after: int
    added: int | None  # None: cannot tell (see the module's docstring)
    removed: int | None
    changed: int | None
    content_changed: bool
    schema_changes: tuple[str, ...] = ()  # what changed in its definition: "column age retyped INTEGER → TEXT"
    rows_named: str = ""  # SQLite rows told apart by their hidden rowid: " (rowid 3 added; rowid 1 removed)"
    shadow_of: str | None = None  # a SQLite shadow table: the virtual table whose storage it is
    kind: str = TABLE  # or MATVIEW: "mv (materialized view): 2 → 3 rows"

    def text(self) -> str:
        of = f" (a shadow table of virtual table {self.shadow_of})" if self.shadow_of else ""
        of = f" ({self.kind})" if self.kind == MATVIEW else of
        return f"{self.name}{of}: " + self.details()

    def details(self) -> str:
        parts: list[str] = []
        if self.schema_changed:
            parts.extend(self.schema_changes or ["definition changed"])
        if self.content_changed:
            rows = f"{self.rows_before} → {self.rows_after} rows"
            counts = [
                f"{n} {label}"
                for n, label in ((self.added, "added"), (self.removed, "removed"), (self.changed, "changed"))
                if n
            ]
            if self.added is None and self.removed is None:
                parts.append(f"{rows}, content changed (row-level counts not available)")
            else:
                text = f"{rows}: {', '.join(counts) or 'content changed'}{self.rows_named}"
                if self.changed is None and self.added and self.removed:
                    text += " (no primary key: an updated row counts as one removed and one added)"
                parts.append(text)
        else:
            parts.append(f"rows unchanged ({self.rows_after})")
        return "; ".join(parts)


@dataclass(frozen=True)
class DbDiff:
    tables_added: tuple[str, ...]
    tables_removed: tuple[str, ...]
    tables_changed: tuple[TableDiff, ...]
    objects_added: tuple[str, ...]  # other schema objects ("view v", "type mood"), and tables' too
    objects_removed: tuple[str, ...]
    objects_changed: tuple[str, ...]
    schema_changed: bool
    text: str
    tables_renamed: tuple[tuple[str, str], ...] = ()  # (name before, name after); also in removed and added
    schema_changes: tuple[str, ...] = ()  # every schema change, one line each, naming its object
    state_changes: tuple[str, ...] = ()  # database-level state: "sqlite_sequence t: 1 → 2", "user_version: 0 → 7"

    @property
    def identical(self) -> bool:
        return not (
            self.tables_added or self.tables_removed or self.tables_changed or self.schema_changed or self.state_changes
        )


def diff(before: DbFingerprint, after: DbFingerprint) -> DbDiff:
    if before.engine != after.engine:
        raise ValueError(f"cannot compare a {before.engine} fingerprint with a {after.engine} one")
    added = tuple(sorted(after.tables.keys() - before.tables.keys()))
    removed = tuple(sorted(before.tables.keys() - after.tables.keys()))
    found = changes(before.definitions, after.definitions) if before.definitions and after.definitions else None
    changed = tuple(
        d
        for name in sorted(before.tables.keys() & after.tables.keys())
        if (d := _table_diff(name, before.tables[name], after.tables[name], _of(found, name))) is not None
    )
    renamed = tuple(
        (b.split(" ", 1)[1], a.split(" ", 1)[1])
        for b, a in (found.renamed if found else ())
        if b.startswith("table ")
        and a.startswith("table ")
        and b.split(" ", 1)[1] in before.tables
        and a.split(" ", 1)[1] in after.tables
    )
    objects_added = tuple(sorted(after.objects.keys() - before.objects.keys()))
    objects_removed = tuple(sorted(before.objects.keys() - after.objects.keys()))
    objects_changed = tuple(
        sorted(k for k in before.objects.keys() & after.objects.keys() if before.objects[k] != after.objects[k])
    )
    schema_changed = before.schema_hash != after.schema_hash
    text = _text(before, after, added, removed, changed, renamed, found)
    if not text:
        text = _plain_text(before, after, added, removed, changed, objects_added, objects_removed, objects_changed)
    text += _shadow_note(changed, added, removed)
    state = _state_changes(before, after)
    if state:
        said = "Database state changed: " + "; ".join(state) + "."
        text = said if text.startswith("No differences") else f"{text} {said}"
    return DbDiff(
        added,
        removed,
        changed,
        objects_added,
        objects_removed,
        objects_changed,
        schema_changed,
        text,
        renamed,
        tuple(found.lines()) if found else (),
        state,
    )


def _state_changes(before: DbFingerprint, after: DbFingerprint) -> tuple[str, ...]:
    """Each database-level state item that differs, e.g. "sqlite_sequence t: 1 → 2" ("none": absent)."""
    keys = sorted(before.state.keys() | after.state.keys())
    return tuple(
        f"{k}: {before.state.get(k, 'none')} → {after.state.get(k, 'none')}"
        for k in keys
        if before.state.get(k) != after.state.get(k)
    )


def _shadow_note(changed: tuple[TableDiff, ...], added: tuple[str, ...], removed: tuple[str, ...]) -> str:
    """Said when every table whose rows changed is a SQLite shadow table (compared only where its virtual
    table shows no content of its own through SELECT: a contentless or external-content FTS table)."""
    owners = sorted({d.shadow_of for d in changed if d.shadow_of})
    if not owners or added or removed or any(not d.shadow_of for d in changed):
        return ""
    return (
        f" Only shadow tables changed: the stored index of {', '.join(owners)} (an FTS table with no content of its"
        " own to compare by SELECT, so its index is compared as stored; a write and its exact inverse can leave the"
        " index laid out differently)."
    )


def _of(found: Changes | None, table: str) -> tuple[str, ...]:
    return found.of(f"table {table}") if found else ()


def _table_diff(
    name: str, b: TableFingerprint, a: TableFingerprint, schema_changes: tuple[str, ...] = ()
) -> TableDiff | None:
    schema_changed = b.schema_hash != a.schema_hash
    content_changed = (b.row_count, b.content_hash) != (a.row_count, a.content_hash)
    if not schema_changed and not content_changed:
        return None
    counts: tuple[int | None, int | None, int | None] = (None, None, None)
    named = ""
    if not content_changed:
        counts = (0, 0, 0)
    elif b.rows_by_key is not None and a.rows_by_key is not None and b.primary_key == a.primary_key:
        before_keys, after_keys = b.rows_by_key.keys(), a.rows_by_key.keys()
        counts = (
            len(after_keys - before_keys),
            len(before_keys - after_keys),
            sum(1 for k in before_keys & after_keys if b.rows_by_key[k] != a.rows_by_key[k]),
        )
        if b.primary_key in (("rowid",), ("_rowid_",), ("oid",)):
            named = _rowids(b.primary_key[0], after_keys - before_keys, before_keys - after_keys)
    elif b.row_multiset is not None and a.row_multiset is not None:
        bm, am = Counter(b.row_multiset), Counter(a.row_multiset)
        counts = ((am - bm).total(), (bm - am).total(), None)
    return TableDiff(
        name,
        schema_changed,
        b.row_count,
        a.row_count,
        *counts,
        content_changed=content_changed,
        schema_changes=schema_changes if schema_changed else (),
        rows_named=named,
        shadow_of=a.shadow_of,
        kind=a.kind,
    )


def _rowids(name: str, added: Collection[str], removed: Collection[str], most: int = 3) -> str:
    """The first few rowids added and removed, from their key texts ("(3,)"): " (rowid 3 added; rowid 1 removed)"."""
    parts = []
    for keys, what in ((added, "added"), (removed, "removed")):
        ids = sorted(int(k.strip("(),")) for k in keys)
        if ids:
            more = f" and {len(ids) - most} more" if len(ids) > most else ""
            parts.append(f"{name} {', '.join(map(str, ids[:most]))}{more} {what}")
    return f" ({'; '.join(parts)})" if parts else ""


def _text(
    before: DbFingerprint,
    after: DbFingerprint,
    added: tuple[str, ...],
    removed: tuple[str, ...],
    changed: tuple[TableDiff, ...],
    renamed: tuple[tuple[str, str], ...],
    found: Changes | None,
) -> str:
    """The paragraph, from the schema's changes named object by object ("" without definitions)."""
    if found is None:
        return ""
    if not (added or removed or changed or found.renamed or found.dropped or found.added or found.details):
        return ""  # no difference: said as before
    sentences = []
    for b, a in renamed:
        moved = _table_diff(a, before.tables[b], after.tables[a], _of(found, a))
        assert moved is not None  # its name is in its definition's hash
        sentences.append(
            f"Table {b} renamed to {a}: {replace(moved, schema_changed=bool(moved.schema_changes)).details()}."
        )
    gone = {b for b, _ in renamed}
    new = {a for _, a in renamed}
    if added := tuple(t for t in added if t not in new):
        sentences.append("Tables added: " + ", ".join(f"{t} ({after.tables[t].row_count} rows)" for t in added) + ".")
    if removed := tuple(t for t in removed if t not in gone):
        sentences.append(
            "Tables removed: " + ", ".join(f"{t} (had {before.tables[t].row_count} rows)" for t in removed) + "."
        )
    if changed:
        sentences.append("Tables changed: " + "; ".join(d.text() for d in changed) + ".")
    tables = {f"table {t}" for t in (*before.tables, *after.tables)}
    other = [
        line for line in found.lines() if not any(line.startswith(t + " ") or line.startswith(t + ":") for t in tables)
    ]
    if other:
        sentences.append("Other schema objects: " + "; ".join(other) + ".")
    unchanged = len(after.tables) - len(added) - len(changed) - len(renamed)
    if unchanged:
        sentences.append(f"{unchanged} other table{'' if unchanged == 1 else 's'} unchanged.")
    return " ".join(sentences) + _unreadable_note(before, after)


def _plain_text(
    before: DbFingerprint,
    after: DbFingerprint,
    added: tuple[str, ...],
    removed: tuple[str, ...],
    changed: tuple[TableDiff, ...],
    objects_added: tuple[str, ...],
    objects_removed: tuple[str, ...],
    objects_changed: tuple[str, ...],
) -> str:
    if not (added or removed or changed or objects_added or objects_removed or objects_changed):
        if before.schema_hash != after.schema_hash:  # not reachable unless the hashing changes
            return "The schema differs; no table's definition or rows do."
        n = len(after.tables)
        text = f"No differences: the schema and the rows of all {n} table{'' if n == 1 else 's'} are the same."
        return text + _unreadable_note(before, after)
    sentences = []
    if added:
        sentences.append("Tables added: " + ", ".join(f"{t} ({after.tables[t].row_count} rows)" for t in added) + ".")
    if removed:
        sentences.append(
            "Tables removed: " + ", ".join(f"{t} (had {before.tables[t].row_count} rows)" for t in removed) + "."
        )
    if changed:
        sentences.append("Tables changed: " + "; ".join(d.text() for d in changed) + ".")
    table_objects = {f"table {t}" for t in (*added, *removed, *(d.name for d in changed))}
    other = [
        (label, [o for o in objs if o not in table_objects])
        for label, objs in (("added", objects_added), ("removed", objects_removed), ("changed", objects_changed))
    ]
    for label, objs in other:
        if objs:
            sentences.append(f"Other schema objects {label}: {', '.join(objs)}.")
    unchanged = len(after.tables) - len(added) - len(changed)
    if unchanged:
        sentences.append(f"{unchanged} other table{'' if unchanged == 1 else 's'} unchanged.")
    return " ".join(sentences) + _unreadable_note(before, after)


def _unreadable_note(before: DbFingerprint, after: DbFingerprint) -> str:
    names = sorted(set(before.unreadable) | set(after.unreadable))
    if not names:
        return ""
    return f" Not readable, so compared by definition only: {', '.join(names)}."
