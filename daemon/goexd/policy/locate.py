"""Find the line of a key in TOML text, so a policy error can say where it is.

tomllib reports lines only for syntax errors; a semantic error (an unknown key, a bad value)
is found by its key path. This is a line scanner over table headers and `key =` lines, enough
for the forms a policy uses (tables, arrays of tables, dotted keys); when it cannot find the
key itself it returns the line of the nearest enclosing table, and 1 at worst.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _parts(dotted: str) -> tuple[str, ...]:
    out: list[str] = []
    for m in re.finditer(r"""[A-Za-z0-9_-]+|"([^"]*)"|'([^']*)'""", dotted):
        out.append(m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(0))
    return tuple(out)


def line_of(text: str, path: Sequence[str | int]) -> int:
    """The 1-based line where `path` (keys, and indexes into arrays of tables) is set."""
    keys = [p for p in path]
    best = 1
    best_depth = -1
    table: tuple[str | int, ...] = ()
    counts: dict[tuple[str | int, ...], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header is not None:
            names = _parts(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(names, -1) + 1
                counts[names] = index
                table = (*names, index)
            else:
                table = names
            depth = _prefix_depth(table, keys)
            if depth == len(table) and depth > best_depth:
                best, best_depth = lineno, depth
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        full = (*table, *_parts(key.group(1)))
        depth = _prefix_depth(full, keys)
        if depth == len(full) and depth > best_depth:
            best, best_depth = lineno, depth
            if depth == len(keys):
                return lineno
    return best


def _prefix_depth(have: Sequence[str | int], want: Sequence[str | int]) -> int:
    """How many leading elements `have` shares with `want` (len(have) when it is a prefix of it)."""
    n = 0
    for a, b in zip(have, want, strict=False):
        if a != b:
            break
        n += 1
    return n
