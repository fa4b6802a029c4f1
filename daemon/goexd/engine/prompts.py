"""Prompt actions: the planner makes the action and its inverse, then they go the way any action goes.

Rules: the planner is told only what the session's resources describe (LLM-safe by the seam's rule), the session's
recent actions as journaled (redacted) and its resources' secret *names*; a plan is checked by the resource it is
for (precheck, check_inverse) while the model may still be asked again; what it planned is then submitted through
the runner like a client's action (policy, reversibility test of its inverse, journal, undo), with the exchange
recorded on the action in the same commit; no plan (the endpoint failed, no usable answer) is an action journaled
FAILED with the exchange, the last answer included, never an internal error.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from goexd.domain.errors import GoexError, InvalidArgument
from goexd.domain.models import (
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    Resource,
    ResourceKind,
    Reversibility,
    UndoStrategy,
    Verdict,
)
from goexd.domain.models import ReversibilityClass as Class
from goexd.domain.plans import PlanExchange, PromptRequest
from goexd.domain.resource import Journaling
from goexd.engine.action_refs import new_id
from goexd.engine.core import Core, Part
from goexd.engine.facts import facts
from goexd.engine.live import LiveSession
from goexd.engine.runner import Runner
from goexd.engine.sessions import Sessions
from goexd.engine.steps import Run, Step, Steps
from goexd.engine.trials import Trials
from goexd.planner.answers import Plan
from goexd.planner.context import Described
from goexd.planner.functions import kinds_needed
from goexd.planner.planner import Context, Planner, PlanningFailed
from goexd.planner.schemas import target_of
from goexd.policy.model import Decision

log = logging.getLogger("goexd.engine")

INVERSE = UndoStrategy.INVERSE
RECENT_ACTIONS = 5  # of the session's, told to the model
_RECENT_CHARS = 200


@dataclass(frozen=True)
class Review:
    """A plan for review (PlanAction): what would run, what the policy says of it and its inverse's test."""

    plan: Plan
    exchange: PlanExchange
    decision: Decision
    reversibility: Reversibility


def prompt_request(spec: ActionSpec) -> PromptRequest:
    return PromptRequest(str(spec.extra.get("prompt", "")), str(spec.extra.get("functions", "")), spec.resource)


class Prompts(Part):
    def __init__(
        self, core: Core, sessions: Sessions, steps: Steps, runner: Runner, trials: Trials, planner: Planner
    ) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.steps = steps
        self.runner = runner
        self.trials = trials
        self.planner = planner

    def submit(
        self,
        session_id: str,
        spec: ActionSpec,
        detach: bool = False,
        approval: str = "",
        caller_gone: threading.Event | None = None,
        cancel_when_unwatched: bool = False,
    ) -> Action:
        """Plan `spec` (a prompt), then submit the plan as any action is; a planning that failed is journaled."""
        self.life.refuse_if_stopping()
        request = prompt_request(spec)
        live = self.sessions.live(session_id)
        try:
            plan, exchange = self._plan(live, request, caller_gone)
        except PlanningFailed as failed:
            return self._failed(live, spec, failed)
        forward = plan.forward if not spec.description else _described(plan.forward, spec.description)
        return self.runner.submit(
            session_id,
            _with_limits(forward, spec),
            plan.inverse,
            detach,
            approval,
            caller_gone,
            cancel_when_unwatched,
            plan=exchange,
        )

    def review(self, session_id: str, spec: ActionSpec) -> Review:
        """Plan only: the plan, the policy's answer on it and the test of its pair where nothing stays."""
        live = self.sessions.live(session_id)
        try:
            plan, exchange = self._plan(live, prompt_request(spec), None)
        except PlanningFailed as failed:
            log.info("plan-only prompt in session %s failed: %s", session_id, failed)
            raise failed.cause or failed from None
        prompt_tokens, answer_tokens = exchange.tokens
        log.info(  # not journaled (nothing happened to a resource): the caller has the exchange, the log a line
            "plan-only prompt in session %s: %s by %s, %d answer(s), %d+%d tokens, %.1f s",
            session_id,
            plan.description or plan.function or plan.forward.kind.value,
            exchange.model,
            len(exchange.attempts),
            prompt_tokens,
            answer_tokens,
            exchange.latency_s,
        )
        forward = _with_limits(plan.forward, spec)
        resource = _resource(live, plan.resource)
        manager = live.managers[resource.name]
        decision = live.policy.check(facts(resource, manager, forward, plan.inverse), count=False)
        if not decision.allowed:
            tested = Reversibility(Class.BEST_EFFORT, Verdict.UNKNOWN, f"not tried: the policy says {decision.reason}")
        elif plan.inverse is None and resource.kind is not ResourceKind.HTTP and resource.strategy is not INVERSE:
            # Undone by the resource itself (snapshots, a savepoint, a copy): no pair to try, as for a submit.
            tested = Reversibility(Class.REVERSIBLE, Verdict.UNTESTED, manager.undo_note)
        else:
            try:
                tested = self.trials.test(session_id, forward, plan.inverse)
            except GoexError as exc:  # a strategy without such a test, a resource that cannot try it now
                tested = Reversibility(Class.BEST_EFFORT, Verdict.UNKNOWN, f"not tried: {exc}")
        return Review(plan, exchange, decision, tested)

    def _plan(
        self, live: LiveSession, request: PromptRequest, cancel: threading.Event | None
    ) -> tuple[Plan, PlanExchange]:
        session = live.session
        chosen = [r for r in session.resources if not request.resource or r.name == request.resource]
        if request.resource and not chosen:
            raise InvalidArgument("spec.resource", f"session has no resource named {request.resource!r}")
        if request.functions:  # functions mode: the model sees the set and the resources its functions run on
            needed = kinds_needed(self.planner.function_sets.get(request.functions, "spec.prompt.functions"))
            kinds = {"http": ResourceKind.HTTP, "python": ResourceKind.FS}
            for kind in sorted(needed):  # refused before the model is asked
                fitting = [r.name for r in chosen if r.kind is kinds[kind]]
                if len(fitting) != 1:
                    where = "one http resource" if kind == "http" else "one workspace"
                    named = ", ".join(fitting) or "none in this session"
                    why = f"a function set's {kind} functions need {where}: name it ({named})"
                    raise InvalidArgument("spec.resource", why)
            chosen = [r for r in chosen if r.kind in {kinds[k] for k in needed}]
        with live.lock:  # a database manager's connection is not shared with a running action
            described = [
                Described(r.name, f"{r.kind.value}; {live.managers[r.name].undo_note}", _describe(live, r))
                for r in chosen
            ]
        context = Context(
            targets=[target_of(r) for r in chosen] if not request.functions else [],
            described=described,
            recent=self._recent(session.id),
            secret_names=sorted({r.secret for r in chosen if r.secret}),
            http_resources=[r.name for r in chosen if r.kind is ResourceKind.HTTP],
            fs_resources=[r.name for r in chosen if r.kind is ResourceKind.FS],
        )

        def check(plan: Plan) -> None:
            manager = live.managers[plan.resource]
            manager.precheck(plan.forward)
            manager.check_inverse(plan.forward, plan.inverse)

        return self.planner.plan(request, context, check, cancel)

    def _recent(self, session_id: str) -> list[str]:
        newest = self.journal.list_actions(session_id, after_seq=self._last_seq(session_id) - RECENT_ACTIONS)
        return [self.redact_text(_summary(a))[:_RECENT_CHARS] for a in newest]

    def _last_seq(self, session_id: str) -> int:
        return self.sessions.get(session_id).total_actions

    def _failed(self, live: LiveSession, spec: ActionSpec, failed: PlanningFailed) -> Action:
        """No plan: the prompt is journaled as an action that FAILED, with the exchange (the last answer too)."""
        resource = spec.resource or (live.session.resources[0].name if live.session.resources else "")
        action = Action(
            id=new_id("act"),
            session_id=live.session.id,
            seq=0,
            spec=spec,
            state=ActionState.PROPOSED,
            resource=resource,
            created_at=time.time(),
            plan=failed.exchange,
        )
        run = Run(action, Journaling.EACH_STEP, False, "")
        why = self.redact_text(f"no plan: {failed}; nothing ran")
        self.steps.advance(run, Step(ActionState.FAILED, {"error": why, "finished_at": time.time()}))
        return self.steps.get(action.id)


def _resource(live: LiveSession, name: str) -> Resource:
    return next(r for r in live.session.resources if r.name == name)


def _describe(live: LiveSession, r: Resource) -> str:
    try:
        return live.managers[r.name].describe(samples=True)
    except Exception as exc:  # what cannot be described is said so; the prompt may still be planned
        log.warning("describing resource %r for the planner failed: %s", r.name, exc)
        return f"(could not be described: {type(exc).__name__})"


def _with_limits(planned: ActionSpec, asked: ActionSpec) -> ActionSpec:
    """The limits the prompt asked for hold for what it became."""
    return replace(planned, limits=asked.limits)


def _described(planned: ActionSpec, description: str) -> ActionSpec:
    return replace(planned, description=description)


def _summary(a: Action) -> str:
    spec = a.spec
    what: Any
    if spec.kind is ActionKind.SHELL:
        what = shlex.join(spec.argv)
    elif spec.kind is ActionKind.PYTHON:
        what = spec.code
    elif spec.kind is ActionKind.SQL:
        what = spec.sql
    elif spec.kind is ActionKind.HTTP and spec.http is not None:
        what = f"{spec.http.method} {spec.http.path}"
    else:
        what = spec.extra.get("prompt", "")
    text = " ".join(str(what).split())
    return f"#{a.seq} {spec.kind.value} on {a.resource} ({a.state.value}): {text}"
