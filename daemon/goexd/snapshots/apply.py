"""Apply per-path differences to the workspace (the restore's write half).

Order matters: remove what goes away (files, then directories deepest first), create
directories (shallowest first), write contents, then set owners and modes, directories
last and deepest first so a read-only directory never blocks work below it. Rewritten
files are replaced rather than truncated so that a hard link to a file outside the
workspace is never written through; a file's new content is written beside it and renamed
over it, so a write that fails (a full disk) leaves that path as it was.

SafeFS caches directory fds; trim() between steps keeps a restore of many directories
within the daemon's descriptor limit.

Every entry written gets its recorded owner (the daemon may be root, restoring into a
user's workspace) before its mode, and an entry whose owner the daemon may not set
(it is not root) gets no set-id bits: it is listed in the result instead.
"""

from __future__ import annotations

from goexd.snapshots.base import Unowned
from goexd.snapshots.objects import BlobStore
from goexd.snapshots.safefs import SafeFS
from goexd.snapshots.treediff import DIR, LINK, Change, Entry


def apply_changes(fs: SafeFS, blobs: BlobStore, changes: dict[str, Change]) -> list[Unowned]:
    doomed_dirs: list[str] = []
    new_dirs: list[str] = []
    writes: list[str] = []
    metas: list[str] = []
    dir_metas: list[str] = []

    for path, (old, new) in changes.items():
        if old is not None and old.kind == DIR and (new is None or new.kind != DIR):
            doomed_dirs.append(path)
        elif old is not None and (new is None or new.kind != old.kind or new.oid != old.oid):
            fs.remove(path)
            fs.trim()
        if new is None:
            continue
        if new.kind == DIR:
            if old is None or old.kind != DIR:
                new_dirs.append(path)
            if old is None or old.kind != DIR or _meta(old) != _meta(new):
                dir_metas.append(path)
        elif old is None or old.kind != new.kind or old.oid != new.oid:
            writes.append(path)
        elif _meta(old) != _meta(new):
            metas.append(path)

    unowned: list[Unowned] = []

    def owned(path: str, new: Entry, ok: bool) -> None:
        if not ok:
            unowned.append(Unowned(path, new.owner, new.perm))

    for path in sorted(doomed_dirs, reverse=True):  # children sort after parents
        fs.remove(path)
        fs.trim()
    for path in sorted(new_dirs):
        if not fs.exists_as_dir(path):
            fs.mkdir(path)
        fs.trim()
    for path in writes:
        new = _new(changes, path)
        assert new.oid is not None
        if new.kind == LINK:
            fs.remove(path)
            fs.symlink(path, b"".join(bytes(c) for c in blobs.read_chunks(new.oid)))
            owned(path, new, fs.set_owner_and_mode(path, new.owner, new.perm))
        else:  # renamed over what is there: never half written, even when the disk fills up
            owned(path, new, fs.write_file(path, blobs.read_chunks(new.oid), new.perm, new.owner))
        fs.trim()
    for path in metas + sorted(dir_metas, reverse=True):
        new = _new(changes, path)
        owned(path, new, fs.set_owner_and_mode(path, new.owner, new.perm))
        fs.trim()
    return unowned


def _meta(e: Entry) -> tuple[int, tuple[int, int]]:
    return e.perm, e.owner


def _new(changes: dict[str, Change], path: str) -> Entry:
    new = changes[path][1]
    assert new is not None
    return new
