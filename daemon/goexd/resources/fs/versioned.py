"""The file-system resource with the `versioned` undo strategy.

Snapshots live in a git directory inside the daemon's state dir (never the workspace's own
.git). An action runs in the sandbox with its workspace's .git read-only, in one of two ways:

- *overlay* (the default where the kernel allows it): over an overlay of the workspace
  (sandbox/overlay.py), so the workspace itself is not touched while it runs. When it ends,
  goexd snapshots the workspace (`pre`: whatever the person changed meanwhile is theirs), turns
  the overlay's upper dir into the action's result (`post` = pre + the upper, exact by
  construction) and applies exactly that to the workspace. A path the person changed while the
  action ran and the action changed too gets the action's version; the person's is set aside.
  A crash before the apply leaves nothing behind; during it, an intent file in the run's
  overlay dir lets recovery take it back.
- *direct*: over the workspace itself, snapshotted before and after; a change someone else
  makes while the action runs cannot be told from the action's (the change set says so).

Undo, either way, is three-way (snapshots/threeway.py): each path the action changed goes
back to its `pre` state where it is still as the action left it; a path changed since is a
conflict, refused unless forced, and then set aside, never dropped. Nothing else is written.
Files an action leaves with set-id bits or file capabilities lose them (overlay: they are
never applied; direct: snapshots/privileges.py); the change set says so.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from goexd import faults
from goexd.diskspace import OutOfSpace, is_out_of_space, out_of_space, size
from goexd.domain.errors import FailedPrecondition, InvalidArgument, NotFound, StoppedPartWay
from goexd.domain.models import ActionKind, ActionSpec, Resource, Reversibility
from goexd.domain.names import display_paths
from goexd.domain.resource import Checkpoint, Outcome, OutputCallback, RollbackReport, SandboxNetwork, UndoesByItself
from goexd.domain.sandbox import Limits, Network, Sandbox, SandboxSpec, WorkspaceOverlay
from goexd.domain.snapshots import (
    ChangeSet,
    KeepAs,
    NoRoom,
    PartlyWritten,
    RevertConflict,
    SetAside,
    Snapshot,
    SnapshotError,
    UnreadableEntries,
)
from goexd.domain.textcap import shown
from goexd.resources.fs import links as fs_links
from goexd.resources.fs import xattrs as fs_xattrs
from goexd.resources.fs.cwd import check_cwd
from goexd.resources.fs.discard import discard
from goexd.resources.fs.tree_text import tree_text
from goexd.resources.fs.trial import TrialSite, try_pair
from goexd.resources.host_paths import (
    OwnPaths,
    checked_syntax,
    refuse_containing_state_dir,
    refuse_homes,
    refuse_inside_state_dir,
    refuse_own,
    refuse_system,
    resolved,
)
from goexd.sandbox.overlay import OverlayUnavailable, check_paths
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.layout import TOP_GIT
from goexd.snapshots.overlay_upper import not_compared, times_only
from goexd.snapshots.privileges import listed
from goexd.snapshots.remove_tree import remove_tree
from goexd.snapshots.set_aside import UnknownSetAside

log = logging.getLogger(__name__)

APPLY_INTENT = "applying"  # in a run's overlay dir: {"pre", "post"} once goexd starts applying it
BACKGROUND_DISCARD_BYTES = 1 << 20  # an applied run's upper holding less is removed in the background
DISCARDING = "-discarding"  # `<overlays dir>-discarding` holds applied runs' upper and work dirs, being removed
# A file's ctime comes from a coarse clock (one tick, a few ms, behind): an edit made that close
# to the start of a run counts as made during it (its version is then set aside needlessly, never lost).
CTIME_SLACK_NS = 20_000_000
CONCURRENT = "changed in the workspace while the action ran; the action's version was applied"
FORCED = "changed since the action; overwritten by a forced undo"
# In the checkpoint an undo is given: JSON [[post, pre], ...] of older actions undone since (checkpoint_for_undo).
UNDONE_SINCE = "undone_since"
APPLYING = "changed in the workspace while the action's result was applied; the action's version was applied"
RESTORE_FORCED = "changed since it was set aside; overwritten by a forced restore of set-aside {}"


def validate_workspace(raw: str, fld: str, own: OwnPaths) -> Path:
    """Resolve and check a workspace path (see host_paths); raises InvalidArgument naming the field."""
    path = resolved(checked_syntax(raw, fld, "a workspace"), fld)
    if not path.is_dir():
        raise InvalidArgument(fld, f"{shown(raw)} is not a directory")
    refuse_system(path, fld, container=True)
    refuse_homes(path, fld)
    refuse_own(path, fld, own, container=True)
    if not os.access(path, os.R_OK | os.X_OK):  # nor could goexd check it for a state dir inside
        raise InvalidArgument(fld, f"{path} cannot be read by goexd's user")
    refuse_inside_state_dir(path, fld)
    refuse_containing_state_dir(path, fld)
    return path


class FsVersionedResource(UndoesByItself):
    undoes_by = "by restoring snapshots"

    def __init__(
        self,
        resource: Resource,
        store: GitWorkspaceStore,
        sandbox: Sandbox,
        masked_paths: Sequence[Path],
        change_list_limit: int = 1000,
        overlays_dir: Path | None = None,
    ) -> None:
        """`overlays_dir`: where runs get their overlay dirs (overlay mode); None: direct mode."""
        self.resource = resource
        self.workspace = Path(resource.uri)
        self._store = store
        self._sandbox = sandbox
        self._masked = tuple(masked_paths)
        self._change_limit = change_list_limit
        self._overlays = overlays_dir
        # The extended attributes last found (xattrs_now): (the store's capture count, the snapshot, path -> digest).
        self._xattrs: tuple[int, Snapshot, dict[str, str]] | None = None
        self._xattrs_lock = threading.Lock()
        if overlays_dir is not None:
            try:
                check_paths(self.workspace, overlays_dir)
            except OverlayUnavailable:
                self._overlays = None  # such a path cannot be given to overlayfs: run over the workspace
            if os.geteuid() != 0 and os.stat(self.workspace).st_uid != os.geteuid():
                # The upper's root must carry the workspace root's owner, which only root can give it.
                self._overlays = None
        if self._overlays is None:  # the result says how exact its attribution is
            self.undo_note = self.undo_note + self.DIRECT_NOTE

    @property
    def _tag(self) -> str:
        return f"{self.resource.kind.value}-{self.resource.strategy.value}"

    @property
    def isolation(self) -> str:
        return "overlay" if self._overlays is not None else "direct"

    undo_note = "undo takes back the paths the action changed (three-way: paths changed since are conflicts)"
    DIRECT_NOTE = "; direct isolation: changes others made in the workspace while it ran count as the action's"

    def precheck(self, spec: ActionSpec) -> None:
        self._argv(spec)  # refuses kinds that do not run on a file-system resource
        check_cwd(self.workspace, spec)

    def commit_check(self, action_ids: Sequence[str]) -> None:
        return None

    def take_lost(self) -> list[str]:
        return []

    def describe(self, samples: bool = False) -> str:
        head = f"directory {self.workspace} (at the same path in the sandbox, where commands start; /workspace too)"
        return "\n".join([head, *tree_text(self.workspace)])  # breadth first, vendored and ignored named, bounded

    # -- running

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        try:
            with self._space("snapshotting before the action"):
                return self._checkpoint(action_id)
        except Exception:
            if self._overlays is not None:
                discard(self._overlays / action_id)  # a failed checkpoint leaves nothing
            raise

    def _checkpoint(self, action_id: str) -> Checkpoint:
        if self._overlays is None:
            snap = self._capture()
            self._store.pin(f"actions/{action_id}/pre", snap)
            return {"pre": snap.id, "action": action_id}
        # What goexd may not read refuses the action before it runs, as in direct mode; the snapshot tells
        # what someone changed in the workspace while the run went on (see _changed_during).
        base = self._capture()
        run_dir = self._overlays / action_id
        discard(run_dir)  # a leftover of an earlier attempt under this id
        (run_dir / "work").mkdir(parents=True, mode=0o700)
        upper = run_dir / "upper"
        upper.mkdir(mode=0o700)
        # A merged directory shows its upper's owner and mode: the workspace root's.
        st = os.stat(self.workspace)
        if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(upper, st.st_uid, st.st_gid)
        os.chmod(upper, stat.S_IMODE(st.st_mode))
        return {"overlay": str(run_dir), "base": base.id}

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        run_dir = Path(checkpoint["overlay"]) if "overlay" in checkpoint else None
        started_ns = time.time_ns()
        had_repo = os.path.lexists(self.workspace / TOP_GIT)  # if so, bound read-only in the run
        result = self._sandbox.run(
            SandboxSpec(
                argv=self._argv(spec),
                workspace=self.workspace,
                workdir=spec.cwd,
                readonly_subpaths=(".git",),
                masked_paths=self._masked,
                env={**spec.env, **network.env} if network else spec.env,
                stdin=spec.stdin,
                limits=limits,
                network=Network.PROXY if network else Network.NONE,
                proxy=network.proxy if network else None,
                overlay=WorkspaceOverlay(run_dir / "upper", run_dir / "work") if run_dir is not None else None,
            ),
            on_output=on_output,
            cancel=cancel,
        )
        started = time.monotonic()
        if run_dir is not None:
            try:
                changes, extra = self._apply(run_dir, started_ns, checkpoint.get("base"))
            except Exception as e:
                failed = self._full(e, "applying what the action wrote to the workspace")
                if not isinstance(failed, OutOfSpace):
                    raise
                _give_up(run_dir, e)
                # A failed action (rolled back from what is left of the run dir) that keeps its output.
                return Outcome(exec=result, changes=None, failure=str(failed), capture_s=time.monotonic() - started)
            return Outcome(exec=result, changes=changes, checkpoint_extra=extra, capture_s=time.monotonic() - started)
        pre = Snapshot(checkpoint["pre"])
        # A repository the action made where the workspace had none is never applied (as under overlay).
        planted = None
        if not had_repo:
            with self._store.root_opened_up():  # an action may have left the root unsearchable
                planted = _remove_planted_repo(self.workspace)
        with self._space("snapshotting after the action"):
            post, found = self._store.strip_privileges(pre, self._capture())
        self._store.pin(f"actions/{checkpoint['action']}/post", post)  # what its undo and diff compare with
        changes = self._store.changes(pre, post, limit=self._change_limit)
        notes = [*listed(found)]
        left = [f.describe() for f in found if f.left]
        if planted is not None:
            notes.append(planted[0])
            left += [planted[0]] if not planted[1] else []
        return Outcome(
            exec=result,
            changes=replace(changes, warnings=(*changes.warnings, *notes)),
            checkpoint_extra={"post": post.id},
            capture_s=time.monotonic() - started,
            # A privilege goexd could not take away must not stay: the action is rolled back.
            failure=f"{left[0]}; the action is rolled back" if left else None,
        )

    def _apply(self, run_dir: Path, started_ns: int, base: str | None = None) -> tuple[ChangeSet, Checkpoint]:
        """Apply an overlay run's result to the workspace; its change set and checkpoint entries. `base`: the
        workspace's snapshot from just before the run, if taken."""
        action_id = run_dir.name
        pre = self._capture()
        post, upper = self._store.edit(pre, run_dir / "upper", privileged=os.geteuid() == 0)
        self._store.pin(f"actions/{action_id}/pre", pre)
        self._store.pin(f"actions/{action_id}/post", post)
        notes = [*upper.stripped, *(f"not applied: {s}" for s in upper.skipped)]
        unheld = not_compared(run_dir / "upper", self.workspace, upper.paths)
        changed = self._store.changed_paths(pre, post) if post != pre else set()
        unheld += times_only(run_dir / "upper", self.workspace, upper.paths, changed)
        notes += [
            "not applied, and no undo restores it (goexd applies files, symlinks and directories by content and "
            f"mode, not special files, extended attributes nor timestamps): {s}"
            for s in unheld
        ]
        if post != pre:
            # What the apply writes or removes: the diff pre -> post, the entries below a directory the action
            # removed or replaced included (not only the upper's entries: a person's file in a directory the
            # action removed is not in the upper, and neither is one below a file the person made a directory).
            touched = sorted(changed)
            concurrent = self._changed_during(touched, base, pre, started_ns)
            if concurrent:
                kept = self._store.set_aside(pre, post, concurrent, action_id, CONCURRENT)
                notes.append(_kept_note(concurrent, kept.id, "changed in the workspace while the action ran"))
            _write_intent(run_dir, pre, post)
            faults.point("fs-apply-intent", self._tag)
            # A path changed in the moment between the snapshot and the apply is set aside before it is written.
            applied = self._store.revert(pre, post, force=True, keep_as=KeepAs(action_id, APPLYING))
            faults.point("fs-applied", self._tag)
            if applied.kept is not None:
                notes.append(_kept_note(list(applied.kept.paths), applied.kept.id, "changed while it was applied"))
            if applied.beside:
                notes.append(_beside_note(applied.beside))
            if applied.left:
                notes.append(
                    f"left {display_paths(list(applied.left))} as you changed them while the action was applied "
                    "(yours are in place; the action's version of them was not written)"
                )
            # The intent stays until the action's end is journaled (commit, undo, or the next start's
            # clear_overlays): goexd killed before EXECUTED is journaled must find it, or recovery takes the
            # applied result for one that never reached the workspace. The run's files go now: a small upper off
            # the action's path (removing is a few ms a directory on a busy disk), a large one before it returns,
            # so that the space it took is back when the action's result is.
            if _holds_less(run_dir / "upper", BACKGROUND_DISCARD_BYTES):
                _discard_later(run_dir.parent, run_dir / "upper", run_dir / "work")
            else:
                discard(run_dir / "upper")
                discard(run_dir / "work")
        else:
            discard(run_dir)
        changes = self._store.changes(pre, post, limit=self._change_limit)
        return replace(changes, warnings=(*changes.warnings, *notes)), {"pre": pre.id, "post": post.id}

    def _changed_during(self, paths: Sequence[str], base: str | None, pre: Snapshot, started_ns: int) -> list[str]:
        """Which of `paths` someone changed in the workspace while the run went on: exactly, those that differ
        between the snapshots before and after it, of any kind (a file made a directory is kept with what is
        below it; goexd's own writes just before, an undo's, never count); without the one before (a run an
        older goexd checkpointed), by ctime."""
        if base is not None:
            try:
                changed = self._store.changed_paths(Snapshot(base), pre)
            except SnapshotError:  # not found (pruned under a very long run): judged as before
                pass
            else:
                return [p for p in paths if p in changed]
        return [p for p in paths if self._changed_since(p, started_ns)]

    def _changed_since(self, rel: str, started_ns: int) -> bool:
        try:
            st = os.lstat(self.workspace / rel)
        except OSError:
            return False  # absent (or beyond a symlink): nothing of anyone's to keep there
        return st.st_ctime_ns >= started_ns - CTIME_SLACK_NS and not stat.S_ISDIR(st.st_mode)

    @staticmethod
    def _argv(spec: ActionSpec) -> list[str]:
        if spec.kind is ActionKind.SHELL:
            return list(spec.argv)
        if spec.kind is ActionKind.PYTHON:
            return ["python3", "-c", spec.code]
        raise InvalidArgument("spec", f"{spec.kind.value} actions do not run on a file-system resource")

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        # Snapshots stay pinned until the retention GC: a committed action's history remains inspectable.
        self._drop_intent(action_id)

    def _drop_intent(self, action_id: str) -> None:
        """The apply intent an overlay run leaves (see _apply), once the action is resolved."""
        if self._overlays is not None:
            discard(self._overlays / action_id)

    def _capture(self) -> Snapshot:
        """A snapshot, or FailedPrecondition when the workspace holds what goexd cannot snapshot."""
        try:
            return self._store.capture()
        except UnreadableEntries as e:
            raise FailedPrecondition(f"{e} (and no action can be undone while that is so)") from e

    @contextmanager
    def _space(self, what: str) -> Iterator[None]:
        """A full filesystem inside becomes OutOfSpace (see _full); anything else passes as it is."""
        try:
            yield
        except Exception as e:
            failed = self._full(e, what)
            if failed is e:
                raise
            raise failed from e

    def _full(self, exc: BaseException, what: str) -> BaseException:
        """OutOfSpace for `exc` when a filesystem was full (naming it: the store's or the workspace's), else `exc`.

        `partial`: the workspace was written in part, and stays so until a retry or the next start finishes it."""
        if isinstance(exc, NoRoom):
            what = f"{what} (it needs {size(exc.needed)}, {size(exc.free)} is free)"
        elif not is_out_of_space(exc) or isinstance(exc, OutOfSpace):
            return exc
        partial = isinstance(exc, PartlyWritten)
        hint = (
            "it stopped part way; free space there, then retry it (or restart goexd, which finishes it)"
            if partial
            else "it wrote nothing; free space there (commit or undo pending actions, then `goex gc` drops "
            "snapshots past their retention; or remove other files), then retry"
        )
        return out_of_space(what, [self._store.git_dir, self.workspace], partial=partial, hint=hint)

    # -- undo

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        with self._space(f"undoing action {action_id}"), _part_way(action_id):
            return self._rollback(action_id, checkpoint, force=False)

    def undo_conflicts(self, action_id: str, checkpoint: Checkpoint) -> tuple[str, ...]:
        if "post" not in checkpoint:
            return ()
        with self._space(f"checking what an undo of action {action_id} would overwrite"):
            return self._store.revert(*self._undo_pair(checkpoint), dry_run=True).plan.conflicts

    def _undo_pair(self, checkpoint: Checkpoint) -> tuple[Snapshot, Snapshot]:
        """(post, pre) an undo reverts between: the action's, with the undos of older actions done since it ran
        replayed on both (UNDONE_SINCE): a directory such an undo kept only for this action's files goes with
        them, and what it already took back is not this undo's to write again."""
        post, pre = Snapshot(checkpoint["post"]), Snapshot(checkpoint["pre"])
        undos = [(Snapshot(p), Snapshot(q)) for p, q in json.loads(checkpoint.get(UNDONE_SINCE, "[]"))]
        if not undos:
            return post, pre
        return self._store.with_undos(post, undos), self._store.with_undos(pre, undos)

    def rollback_overwriting(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        """Undo even where paths changed since the action; what was there is set aside."""
        with self._space(f"undoing action {action_id}"), _part_way(action_id):
            return self._rollback(action_id, checkpoint, force=True)

    def _rollback(self, action_id: str, checkpoint: Checkpoint, *, force: bool) -> RollbackReport:
        if "post" in checkpoint:
            report = self._revert(action_id, *self._undo_pair(checkpoint), force)
            self._drop_intent(action_id)
            return report
        if "overlay" in checkpoint:  # it stopped before its result was recorded as applied
            run_dir = Path(checkpoint["overlay"])
            intent = _read_intent(run_dir)
            if intent is None:
                discard(run_dir)
                return RollbackReport(True, "nothing of it reached the workspace (it ran over an overlay)")
            # Crashed while applying: what anyone changed there since is set aside, not left half-applied.
            report = self._revert(action_id, intent[1], intent[0], force=True)
            discard(run_dir)
            return report
        # Direct mode, stopped while running: what it did is all that changed since its snapshot.
        target = Snapshot(checkpoint["pre"])
        before = self._store.capture(lenient=True)
        self._store.pin(f"actions/{action_id}/before-undo", before)
        restored = self._store.restore(target)
        kept = f"the state it stopped in is kept as snapshot {before.id[:12]}"
        if restored.unowned or restored.unreadable:
            return RollbackReport(False, f"restored snapshot {target.id[:12]} but {restored.describe()}; {kept}")
        return RollbackReport(True, f"restored snapshot {target.id[:12]} (verified by content id); {kept}")

    def _revert(self, action_id: str, post: Snapshot, pre: Snapshot, force: bool) -> RollbackReport:
        try:
            done = self._store.revert(post, pre, force=force, keep_as=KeepAs(action_id, FORCED))
        except RevertConflict as e:
            raise FailedPrecondition(
                f"cannot undo action {action_id}: changed since it ran (by you or a later action): "
                f"{display_paths(e.paths)}; undo later actions first (cascade), or force the undo to set "
                "those versions aside"
            ) from e
        parts = [f"took back {_count(len(done.plan.apply), 'path')} (three-way, verified on disk)"]
        if done.plan.already:
            parts.append(f"{_count(len(done.plan.already), 'path')} already as before it")
        if done.plan.kept_dirs:
            parts.append(f"kept {display_paths(done.plan.kept_dirs, '/')}: they hold files added since")
        if done.kept is not None:
            parts.append(_kept_note(list(done.kept.paths), done.kept.id, "changed since the action"))
        if done.left:
            parts.append(f"left {display_paths(list(done.left))} as you changed them while the undo ran (yours)")
        if done.beside:
            parts.append(_beside_note(done.beside))
        report = done.report
        if report.unowned or report.unreadable:
            return RollbackReport(False, "; ".join([*parts, report.describe()]))
        return RollbackReport(True, "; ".join(parts))

    # -- set-asides

    def set_asides(self) -> list[SetAside]:
        return self._store.set_asides()

    def restore_set_aside(self, set_aside_id: str, *, force: bool = False) -> RollbackReport:
        with self._space(f"bringing back set-aside {set_aside_id}"):
            return self._restore_set_aside(set_aside_id, force)

    def _restore_set_aside(self, set_aside_id: str, force: bool) -> RollbackReport:
        try:
            keep_as = KeepAs("", RESTORE_FORCED.format(set_aside_id))
            done = self._store.restore_set_aside(set_aside_id, force=force, keep_as=keep_as)
        except UnknownSetAside as e:
            raise NotFound("set-aside", set_aside_id) from e
        except RevertConflict as e:
            raise FailedPrecondition(
                f"cannot bring back set-aside {set_aside_id}: changed since it was set aside: "
                f"{display_paths(e.paths)}; force it to set those versions aside in turn"
            ) from e
        parts = [f"brought back {_count(len(done.plan.apply), 'path')}"]
        if done.kept is not None:
            parts.append(_kept_note(list(done.kept.paths), done.kept.id, "changed since it was set aside"))
        return RollbackReport(not (done.report.unowned or done.report.unreadable), "; ".join(parts))

    def drop_set_asides(self, older_than: float) -> int:
        return len(self._store.drop_set_asides(older_than))

    def fingerprint(self) -> str:
        return self._store.capture().id

    def state_fingerprint(self) -> str:
        """The snapshot id, and which files are one inode (fs_links.py: ids do not encode hard links)."""
        snap = self.fingerprint()
        links = fs_links.digest(fs_links.groups_at(self.workspace, self._store.linked_paths()))
        return f"{snap}+links:{links}" if links else snap

    def recovers_by_rollback(self, checkpoint: Checkpoint) -> bool:
        """A run over an overlay (its dir) or on the workspace itself (its snapshot) is taken back."""
        return bool(checkpoint.get("pre") or checkpoint.get("overlay"))

    def verdict_fingerprint(self) -> tuple[str, str]:
        """FingerprintsForVerdicts: the snapshot id with its hard links."""
        return self.state_fingerprint(), "the workspace's snapshot"

    def refined_verdict_fingerprint(self, cheap: str) -> str:
        return self.xattrs_fingerprint(cheap)

    def checkpoint_for_undo(self, checkpoint: Checkpoint, undone_since: Sequence[Checkpoint]) -> Checkpoint:
        """ReplaysUndone: the checkpoint with the (post, pre) snapshots of the older actions undone since this one
        ran (UNDONE_SINCE), which rollback() replays first."""
        pairs = [[c["post"], c["pre"]] for c in undone_since if c.get("post") and c.get("pre")]
        if not pairs or "post" not in checkpoint:
            return checkpoint
        return {**checkpoint, UNDONE_SINCE: json.dumps(pairs)}

    def try_pair_aside(self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits) -> Reversibility:
        """TriesPairsAside: the pair tried on an overlay of the workspace, whatever the strategy (fs/trial.py)."""
        return try_pair(self.trial_site(), spec, inverse, limits, None, without_inverse="unknown").reversibility

    def xattrs_fingerprint(self, state: str) -> str:
        """`state` (a state_fingerprint) and the workspace's extended attributes, ACLs included (fs_xattrs.py:
        snapshots do not hold them). Taken only where a verdict is kept or may be reused."""
        found = fs_xattrs.digest(self.xattrs_now())
        return f"{state}+xattrs:{found}" if found else state

    def xattrs_now(self) -> dict[str, str]:
        """The workspace's paths that carry extended attributes -> their digest (fs_xattrs.py), as of a capture
        now: from the last ones found and the dirty set of the capture that followed them when there is one such
        capture, else one walk of the workspace (after a full scan, or a capture made elsewhere: an apply)."""
        snap = self._capture()
        with self._xattrs_lock:
            known = self._xattrs
            captures, steps = self._store.touched_since(known[0] if known is not None else 0)
            found: dict[str, str] | None = None
            if known is not None and steps is not None:
                at, found = known[1], known[2]
                for started, paths, made in steps:  # each capture since, its dirty set (an xattr change is in it)
                    if started != at:
                        found = None
                        break
                    found, at = fs_xattrs.updated(found, self.workspace, paths), made
                if at != snap:
                    found = None
            if found is None:
                found = fs_xattrs.of_workspace(self.workspace)
            self._xattrs = (captures, snap, found)
        return dict(found)

    def trial_site(self) -> TrialSite:
        """What trying an action on an overlay of this workspace needs (trial.py); no overlays: direct mode."""
        why = "" if self._overlays is not None else "its actions run over the workspace itself (fs.isolation direct, or"
        why += "" if self._overlays is not None else " a path overlayfs cannot take)"
        return TrialSite(self.workspace, self._store, self._sandbox, self._masked, self._overlays, why)

    def close(self) -> None:
        self._store.close()


def probe_overlay(sandbox: Sandbox, overlays_dir: Path) -> str | None:
    """None when fs actions can run over an overlay here (a real run in a scratch workspace), else why not."""
    probe = overlays_dir / ".probe"
    discard(probe)
    try:
        workspace = probe / "workspace"
        workspace.mkdir(parents=True, mode=0o700)
        (probe / "work").mkdir(mode=0o700)
        (probe / "upper").mkdir(mode=0o700)
        check_paths(workspace, probe)
        result = sandbox.run(
            SandboxSpec(
                argv=["sh", "-c", "echo probe > written"],
                workspace=workspace,
                overlay=WorkspaceOverlay(probe / "upper", probe / "work"),
                limits=Limits(timeout_s=10.0),
            )
        )
        if result.termination.value != "exited" or result.exit_code != 0:
            why = result.detail or result.stderr.decode(errors="replace").strip()
            return f"a run over an overlay failed ({result.termination.value}): {why}"
        if (workspace / "written").exists() or not (probe / "upper" / "written").is_file():
            return "a run over an overlay did not write to the overlay's upper dir"
        return None
    except (OSError, OverlayUnavailable) as e:
        return str(e)
    finally:
        discard(probe)


def clear_overlays(overlays_dir: Path) -> None:
    """Remove every run dir (at start, after recovery: no run is under way)."""
    for run_dir in overlays_dir.iterdir():
        discard(run_dir)


def drop_uppers(overlays_dir: Path) -> None:
    """At start, before anything else: what earlier runs wrote (their upper and work dirs) goes. No run is
    under way, and recovery needs only their intent files; on a disk those runs filled, it needs the room."""
    if not overlays_dir.is_dir():
        return
    discard(_discarding(overlays_dir))  # what a killed goexd had not finished removing
    for run_dir in overlays_dir.iterdir():
        for sub in ("upper", "work"):
            discard(run_dir / sub)


def _write_intent(run_dir: Path, pre: Snapshot, post: Snapshot) -> None:
    path = run_dir / APPLY_INTENT
    with open(path, "w") as f:
        json.dump({"pre": pre.id, "post": post.id}, f)
        f.flush()
        os.fsync(f.fileno())


def _read_intent(run_dir: Path) -> tuple[Snapshot, Snapshot] | None:
    try:
        data = json.loads((run_dir / APPLY_INTENT).read_text())
        return Snapshot(str(data["pre"])), Snapshot(str(data["post"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # torn before its fsync: the apply had not begun


def _give_up(run_dir: Path, exc: BaseException) -> None:
    """An overlay run whose apply ran out of space: its upper goes now, freeing what the action wrote.
    Once the apply has begun (the intent is written) the intent stays, for the rollback to take back what
    reached the workspace (nothing, unless it stopped part way); refused before any write, nothing stays."""
    if isinstance(exc, NoRoom) or not (run_dir / APPLY_INTENT).exists():
        discard(run_dir)
        return
    for sub in ("upper", "work"):
        discard(run_dir / sub)


def _discard_later(overlays_dir: Path, *dirs: Path) -> None:
    """Remove `dirs` (an applied run's upper and work) in the background: each is renamed at once into a dir
    beside the overlays dir (one rename, where removing is a few ms per directory on a busy disk), so the
    action does not wait for it; what a kill leaves there goes at the next start (drop_uppers)."""
    trash = _discarding(overlays_dir)
    moved = []
    for d in dirs:
        target = trash / secrets.token_hex(8)
        try:
            trash.mkdir(mode=0o700, exist_ok=True)  # never removed while goexd runs: no race with this
            os.rename(d, target)
        except FileNotFoundError:
            continue
        except OSError:
            discard(d)
            continue
        moved.append(target)
    if moved:
        _REMOVER.remove(moved)


class _BackgroundRemover:
    """The one thread that removes applied runs' upper and work dirs, started when first needed: handing it
    dirs is a put on the action's path, where a thread of its own per action waited there until it was
    scheduled (Thread.start: ~0.2 ms, 2-3 ms on a busy machine)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Path]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def remove(self, dirs: list[Path]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="goexd-overlay-discard", daemon=True)
                self._thread.start()
        self._queue.put(dirs)

    def _run(self) -> None:
        while True:
            _discard_quietly(self._queue.get())


_REMOVER = _BackgroundRemover()


def _holds_less(top: Path, limit: int) -> bool:
    """Whether the files below `top` hold fewer than `limit` bytes (False when that cannot be told)."""
    total = 0
    todo = [top]
    try:
        while todo:
            with os.scandir(todo.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(Path(entry.path))
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                    if total >= limit:
                        return False
    except OSError:
        return False
    return True


def _discarding(overlays_dir: Path) -> Path:
    return overlays_dir.with_name(overlays_dir.name + DISCARDING)


def _discard_quietly(dirs: list[Path]) -> None:
    for d in dirs:
        try:
            discard(d)
        except OSError as e:  # left for the next start
            log.warning("could not remove %s: %s", d, e)


def _remove_planted_repo(workspace: Path) -> tuple[str, bool] | None:
    """Remove the top-level .git a direct run made in a workspace that had none: (a note, whether it
    is gone), or None when there is none. Never followed if it is a symbolic link."""
    path = workspace / TOP_GIT
    planted = f"not applied: {TOP_GIT} (the action made it where the workspace had none)"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{planted}, but cannot look at it: {e}", False

    try:
        if stat.S_ISDIR(st.st_mode):
            # The action's own modes inside it are opened up; never the workspace root's (the person's).
            remove_tree(path, open_up=True)
        else:
            path.unlink()
    except OSError as e:
        return f"{planted}, but cannot remove it: {e}", False
    return f"{planted}: removed", True


def _beside_note(paths: Sequence[str]) -> str:
    return (
        f"kept what you wrote to {display_paths(list(paths))} through a file held open while goexd replaced it, "
        "beside it as <name>.goex-kept-<hex>"
    )


@contextmanager
def _part_way(action_id: str) -> Iterator[None]:
    """An undo whose writes the filesystem refused part way (not a full disk: see _space) is a clear error that
    keeps its journaled intent (errors.StoppedPartWay), not an internal one."""
    try:
        yield
    except PartlyWritten as e:
        if is_out_of_space(e):
            raise
        raise StoppedPartWay(
            f"the undo of action {action_id} stopped part way: {e}; fix that, then undo it again "
            "(or restart goexd, which finishes it); until then it cannot be committed"
        ) from e


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _kept_note(paths: list[str], set_aside_id: str, why: str) -> str:
    return (
        f"set aside your version of {display_paths(paths)} ({why}) as {set_aside_id}: "
        f"goex set-aside restore {set_aside_id}"
    )
