"""What changed between two schemas, object by object, in words a person can check.

`changes(before, after)` names every difference the definition hashes (model.py) can see:
tables, views and functions added, dropped or renamed (a dropped and an added one of the same
kind and columns, or the same body, are one rename); per relation, columns added, dropped,
renamed, retyped, moved, their NOT NULL, default, generation and collation; the primary key;
constraints (CHECK, UNIQUE, FOREIGN KEY); indexes (added, dropped, renamed, now or no longer
unique, other columns or WHERE clause); triggers; a view's body; and, for a SQLite table whose
CREATE text differs in nothing of the above (AUTOINCREMENT, WITHOUT ROWID, a conflict clause...),
the differing words of that text. Each line starts with the object it is about, e.g.
"table users: column age retyped INTEGER → TEXT", "table users renamed to customers".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from goexd.dbinspect.model import (
    MATVIEW,
    Column,
    Index,
    Relation,
    Schema,
    owner_of,
    relation_hash,
    relation_key,
    routine_key,
    type_key,
)

_WORD = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|\w+|[<>=!|&:~*/+-]+|\S')
_TRIGGER_NAME = re.compile(r"\bTRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:\"(?:[^\"]|\"\")*\"|[^\s(])+)", re.IGNORECASE)
_SPAN_WORDS = 12  # words of a changed span shown, each side
_CONTEXT_WORDS = 3  # unchanged words shown before a changed span


@dataclass(frozen=True)
class Definitions:
    """A schema's objects by key ("table users", "view v", "type mood", "function f(integer)")."""

    relations: Mapping[str, Relation]
    texts: Mapping[str, str]  # types and functions: key -> their definition's text
    states: Mapping[str, str] = field(default_factory=dict)  # Schema.states
    settings: Mapping[str, str] = field(default_factory=dict)  # Schema.settings (absent: at its default)

    @classmethod
    def of(cls, schema: Schema) -> Definitions:
        texts = {type_key(t): t.split(":", 1)[1].strip() for t in schema.types}
        texts.update({routine_key(sig): body for sig, body in schema.routines})
        return cls({relation_key(r): r for r in schema.relations}, texts, dict(schema.states), dict(schema.settings))


@dataclass(frozen=True)
class Changes:
    renamed: tuple[tuple[str, str], ...]  # (key before, key after)
    dropped: tuple[str, ...]
    added: tuple[str, ...]
    details: Mapping[str, tuple[str, ...]]  # key (a renamed object's key after) -> what changed in it

    def of(self, key: str) -> tuple[str, ...]:
        return self.details.get(key, ())

    def lines(self) -> list[str]:
        """One line per change, each naming its object: "table users renamed to customers"."""
        out = [(b, f"{b} renamed to {a.split(' ', 1)[1]}") for b, a in self.renamed]
        out += [(k, f"{k} dropped") for k in self.dropped] + [(k, f"{k} added") for k in self.added]
        before = {a: b for b, a in self.renamed}
        out += [(before.get(k, k), f"{k}: {d}") for k, ds in self.details.items() for d in ds]
        return [line for _, line in sorted(out, key=lambda kv: kv[0])]


def changes(before: Definitions, after: Definitions) -> Changes:
    """Every difference between two schemas' definitions."""
    renamed: list[tuple[str, str]] = []
    dropped: list[str] = []
    added: list[str] = []
    details: dict[str, tuple[str, ...]] = {}
    for b_map, a_map, describe in (
        (before.relations, after.relations, _relation_details),
        (before.texts, after.texts, _text_details),
    ):
        gone = sorted(b_map.keys() - a_map.keys())
        new = sorted(a_map.keys() - b_map.keys())
        for b_key, a_key in _renames(gone, new, b_map, a_map):
            gone.remove(b_key)
            new.remove(a_key)
            renamed.append((b_key, a_key))
            if found := describe(b_map[b_key], a_map[a_key]):
                details[a_key] = tuple(found)
        dropped += gone
        added += new
        for key in sorted(b_map.keys() & a_map.keys()):
            if found := describe(b_map[key], a_map[key]):
                details[key] = tuple(found)
    # A state of an object added or dropped with it ("privileges on table t") goes without saying.
    dropped += _not_of(before.states.keys() - after.states.keys(), dropped)
    added += _not_of(after.states.keys() - before.states.keys(), added)
    for key in sorted(before.states.keys() & after.states.keys()):
        if before.states[key] != after.states[key]:
            details[key] = (_values(before.states[key], after.states[key]),)
    # A setting at its default is absent; one of an object added or dropped goes without saying.
    gone_or_new = {*dropped, *added}
    for key in sorted(before.settings.keys() | after.settings.keys()):
        b, a = before.settings.get(key, "default"), after.settings.get(key, "default")
        if b != a and owner_of(key, gone_or_new) is None:
            details[key] = (f"{b} \u2192 {a}",)
    return Changes(tuple(renamed), tuple(dropped), tuple(added), details)


def _values(before: str, after: str) -> str:
    """A state's change: "off → on"; of long texts, the words that differ."""
    if max(len(before), len(after)) <= 60:
        return f"{before} \u2192 {after}"
    return span(_Text(before), _Text(after))


def _not_of(keys: set[str], objects: list[str]) -> list[str]:
    owners = {*objects, *keys}
    return sorted(k for k in keys if owner_of(k, owners) is None)


def _relation_details(b: object, a: object) -> list[str]:
    assert isinstance(b, Relation) and isinstance(a, Relation)
    if b.ref == a.ref and relation_hash(b) == relation_hash(a):
        return []
    found = relation_changes(b, a)
    if not found and b.ref == a.ref:  # not reachable unless the hash covers more than relation_changes reads
        return ["definition changed"]
    return found  # renamed: what differs besides the name (its old name in its own texts read as the new)


def _text_details(b: object, a: object) -> list[str]:
    assert isinstance(b, str) and isinstance(a, str)
    return [] if b == a else [f"definition changed: {span(_Text(b), _Text(a))}"]


def relation_changes(b: Relation, a: Relation) -> list[str]:
    """What differs between two definitions of one relation (renamed or not), without its name."""
    out = []
    if b.kind != a.kind:
        out.append(f"was a {b.kind}, now a {a.kind}")
    out.extend(_column_changes(b.columns, a.columns))
    if b.primary_key != a.primary_key:
        out.append(f"primary key {_cols(b.primary_key)} → {_cols(a.primary_key)}")
    out.extend(_set_changes("constraint", b.constraints, a.constraints))
    out.extend(_index_changes(b.indexes, a.indexes))
    rename = (b.ref, a.ref)
    triggers_b = {name: _Text(text, rename) for name, text in _by_trigger_name(b.triggers).items()}
    triggers_a = {name: _Text(text) for name, text in _by_trigger_name(a.triggers).items()}
    out.extend(_named_changes("trigger", triggers_b, triggers_a))
    source_b, source_a = _Text(b.source or "", rename), _Text(a.source or "")
    if source_b != source_a:
        if not b.has_rows or b.kind == MATVIEW:
            out.append(f"body changed: {span(source_b, source_a)}")
        elif not out:  # the CREATE text differs in something the lines above do not name
            out.append(f"definition changed: {span(source_b, source_a)}")
    return out


class _Text:
    """A definition's text as words (quoted names and strings whole), a renamed relation's old name
    read as its new one so that a rename alone does not count as a change of the text."""

    def __init__(self, text: str, rename: tuple[str, str] | None = None) -> None:
        self.text = text
        self.spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        words = [text[s:e] for s, e in self.spans]
        if rename and rename[0] != rename[1]:
            words = [rename[1] if w == rename[0] else w for w in words]
        self.words = words

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Text) and self.words == other.words

    __hash__ = None  # type: ignore[assignment]

    def words_text(self, start: int, stop: int, cut_after: bool = True) -> str:
        """Words [start, stop) as the text has them (at most _SPAN_WORDS; "…" where cut), spacing collapsed."""
        last = min(stop, start + _SPAN_WORDS)
        if last <= start:
            return ""
        text = " ".join(self.text[self.spans[start][0] : self.spans[last - 1][1]].split())
        return ("…" if start else "") + text + ("…" if cut_after and last < len(self.words) else "")


def span(before: _Text, after: _Text) -> str:
    """The words that differ, with a little context: "…CHECK (age > 0)… → …CHECK (age >= 0)…",
    "AUTOINCREMENT dropped after …id INTEGER PRIMARY KEY"."""
    b, a = before.words, after.words
    start = 0
    while start < min(len(b), len(a)) and b[start] == a[start]:
        start += 1
    end = 0
    while end < min(len(b), len(a)) - start and b[-1 - end] == a[-1 - end]:
        end += 1
    ctx = max(0, start - _CONTEXT_WORDS)
    context = f" after {before.words_text(ctx, start, cut_after=False)}" if start else " at the start"
    if start == len(b) - end:
        return after.words_text(start, len(a) - end).strip("…") + " added" + context
    if start == len(a) - end:
        return before.words_text(start, len(b) - end).strip("…") + " dropped" + context
    return f"{before.words_text(ctx, len(b) - end)} → {after.words_text(ctx, len(a) - end)}"


def _column_changes(before: Sequence[Column], after: Sequence[Column]) -> list[str]:
    b_by, a_by = {c.name: c for c in before}, {c.name: c for c in after}

    def alike(old: Column, new: Column) -> bool:  # the same definition at the same position
        return _position(after, new) == _position(before, old) and replace(new, name=old.name) == old

    renamed, dropped, added = _split(before, after, alike)
    out = [f"column {old.name} renamed to {new.name}" for old, new in renamed]
    out.extend(f"column {c.name} dropped" for c in dropped)
    out.extend(f"column {c.name} added ({_column_text(c)})" for c in added)
    for b in before:
        a = a_by.get(b.name)
        if a is not None:
            out.extend(
                f"column {b.name}: {line}" if not line.startswith("retyped") else f"column {b.name} {line}"
                for line in _one_column(b, a)
            )
    common_b = [c.name for c in before if c.name in a_by]
    common_a = [c.name for c in after if c.name in b_by]
    stay = set(_lcs(common_b, common_a))
    out.extend(
        f"column {name} moved: position {_position(before, b_by[name])} → {_position(after, a_by[name])}"
        for name in common_b
        if name not in stay
    )
    return out


def _one_column(b: Column, a: Column) -> list[str]:
    out = []
    if b.type != a.type:
        out.append(f"retyped {b.type or '(no type)'} → {a.type or '(no type)'}")
    if b.not_null != a.not_null:
        out.append("NOT NULL added" if a.not_null else "NOT NULL dropped")
    if b.default != a.default:
        out.append(f"default {b.default or '(none)'} → {a.default or '(none)'}")
    if b.generated != a.generated:
        out.append(f"generation {b.generated or '(none)'} → {a.generated or '(none)'}")
    if b.collation != a.collation:
        out.append(f"collation {b.collation or '(default)'} → {a.collation or '(default)'}")
    return out


def _column_text(c: Column) -> str:
    parts = [c.type or "(no type)"]
    if c.not_null:
        parts.append("NOT NULL")
    if c.default is not None:
        parts.append(f"DEFAULT {c.default}")
    if c.collation:
        parts.append(f"COLLATE {c.collation}")
    if c.generated:
        parts.append(c.generated)
    return " ".join(parts)


def _position(columns: Sequence[Column], col: Column) -> int:
    return [c.name for c in columns].index(col.name) + 1


def _lcs(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """A longest common subsequence (the columns that kept their relative order)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return out


def _index_changes(before: Sequence[Index], after: Sequence[Index]) -> list[str]:
    a_by = {i.name: i for i in after}
    renamed, dropped, added = _split(before, after, lambda old, new: replace(new, name=old.name) == old)
    out = [f"index {old.name} renamed to {new.name}" for old, new in renamed]
    out.extend(f"index {i.name} dropped ({_index_text(i)})" for i in dropped)
    out.extend(f"index {i.name} added ({_index_text(i)})" for i in added)
    for b in before:
        a = a_by.get(b.name)
        if a is None:
            continue
        if b.unique != a.unique:
            out.append(f"index {b.name} {'now unique' if a.unique else 'no longer unique'}")
        if b.definition != a.definition:
            out.append(f"index {b.name}: {b.definition} → {a.definition}")
        if b.backs_constraint != a.backs_constraint:
            out.append(f"index {b.name} {'now backs' if a.backs_constraint else 'no longer backs'} a constraint")
    return out


_Named = TypeVar("_Named", Column, Index)


def _split(
    before: Sequence[_Named], after: Sequence[_Named], alike: Callable[[_Named, _Named], bool]
) -> tuple[list[tuple[_Named, _Named]], list[_Named], list[_Named]]:
    """(renamed pairs, dropped, added) by name: a dropped and an added item `alike` are one renamed."""
    b_names, a_names = {x.name for x in before}, {x.name for x in after}
    dropped = [x for x in before if x.name not in a_names]
    added = [x for x in after if x.name not in b_names]
    renamed = []
    for old in list(dropped):
        match = next((new for new in added if alike(old, new)), None)
        if match is not None:
            renamed.append((old, match))
            dropped.remove(old)
            added.remove(match)
    return renamed, dropped, added


def _index_text(i: Index) -> str:
    return ("unique " if i.unique else "") + i.definition


def _set_changes(what: str, before: Sequence[str], after: Sequence[str]) -> list[str]:
    gone = [c for c in before if c not in after]
    new = [c for c in after if c not in before]
    if len(gone) == 1 and len(new) == 1 and gone[0].split()[0] == new[0].split()[0]:
        return [f"{what} {gone[0]} → {new[0]}"]
    return [f"{what} {c} dropped" for c in gone] + [f"{what} {c} added" for c in new]


def _named_changes(what: str, before: Mapping[str, _Text], after: Mapping[str, _Text]) -> list[str]:
    gone = sorted(before.keys() - after.keys())
    new = sorted(after.keys() - before.keys())
    out = []
    for old in list(gone):  # the same text but for its own name: a rename
        match = next((n for n in new if _Text(before[old].text, (old, n)) == after[n]), None)
        if match is not None:
            out.append(f"{what} {old} renamed to {match}")
            gone.remove(old)
            new.remove(match)
    out += [f"{what} {name} dropped" for name in gone] + [f"{what} {name} added" for name in new]
    for name in sorted(before.keys() & after.keys()):
        if before[name] != after[name]:
            out.append(f"{what} {name} changed: {span(before[name], after[name])}")
    return out


def _by_trigger_name(triggers: Sequence[str]) -> dict[str, str]:
    out = {}
    for n, text in enumerate(triggers):
        m = _TRIGGER_NAME.search(text)
        out[m.group(1) if m else f"#{n + 1}"] = text
    return out


def _renames(
    gone: Sequence[str], new: Sequence[str], before: Mapping[str, object], after: Mapping[str, object]
) -> list[tuple[str, str]]:
    """Pairs (key before, key after) of a dropped and an added object that are one renamed object."""
    pairs: list[tuple[str, str]] = []
    taken: set[str] = set()
    for b_key in gone:
        kind = b_key.split(" ", 1)[0]
        for a_key in new:
            if a_key in taken or a_key.split(" ", 1)[0] != kind:
                continue
            if _alike(before[b_key], after[a_key]):
                pairs.append((b_key, a_key))
                taken.add(a_key)
                break
    return pairs


def _alike(b: object, a: object) -> bool:
    if isinstance(b, Relation) and isinstance(a, Relation):
        same: Callable[[Column], tuple[str, str]] = lambda c: (c.name, c.type)  # noqa: E731
        return b.kind == a.kind and [same(c) for c in b.columns] == [same(c) for c in a.columns]
    if isinstance(b, str) and isinstance(a, str):
        return b == a
    return False


def _cols(names: Sequence[str]) -> str:
    return "(" + ", ".join(names) + ")" if names else "(none)"
