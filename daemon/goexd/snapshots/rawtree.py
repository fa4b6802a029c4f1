"""Writing a git tree whose entry names need not be UTF-8.

pygit2's TreeBuilder takes names as str and encodes them as strict UTF-8, so a name that
is not UTF-8 (a str with lone surrogates inside goexd, from os.fsdecode) cannot be
inserted, looked up or removed there. Where every changed name is UTF-8 (nearly always)
libgit2's builder does the work; otherwise the tree object is written by hand, in git's
format and order, from the exact bytes of each name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pygit2
from pygit2.enums import FileMode, ObjectType

Value = tuple[pygit2.Oid, int]  # object id, git file mode


def write_tree(
    repo: pygit2.Repository, base: pygit2.Tree | None, changes: Mapping[str, Value | None]
) -> pygit2.Oid | None:
    """`base` (or an empty tree) with `changes` by name (None: removed), written; None when
    the result is empty (git has no empty trees)."""
    if all(_utf8(name) for name in changes):
        tb = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
        for name, value in changes.items():
            if value is None:
                if tb.get(name) is not None:
                    tb.remove(name)
            else:
                tb.insert(name, *value)
        return tb.write() if len(tb) else None
    entries: dict[bytes, Value] = {}
    for e in base if base is not None else ():
        if e.raw_name is not None:  # always set on a tree's entry
            entries[e.raw_name] = (e.id, e.filemode)
    for name, value in changes.items():
        raw = os.fsencode(name)
        if value is None:
            entries.pop(raw, None)
        else:
            entries[raw] = value
    if not entries:
        return None
    # git's order: by name bytes, a tree's name compared as if it ended with "/".
    ordered = sorted(entries.items(), key=lambda item: item[0] + b"/" if item[1][1] == FileMode.TREE else item[0])
    body = b"".join(b"%o %s\0%s" % (mode, name, oid.raw) for name, (oid, mode) in ordered)
    return repo.odb.write(ObjectType.TREE, body)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
