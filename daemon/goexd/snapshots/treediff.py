"""Per-path differences between two snapshots, from git tree diffs.

libgit2 skips subtrees whose ids match, so this costs O(changed paths), not O(tree).
The workspace diff and the metadata diff are merged into one entry per path giving
its exact type, permission bits, owner and content on each side.

Paths leave here as workspace paths: the workspace tree's escaped names (layout.store_name(),
a nested .git's) are decoded, and lookups by workspace path encode them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import pygit2
from pygit2.enums import DeltaStatus, DiffOption, FileMode

from goexd.domain.snapshots import SnapshotError
from goexd.snapshots.layout import (
    LINK_PERM,
    META,
    WORK,
    Owner,
    decode_meta,
    meta_file_key,
    parse_meta_key,
    store_path,
    workspace_path,
)

FILE = "file"
LINK = "link"
DIR = "dir"


@dataclass(frozen=True)
class Entry:
    kind: str  # FILE, LINK or DIR
    perm: int
    owner: Owner  # uid, gid
    oid: pygit2.Oid | None = None  # content of a file or symlink; None for a directory

    @property
    def st_mode(self) -> int:
        fmt = {FILE: stat.S_IFREG, LINK: stat.S_IFLNK, DIR: stat.S_IFDIR}[self.kind]
        return fmt | self.perm


Change = tuple[Entry | None, Entry | None]


@dataclass(frozen=True)
class SnapshotTrees:
    root: pygit2.Tree
    work: pygit2.Tree
    meta: pygit2.Tree


def load(repo: pygit2.Repository, snapshot_id: str) -> SnapshotTrees:
    try:
        root = repo.get(snapshot_id)
        if isinstance(root, pygit2.Tree):
            work, meta = root[WORK], root[META]
            if isinstance(work, pygit2.Tree) and isinstance(meta, pygit2.Tree):
                return SnapshotTrees(root, work, meta)
    except (KeyError, ValueError, pygit2.GitError):
        pass
    raise SnapshotError(f"unknown or damaged snapshot {snapshot_id!r}")


class MetaReader:
    """Decodes metadata blobs (few distinct ones: cache by id) into (perm, owner), the
    owner resolved against the store's default."""

    def __init__(self, repo: pygit2.Repository, default_owner: Owner) -> None:
        self._repo = repo
        self.default_owner = default_owner
        self._metas: dict[pygit2.Oid, tuple[int, Owner]] = {}

    def meta(self, oid: pygit2.Oid) -> tuple[int, Owner]:
        found = self._metas.get(oid)
        if found is None:
            blob = self._repo[oid]
            if not isinstance(blob, pygit2.Blob):
                raise SnapshotError(f"damaged metadata object {oid}")
            try:
                perm, owner = decode_meta(blob.data)
            except ValueError as e:
                raise SnapshotError(f"damaged metadata object {oid}: {e}") from e
            found = self._metas[oid] = (perm, owner or self.default_owner)
        return found


def _lookup(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    try:
        return tree[path]
    except KeyError:
        return None


def _find(tree: pygit2.Tree, rel: str) -> pygit2.Object | None:
    """What a workspace tree holds at workspace path `rel` (as it is, in a store older than escaping)."""
    stored = store_path(rel)
    found = _lookup(tree, stored)
    return found if found is not None or stored == rel else _lookup(tree, rel)


def _work_entry(tree: SnapshotTrees, mode: int, oid: pygit2.Oid, path: str, metas: MetaReader) -> Entry:
    meta = _lookup(tree.meta, meta_file_key(path))
    return _entry(mode, oid, metas.meta(meta.id) if meta is not None else None, metas)


def _entry(mode: int, oid: pygit2.Oid, meta: tuple[int, Owner] | None, metas: MetaReader) -> Entry:
    """A file or symlink from its git mode and content, and its metadata entry if any."""
    owner = meta[1] if meta is not None else metas.default_owner
    if mode == FileMode.LINK:
        return Entry(LINK, LINK_PERM, owner, oid)
    return Entry(FILE, meta[0] if meta is not None else mode & 0o777, owner, oid)


def _path(f: pygit2.DiffFile) -> str:
    return os.fsdecode(f.raw_path)


def _work_path(f: pygit2.DiffFile) -> str:
    return workspace_path(os.fsdecode(f.raw_path))


def diff(repo: pygit2.Repository, old: SnapshotTrees, new: SnapshotTrees, metas: MetaReader) -> dict[str, Change]:
    """path -> (old entry, new entry) for every path that differs ("" is the root)."""
    out: dict[str, Change] = {}
    if old.root.id == new.root.id:
        return out
    # Type changes as single deltas, so a path appears once per diff.
    flags = DiffOption.INCLUDE_TYPECHANGE
    work_modes: dict[str, tuple[tuple[int, pygit2.Oid] | None, tuple[int, pygit2.Oid] | None]] = {}
    for d in old.work.diff_to_tree(new.work, flags=flags).deltas:
        o = None if d.status == DeltaStatus.ADDED else (int(d.old_file.mode), d.old_file.id)
        n = None if d.status == DeltaStatus.DELETED else (int(d.new_file.mode), d.new_file.id)
        path = _work_path(d.new_file if n else d.old_file)
        if path in work_modes:
            # One path under two stored names (a store older than escaping held a name that
            # starts with ESCAPE as it is): one side's deletion, the other's addition.
            po, pn = work_modes[path]
            o, n = o or po, n or pn
        work_modes[path] = (o, n)

    file_metas: dict[str, tuple[tuple[int, Owner] | None, tuple[int, Owner] | None]] = {}
    for d in old.meta.diff_to_tree(new.meta, flags=flags).deltas:
        o_meta = None if d.status == DeltaStatus.ADDED else metas.meta(d.old_file.id)
        n_meta = None if d.status == DeltaStatus.DELETED else metas.meta(d.new_file.id)
        try:
            rel, is_dir = parse_meta_key(_path(d.new_file if n_meta is not None else d.old_file))
        except ValueError as e:
            raise SnapshotError(str(e)) from e
        if is_dir:
            o_dir = Entry(DIR, *o_meta) if o_meta is not None else None
            n_dir = Entry(DIR, *n_meta) if n_meta is not None else None
            out[rel] = (o_dir, n_dir)
        else:
            file_metas[rel] = (o_meta, n_meta)

    for path, (o, n) in work_modes.items():
        o_entry = _work_entry(old, o[0], o[1], path, metas) if o else None
        n_entry = _work_entry(new, n[0], n[1], path, metas) if n else None
        # A path that changed between file and directory also has a directory entry.
        o_dir, n_dir = out.get(path, (None, None))
        out[path] = (o_entry or o_dir, n_entry or n_dir)

    for path, (o_meta, n_meta) in file_metas.items():
        if path in work_modes:
            continue  # already resolved with the content change
        # Same content, new bits or owner: the workspace entry is identical on both sides.
        o_obj, n_obj = _find(old.work, path), _find(new.work, path)
        if o_obj is None or n_obj is None:
            raise SnapshotError(f"metadata without a file for {path!r}")
        out[path] = (_entry(o_obj.filemode, o_obj.id, o_meta, metas), _entry(n_obj.filemode, n_obj.id, n_meta, metas))
    # Equal on both sides: one entry under two stored names (the merge above), not a difference.
    return {path: change for path, change in out.items() if change[0] != change[1]}


def has_files_below(tree: pygit2.Tree, rel: str) -> bool:
    """Whether a directory holds any file or symlink (git has no empty trees)."""
    return not rel or _find(tree, rel) is not None
