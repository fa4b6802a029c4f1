"""Diffs for reviewers: what one action changed, or what changed in a workspace since the
session's latest action there (a person's own edits).

A directory's diff is read from its snapshot store, found by the workspace's path as the fs
manager finds it (resources/fs.store_dir_for), through a handle of its own: an action of a
closed session can still be reviewed until the retention GC drops its snapshots, and reading
never waits for a running action. Only "since the last action" needs the open session: its fs
manager captures the workspace as it is now.

Other resources have no snapshots. What a diff gives for them is what the journal recorded
(`summary`): a SQL action's statements, rows affected, inverse, and the tables it changed when
its strategy measured them (checkpoint key CHANGED_KEY); an http call has no diff (a remote
service's state is not goexd's to read), only its request, the answer's status and its inverse.

Everything returned passes the vault's redactor: file contents before they are diffed (see
snapshots/textdiff.py), names, notes and summaries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import Action, ActionKind, ActionState, Resource, ResourceKind, Session
from goexd.domain.resource import CHANGED_KEY
from goexd.domain.snapshots import SnapshotError
from goexd.domain.textcap import capped, shown
from goexd.snapshots.git_store import store_dir_for
from goexd.snapshots.replay import with_undos
from goexd.snapshots.textdiff import DiffOptions, SnapshotDiff, diff_snapshots, open_store
from goexd.snapshots.treediff import MetaReader

RedactBytes = Callable[[bytes], bytes]
RedactText = Callable[[str], str]

_QUOTED_SQL_CHARS = 2000  # of each statement text a summary quotes
_DIFFABLE = frozenset({ActionState.EXECUTED, ActionState.COMMITTED, ActionState.UNDONE})
IN_EFFECT = (ActionState.EXECUTED, ActionState.COMMITTED)  # states of actions whose changes are in place


@dataclass(frozen=True)
class ActionDiff:
    action_id: str  # the action diffed; "since the last action": that action, the base
    resource: Resource
    from_snapshot: str = ""  # fs: the two states compared
    to_snapshot: str = ""
    files: SnapshotDiff | None = None  # fs only
    summary: str = ""  # other resources: what was recorded, in words
    notes: tuple[str, ...] = ()  # besides the caps' notes (files.notes)


@dataclass(frozen=True)
class Redactors:
    data: RedactBytes
    text: RedactText


def _named(session: Session, name: str) -> Resource | None:
    return next((r for r in session.resources if r.name == name), None)


def action_diff(
    action: Action, session: Session, snapshots_dir: Path, redact: Redactors, options: DiffOptions
) -> ActionDiff:
    """What `action` changed: its resource before it against just after it."""
    _require_diffable(action)
    resource = _named(session, action.resource)
    if resource is None:  # the journal keeps a session's resources with it: not reached
        raise FailedPrecondition(f"session {session.id} has no resource {action.resource!r}")
    notes = tuple(redact.text(note) for note in _notes(action))
    if resource.kind is not ResourceKind.FS:
        summary = _sql_summary(action, resource) if action.kind is ActionKind.SQL else _http_summary(action)
        return ActionDiff(action.id, resource, summary=redact.text(summary), notes=notes)
    pre, post = action.checkpoint.get("pre"), action.checkpoint.get("post")
    if not pre or not post:
        raise FailedPrecondition(_no_snapshots(action))
    files = _snapshot_diff(action, resource, pre, post, snapshots_dir, redact, options)
    return ActionDiff(action.id, resource, pre, post, files, notes=notes)


def fs_resource(session: Session, name: str, fld: str) -> Resource:
    """The session's fs resource `name`, or its only one when `name` is empty."""
    if name:
        found = _named(session, name)
        if found is None or found.kind is not ResourceKind.FS:
            raise InvalidArgument(fld, f"session {session.id} has no fs resource named {shown(name)}")
        return found
    fs = [r for r in session.resources if r.kind is ResourceKind.FS]
    if not fs:
        raise InvalidArgument(fld, f"session {session.id} has no fs resource")
    if len(fs) > 1:
        raise InvalidArgument(fld, f"session {session.id} has {len(fs)} fs resources; name one")
    return fs[0]


def latest_in_effect(actions: Sequence[Action], resource: Resource) -> Action:
    """The newest action on `resource` whose changes are in place (pending or committed)."""
    mine = [a for a in actions if a.resource == resource.name and a.state in IN_EFFECT]
    if not mine:
        raise FailedPrecondition(
            f"no action on resource {resource.name!r} is pending or committed: there is no state an action left "
            "to compare the workspace with"
        )
    return max(mine, key=lambda a: a.seq)


def undone_since(actions: Sequence[Action], latest: Action) -> list[Action]:
    """The older actions on `latest`'s resource undone after it ran, in the order of their undos: goexd
    wrote their paths back after `latest` left the workspace."""
    done = latest.finished_at or latest.created_at
    older = [
        a
        for a in actions
        if a.resource == latest.resource
        and a.state is ActionState.UNDONE
        and a.seq < latest.seq
        and (a.resolved_at or 0.0) > done
    ]
    return sorted(older, key=lambda a: (a.resolved_at or 0.0, a.seq))


def since_last_diff(
    latest: Action,
    resource: Resource,
    now: str,
    snapshots_dir: Path,
    redact: Redactors,
    options: DiffOptions,
    undone: Sequence[Action] = (),
) -> ActionDiff:
    """The workspace now (snapshot `now`) against what `latest` left (its post-action snapshot) with the undos
    of `undone` (undone_since) replayed on it: what the journal says the workspace holds (snapshots/replay.py)."""
    post = latest.checkpoint.get("post")
    if not post:
        raise FailedPrecondition(_no_snapshots(latest))
    replayed = [(a.checkpoint.get("post"), a.checkpoint.get("pre")) for a in undone]
    undos = [(p, q) for p, q in replayed if p and q]  # none without snapshots: it changed nothing (overlay)
    repo, metas = _open(latest, resource, snapshots_dir)
    try:
        base = with_undos(repo, metas, post, undos) if undos else post
        files = diff_snapshots(repo, base, now, metas, redact.data, options)
    except SnapshotError as e:
        raise FailedPrecondition(f"{_no_snapshots(latest)} ({e})") from e
    note = f"changes made in {resource.name!r} since action {latest.id} (seq {latest.seq}) left it"
    if undone:
        note += f", and since goexd undid {', '.join(a.id for a in undone)} (not shown: goexd's, not yours)"
    return ActionDiff(latest.id, resource, base, now, files, notes=(note,))


def _open(action: Action, resource: Resource, snapshots_dir: Path) -> tuple[pygit2.Repository, MetaReader]:
    try:
        return open_store(store_dir_for(snapshots_dir, Path(resource.uri)))
    except SnapshotError as e:
        raise FailedPrecondition(f"{_no_snapshots(action)} ({e})") from e


def _snapshot_diff(
    action: Action,
    resource: Resource,
    old: str,
    new: str,
    snapshots_dir: Path,
    redact: Redactors,
    options: DiffOptions,
) -> SnapshotDiff:
    repo, metas = _open(action, resource, snapshots_dir)
    try:
        return diff_snapshots(repo, old, new, metas, redact.data, options)
    except SnapshotError as e:
        raise FailedPrecondition(f"{_no_snapshots(action)} ({e})") from e


def _require_diffable(action: Action) -> None:
    if action.state in _DIFFABLE:
        return
    why = {
        ActionState.BLOCKED: "it was blocked and never ran",
        ActionState.FAILED: "it failed and was rolled back, so none of its changes remain",
        ActionState.INTERRUPTED: "it was interrupted and rolled back, so none of its changes remain",
    }.get(action.state, f"it is still {action.state.value}; its diff is known once it has run")
    raise FailedPrecondition(f"action {action.id} has no diff: {why}")


def _no_snapshots(action: Action) -> str:
    if not action.checkpoint and action.resolved_at is not None:
        return (
            f"the snapshots of action {action.id} were garbage-collected (resolved longer ago than the "
            "snapshot retention), so its diff is gone"
        )
    return f"the snapshots of action {action.id} are missing from the snapshot store (garbage-collected?)"


def _notes(action: Action) -> list[str]:
    notes = []
    if action.state is ActionState.UNDONE:
        notes.append(f"action {action.id} was undone: this is what it had changed")
    calls = [r for r in action.egress if r.call is not None]
    if calls:
        notes.append(
            f"its {len(calls)} call(s) to http resources changed remote services; they have no diff "
            "(`goex show` lists them with their inverses)"
        )
    return notes


def _sql_summary(action: Action, resource: Resource) -> str:
    head = f"SQL on {resource.name!r} ({resource.kind.value}, {resource.strategy.value} strategy)"
    if action.sql is not None:
        head += f": {action.sql.affected_rows} row(s) affected"
    changed = action.checkpoint.get(CHANGED_KEY)
    lines = [head + ".", changed or "Which tables and rows it changed was not recorded by this strategy."]
    lines.append(f"Statements: {capped(action.spec.sql, _QUOTED_SQL_CHARS)}")
    if action.inverse is not None and action.inverse.sql:
        lines.append(f"Inverse: {capped(action.inverse.sql, _QUOTED_SQL_CHARS)}")
    return "\n".join(lines)


def _http_summary(action: Action) -> str:
    text = "No diff: an http call changes a remote service, whose state goexd does not snapshot."
    req = action.spec.http
    if req is not None:
        text += f"\nRequest: {req.method} {capped(req.path, _QUOTED_SQL_CHARS)}"
    if action.http is not None:
        size = len(action.http.body)
        text += f"\nAnswer: {action.http.status}, {size}{'+' if action.http.body_truncated else ''} byte(s) of body"
    inverse = action.inverse.http if action.inverse is not None else None
    if inverse is not None:
        text += f"\nInverse: {inverse.method} {capped(inverse.path, _QUOTED_SQL_CHARS)}"
    return text + "\n(`goex show` gives the recorded request and answer in full.)"
