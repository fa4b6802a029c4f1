"""Journaling an action's transitions: the only way an action's state changes.

Rules: a step is checked against TRANSITIONS (domain/models.py) before anything is written, the whole way at
once; steps taken together are one commit; an action not yet in the journal is inserted as having come that
way; watchers hear of a new state only once it is durable; a full disk gets one retry after the journal gave up
the state dir's reserve (diskspace.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from goexd.diskspace import OutOfSpace
from goexd.domain.errors import InternalError, NotFound
from goexd.domain.models import TRANSITIONS, Action, ActionState
from goexd.domain.resource import Journaling, ResourceManager
from goexd.engine.core import Part

COMMIT_STARTED = "commit started"  # the note journaled before the managers commit (resolve.py, recovery.py)


def tag(manager: ResourceManager) -> str:
    """The resource's tag for fault points (faults.py): "<kind>-<strategy>"."""
    return f"{manager.resource.kind.value}-{manager.resource.strategy.value}"


@dataclass(frozen=True)
class Step:
    """One transition to journal: the new state, the action's columns written with it, the audit note."""

    state: ActionState
    fields: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Run:
    """A submitted action on its way through the runner: whether the journal has it yet, how its steps are
    journaled."""

    action: Action
    journaling: Journaling
    journaled: bool
    note: str  # the note of its first journal row (an approval)
    detached: bool = False  # its client was answered already: a refusal on the way is only journaled
    approval: str = ""  # the approval it was submitted with, for the policy's second look at an http write


class Steps(Part):
    def advance(self, run: Run, *steps: Step) -> None:
        """Journal `steps` in one commit, with the action itself when the journal has not got it yet.

        Watchers hear of the new states once they are durable.
        """
        state = run.action.state
        for step in steps:  # the whole way is checked before anything is written
            if step.state not in TRANSITIONS[state]:
                raise InternalError(f"illegal transition {state.value} -> {step.state.value} for {run.action.id}")
            state = step.state
        for attempt in (1, 2):
            try:
                self._journal_steps(run, steps)
                break
            except OutOfSpace:
                # A full disk: the journal gave up the space goexd holds back for this (diskspace.py); once more.
                if attempt == 2:
                    raise
        channel = self.channels.get(run.action.id)
        if channel is not None:
            for step in steps:
                channel.state(step.state)

    def _journal_steps(self, run: Run, steps: Sequence[Step]) -> None:
        if run.journaled:
            action = run.action
            with self.journal.batch():
                for step in steps:
                    self.journal.transition(action.id, action.state, step.state, step.note, **step.fields)
                    action = replace(action, state=step.state)
            run.action = action
        else:  # inserted as having come that way: fewer statements than step by step
            fields = {k: v for step in steps for k, v in step.fields.items()}
            trail = [(step.state, step.note) for step in steps]
            run.action, run.journaled = self.journal.insert_action(run.action, run.note, trail, **fields), True

    def mark_lost(self, manager: ResourceManager, why: str) -> None:
        """Say so when a backend threw away pending actions' effects on its own (no state is lost silently)."""
        for lost_id in manager.take_lost():
            lost = self.get(lost_id)
            if lost.state is ActionState.EXECUTED:
                self.transition(lost, ActionState.INTERRUPTED, error=why, resolved_at=time.time())

    def transition(self, action: Action, new: ActionState, note: str = "", **fields: Any) -> None:
        """One step of an action the journal has (commit, undo, recovery, failures): see _advance."""
        self.advance(Run(action, Journaling.EACH_STEP, True, ""), Step(new, fields, note))

    def get(self, action_id: str) -> Action:
        action = self.journal.get_action(action_id)
        if action is None:
            raise NotFound("action", action_id)
        return action
