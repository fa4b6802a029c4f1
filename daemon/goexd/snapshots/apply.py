"""Apply per-path differences to the workspace (the restore's write half).

Order matters: remove what goes away (files, then directories deepest first), create
directories (shallowest first), write contents, then set modes, directories last and
deepest first so a read-only directory never blocks work below it. Rewritten files
are replaced rather than truncated so that a hard link to a file outside the
workspace is never written through.
"""

from __future__ import annotations

from goexd.snapshots.objects import BlobStore
from goexd.snapshots.safefs import SafeFS
from goexd.snapshots.treediff import DIR, FILE, LINK, Change


def apply_changes(fs: SafeFS, blobs: BlobStore, changes: dict[str, Change]) -> None:
    doomed_dirs: list[str] = []
    new_dirs: list[str] = []
    writes: list[str] = []
    chmods: list[str] = []
    dir_modes: list[str] = []

    for path, (old, new) in changes.items():
        if old is not None and old.kind == DIR and (new is None or new.kind != DIR):
            doomed_dirs.append(path)
        elif old is not None and (new is None or new.kind != old.kind or new.oid != old.oid):
            fs.remove(path)
        if new is None:
            continue
        if new.kind == DIR:
            if old is None or old.kind != DIR:
                new_dirs.append(path)
            if old is None or old.kind != DIR or old.perm != new.perm:
                dir_modes.append(path)
        elif old is None or old.kind != new.kind or old.oid != new.oid:
            writes.append(path)
        elif new.kind == FILE and old.perm != new.perm:
            chmods.append(path)

    for path in sorted(doomed_dirs, reverse=True):  # children sort after parents
        fs.remove(path)
    for path in sorted(new_dirs):
        if not fs.exists_as_dir(path):
            fs.mkdir(path)
    for path in writes:
        new = changes[path][1]
        assert new is not None and new.oid is not None
        fs.remove(path)
        if new.kind == LINK:
            fs.symlink(path, b"".join(bytes(c) for c in blobs.read_chunks(new.oid)))
        else:
            fs.write_file(path, blobs.read_chunks(new.oid), new.perm)
    for path in chmods:
        new = changes[path][1]
        assert new is not None
        fs.chmod(path, new.perm)
    for path in sorted(dir_modes, reverse=True):
        new = changes[path][1]
        assert new is not None
        fs.chmod(path, new.perm)
