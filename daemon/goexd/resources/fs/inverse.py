"""The file-system resource with the `inverse` undo strategy.

An action carries an inverse command (shell or python; the client's today). Before the action
runs, the pair is tried on a throwaway overlay of the workspace (fs_trial.py): a pair that does
not leave the tree as it was is refused with the diff (the engine blocks it), and the workspace
is not touched; a pair that could not be tried runs with the verdict unknown, and why. An action
without an inverse runs only if the trial shows it changes nothing.

The action itself runs as in the versioned strategy (fs.py: over an overlay, applied, snapshots
before and after pinned), so the snapshots stay as a safety net. Undo runs the inverse for real,
in the sandbox, the same way (over an overlay, then applied; in direct mode over the workspace)
and then verifies the paths involved (those the action changed and those the inverse changed)
against the action's pre-action snapshot: "verified" when they all match, else "not verified"
with the diff, and the pre-action versions of what differs are kept as a set-aside (`goex
set-aside restore ID` puts them back). Paths the action changed that someone changed since are
a conflict: refused unless forced; forced, their versions are set aside first. So are other paths
the inverse's result would write that changed since (seen over its overlay, before the apply;
direct mode: set aside after the fact). An inverse that
fails (non-zero exit, time limit) changes nothing (overlay: its upper is dropped; direct: what
it wrote is taken back) and the action stays pending.

An action that did not complete (time limit, cancelled, failed to apply) is rolled back from
its snapshots, never by its inverse, which was meant for the whole action.

Crash safety. A kill during the trial leaves only the trial's overlay dir (removed at the next
start). During the action: as the versioned strategy (its overlay run and apply intent). During
an undo, the undo's own overlay dir holds the apply intent of the inverse's result: recovery,
which finishes an undo that was begun, finds it and finishes that apply (never running the
inverse a second time); once applied, a pin `actions/<id>/undone` in the store says so, and a
later attempt only verifies. Without that intent (killed while the inverse ran over its
overlay) nothing reached the workspace, and the inverse runs once. In direct mode an undo killed
while the inverse ran is run again; the pre-action snapshot stays pinned either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from goexd.domain import codec
from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import ActionSpec, Reversibility
from goexd.domain.names import display_paths
from goexd.domain.resource import Checkpoint, Outcome, OutputCallback, RollbackReport, SandboxNetwork, SettlesInDoubt
from goexd.domain.sandbox import ExecResult, Limits, SandboxSpec, Termination, WorkspaceOverlay
from goexd.domain.snapshots import FileChange, KeepAs, Snapshot
from goexd.resources.fs import links as fs_links
from goexd.resources.fs import xattrs as fs_xattrs
from goexd.resources.fs.cwd import check_cwd
from goexd.resources.fs.discard import discard
from goexd.resources.fs.trial import argv_of, describe_change, sandbox_spec, try_pair
from goexd.resources.fs.versioned import FORCED, FsVersionedResource, _read_intent

INVERSE_KEY = "inverse"  # checkpoint: the inverse action, as JSON
UNDO_BY = "undo_by"  # checkpoint: "inverse" once the action completed (else its snapshots roll it back)
LIMITS_KEY = "limits"  # checkpoint: the limits the action ran with, for its inverse
LINKS_KEY = "links"  # checkpoint: which files were hard links of each other before the action (fs_links.py)
XATTRS_KEY = "xattrs"  # checkpoint: which paths carried extended attributes before the action (fs_xattrs.py)
UNDO_SUFFIX = ".undo"  # the undo's overlay dir: <overlays>/<action id>.undo
UNDONE_PIN = "undone"  # pin actions/<id>/undone: the inverse's result reached the workspace
NOT_RESTORED = "the pre-action version, which the inverse did not restore"
FINISHED = "changed while goexd was stopped in an undo; overwritten when it finished applying the inverse's result"
TAKEN_BACK = "changed while the failed inverse ran; taken back with what it wrote"
_ALL = 1 << 30
_COMPLETED = frozenset({Termination.EXITED, Termination.SIGNALED})


class FsInverseResource(FsVersionedResource, SettlesInDoubt):
    undo_note = (
        "undo runs the inverse command, tried with the action on an overlay before it ran, and compares the "
        "paths involved with the pre-action state"
    )

    def falls_back_to_snapshots(self) -> bool:
        """FallsBackToSnapshots: an action whose inverse failed its test may run flagged ([fs] failed_inverse)."""
        return True

    def checkpoint_for_undo(self, checkpoint: Checkpoint, undone_since: Sequence[Checkpoint]) -> Checkpoint:
        """Its undo runs the action's inverse (or restores the action's own snapshots): nothing older is replayed."""
        return checkpoint

    def describe(self, samples: bool = False) -> str:
        head, _, rest = super().describe(samples).partition("\n")
        note = " (strategy inverse: an action that changes files gives the command that undoes it; tried first)"
        return head + note + ("\n" + rest if rest else "")

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        argv_of(spec)
        if inverse is not None:
            argv_of(inverse, "inverse")
            check_cwd(self.workspace, inverse, "inverse")
            if inverse.egress is not None:
                raise InvalidArgument("inverse.egress", "an inverse command runs without network")

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility:
        return try_pair(self.trial_site(), spec, inverse, limits, cancel, without_inverse="failed").reversibility

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        cp = super().checkpoint(action_id, inverse)
        if inverse is not None:
            cp[INVERSE_KEY] = json.dumps(codec.spec_to_json(inverse))
            cp[LINKS_KEY] = fs_links.to_json(fs_links.groups_at(self.workspace, self._store.linked_paths()))
            cp[XATTRS_KEY] = fs_xattrs.to_json(self.xattrs_now())
        return cp

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        outcome = super().execute(spec, limits, checkpoint, on_output, cancel, network)
        completed = outcome.exec is not None and outcome.exec.termination in _COMPLETED and outcome.failure is None
        if not completed or INVERSE_KEY not in checkpoint:
            return outcome
        extra = {**outcome.checkpoint_extra, UNDO_BY: "inverse", LIMITS_KEY: json.dumps(asdict(limits))}
        return replace(outcome, checkpoint_extra=extra)

    # -- undo

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        if checkpoint.get(UNDO_BY) != "inverse":  # incomplete, or changed nothing: its snapshots take it back
            return super().rollback(action_id, checkpoint)
        with self._space(f"undoing action {action_id}"):
            return self._undo(action_id, checkpoint, force=False)

    def rollback_overwriting(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        if checkpoint.get(UNDO_BY) != "inverse":
            return super().rollback_overwriting(action_id, checkpoint)
        with self._space(f"undoing action {action_id}"):
            return self._undo(action_id, checkpoint, force=True)

    def _undo(self, action_id: str, checkpoint: Checkpoint, *, force: bool) -> RollbackReport:
        pre, post = Snapshot(checkpoint["pre"]), Snapshot(checkpoint["post"])
        links = fs_links.from_json(checkpoint.get(LINKS_KEY, "[]"))  # none recorded: an action of an older goexd
        xattrs = fs_xattrs.from_json(checkpoint[XATTRS_KEY]) if XATTRS_KEY in checkpoint else None
        done = self._store.pinned().get(f"actions/{action_id}/{UNDONE_PIN}")
        if done is not None:  # an earlier undo got the inverse's result into the workspace
            undo_pre = self._store.pinned().get(f"actions/{action_id}{UNDO_SUFFIX}/pre", done)
            return self._verified(
                action_id, pre, post, undo_pre, done, "the inverse ran in an earlier undo (not again)", links, xattrs
            )
        run_dir = self._overlays / f"{action_id}{UNDO_SUFFIX}" if self._overlays is not None else None
        intent = _read_intent(run_dir) if run_dir is not None else None
        if intent is not None:  # killed while applying the inverse's result: finish that apply, not the inverse
            self._store.revert(intent[0], intent[1], force=True, keep_as=KeepAs(action_id, FINISHED))
            self._store.pin(f"actions/{action_id}/{UNDONE_PIN}", intent[1])
            return self._verified(
                action_id, pre, post, intent[0], intent[1], "finished applying the inverse's result", links, xattrs
            )
        conflicts = self.undo_conflicts(action_id, checkpoint)
        if conflicts and not force:
            raise FailedPrecondition(
                f"cannot undo action {action_id}: changed since it ran (by you or a later action): "
                f"{display_paths(conflicts)}; undo later actions first (cascade), or force the undo to set "
                "those versions aside"
            )
        notes = []
        if conflicts:  # their versions are kept before the inverse can overwrite them
            kept = self._store.set_aside(self._capture(), pre, conflicts, action_id, FORCED)
            notes.append(f"set aside your version of {display_paths(conflicts)} as {kept.id}")
        inverse = codec.spec_from_json(json.loads(checkpoint[INVERSE_KEY]))
        limits = Limits(**json.loads(checkpoint[LIMITS_KEY])) if LIMITS_KEY in checkpoint else Limits()
        undo_pre, undo_post = (
            self._run_inverse_over(run_dir, action_id, inverse, limits, post, conflicts, force)
            if run_dir is not None
            else self._run_inverse_direct(action_id, inverse, limits, post, conflicts)
        )
        self._store.pin(f"actions/{action_id}/{UNDONE_PIN}", undo_post)
        report = self._verified(action_id, pre, post, undo_pre, undo_post, "ran the inverse", links, xattrs)
        return RollbackReport(report.verified, "; ".join([report.detail, *notes]), report.compared)

    def _run_inverse_over(
        self,
        run_dir: Path,
        action_id: str,
        inverse: ActionSpec,
        limits: Limits,
        post: Snapshot,
        kept: Sequence[str],
        force: bool,
    ) -> tuple[Snapshot, Snapshot]:
        """The inverse over an overlay of the workspace, then its result applied; nothing when it fails, or when it
        would overwrite what changed since the action beyond the action's own paths (checked before: those are
        undo_conflicts) unless forced, and then that is set aside first."""
        discard(run_dir)  # a leftover of an undo killed while the inverse ran: nothing of it was applied
        cp = super().checkpoint(run_dir.name)
        started_ns = time.time_ns()
        result = self._sandbox.run(
            self._inverse_spec(inverse, limits, WorkspaceOverlay(run_dir / "upper", run_dir / "work"))
        )
        if result.termination is not Termination.EXITED or result.exit_code != 0:
            discard(run_dir)
            raise FailedPrecondition(self._inverse_failed(action_id, result, "nothing was changed"))
        assert cp["overlay"] == str(run_dir)
        now = self._capture()
        result_of_inverse, _ = self._store.edit(now, run_dir / "upper", privileged=os.geteuid() == 0)
        overwritten = self._overwritten_since(post, now, result_of_inverse, kept)
        if overwritten and not force:
            discard(run_dir)
            raise FailedPrecondition(
                f"cannot undo action {action_id}: its inverse would overwrite what changed since the action (by you "
                f"or a later action): {display_paths(overwritten)}; nothing was changed; undo later actions first, "
                "or force the undo to set those versions aside"
            )
        if overwritten:
            self._store.set_aside(now, result_of_inverse, overwritten, action_id, FORCED)
        _, applied = self._apply(run_dir, started_ns)  # pins actions/<id>.undo/pre and /post
        return Snapshot(applied["pre"]), Snapshot(applied["post"])

    def _overwritten_since(
        self, post: Snapshot, now: Snapshot, result_of_inverse: Snapshot, kept: Sequence[str]
    ) -> list[str]:
        """The paths the inverse would write that changed since the action left them (someone's since), but for
        `kept` (the action's own paths changed since: set aside already, by a forced undo)."""
        since = _paths(self._store.changes(post, now, limit=_ALL).changes)
        writes = _paths(self._store.changes(now, result_of_inverse, limit=_ALL).changes)
        return sorted(p for p in writes if _involved(p, since) and p not in kept)

    def _run_inverse_direct(
        self, action_id: str, inverse: ActionSpec, limits: Limits, post: Snapshot, kept: Sequence[str]
    ) -> tuple[Snapshot, Snapshot]:
        """The inverse over the workspace itself, snapshotted around it; what it wrote is taken back when it fails.
        What it overwrote that changed since the action (beyond its paths) is set aside after the fact."""
        before = self._capture()
        self._store.pin(f"actions/{action_id}{UNDO_SUFFIX}/pre", before)
        result = self._sandbox.run(self._inverse_spec(inverse, limits, None))
        after = self._capture()
        if result.termination is not Termination.EXITED or result.exit_code != 0:
            self._store.revert(after, before, force=True, keep_as=KeepAs(action_id, TAKEN_BACK))
            raise FailedPrecondition(self._inverse_failed(action_id, result, "what it wrote was taken back"))
        overwritten = self._overwritten_since(post, before, after, kept)
        if overwritten:
            self._store.set_aside(before, after, overwritten, action_id, FORCED)
        return before, after

    def _inverse_spec(self, inverse: ActionSpec, limits: Limits, overlay: WorkspaceOverlay | None) -> SandboxSpec:
        return sandbox_spec(self.workspace, self._masked, argv_of(inverse, "inverse"), inverse, limits, overlay)

    @staticmethod
    def _inverse_failed(action_id: str, result: ExecResult, outcome: str) -> str:
        how = f"exit {result.exit_code}" if result.termination is Termination.EXITED else result.termination.value
        err = result.stderr.decode(errors="replace").strip()[-400:]
        return (
            f"cannot undo action {action_id}: its inverse failed ({how}{': ' + err if err else ''}); {outcome}, "
            "and the action stays pending (commit it, or undo it again once the inverse can run)"
        )

    def _verified(
        self,
        action_id: str,
        pre: Snapshot,
        post: Snapshot,
        undo_pre: Snapshot,
        undo_post: Snapshot,
        what: str,
        links_before: fs_links.LinkGroups,
        xattrs_before: fs_xattrs.Xattrs | None,
    ) -> RollbackReport:
        """Whether the paths the action and the inverse changed are as the pre-action snapshot has them, and their
        extended attributes as recorded before the action (`xattrs_before`; None: not recorded, by an older goexd)."""
        involved = _paths(self._store.changes(pre, post, limit=_ALL).changes)
        involved |= _paths(self._store.changes(undo_pre, undo_post, limit=_ALL).changes)
        differ = [c for c in self._store.changes(pre, undo_post, limit=_ALL).changes if _involved(c.path, involved)]
        if not involved:
            return RollbackReport(
                False,
                f"{what}; unverified: neither the action nor the inverse changed a path goexd's snapshots hold, so "
                "nothing was compared",
                compared=False,
            )
        links = self._links_differ(links_before, involved)
        xattrs = self._xattrs_differ(xattrs_before, involved)
        if not differ and not links and not xattrs:
            return RollbackReport(
                True,
                f"{what}; the {len(involved)} path(s) involved match the pre-action state (by content id: "
                "contents, modes, owners, symlinks; which of them are hard links of each other; and their extended "
                "attributes, ACLs included)",
            )
        described = [describe_change(c) for c in differ] + links + xattrs
        shown = "; ".join(described[:20])
        more = f"; and {len(described) - 20} more" if len(described) > 20 else ""
        kept_note = ""
        if differ:
            paths = [c.path.rstrip("/") for c in differ]
            kept = self._store.set_aside(pre, undo_post, paths, action_id, NOT_RESTORED)
            kept_note = f"; their pre-action versions are kept as set-aside {kept.id}: goex set-aside restore {kept.id}"
        if xattrs:
            kept_note += (
                " (goexd's snapshots do not hold extended attributes: it compares them, it cannot restore them)"
            )
        return RollbackReport(
            False,
            f"{what}, but {len(described)} path(s) it involved differ from the pre-action state: {shown}{more}"
            f"{kept_note}",
        )

    def _xattrs_differ(self, before: fs_xattrs.Xattrs | None, involved: set[str]) -> list[str]:
        """Which involved paths carry other extended attributes (ACLs included) than before the action."""
        if before is None:  # not recorded: an action of an older goexd
            return []
        return fs_xattrs.differences(before, self.xattrs_now(), lambda p: _involved(p, involved), self.workspace)

    def _links_differ(self, links_before: fs_links.LinkGroups, involved: set[str]) -> list[str]:
        """Which involved files were hard links of each other before the action and are not now, or the reverse
        (lstat of the involved paths and of the names they were linked with)."""
        before = frozenset(g for g in links_before if any(_involved(p, involved) for p in g))
        now = fs_links.groups_at(self.workspace, fs_links.members(before) | involved)
        return fs_links.differences(before, now, lambda p: _involved(p, involved))

    # -- outcomes in doubt: only the undo's own dir and pin, once the journal has the action's end

    def settle(self, action_ids: Sequence[str]) -> None:
        if self._overlays is None:
            return
        for action_id in action_ids:
            with contextlib.suppress(OSError):  # else left for the next start's clear_overlays
                discard(self._overlays / f"{action_id}{UNDO_SUFFIX}")


def _paths(changes: Iterable[FileChange]) -> set[str]:
    return {c.path.rstrip("/") for c in changes}


def _involved(path: str, involved: set[str]) -> bool:
    """At, above or below a path the action or the inverse changed (a directory they left behind or emptied)."""
    path = path.rstrip("/")
    return any(path == p or p.startswith(path + "/") or path.startswith(p + "/") for p in involved)
