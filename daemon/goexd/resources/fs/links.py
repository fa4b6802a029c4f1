"""Hard-link identity of a workspace's files, which snapshot ids do not encode.

A snapshot holds each path's content, mode and owner, not which paths share an inode: a file `g`
hard-linked to `f` and `g` a copy of `f` have one snapshot id. The inverse strategy compares the
groups of names that share an inode beside the ids: the trial (a name the applies rewrite loses
its links: goexd applies files by content, never by linking), the undo (lstat of the involved
paths after the inverse against the groups recorded before the action), and verdict memory
(a digest of the groups joins the workspace's fingerprint).

The candidates are the files the store's captures list as having more than one name
(GitWorkspaceStore.linked_paths), so finding the groups is one lstat per such file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

LinkGroups = frozenset[frozenset[str]]
NONE: LinkGroups = frozenset()


def groups_at(workspace: Path, paths: Iterable[str]) -> LinkGroups:
    """The groups (two names or more) among `paths` that are one regular file in the workspace now."""
    by_inode: dict[tuple[int, int], set[str]] = {}
    for path in paths:
        try:
            st = os.lstat(workspace / path)  # read only, compared
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            by_inode.setdefault((st.st_dev, st.st_ino), set()).add(path)
    return frozenset(frozenset(g) for g in by_inode.values() if len(g) > 1)


def members(groups: LinkGroups) -> set[str]:
    return {p for g in groups for p in g}


def rewritten(groups: LinkGroups, paths: Iterable[str]) -> LinkGroups:
    """`groups` after each of `paths` is written anew (its own inode): they leave their groups."""
    gone = set(paths)
    return frozenset(frozenset(g - gone) for g in groups if len(g - gone) > 1)


def differences(want: LinkGroups, got: LinkGroups, keep: Callable[[str], bool] = lambda _: True) -> list[str]:
    """What differs, in words, for names `keep` accepts: "g: no longer a hard link of f" / "now a hard link of"."""
    want_pairs, got_pairs = _pairs(want), _pairs(got)
    out = [f"{b}: no longer a hard link of {a}" for a, b in sorted(want_pairs - got_pairs) if keep(a) or keep(b)]
    out += [f"{b}: now a hard link of {a}" for a, b in sorted(got_pairs - want_pairs) if keep(a) or keep(b)]
    return out


def digest(groups: LinkGroups) -> str:
    """A short digest of the groups ("" for none), for fingerprints."""
    if not groups:
        return ""
    return hashlib.sha256(to_json(groups).encode()).hexdigest()[:16]


def to_json(groups: LinkGroups) -> str:
    return json.dumps(sorted(sorted(g) for g in groups))


def from_json(text: str) -> LinkGroups:
    return frozenset(frozenset(g) for g in json.loads(text))


def _pairs(groups: LinkGroups) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for g in groups:
        names = sorted(g, key=os.fsencode)
        out.update((a, b) for i, a in enumerate(names) for b in names[i + 1 :])
    return out
