"""The full-scan walk: what git's `add -A` cannot tell us about a workspace.

It records exact modes and owners (metadata), finds nested repositories (git would store a
gitlink instead of their files) and names git refuses. It walks with directory fds
and O_NOFOLLOW, holding one fd per level, so a swapped-in symlink cannot lead it
outside the workspace and huge trees do not exhaust descriptors.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from goexd.snapshots.base import SnapshotError
from goexd.snapshots.layout import LINK_PERM, SELF, Meta, Owner, meta_dir_key, meta_file_key, needs_meta, storable

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (FileNotFoundError, NotADirectoryError)


@dataclass
class TreeScan:
    meta: dict[str, Meta] = field(default_factory=dict)  # metadata key -> (permission bits, owner)
    nested: list[str] = field(default_factory=list)  # directories holding a .git
    refused: list[str] = field(default_factory=list)  # names git refuses (never .git itself)
    # With collect=True: every file and symlink, with its lstat result.
    entries: list[tuple[str, os.stat_result]] = field(default_factory=list)


def scan_workspace(root: Path, default: Owner) -> TreeScan:
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SnapshotError(f"workspace {root} is not readable: {e}") from e
    return scan_tree(root_fd, "", default)


def scan_tree(top_fd: int, top: str, default: Owner, *, collect: bool = False) -> TreeScan:
    """Walk the directory open as `top_fd` (relative path `top`); closes top_fd.
    Owners equal to `default` are recorded as None."""
    out = TreeScan()
    d_uid, d_gid = default
    try:
        st = os.fstat(top_fd)
    except OSError:
        os.close(top_fd)
        raise
    owner = None if (st.st_uid, st.st_gid) == default else (st.st_uid, st.st_gid)
    out.meta[meta_dir_key(top) if top else SELF] = (stat.S_IMODE(st.st_mode), owner)
    # One frame per open directory: (relative path, fd, remaining entries, nested).
    stack: list[tuple[str, int, Iterator[os.DirEntry[str]], bool]] = []
    _push(stack, top, top_fd, False, out)
    try:
        while stack:
            rel, fd, entries, nested = stack[-1]
            prefix = rel + "/" if rel else ""
            for entry in entries:  # left early to descend; resumed afterwards
                name = entry.name
                path = prefix + name
                if name[0] in ".gG" and not storable(name):
                    if name != ".git":  # git skips .git itself; the rest must be excluded
                        out.refused.append(path)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except _GONE:
                    continue  # vanished mid-scan
                except OSError as e:
                    raise SnapshotError(f"cannot stat {path}: {e}") from e
                mode = st.st_mode
                # Inlined owner_of / entry_meta (layout.py): this loop runs once per file.
                owner = None if st.st_uid == d_uid and st.st_gid == d_gid else (st.st_uid, st.st_gid)
                if stat.S_ISDIR(mode):
                    child = _open_dir(fd, name, path)
                    if child is not None:
                        out.meta[meta_dir_key(path)] = (stat.S_IMODE(mode), owner)
                        _push(stack, path, child, nested, out)
                        break
                elif stat.S_ISREG(mode):
                    perm = mode & 0o7777
                    if owner is not None or (perm != 0o644 and perm != 0o755 and needs_meta(perm)):  # noqa: PLR1714 (hot loop)
                        out.meta[meta_file_key(path)] = (perm, owner)
                    if collect:
                        out.entries.append((path, st))
                elif stat.S_ISLNK(mode):
                    if not storable(name, is_link=True):
                        out.refused.append(path)
                        continue
                    if owner is not None:
                        out.meta[meta_file_key(path)] = (LINK_PERM, owner)
                    if collect:
                        out.entries.append((path, st))
                # FIFOs, sockets and devices are skipped, as git skips them.
            else:
                os.close(fd)
                stack.pop()
    finally:
        for _, fd, _, _ in stack:
            os.close(fd)
    return out


def _open_dir(parent_fd: int, name: str, path: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except _GONE:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink meanwhile
            return None
        raise SnapshotError(f"cannot open directory {path}: {e}") from e


def _push(
    stack: list[tuple[str, int, Iterator[os.DirEntry[str]], bool]],
    rel: str,
    fd: int,
    nested: bool,
    out: TreeScan,
) -> None:
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    except OSError as e:
        os.close(fd)
        raise SnapshotError(f"cannot list directory {rel or '.'}: {e}") from e
    if rel and not nested and any(e.name == ".git" for e in entries):
        nested = True
        out.nested.append(rel)
    stack.append((rel, fd, iter(entries), nested))
