"""What an overlay run changed, read from its upper directory as snapshot edits.

overlayfs records a run's writes in the upper dir (sandbox/overlay.py mounts it): a file or
symlink there is the run's version of that path (new, or copied up and changed); a directory
there holds changes below it, and is *opaque* when it replaced whatever the workspace had at
that path; a whiteout (a 0/0 character device) says the path was removed. This module walks
the upper once, hashes what it finds into the store and returns the edits that turn the
snapshot taken before applying into the run's result (tree_edit.py). The upper is the
daemon's own directory and the run is over, so nothing in it moves while it is read; still,
nothing in it is followed (O_NOFOLLOW, lstat).

What a snapshot cannot hold is named in `skipped`, not applied: FIFOs, sockets and devices,
a symlinked .gitmodules, and a top-level `.git` (the workspace's own is bound read-only in
the run, so one in the upper is a repository the action planted where the workspace had
none: never applied, see docs/security.md). A `.git` below the top is applied like any
directory (the store holds it escaped, layout.store_name()); the change set flags it
(code_paths.py) and undo takes it back.
"""

from __future__ import annotations

import errno
import filecmp
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pygit2.enums import FileMode

from goexd.domain.snapshots import SETID
from goexd.snapshots.layout import TOP_GIT, Owner, dir_meta, entry_meta, join, needs_meta, storable
from goexd.snapshots.objects import BlobStore
from goexd.snapshots.tree_edit import Edit, PutDir, PutFile, Remove

_TRUSTED = "trusted.overlay."
_USER = "user.overlay."
# Extended attributes that are not a file's own: overlayfs' and security labels (own_xattrs leaves them out).
NOT_OURS = (_TRUSTED, _USER, "security.")
# Written only with features goexd does not turn on (metacopy, redirect_dir): an upper holding
# one is not something goexd knows how to apply.
_UNSUPPORTED = ("metacopy", "redirect")


class UpperUnreadable(Exception):
    """The upper holds something goexd cannot apply; the message names it."""


@dataclass
class UpperChanges:
    edits: list[Edit] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path (why)"
    paths: list[str] = field(default_factory=list)  # every path the run wrote or removed, in walk order
    stripped: list[str] = field(default_factory=list)  # files whose set-id bits are not applied


def read_upper(upper: Path, blobs: BlobStore, default_owner: Owner, *, privileged: bool) -> UpperChanges:
    prefix = _TRUSTED if privileged else _USER
    out = UpperChanges()
    st = os.lstat(upper)
    root = _open(
        upper.name,
        os.open(upper.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
        os.O_RDONLY | os.O_DIRECTORY,
        st,
        close_dir=True,
    )
    try:
        out.edits.append(PutDir("", dir_meta(st, default_owner), opaque=_opaque(root, prefix)))
        _walk(root, "", blobs, default_owner, prefix, out)
    finally:
        os.close(root)
    return out


@dataclass
class _Dir:
    """A directory of the upper being walked: its path, identity and the names still to visit."""

    rel: str
    dev_ino: tuple[int, int]
    names: list[str]


def _walk(dir_fd: int, rel: str, blobs: BlobStore, owner: Owner, prefix: str, out: UpperChanges) -> None:
    """Depth first, parents before children, without recursion and with one directory fd open at a
    time (an action may nest directories thousands deep: deeper than Python's stack or the fd limit).
    Going back up opens ".." and checks it is the directory left (the upper is goexd's: nothing moves)."""
    st = os.fstat(dir_fd)
    fd = os.dup(dir_fd)
    stack = [_Dir(rel, (st.st_dev, st.st_ino), sorted(_names(fd), reverse=True))]
    try:
        while stack:
            top = stack[-1]
            if not top.names:
                stack.pop()
                if stack:
                    fd = _reopen_parent(fd, stack[-1].dev_ino)
                continue
            name = top.names.pop()
            child = _entry(fd, top.rel, name, blobs, owner, prefix, out)
            if child is not None:
                os.close(fd)
                fd = child
                cst = os.fstat(fd)
                stack.append(_Dir(join(top.rel, name), (cst.st_dev, cst.st_ino), sorted(_names(fd), reverse=True)))
    finally:
        os.close(fd)


def _reopen_parent(fd: int, want: tuple[int, int]) -> int:
    try:
        parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    st = os.fstat(parent)
    if (st.st_dev, st.st_ino) != want:
        os.close(parent)
        raise UpperUnreadable("a directory of the overlay's upper moved while goexd read it")
    return parent


def _entry(
    dir_fd: int, rel: str, name: str, blobs: BlobStore, owner: Owner, prefix: str, out: UpperChanges
) -> int | None:
    """Record one entry of the upper; a directory's fd (to walk into) is returned open."""
    path = join(rel, name)
    if path == TOP_GIT:
        out.skipped.append(f"{path} (a repository at the workspace's top: only its own may be there)")
        return None
    st = os.lstat(name, dir_fd=dir_fd)
    mode = st.st_mode
    if stat.S_ISCHR(mode) and st.st_rdev == 0:
        out.edits.append(Remove(path))
        out.paths.append(path)
        return None
    if not storable(name, is_link=stat.S_ISLNK(mode)):
        out.skipped.append(f"{path} (a name goexd's snapshots cannot hold)")
        return None
    if stat.S_ISDIR(mode):
        fd = _open(name, dir_fd, os.O_RDONLY | os.O_DIRECTORY, st)
        try:
            _refuse_unsupported(fd, prefix, path)
            opaque = _opaque(fd, prefix)
        except BaseException:
            os.close(fd)
            raise
        out.edits.append(PutDir(path, dir_meta(st, owner), opaque=opaque))
        out.paths.append(path)
        return fd
    if stat.S_ISLNK(mode):
        target = os.readlink(name, dir_fd=dir_fd)
        oid = blobs.write_bytes(os.fsencode(target))
        out.edits.append(PutFile(path, FileMode.LINK, oid, entry_meta(st, owner)))
        out.paths.append(path)
    elif stat.S_ISREG(mode):
        fd = _open(name, dir_fd, os.O_RDONLY | os.O_NONBLOCK, st)
        try:
            _refuse_unsupported(fd, prefix, path)
            if st.st_size == 0 and _xattr(fd, prefix + "whiteout") is not None:  # a whiteout as a file (xwhiteout)
                out.edits.append(Remove(path))
                out.paths.append(path)
                return None
            oid = blobs.write_fd(fd, st.st_size)
        finally:
            os.close(fd)
        git_mode = FileMode.BLOB_EXECUTABLE if st.st_mode & stat.S_IXUSR else FileMode.BLOB
        meta = entry_meta(st, owner)
        if meta is not None and meta[0] & SETID:
            # Never applied: nothing an action writes gains privileges outside the sandbox
            # (file capabilities are not applied either: xattrs are not copied at all).
            out.stripped.append(f"{path}: set-id bits {meta[0] & SETID:o} not applied")
            meta = (meta[0] & ~SETID, meta[1])
            meta = meta if meta[1] is not None or needs_meta(meta[0]) else None
        out.edits.append(PutFile(path, git_mode, oid, meta))
        out.paths.append(path)
    else:
        out.skipped.append(f"{path} (a {_kind(mode)}: snapshots hold files, symlinks and directories)")
    return None


def _names(dir_fd: int) -> Iterator[str]:
    with os.scandir(dir_fd) as it:
        for entry in it:
            yield entry.name


def _open(name: str, dir_fd: int, flags: int, st: os.stat_result, *, close_dir: bool = False) -> int:
    """Open an entry of the upper; one the daemon's user owns but may not read is opened up
    (its recorded mode is the one found, `st`). `close_dir`: dir_fd is closed after."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except PermissionError:
            if st.st_uid != os.geteuid():
                raise
        bits = stat.S_IRUSR | (stat.S_IXUSR if stat.S_ISDIR(st.st_mode) else 0)
        os.chmod(name, stat.S_IMODE(st.st_mode) | bits, dir_fd=dir_fd)  # lstat said: not a symlink
        return os.open(name, flags, dir_fd=dir_fd)
    finally:
        if close_dir:
            os.close(dir_fd)


def _xattr(fd: int, key: str) -> bytes | None:
    try:
        return os.getxattr(fd, key)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise


def _opaque(fd: int, prefix: str) -> bool:
    return _xattr(fd, prefix + "opaque") == b"y"


def _refuse_unsupported(fd: int, prefix: str, path: str) -> None:
    for name in _UNSUPPORTED:
        if _xattr(fd, prefix + name) is not None:
            raise UpperUnreadable(f"{path or '.'}: the overlay recorded a {name}, which goexd does not apply")


def not_compared(upper: Path, workspace: Path, paths: Iterable[str]) -> list[str]:
    """Of the paths a run wrote or removed (UpperChanges.paths), what goexd neither applies nor compares, as
    "path (why)": a FIFO, socket or device the workspace has there (removed or replaced: its whiteout is applied
    as a removal of nothing), extended attributes (POSIX ACLs included) that differ from the workspace's
    (xattrs are not applied), and those the run removes with what carries them (a removed or replaced file or
    directory that has some, or has some below it; a file that has some and whose content the run changes, which
    the apply writes as a new file): snapshots do not hold them, so no undo brings them back.
    Read only; nothing is followed."""
    out = []
    for path in paths:
        try:
            mode = os.lstat(workspace / path).st_mode
        except OSError:
            mode = None
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            out.append(f"{path} (a {_kind(mode)})")
        elif mode is not None and _replaces(upper / path, mode) and _xattrs_at_or_below(workspace / path):
            out.append(f"{path} (extended attributes, removed with it)")
        elif stat.S_ISREG(mode or 0) and own_xattrs(workspace / path) and _rewritten(upper / path, workspace / path):
            out.append(f"{path} (extended attributes, lost when goexd writes its new content: a new file)")
        elif _holds_xattrs(upper / path) and own_xattrs(upper / path) != (
            own_xattrs(workspace / path) if mode is not None else {}
        ):
            out.append(f"{path} (extended attributes)")
    return out


def times_only(upper: Path, workspace: Path, paths: Iterable[str], changed: Iterable[str]) -> list[str]:
    """Of the paths a run wrote (UpperChanges.paths), the regular files whose only change is their modification
    time (`touch -d`): not in `changed` (the paths whose snapshot entry the run changes) and with another mtime than
    the workspace's file, as "path (modification time only)". goexd does not apply timestamps (snapshots do not hold
    them), so such a change is not applied: said, never silently dropped. Read only; nothing is followed."""
    seen = {c.rstrip("/") for c in changed}
    out = []
    for path in paths:
        if path in seen:
            continue
        try:
            up, ws = os.lstat(upper / path), os.lstat(workspace / path)
        except OSError:
            continue
        if stat.S_ISREG(up.st_mode) and stat.S_ISREG(ws.st_mode) and up.st_mtime_ns != ws.st_mtime_ns:
            out.append(f"{path} (modification time only)")
    return out


def _replaces(entry: Path, was: int) -> bool:
    """Whether the upper's entry removes what the workspace has there: a whiteout, another type, an opaque
    directory."""
    try:
        st = os.lstat(entry)
    except OSError:
        return False
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    if stat.S_IFMT(st.st_mode) != stat.S_IFMT(was):
        return True
    if stat.S_ISDIR(st.st_mode):
        for prefix in (_TRUSTED, _USER):
            try:
                if os.getxattr(entry, prefix + "opaque", follow_symlinks=False) == b"y":
                    return True
            except OSError:
                continue
    return False


def _rewritten(entry: Path, was: Path) -> bool:
    """Whether the upper holds a regular file at a path whose content differs from the workspace's: goexd's apply
    writes it as a new file (only a mode or owner change is applied in place)."""
    try:
        if not stat.S_ISREG(os.lstat(entry).st_mode):
            return False
        return not filecmp.cmp(entry, was, shallow=False)
    except OSError:
        return False


def _xattrs_at_or_below(path: Path) -> bool:
    """Whether a file or directory, or anything below a directory, carries extended attributes (of its own)."""
    stack = [path]
    while stack:
        top = stack.pop()
        if own_xattrs(top):
            return True
        try:
            if not stat.S_ISDIR(os.lstat(top).st_mode):
                continue
            with os.scandir(top) as it:
                stack.extend(Path(e.path) for e in it)
        except OSError:
            continue
    return False


def _holds_xattrs(path: Path) -> bool:
    """A file or directory (not a whiteout, symlink or missing)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def own_xattrs(path: Path) -> dict[str, bytes]:
    """A file's or directory's extended attributes (POSIX ACLs included: system.posix_acl_access and _default)
    but overlayfs' own and security labels; none for others."""
    if not _holds_xattrs(path):
        return {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
        keep = [n for n in names if not n.startswith(NOT_OURS)]
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in keep}
    except OSError:
        return {}


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"
