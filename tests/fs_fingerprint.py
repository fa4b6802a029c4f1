"""A comparable description of a directory tree, for tests.

fingerprint(root) maps every relative path ("." for the root itself) to what a
byte-for-byte restore must reproduce: type, exact permission bits, content digest
(files) or target (symlinks). Timestamps, owners and inode numbers are left out.
Symlinks are never followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

Item = tuple[str, int, str]  # (kind, permission bits, digest or target)


def fingerprint(root: Path | str, *, exclude_top: Iterable[str] = (".git",)) -> dict[str, Item]:
    """Describe the tree under root; `exclude_top` names top-level entries to skip."""
    root = os.fspath(root)
    skip = set(exclude_top)
    out: dict[str, Item] = {".": ("dir", stat.S_IMODE(os.lstat(root).st_mode), "")}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = list(it)
        for entry in entries:
            if not rel and entry.name in skip:
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out[path] = ("dir", perm, "")
                stack.append(path)
            elif stat.S_ISLNK(st.st_mode):
                out[path] = ("link", 0, os.fsdecode(os.readlink(entry.path)))
            elif stat.S_ISREG(st.st_mode):
                out[path] = ("file", perm, _digest(entry.path))
            else:
                out[path] = ("other", stat.S_IFMT(st.st_mode), "")
    return out


def tree_digest(root: Path | str, *, exclude_top: Iterable[str] = ()) -> str:
    """One hash over fingerprint(root): handy for "unchanged byte for byte" checks."""
    h = hashlib.sha256()
    for path, item in sorted(fingerprint(root, exclude_top=exclude_top).items()):
        h.update(repr((path, item)).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def describe_diff(expected: dict[str, Item], actual: dict[str, Item], limit: int = 20) -> str:
    """Human-readable differences, for assertion messages."""
    lines = []
    for path in sorted(expected.keys() | actual.keys()):
        e, a = expected.get(path), actual.get(path)
        if e != a:
            lines.append(f"{path}: expected {e}, got {a}")
    extra = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + extra


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
