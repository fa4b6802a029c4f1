"""The full-scan walk: what git's `add -A` cannot tell us about a workspace.

It records exact modes and owners (metadata), finds nested repositories (git would store a
gitlink instead of their files) and names git cannot add as they are (a nested .git among
them: the store holds them escaped, layout.store_name(), and goexd stages them itself). The
workspace's own top-level .git is not walked. It walks with directory fds
and O_NOFOLLOW, holding one fd per level, so a swapped-in symlink cannot lead it
outside the workspace and huge trees do not exhaust descriptors.

An unprivileged goexd also makes sure git can read what it will add: a directory it
may not list or enter, or a file it may not read, is opened up where goexd owns it
(SafeFS.open_up, until the capture ends) and recorded with its mode as found; one it
does not own is listed as unreadable and not walked. Root reads everything: no check.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from goexd.domain.names import display_path
from goexd.domain.snapshots import SnapshotError, Unreadable, UnreadableEntries
from goexd.snapshots.layout import (
    ESCAPE,
    LINK_PERM,
    SELF,
    TOP_GIT,
    Meta,
    Owner,
    meta_dir_key,
    meta_file_key,
    needs_escape,
    needs_meta,
    storable,
)
from goexd.snapshots.safefs import DIR_READ, FILE_READ, SafeFS

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (FileNotFoundError, NotADirectoryError)


@dataclass
class TreeScan:
    meta: dict[str, Meta] = field(default_factory=dict)  # metadata key -> (permission bits, owner)
    nested: list[str] = field(default_factory=list)  # directories holding a .git
    # Names the store holds escaped (a nested .git among them): not walked (but with collect=True), for
    # goexd to stage rather than git.
    escaped: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # names no snapshot holds (a symlinked .gitmodules)
    # With collect=True: every file and symlink, with its lstat result.
    entries: list[tuple[str, os.stat_result]] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)  # left out: not goexd's, not readable
    # Regular files with more than one name, by path: (inode, mtime, size; not ctime, which giving an opened-up
    # mode back moves). A write through a name outside the workspace raises no inotify event here; every capture
    # re-stats these (git_store, issue 14 F6).
    linked: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def scan_workspace(root: Path, default: Owner, fs: SafeFS) -> TreeScan:
    try:
        root_fd = os.dup(fs.dir_fd(""))
    except PermissionError as e:
        raise UnreadableEntries((Unreadable(".", True, str(e)),)) from e
    except OSError as e:
        raise SnapshotError(f"workspace {root} is not readable: {e}") from e
    return scan_tree(root_fd, "", default, fs)


def scan_tree(top_fd: int, top: str, default: Owner, fs: SafeFS, *, collect: bool = False) -> TreeScan:
    """Walk the directory open as `top_fd` (relative path `top`); closes top_fd.
    Owners equal to `default` are recorded as None. With `collect`, every entry is walked
    and listed (escaped names too); without, escaped names are listed in `escaped` only."""
    out = TreeScan()
    d_uid, d_gid = default
    me = os.geteuid()
    checks = me != 0  # goexd may be refused access
    found = fs.found  # inodes opened up (before, or through another name): record modes as found
    try:
        st = os.fstat(top_fd)
        lacks = st.st_uid != me or st.st_mode & DIR_READ != DIR_READ
        if checks and lacks and not _may_enter_top(fs, top, top_fd, st):
            os.close(top_fd)
            out.unreadable.append(Unreadable(top or ".", True, _found(st)))
            return out
    except OSError:
        os.close(top_fd)
        raise
    owner = None if (st.st_uid, st.st_gid) == default else (st.st_uid, st.st_gid)
    out.meta[meta_dir_key(top) if top else SELF] = (fs.found_perm(st), owner)
    # One frame per open directory: (relative path, fd, remaining entries, nested).
    stack: list[tuple[str, int, Iterator[os.DirEntry[str]], bool]] = []
    _push(stack, top, top_fd, False, out)
    escapes = ".gG" + ESCAPE[0]
    try:
        while stack:
            rel, fd, entries, nested = stack[-1]
            prefix = rel + "/" if rel else ""
            for entry in entries:  # left early to descend; resumed afterwards
                name = entry.name
                path = prefix + name
                if name[0] in escapes and needs_escape(name):
                    if path == TOP_GIT:
                        continue  # the workspace's own: never snapshotted
                    if not collect:
                        out.escaped.append(path)  # git must not add it: staged by goexd
                        continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except _GONE:
                    continue  # vanished mid-scan
                except PermissionError as e:
                    raise UnreadableEntries((Unreadable(rel or ".", True, str(e)),)) from e
                except OSError as e:
                    raise SnapshotError(f"cannot stat {display_path(path)}: {e}") from e
                mode = st.st_mode
                # Inlined owner_of / entry_meta (layout.py): this loop runs once per file.
                owner = None if st.st_uid == d_uid and st.st_gid == d_gid else (st.st_uid, st.st_gid)
                if stat.S_ISDIR(mode):
                    lacks = checks and (st.st_uid != me or mode & 0o500 != 0o500)  # DIR_READ, inlined
                    if lacks and not _may_read(fs, fd, name, path, st, DIR_READ, os.R_OK | os.X_OK, out):
                        continue
                    child = _open_dir(fd, name, path)
                    if child is not None:
                        out.meta[meta_dir_key(path)] = (fs.found_perm(st) if found else stat.S_IMODE(mode), owner)
                        _push(stack, path, child, nested, out)
                        break
                elif stat.S_ISREG(mode):
                    perm = fs.found_perm(st) if found else mode & 0o7777
                    if owner is not None or (perm != 0o644 and perm != 0o755 and needs_meta(perm)):  # noqa: PLR1714 (hot loop)
                        lacks = checks and (st.st_uid != me or not perm & 0o400)  # FILE_READ
                        if lacks and not _may_read(fs, fd, name, path, st, FILE_READ, os.R_OK, out):
                            continue
                        out.meta[meta_file_key(path)] = (perm, owner)
                    if st.st_nlink > 1:
                        out.linked[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
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


def _may_read(
    fs: SafeFS, parent_fd: int, name: str, path: str, st: os.stat_result, bits: int, access: int, out: TreeScan
) -> bool:
    """Whether goexd may read the entry (list and enter a directory): opened up where
    goexd owns it, else asked of the kernel; listed in `out` when it may not."""
    try:
        if st.st_uid == os.geteuid():
            pfd = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
            try:
                fs.open_up(path, bits, pfd)
            finally:
                os.close(pfd)
            return True
        if os.access(name, access, dir_fd=parent_fd, effective_ids=True, follow_symlinks=False):
            return True
    except _GONE:
        return True  # vanished: the walk's next step says so
    except OSError as e:  # its own, yet it could not be opened up (a read-only mount, say)
        out.unreadable.append(Unreadable(path, stat.S_ISDIR(st.st_mode), f"{_found(st)}: {e.strerror}"))
        return False
    out.unreadable.append(Unreadable(path, stat.S_ISDIR(st.st_mode), _found(st)))
    return False


def _may_enter_top(fs: SafeFS, top: str, top_fd: int, st: os.stat_result) -> bool:
    """_may_read for the directory a walk starts at (open already)."""
    if st.st_uid == os.geteuid():
        fs.open_up(top, DIR_READ, top_fd)
        return True
    return os.access(f"/proc/self/fd/{top_fd}", os.R_OK | os.X_OK, effective_ids=True)


def _found(st: os.stat_result) -> str:
    return f"owner {st.st_uid}:{st.st_gid}, mode {stat.S_IMODE(st.st_mode):04o}"


def _open_dir(parent_fd: int, name: str, path: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except _GONE:
        return None
    except PermissionError as e:
        raise UnreadableEntries((Unreadable(path, True, str(e)),)) from e
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink meanwhile
            return None
        raise SnapshotError(f"cannot open directory {display_path(path)}: {e}") from e


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
        raise SnapshotError(f"cannot list directory {display_path(rel) or '.'}: {e}") from e
    if rel and not nested and any(e.name == ".git" for e in entries):
        nested = True
        out.nested.append(rel)
    stack.append((rel, fd, iter(entries), nested))
