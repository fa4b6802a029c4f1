"""Apply per-path differences to the workspace (the restore's write half).

Order matters: remove files and symlinks that go away, then directories (deepest first), create
directories (shallowest first), write contents, then set owners and modes, directories last and
deepest first so a read-only directory never blocks work below it.

No path is ever absent or half written on the way (issue 14 F4): a file's new content is written
beside it and renamed over it in one step (so a hard link to a file outside the workspace is never
written through, and a write that fails, a full disk, leaves the path as it was); only what the
target lacks is removed.

With `left` (a revert: the workspace may be written by a person at the same time), every
overwrite and removal is a compare-and-swap (safefs.put/remove_if): the entry there is exchanged
with the new one (or renamed aside) in one rename and then checked against what the plan expected
(kind and content id); one that is not (written since the plan's capture) is put back, left as it
is, and its path reported in `left`, as is a directory that gained entries. What the plan did not
see is never overwritten: a concurrent write is never lost, it is a conflict.

SafeFS caches directory fds; trim() between steps keeps a restore of many directories
within the daemon's descriptor limit.

Every entry written gets its recorded owner (the daemon may be root, restoring into a
user's workspace) before its mode, and an entry whose owner the daemon may not set
(it is not root) gets no set-id bits: it is listed in the result instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable

from goexd.domain.snapshots import Unowned
from goexd.snapshots.layout import is_under
from goexd.snapshots.objects import BlobStore
from goexd.snapshots.safefs import ABSENT, Absent, Check, Displaced, SafeFS
from goexd.snapshots.treediff import DIR, FILE, LINK, Change, Entry

_CHUNK = 1 << 20


def apply_changes(
    fs: SafeFS,
    blobs: BlobStore,
    changes: dict[str, Change],
    left: list[str] | None = None,
    written: dict[str, tuple[int, int, int]] | None = None,
) -> list[Unowned]:
    """`changes`: path -> (entry there now, entry wanted). `left`: compare-and-swap each write and removal,
    appending the paths found changed since (left as they are, with what is below them); None: whatever is
    there is replaced. `written`: filled with what was put at each path written (inode, mtime, size)."""
    removals: list[str] = []
    doomed_dirs: list[str] = []
    new_dirs: list[str] = []
    writes: list[str] = []
    metas: list[str] = []
    dir_metas: list[str] = []

    for path, (old, new) in changes.items():
        if old is not None and old.kind == DIR and (new is None or new.kind != DIR):
            doomed_dirs.append(path)
        elif old is not None and old.kind != DIR and (new is None or new.kind == DIR):
            removals.append(path)  # a file or symlink that goes, or becomes a directory
        if new is None:
            continue
        if new.kind == DIR:
            if old is None or old.kind != DIR:
                new_dirs.append(path)
            if old is None or old.kind != DIR or _meta(old) != _meta(new):
                dir_metas.append(path)
        elif old is None or old.kind != new.kind or old.oid != new.oid:
            writes.append(path)  # replaced in one rename: never absent (F4)
        elif _meta(old) != _meta(new):
            metas.append(path)

    unowned: list[Unowned] = []
    held: set[str] = set()  # left as found: nothing at or below them is written

    def skipped(path: str) -> bool:
        return bool(held) and any(is_under(path, h) for h in held)

    def hold(path: str) -> None:
        held.add(path)
        if left is not None:
            left.append(path)

    def owned(path: str, new: Entry, ok: bool) -> None:
        if not ok:
            unowned.append(Unowned(path, new.owner, new.perm))

    for path in removals:
        old = changes[path][0]
        assert old is not None
        if left is None:
            fs.remove(path)
        elif not fs.remove_if(path, _is(blobs, old)):
            hold(path)
        fs.trim()
    for path in sorted(doomed_dirs, reverse=True):  # children sort after parents
        if left is None:
            fs.remove(path)
        elif skipped(path) or not fs.rmdir_if_empty(path):
            hold(path)  # it holds what someone put there since (or what was left below it)
        fs.trim()
    for path in sorted(new_dirs):
        if skipped(path):
            continue
        if not fs.exists_as_dir(path):
            try:
                fs.mkdir(path)
            except FileExistsError:
                if left is None or not fs.exists_as_dir(path):
                    if left is None:
                        raise
                    hold(path)  # someone made something else there meanwhile
        fs.trim()
    for path in writes:
        if skipped(path):
            continue
        old, new = changes[path]
        assert new is not None and new.oid is not None
        expected = _expected(blobs, old, left is not None)
        try:
            if new.kind == LINK:
                target = b"".join(bytes(c) for c in blobs.read_chunks(new.oid))
                if not fs.put(path, _symlink(target), expected):
                    hold(path)
                    continue
                owned(path, new, fs.set_owner_and_mode(path, new.owner, new.perm))
            else:  # renamed over what is there: never half written, even when the disk fills up
                owned(path, new, fs.write_file(path, blobs.read_chunks(new.oid), new.perm, new.owner, expected))
        except Displaced:
            hold(path)
        fs.trim()
    for path in metas + sorted(dir_metas, reverse=True):
        if skipped(path):
            continue
        new = _new(changes, path)
        owned(path, new, fs.set_owner_and_mode(path, new.owner, new.perm))
        fs.trim()
    if written is not None:
        written.update(fs.written)
    return unowned


def _expected(blobs: BlobStore, old: Entry | None, checked: bool) -> Check | Absent | None:
    """What put()/write_file() replace: anything (not `checked`), nothing (a path that was absent, or a
    directory removed before), or the entry the plan found there."""
    if not checked:
        return None
    if old is None or old.kind == DIR:
        return ABSENT
    return _is(blobs, old)


def _is(blobs: BlobStore, entry: Entry) -> Check:
    """A check that an entry (an O_PATH fd on it, its lstat) is `entry`: its kind, and its content's id."""

    def check(pfd: int, st: os.stat_result) -> bool:
        if entry.kind == DIR:
            return stat.S_ISDIR(st.st_mode)
        assert entry.oid is not None
        if entry.kind == LINK:
            if not stat.S_ISLNK(st.st_mode):
                return False
            target = os.readlink(b"", dir_fd=pfd)
            return _blob_id([target], len(target)) == str(entry.oid)
        if entry.kind != FILE or not stat.S_ISREG(st.st_mode) or st.st_size != blobs.size(entry.oid):
            return False
        fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return _blob_id(iter(lambda: os.read(fd, _CHUNK), b""), st.st_size) == str(entry.oid)
        finally:
            os.close(fd)

    return check


def _blob_id(chunks: Iterable[bytes], size: int) -> str:
    """git's blob id of content of this size (the store's object ids: SHA-1)."""
    h = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def _symlink(target: bytes) -> Callable[[int, str], None]:
    def make(dir_fd: int, name: str) -> None:
        os.symlink(target, name, dir_fd=dir_fd)

    return make


def _meta(e: Entry) -> tuple[int, tuple[int, int]]:
    return e.perm, e.owner


def _new(changes: dict[str, Change], path: str) -> Entry:
    new = changes[path][1]
    assert new is not None
    return new
