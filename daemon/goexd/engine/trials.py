"""TestReversibility and the verdicts kept for an (action, inverse) pair (engine/verdict_memory.py).

Rules: a pair is tried where nothing stays (a rolled-back transaction, a clone, an overlay of the workspace, an
http resource's staging copy: never the service itself); it is held to the policy as a submit is before
anything runs; a verdict is remembered for the pair on the same state and reused only there."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from goexd.domain.errors import (
    FailedPrecondition,
    InternalError,
    PermissionDenied,
    Unimplemented,
)
from goexd.domain.models import (
    ActionSpec,
    Reversibility,
    UndoStrategy,
)
from goexd.domain.resource import (
    ResourceManager,
    TriesPairsAside,
)
from goexd.engine import sql_policy
from goexd.engine.core import Core, Part
from goexd.engine.facts import check_limits, facts, pick_resource
from goexd.engine.sessions import Sessions
from goexd.engine.steps import Steps
from goexd.engine.verdict_memory import Judgement, PairHistory, pair_key, remembered
from goexd.policy.model import DecisionKind
from goexd.resources.http.resource import HttpResource
from goexd.resources.http.trial import test_http

log = logging.getLogger("goexd.engine")


class Trials(Part):
    """Reversibility tests on request, and people's judgements of pairs."""

    def __init__(self, core: Core, sessions: Sessions, steps: Steps) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.steps = steps

    def test(self, session_id: str, spec: ActionSpec, inverse: ActionSpec | None) -> Reversibility:
        """Run the action and its inverse where nothing stays (a rolled-back transaction or a clone)."""
        live = self.sessions.live(session_id)
        resource = pick_resource(live.session, spec)
        manager = live.managers[resource.name]
        if not isinstance(manager, HttpResource):  # held to the policy as a submit is, before anything runs
            check_limits(self.cfg.sandbox, "spec.limits", spec.limits)
            told = facts(resource, manager, spec, inverse, trial=True)
            sql_policy.refuse_test(live.policy.check(told, count=False))
        manager.precheck(spec)
        if isinstance(manager, TriesPairsAside):  # whatever its strategy: a workspace's, on an overlay of it
            limits = live.policy.limits(spec.limits, live.session.limits)
            aside = manager
            with live.lock:
                return self._remembered_test(
                    manager, spec, inverse, lambda: aside.try_pair_aside(spec, inverse, limits)
                )
        if isinstance(manager, HttpResource):  # never tried on the service itself; on its staging copy if named
            manager.check_inverse(spec, inverse)
            if manager.staging is not None:  # what the policy refuses outright is not sent to the staging copy either
                decision = live.policy.check(
                    facts(resource, manager, spec, inverse), count=False
                )  # http: no connection
                if decision.kind is DecisionKind.DENY:
                    raise PermissionDenied(f"{decision.reason} [policy rule {decision.rule}]; not tried on staging")
            limits = live.policy.limits(spec.limits, live.session.limits)

            def tried_on_staging() -> Reversibility:
                verdict = test_http(manager, spec, inverse, limits.timeout_s)
                return replace(verdict, detail=self.redact_text(verdict.detail))

            with live.lock:
                return self._remembered_test(manager, spec, inverse, tried_on_staging)
        if resource.strategy is not UndoStrategy.INVERSE:
            raise Unimplemented(
                f"reversibility tests are built for the inverse strategy; resource {resource.name!r} uses "
                f"{resource.strategy.value}, whose undo is verified on every undo"
            )
        limits = live.policy.limits(spec.limits, live.session.limits)
        with live.lock:
            return self._remembered_test(manager, spec, inverse, lambda: manager.test(spec, inverse, limits, None))

    def _remembered_test(
        self,
        manager: ResourceManager,
        spec: ActionSpec,
        inverse: ActionSpec | None,
        test: Callable[[], Reversibility | None],
    ) -> Reversibility:
        """TestReversibility's verdict: remembered for the pair on the same state, or tested now (verdict_memory.py)."""

        def fresh() -> Reversibility:
            tested = test()
            assert tested is not None  # the inverse strategy, a workspace and an http resource always answer
            return replace(tested, tested_at=time.time())

        found = remembered(self.verdicts, manager.resource, manager, spec, inverse, "TestReversibility", fresh)
        assert found is not None
        return found

    def judge_pair(self, action_id: str, judgement: Judgement, who: str, note: str) -> PairHistory:
        """A person's judgement of an action's (forward, inverse) pair, kept with the pair (verdict_memory.py)."""
        key = self._pair_key(action_id)
        self.verdicts.judge(key, judgement, who, note, action_id)
        return self.verdicts.history(key)

    def pair_history(self, action_id: str) -> PairHistory:
        """The verdicts and judgements kept for an action's pair (its session may be closed)."""
        return self.verdicts.history(self._pair_key(action_id))

    def _pair_key(self, action_id: str) -> str:
        action = self.steps.get(action_id)
        if action.inverse is None:
            raise FailedPrecondition(f"action {action_id} has no inverse: its undo needs none, so there is no pair")
        found = [r for r in self.sessions.get(action.session_id).resources if r.name == action.resource]
        if not found:
            raise InternalError(f"action {action_id} names resource {action.resource!r}, not in its session")
        return pair_key(found[0], action.spec, action.inverse)
