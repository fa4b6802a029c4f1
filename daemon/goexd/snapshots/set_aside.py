"""Set-asides: what goexd overwrote of someone's work, kept until it is brought back or expires.

A forced undo overwrites paths changed since the action; applying an overlay run overwrites
paths the person changed while it ran. Their versions are never dropped: a set-aside names
the snapshot holding them (`source`), the paths, and the snapshot that replaced them
(`after`, the expected state when bringing them back by the three-way rule).

A forced revert records its set-aside after its last check and before its first write
(git_store.revert), with `after` = the revert's target: what it writes at those paths. So a
kill in the writes leaves it listed, and bringing it back is right either way: paths written
go back to the kept versions, paths not yet written are found as kept already, and a path
someone changed since is a conflict (refused unless forced, then set aside in turn).

Each is one commit in the workspace's store (its tree holds both snapshots, so both stay
reachable; its message is the record as ASCII JSON) under refs/goexd/set-aside/<id>.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence

import pygit2
from pygit2.enums import FileMode

from goexd.domain.snapshots import SetAside, Snapshot, SnapshotError

REF_PREFIX = "refs/goexd/set-aside/"
_SIGNATURE = ("goexd", "goexd@localhost")


class UnknownSetAside(SnapshotError):
    def __init__(self, set_aside_id: str) -> None:
        self.set_aside_id = set_aside_id
        super().__init__(f"no set-aside {set_aside_id!r} in this workspace's store")


def record(
    repo: pygit2.Repository, source: Snapshot, after: Snapshot, paths: Sequence[str], action_id: str, reason: str
) -> SetAside:
    created = time.time()
    tb = repo.TreeBuilder()
    tb.insert("source", pygit2.Oid(hex=source.id), FileMode.TREE)
    tb.insert("after", pygit2.Oid(hex=after.id), FileMode.TREE)
    body = {"action": action_id, "created": created, "reason": reason, "paths": list(paths)}
    sig = pygit2.Signature(*_SIGNATURE, int(created))
    # ensure_ascii: any file name (surrogate-escaped bytes included) survives as ASCII.
    commit = repo.create_commit(None, sig, sig, json.dumps(body, ensure_ascii=True), tb.write(), [])
    set_aside_id = secrets.token_hex(6)
    repo.references.create(REF_PREFIX + set_aside_id, commit)
    return SetAside(set_aside_id, action_id, created, reason, tuple(paths), source, after)


def get(repo: pygit2.Repository, set_aside_id: str) -> SetAside:
    ref = REF_PREFIX + set_aside_id
    if not set_aside_id.isalnum() or ref not in repo.references:
        raise UnknownSetAside(set_aside_id)
    return _load(repo, set_aside_id, repo.references[ref].target)


def list_all(repo: pygit2.Repository) -> list[SetAside]:
    found = [
        _load(repo, ref[len(REF_PREFIX) :], repo.references[ref].target)
        for ref in repo.references
        if ref.startswith(REF_PREFIX)
    ]
    return sorted(found, key=lambda s: s.created)


def drop(repo: pygit2.Repository, set_aside_id: str) -> None:
    ref = REF_PREFIX + set_aside_id
    if ref in repo.references:
        repo.references.delete(ref)


def drop_older(repo: pygit2.Repository, before: float) -> list[SetAside]:
    """Forget the set-asides made before `before` (the retention GC); returns them."""
    gone = [s for s in list_all(repo) if s.created < before]
    for s in gone:
        drop(repo, s.id)
    return gone


def _load(repo: pygit2.Repository, set_aside_id: str, target: pygit2.Oid | str) -> SetAside:
    try:
        commit = repo[target]
        assert isinstance(commit, pygit2.Commit)
        body = json.loads(commit.message)
        tree = commit.tree
        return SetAside(
            id=set_aside_id,
            action_id=str(body["action"]),
            created=float(body["created"]),
            reason=str(body["reason"]),
            paths=tuple(str(p) for p in body["paths"]),
            source=Snapshot(str(tree["source"].id)),
            after=Snapshot(str(tree["after"].id)),
        )
    except (AssertionError, KeyError, ValueError, TypeError, pygit2.GitError) as e:
        raise SnapshotError(f"damaged set-aside {set_aside_id}: {e}") from e
