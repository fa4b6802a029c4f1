"""Recovery at start-up: what a crash left behind is resolved before the server accepts requests.

Rules: it agrees with every resource (a resource's own evidence settles what the journal cannot: outcome markers,
fingerprints); an interrupted undo or commit is finished, never left half done; a running action is rolled back
to its checkpoint unless its resource kept it whole (pending again) or cannot tell (said so, never guessed);
nothing an earlier goexd copied is left behind unnamed."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from goexd import faults
from goexd.domain import codec
from goexd.domain.errors import (
    GoexError,
)
from goexd.domain.models import (
    Action,
    ActionKind,
    ActionState,
    Reversibility,
    ReversibilityClass,
    Verdict,
)
from goexd.domain.resource import (
    InDoubt,
    KeepsCopies,
    Resolution,
    UndoesThreeWay,
    settling,
)
from goexd.engine.core import Core, Part
from goexd.engine.http_calls import HttpCalls
from goexd.engine.live import held_in_a_transaction
from goexd.engine.resolve import Resolver
from goexd.engine.sessions import Sessions
from goexd.engine.steps import COMMIT_STARTED, Steps

log = logging.getLogger("goexd.engine")


class Recovery(Part):
    """Finishes what a crash interrupted."""

    def __init__(self, core: Core, sessions: Sessions, steps: Steps, calls: HttpCalls, resolver: Resolver) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.steps = steps
        self.calls = calls
        self.resolver = resolver

    def recover(self) -> list[Action]:
        """Resolve what a crash left behind; runs before the server accepts requests. Then the lease sweep starts."""
        try:
            return self._recover()
        finally:
            if self.leases.on:
                self.leases.sweep_every(self.life.stopping, self.sessions.expire_idle)

    def _recover(self) -> list[Action]:
        if self.space.free() < self.space.reserve:
            self.space.release()  # what the held-back space is for: finishing and rolling back
        resolved: list[Action] = []
        for action in self.journal.actions_in_states(
            [ActionState.RUNNING, ActionState.PREPARING, ActionState.PROPOSED, ActionState.EXECUTED]
        ):
            if action.state is ActionState.EXECUTED and held_in_a_transaction(self.journal, self.kinds, action):
                resolved.append(self._lost_at_restart(action))
                continue
            if action.state is ActionState.EXECUTED and self._last_note(action) == COMMIT_STARTED:
                faults.point("recovery-action", self._tag_of(action))
                try:
                    resolved.append(self._finish_commit(action))
                except Exception:
                    log.exception("recovery: finishing the commit of %s failed; it stays executed", action.id)
                continue
            if action.state is ActionState.EXECUTED and not action.undo_started:
                continue
            faults.point("recovery-action", self._tag_of(action))
            try:
                resolved.append(self._recover_one(action))
            except GoexError as e:  # a refusal with its reason (e.g. a workspace it may not read): no traceback
                log.warning("recovery of action %s refused: %s; it stays %s", action.id, e, action.state.value)
            except Exception:
                log.exception("recovery of action %s failed; it stays %s", action.id, action.state.value)
        return resolved

    def _last_note(self, action: Action) -> str:
        notes = [note for _, _, _, note in self.journal.transitions(action.id)]
        return notes[-1] if notes else ""

    def _finish_commit(self, action: Action) -> Action:
        """A commit goexd stopped in after journaling its intent: finished, never left pending, because its
        resource may have let go of what an undo needs (the clone strategy drops its copy) and it was asked for."""
        log.warning("recovery: finishing the interrupted commit of %s", action.id)
        manager = self.sessions.live(action.session_id).managers[action.resource]
        manager.commit(action.id, action.checkpoint)  # done again where it was done: each manager's is idempotent
        note = "recovery: finished the commit goexd stopped in"
        self.steps.transition(action, ActionState.COMMITTED, note=note, resolved_at=time.time())
        settling(manager).settle([action.id])
        return self.steps.get(action.id)

    def _lost_at_restart(self, action: Action) -> Action:
        log.warning("recovery: %s was pending in a database transaction that ended with goexd", action.id)
        if self._last_note(action) == COMMIT_STARTED:
            error = (
                "goexd stopped while committing the session's database transaction; whether the database "
                "committed it before that is unknown: check the data"
            )
        else:
            error = (
                "goexd stopped while the action was pending in the session's open database transaction; "
                "the database rolled that transaction back, so its effects are gone"
            )
        self.steps.transition(action, ActionState.INTERRUPTED, error=error, resolved_at=time.time())
        return self.steps.get(action.id)

    def _recover_one(self, action: Action) -> Action:
        if action.state is ActionState.EXECUTED:
            log.warning("recovery: finishing the interrupted undo of %s", action.id)
            live = self.sessions.live(action.session_id)
            # Asked for and begun: a workspace's is finished forced, since a refusal would leave it half undone
            # while the journal says pending; what changed there since (the person's, while goexd was down) is
            # set aside, never dropped.
            three_way = isinstance(live.managers[action.resource], UndoesThreeWay)
            return self.resolver.undo_one(live, action, force=three_way)
        if action.state is ActionState.RUNNING and action.kind is ActionKind.HTTP:  # no service is asked first
            self.steps.transition(
                action,
                ActionState.INTERRUPTED,
                error="goexd stopped during the call; the service may have carried it out (goexd never resends)",
                finished_at=time.time(),
            )
        elif (
            action.state is ActionState.RUNNING
            and not held_in_a_transaction(self.journal, self.kinds, action)  # gone with goexd: nothing to open for
            and self._taken_back(action)
        ):
            log.warning("recovery: rolling back %s to its checkpoint", action.id)
            live = self.sessions.live(action.session_id)
            found = settling(live.managers[action.resource]).resolve_in_doubt(action.id, action.checkpoint)
            if found.resolution is not Resolution.ROLL_BACK:
                return self._settle_in_doubt(action, found)
            self.journal.update(action.id, note="recovery: rolling back to the checkpoint")
            report = live.managers[action.resource].rollback(action.id, action.checkpoint)
            calls = self.calls.undo_calls(live, action, keep_going=True)
            detail = report.detail + (f"; its calls: {calls.detail}" if calls is not None else "")
            self.steps.transition(
                action,
                ActionState.INTERRUPTED,
                error=f"goexd stopped while the action was running; rolled back to its checkpoint ({detail})",
                finished_at=time.time(),
            )
        else:
            dropped = self._drop_unjournaled_copy(action)
            self.steps.transition(
                action,
                ActionState.INTERRUPTED,
                error=f"goexd stopped while the action was {action.state.value}; it had no side effect{dropped}",
                finished_at=time.time(),
            )
        return self.steps.get(action.id)

    def _taken_back(self, action: Action) -> bool:
        """Whether the action's manager says its journaled checkpoint takes it back (recovers_by_rollback)."""
        manager = self.sessions.live(action.session_id).managers.get(action.resource)
        return manager is not None and manager.recovers_by_rollback(action.checkpoint)

    def _drop_unjournaled_copy(self, action: Action) -> str:
        """Before its run was journaled an action's checkpoint may have made a copy (the clone strategies'): gone
        with the action, or it would hold the space (a database on the server) with nothing to name it."""
        if action.state not in (ActionState.PROPOSED, ActionState.PREPARING):
            return ""
        manager = self.sessions.live(action.session_id).managers.get(action.resource)
        if not isinstance(manager, KeepsCopies):
            return ""
        dropped = manager.drop_unjournaled_copy(action.id)
        return f"; {dropped}" if dropped else ""

    def _settle_in_doubt(self, action: Action, found: InDoubt) -> Action:
        """A RUNNING action its resource says it kept whole (pending again) or cannot tell about (said so)."""
        if found.resolution is Resolution.UNKNOWN:
            log.warning("recovery: the outcome of %s is unknown: %s", action.id, found.detail)
            error = f"goexd stopped while the action was running; {found.detail}"
            self.steps.transition(action, ActionState.INTERRUPTED, error=error, finished_at=time.time())
            return self.steps.get(action.id)
        log.warning("recovery: %s had committed before goexd stopped; it is pending again", action.id)
        known = action.reversibility or Reversibility(ReversibilityClass.REVERSIBLE, Verdict.UNTESTED)
        self.steps.transition(
            action,
            ActionState.EXECUTED,
            note=f"recovery: {found.detail}",
            checkpoint=codec.dumps({**action.checkpoint, **found.checkpoint_extra}),
            reversibility=codec.dumps(
                codec.reversibility_to_json(replace(known, detail=f"{known.detail}; recovery: {found.detail}"))
            ),
            finished_at=time.time(),
        )
        return self.steps.get(action.id)

    def _tag_of(self, action: Action) -> str:
        """The fault-point tag of the action's resource, from the journal (recovery has no manager yet)."""
        session = self.journal.get_session(action.session_id)
        found = [r for r in session.resources if r.name == action.resource] if session is not None else []
        return f"{found[0].kind.value}-{found[0].strategy.value}" if found else "unknown-resource"
