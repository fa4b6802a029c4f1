"""Resolving pending actions: commit, undo, undo-to, closing a session with what it holds pending.

Rules: a commit is all or nothing across the session's resources, the managers commit before the journal says
COMMITTED (the intent noted first); an undo's intent is journaled before anything is restored, and a crash
between is finished at the next start (engine/recovery.py); a pending action is undone only when no later
pending action on its resource stands in the way (a workspace's three-way undo refuses only on the paths both
changed), unless the caller cascades; undo-to undoes newest first; one irreversible action refuses the batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from goexd import faults
from goexd.diskspace import is_out_of_space, out_of_space
from goexd.domain import codec
from goexd.domain.errors import (
    FailedPrecondition,
    GoexError,
    InvalidArgument,
    NotFound,
)
from goexd.domain.models import (
    ACTIVE_STATES,
    Action,
    ActionState,
    CloseMode,
    Reversibility,
    ReversibilityClass,
    Session,
    SessionState,
)
from goexd.domain.names import display_paths
from goexd.domain.resource import (
    Checkpoint,
    ReplaysUndone,
    RollbackReport,
    UndoesThreeWay,
    settling,
)
from goexd.domain.snapshots import SetAside
from goexd.engine import diffs, sql_policy
from goexd.engine.core import Core, Part
from goexd.engine.http_calls import HttpCalls, touched
from goexd.engine.live import LiveSession
from goexd.engine.sessions import Sessions
from goexd.engine.steps import COMMIT_STARTED, Steps, tag

log = logging.getLogger("goexd.engine")


class Resolver(Part):
    """Commit and undo of a session's pending actions."""

    def __init__(self, core: Core, sessions: Sessions, steps: Steps, calls: HttpCalls) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.steps = steps
        self.calls = calls

    def close(self, session_id: str, mode: CloseMode) -> tuple[Session, list[Action]]:
        session = self.sessions.get(session_id)
        if session.state is SessionState.CLOSED:
            raise FailedPrecondition(f"session {session_id} is already closed")
        live = self.sessions.live(session_id)
        with live.lock:
            queued = self.journal.list_actions(session_id, ACTIVE_STATES)
            if queued:  # a detached action waiting for the lock: it would run on closed managers
                raise FailedPrecondition(
                    f"session {session_id} has {len(queued)} action(s) queued or running; "
                    "wait for them or cancel them first"
                )
            pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
            resolved: list[Action] = []
            if pending and mode is CloseMode.REFUSE_IF_PENDING:
                raise FailedPrecondition(
                    f"session {session_id} has {len(pending)} pending action(s); "
                    "close it with mode commit_all or undo_all"
                )
            if mode is CloseMode.COMMIT_ALL:
                resolved = self.commit_locked(live, pending)
            elif mode is CloseMode.UNDO_ALL:
                self._refuse_irreversible(pending)
                resolved = [self.undo_one(live, a) for a in reversed(pending)]
            self.journal.close_session(session_id)
            self.sessions.let_go(session_id, live)
        return self.sessions.get(session_id), resolved

    def commit(self, session_id: str, up_to: str = "") -> list[Action]:
        live = self.sessions.live(session_id)
        with live.lock:
            pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
            if up_to:
                anchor = self.steps.get(up_to)
                if anchor.session_id != session_id:
                    raise InvalidArgument("up_to_action_id", f"action {up_to} belongs to another session")
                pending = [a for a in pending if a.seq <= anchor.seq]
            return self.commit_locked(live, pending)

    def commit_locked(self, live: LiveSession, pending: Sequence[Action]) -> list[Action]:
        if half := [a.id for a in pending if a.undo_started]:
            # Its undo wrote part of the way (the intent is journaled): committing would keep a half-undone action.
            raise FailedPrecondition(
                f"cannot commit: the undo of action {', '.join(half)} stopped part way; undo it again "
                "(or restart goexd, which finishes that undo)"
            )
        try:
            for name, manager in live.managers.items():  # all or nothing: check every resource first
                manager.commit_check([a.id for a in pending if a.resource == name])
            # The managers commit first (a database's COMMIT may still fail); only then is it journaled,
            # so the journal never says COMMITTED for what the database did not keep. The intent is
            # noted first, so a crash in between is reported as such at the next start.
            for a in pending:
                self.journal.update(a.id, note=COMMIT_STARTED)
            for a in pending:
                faults.point("commit-journaled", tag(live.managers[a.resource]))
                live.managers[a.resource].commit(a.id, a.checkpoint)
                faults.point("commit-returned", tag(live.managers[a.resource]))
        except GoexError as exc:
            for a in pending:  # the intent is void: a restart must not finish this commit (see recover)
                self.journal.update(a.id, note=f"commit failed: {exc}")
            for manager in live.managers.values():
                self.steps.mark_lost(manager, f"the database discarded its transaction while committing: {exc}")
            raise
        done = []
        for a in pending:
            self.steps.transition(a, ActionState.COMMITTED, resolved_at=time.time())
            settling(live.managers[a.resource]).settle([a.id])
            done.append(self.steps.get(a.id))
        return done

    def undo(self, session_id: str, action_id: str = "", cascade: bool = False, force: bool = False) -> list[Action]:
        live = self.sessions.live(session_id)
        with live.lock:
            pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
            if action_id:
                target = self.steps.get(action_id)
                if target.session_id != session_id:
                    raise InvalidArgument("action_id", f"action {action_id} belongs to another session")
            elif pending:
                target = pending[-1]
            else:
                raise FailedPrecondition(f"session {session_id} has no pending action to undo")
            self._require_pending(target)
            # A later action on a workspace alone does not stand in the way: its three-way undo refuses
            # only where the later one changed the same paths (the conflict names them).
            alone = touched(target) - self._three_way_resources(live)
            later = [a for a in pending if a.seq > target.seq and touched(a) & alone]
            if cascade:
                later = [a for a in pending if a.seq > target.seq and touched(a) & touched(target)]
            if later and not cascade:
                ids = ", ".join(a.id for a in later)
                raise FailedPrecondition(
                    f"action {target.id} has later pending actions on resource {target.resource!r} ({ids}); "
                    "undo those first, or ask to cascade"
                )
            targets = [*reversed(later), target]
            self._refuse_irreversible(targets)
            self._check_inverses(live, targets)
            return [self.undo_one(live, a, force) for a in targets]

    def undo_to(self, action_id: str, force: bool = False) -> list[Action]:
        anchor = self.steps.get(action_id)
        live = self.sessions.live(anchor.session_id)
        with live.lock:
            pending = self.journal.list_actions(anchor.session_id, [ActionState.EXECUTED], after_seq=anchor.seq)
            self._refuse_irreversible(pending)
            self._check_inverses(live, pending)
            return [self.undo_one(live, a, force) for a in reversed(pending)]

    def _later_on_paths(self, action: Action, paths: set[str]) -> list[str]:
        """Later pending actions on the same resource whose recorded changes include one of `paths`."""
        pending = self.journal.list_actions(action.session_id, [ActionState.EXECUTED], after_seq=action.seq)
        return [
            a.id
            for a in pending
            if a.resource == action.resource
            and a.changes is not None
            and any(c.path.rstrip("/") in paths for c in a.changes.changes)
        ]

    @staticmethod
    def _three_way_resources(live: LiveSession) -> set[str]:
        return {name for name, m in live.managers.items() if isinstance(m, UndoesThreeWay)}

    def list_set_asides(self, session_id: str) -> list[tuple[str, SetAside]]:
        """(resource name, set-aside) of every workspace of the session, oldest first."""
        live = self.sessions.live(session_id)
        with live.lock:
            found = [
                (name, kept)
                for name, m in live.managers.items()
                if isinstance(m, UndoesThreeWay)
                for kept in m.set_asides()
            ]
        return sorted(found, key=lambda f: f[1].created)

    def restore_set_aside(self, session_id: str, set_aside_id: str, force: bool = False) -> RollbackReport:
        live = self.sessions.live(session_id)
        with live.lock:
            for manager in live.managers.values():
                if not isinstance(manager, UndoesThreeWay):
                    continue
                try:  # each workspace looks its own up by id (one ref), none lists them all
                    return manager.restore_set_aside(set_aside_id, force=force)
                except NotFound as e:
                    if (e.what, e.ident) != ("set-aside", set_aside_id):
                        raise
        raise NotFound("set-aside", set_aside_id)

    @staticmethod
    def _require_pending(action: Action) -> None:
        if action.state is ActionState.EXECUTED:
            return
        why = {
            ActionState.COMMITTED: "it is committed; committed actions cannot be undone",
            ActionState.UNDONE: "it is already undone",
            ActionState.FAILED: "it failed and was already rolled back",
            ActionState.BLOCKED: "it was blocked and never ran",
            ActionState.INTERRUPTED: "it was interrupted and already rolled back",
        }.get(action.state, f"it is still {action.state.value}")
        raise FailedPrecondition(f"cannot undo action {action.id}: {why}")

    def _undone_since(self, action: Action) -> list[Checkpoint]:
        """The checkpoints of the older actions on the same resource undone since `action` ran, oldest first: a
        manager that ReplaysUndone replays their undos before its own (issue 14 F9)."""
        found = self.journal.list_actions(action.session_id, [ActionState.UNDONE], limit=1 << 30)
        return [a.checkpoint for a in diffs.undone_since(found, action)]

    @staticmethod
    def _refuse_irreversible(actions: Sequence[Action]) -> None:
        """Before undoing anything: one irreversible action in the batch refuses the whole undo."""
        for a in actions:
            known = a.reversibility
            if known is not None and known.reversibility_class is ReversibilityClass.IRREVERSIBLE:
                raise FailedPrecondition(
                    f"action {a.id} is irreversible ({known.detail}); it cannot be undone, only committed"
                )

    @staticmethod
    def _check_inverses(live: LiveSession, actions: Sequence[Action]) -> None:
        """Before undoing anything: a client SQL inverse the policy now refuses refuses the whole undo."""
        for a in actions:
            sql_policy.check_undo(live.policy, a, live.managers[a.resource].resource.kind)

    def undo_one(self, live: LiveSession, action: Action, force: bool = False) -> Action:
        known = action.reversibility
        started = time.monotonic()
        manager = live.managers[action.resource]
        sql_policy.check_undo(live.policy, action, manager.resource.kind)  # before anything is journaled or run
        three_way = manager if isinstance(manager, UndoesThreeWay) else None
        if force and three_way is None:
            raise InvalidArgument("force", f"resource {action.resource!r} has nothing to overwrite: only workspaces do")
        checkpoint = action.checkpoint
        if isinstance(manager, ReplaysUndone):
            checkpoint = manager.checkpoint_for_undo(checkpoint, self._undone_since(action))
        if three_way is not None and not force and (conflicts := three_way.undo_conflicts(action.id, checkpoint)):
            # Before anything is undone (its http calls included): refused whole.
            later = self._later_on_paths(action, set(conflicts))
            by = f"by later pending actions {', '.join(later)} or by you" if later else "by you or a later action"
            raise FailedPrecondition(
                f"cannot undo action {action.id}: changed since it ran ({by}): "
                f"{display_paths(conflicts)}; undo the later actions first (cascade), or force the undo "
                "to set those versions aside"
            )
        # The intent is journaled first: a crash mid-restore is finished at the next start-up.
        self.journal.update(action.id, note="undo started", undo_started=1)
        faults.point("undo-journaled", tag(manager))
        try:
            calls = self.calls.undo_calls(live, action, keep_going=False)
            if force and three_way is not None:
                report = three_way.rollback_overwriting(action.id, checkpoint)
            else:
                report = manager.rollback(action.id, checkpoint)
            faults.point("undo-returned", tag(manager))
        except Exception as exc:
            full = is_out_of_space(exc)
            if full:
                self.space.release()  # room for what follows
            if not (full or isinstance(exc, GoexError)):
                raise  # a bug: the intent stays, and the next start finishes the undo (three-way)
            if getattr(exc, "partial", False):  # OutOfSpace or StoppedPartWay
                # Part of it is written: the intent stays, so the next start finishes it if no retry does.
                self.journal.update(action.id, note=f"undo stopped part way: {exc}")
                raise
            # Refused or failed before anything was restored for good: the action stays pending, to retry.
            self.journal.update(action.id, note=f"undo failed: {exc}", undo_started=0)
            if not isinstance(exc, GoexError):
                raise out_of_space(f"undoing action {action.id}", [self.cfg.state_dir]) from exc
            raise
        if calls is not None:
            report = report.with_calls(calls)
        undo_s = time.monotonic() - started
        self.steps.transition(
            action,
            ActionState.UNDONE,
            note=report.detail,
            resolved_at=time.time(),
            timings=codec.dumps(codec.timings_to_json(replace(action.timings, undo_s=undo_s))),
            reversibility=codec.dumps(
                codec.reversibility_to_json(
                    Reversibility(
                        known.reversibility_class if known is not None else ReversibilityClass.REVERSIBLE,
                        report.verdict,  # verified / not verified / unverified (nothing to compare against)
                        report.detail,
                        time.time(),
                    )
                )
            ),
        )
        settling(manager).settle([action.id])
        return self.steps.get(action.id)
