"""A new snapshot from an old one and a list of per-path edits, without reading the workspace.

Used to record what an overlay run produced (its upper applied to the snapshot taken just
before): the result is exact by construction, whatever else happens in the workspace
meanwhile. Only the trees on the edited paths are rewritten (O(edits x depth)).

Edits are applied in order; a parent's edit must come before its children's (an opaque
directory first drops everything below it, then its children are put back). Their paths are
workspace paths: the workspace tree gets them escaped (layout.store_path()), the metadata tree
as its keys (layout.escape()).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pygit2
from pygit2.enums import FileMode

from goexd.domain.snapshots import Snapshot
from goexd.snapshots.layout import META, SELF, WORK, Meta, escape, store_path
from goexd.snapshots.rawtree import write_tree
from goexd.snapshots.treediff import SnapshotTrees


@dataclass(frozen=True)
class PutFile:
    """A regular file or symlink at `path` (git mode and content), with its metadata entry if any."""

    path: str
    mode: int  # FileMode.BLOB, BLOB_EXECUTABLE or LINK
    oid: pygit2.Oid
    meta: Meta | None


@dataclass(frozen=True)
class PutDir:
    """A directory at `path` with its metadata; `opaque`: nothing of what was below it stays."""

    path: str
    meta: Meta
    opaque: bool = False


@dataclass(frozen=True)
class Remove:
    """Nothing at `path` (whatever was there, a whole directory included)."""

    path: str


Edit = PutFile | PutDir | Remove
_Value = tuple[pygit2.Oid, int]


class _Node:
    """A tree being edited: the base tree plus overrides by name (None: removed)."""

    def __init__(self, repo: pygit2.Repository, base: pygit2.Tree | None) -> None:
        self.repo = repo
        self.base = base
        self.over: dict[str, _Node | _Value | None] = {}

    def _dir(self, name: str) -> _Node:
        """The child directory `name`, made (empty) if there is none or a file is there."""
        cur = self.over.get(name, ...)
        if isinstance(cur, _Node):
            return cur
        base: pygit2.Tree | None = None
        if cur is ... and self.base is not None and name in self.base:
            obj = self.repo[self.base[name].id]
            base = obj if isinstance(obj, pygit2.Tree) else None
        node = self.over[name] = _Node(self.repo, base)
        return node

    def _existing_dir(self, name: str) -> _Node | None:
        cur = self.over.get(name, ...)
        if isinstance(cur, _Node):
            return cur
        if cur is not ... or self.base is None or name not in self.base:
            return None
        return self._dir(name) if isinstance(self.repo[self.base[name].id], pygit2.Tree) else None

    def _walk(self, parts: list[str]) -> _Node:
        node = self
        for part in parts:
            node = node._dir(part)
        return node

    def put(self, path: str, value: _Value) -> None:
        *dirs, name = path.split("/")
        self._walk(dirs).over[name] = value

    def remove(self, path: str) -> None:
        """Nothing at path; where a directory above it is missing, there is nothing to remove."""
        *dirs, name = path.split("/")
        node: _Node | None = self
        for part in dirs:
            node = node._existing_dir(part) if node is not None else None
        if node is not None:
            node.over[name] = None

    def ensure_dir(self, path: str) -> _Node:
        return self._walk(path.split("/")) if path else self

    def write(self) -> pygit2.Oid | None:
        """This tree's id, or None when it ends up empty (git has no empty trees). Children first, without
        recursion: an edited path may be nested thousands deep."""
        order: list[_Node] = []  # each node before the nodes below it
        todo: list[_Node] = [self]
        while todo:
            node = todo.pop()
            order.append(node)
            todo += [o for o in node.over.values() if isinstance(o, _Node)]
        written: dict[int, pygit2.Oid | None] = {}
        for node in reversed(order):
            values: dict[str, _Value | None] = {}
            for name, over in node.over.items():
                if isinstance(over, _Node):
                    oid = written.pop(id(over))
                    values[name] = (oid, FileMode.TREE) if oid is not None else None
                else:
                    values[name] = over
            written[id(node)] = write_tree(node.repo, node.base, values)  # names need not be UTF-8 (rawtree.py)
        return written[id(self)]


def edit_snapshot(
    repo: pygit2.Repository, base: SnapshotTrees, edits: Sequence[Edit], meta_oid: Callable[[Meta], pygit2.Oid]
) -> Snapshot:
    work, meta = _Node(repo, base.work), _Node(repo, base.meta)
    for e in edits:
        key, stored = escape(e.path), store_path(e.path)
        if isinstance(e, Remove):
            work.remove(stored)
            meta.remove(key)
        elif isinstance(e, PutFile):
            work.put(stored, (e.oid, e.mode))
            meta.remove(key)  # a directory's metadata tree, or the file's old entry
            if e.meta is not None:
                meta.put(key, (meta_oid(e.meta), FileMode.BLOB))
        else:
            if e.path:
                if e.opaque:
                    work.remove(stored)
                    meta.remove(key)
                else:
                    # A file there becomes this directory: drop the file (its metadata too).
                    _drop_file(work, stored)
                    _drop_file(meta, key)
                work.ensure_dir(stored)
            elif e.opaque:
                work.over.clear()
                work.base = None
                meta.over.clear()
                meta.base = None
            meta.ensure_dir(key).over[SELF] = (meta_oid(e.meta), FileMode.BLOB)
    empty = repo.TreeBuilder().write()
    root = repo.TreeBuilder()
    root.insert(META, meta.write() or empty, FileMode.TREE)
    root.insert(WORK, work.write() or empty, FileMode.TREE)
    return Snapshot(str(root.write()))


def _drop_file(root: _Node, path: str) -> None:
    """Remove what is at path unless it is a directory."""
    *dirs, name = path.split("/")
    node: _Node | None = root
    for part in dirs:
        node = node._existing_dir(part) if node is not None else None
    if node is not None and node._existing_dir(name) is None:
        node.over[name] = None
