"""The full-scan walk: what git's `add -A` cannot tell us about a workspace.

It records exact modes (metadata), finds nested repositories (git would store a
gitlink instead of their files) and names git refuses. It walks with directory fds
and O_NOFOLLOW, holding one fd per level, so a swapped-in symlink cannot lead it
outside the workspace and huge trees do not exhaust descriptors.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from goexd.snapshots.base import SnapshotError
from goexd.snapshots.layout import SELF, join, meta_dir_key, meta_file_key, needs_meta, storable

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (FileNotFoundError, NotADirectoryError)


@dataclass
class TreeScan:
    meta: dict[str, int] = field(default_factory=dict)  # metadata key -> permission bits
    nested: list[str] = field(default_factory=list)  # directories holding a .git
    nested_entries: list[str] = field(default_factory=list)  # files/symlinks below those
    refused: list[str] = field(default_factory=list)  # names git refuses (never .git itself)


def scan_workspace(root: Path) -> TreeScan:
    out = TreeScan()
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SnapshotError(f"workspace {root} is not readable: {e}") from e
    out.meta[SELF] = stat.S_IMODE(os.fstat(root_fd).st_mode)
    # Each level: (relative dir, its fd, remaining entries, inside a nested repo).
    stack: list[tuple[str, int, list[os.DirEntry[str]], bool]] = []
    _push(stack, "", root_fd, False, out)
    while stack:
        rel, fd, entries, nested = stack[-1]
        if not entries:
            os.close(fd)
            stack.pop()
            continue
        entry = entries.pop()
        path = join(rel, entry.name)
        if not storable(entry.name):
            if entry.name != ".git":  # git skips .git itself; the rest must be excluded
                out.refused.append(path)
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except _GONE:
            continue  # vanished mid-scan
        except OSError as e:
            _close_all(stack)
            raise SnapshotError(f"cannot stat {path}: {e}") from e
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except (*_GONE, FileExistsError):
                continue
            except OSError as e:
                if e.errno == errno.ELOOP:  # replaced by a symlink meanwhile
                    continue
                _close_all(stack)
                raise SnapshotError(f"cannot open directory {path}: {e}") from e
            out.meta[meta_dir_key(path)] = stat.S_IMODE(mode)
            _push(stack, path, child, nested, out)
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            if stat.S_ISLNK(mode) and not storable(entry.name, is_link=True):
                out.refused.append(path)
                continue
            if stat.S_ISREG(mode) and needs_meta(stat.S_IMODE(mode)):
                out.meta[meta_file_key(path)] = stat.S_IMODE(mode)
            if nested:
                out.nested_entries.append(path)
        # FIFOs, sockets and devices are skipped, as git skips them.
    return out


def _push(
    stack: list[tuple[str, int, list[os.DirEntry[str]], bool]],
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
        _close_all(stack)
        raise SnapshotError(f"cannot list directory {rel or '.'}: {e}") from e
    if rel and not nested and any(e.name == ".git" for e in entries):
        nested = True
        out.nested.append(rel)
    stack.append((rel, fd, entries, nested))


def _close_all(stack: list[tuple[str, int, list[os.DirEntry[str]], bool]]) -> None:
    for _, fd, _, _ in stack:
        os.close(fd)
    stack.clear()
