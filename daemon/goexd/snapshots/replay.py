"""A snapshot of what the journal says a workspace should hold: an action's result with the undos
done since applied to it, computed from snapshots alone (the workspace is not read).

`goex diff --since-last` compares the workspace with this, so that goexd's own undo of an older
action (which writes that action's paths back to its `pre`) is not shown as the person's edits.
Each undo is replayed by the rule it ran by (threeway.plan_revert): unforced when that has no
conflicts, forced otherwise (the undo could only have run so: a later action changed those
paths). A directory the undo kept because a later action added to it is kept here too; one it
kept because the person added to it is removed here, and the person's files in it show as theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import pygit2
from pygit2.enums import FileMode

from goexd.snapshots.layout import LINK_PERM, Meta, Owner, encode_meta, needs_meta
from goexd.snapshots.threeway import plan_revert
from goexd.snapshots.tree_edit import Edit, PutDir, PutFile, Remove, edit_snapshot
from goexd.snapshots.treediff import DIR, LINK, Entry, MetaReader, diff, load


def with_undos(repo: pygit2.Repository, metas: MetaReader, base: str, undos: Sequence[tuple[str, str]]) -> str:
    """Snapshot `base` with each undo (its action's (post, pre) snapshots, in the order they ran) replayed."""
    now = base
    for post, pre in undos:
        post_t = load(repo, post)
        wanted = diff(repo, post_t, load(repo, pre), metas)
        since = diff(repo, post_t, load(repo, now), metas)
        plan = plan_revert(wanted, since, force=False)
        if plan.conflicts:
            plan = plan_revert(wanted, since, force=True)
        if not plan.apply:
            continue
        edits = [_edit(path, tgt, metas.default_owner) for path, (_, tgt) in sorted(plan.apply.items(), key=_depth)]
        now = edit_snapshot(repo, load(repo, now), edits, lambda m: repo.create_blob(encode_meta(m))).id
    return now


def _depth(item: tuple[str, object]) -> tuple[int, str]:
    """Parents before their children (tree_edit applies edits in order)."""
    path = item[0]
    return (path.count("/") + (1 if path else 0), path)


def _edit(path: str, e: Entry | None, default: Owner) -> Edit:
    if e is None:
        return Remove(path)
    owner = None if e.owner == default else e.owner
    if e.kind == DIR:
        return PutDir(path, (e.perm, owner))
    assert e.oid is not None  # a file's or symlink's content
    if e.kind == LINK:
        return PutFile(path, FileMode.LINK, e.oid, (LINK_PERM, owner) if owner is not None else None)
    mode = FileMode.BLOB_EXECUTABLE if e.perm & 0o100 else FileMode.BLOB
    meta: Meta | None = (e.perm, owner) if owner is not None or needs_meta(e.perm) else None
    return PutFile(path, mode, e.oid, meta)
