"""The action runner: an action from its submit to its end state, one step journaled at a time.

Rules: every transition is committed to the journal before the side effect it announces (the checkpoint with the
step to RUNNING, one commit); actions of one session run one at a time (its lock), sessions in parallel; what
the policy refuses is recorded BLOCKED and never runs; an inverse that failed its test blocks the action (or,
where [fs] failed_inverse allows, flags it); an action that fails or is stopped part way is rolled back to its
checkpoint, its http calls undone, before it is journaled FAILED or INTERRUPTED."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from goexd import faults
from goexd.diskspace import OutOfSpace, is_out_of_space, out_of_space
from goexd.domain import codec
from goexd.domain.errors import (
    FailedPrecondition,
    GoexError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from goexd.domain.models import (
    ACTIVE_STATES,
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    Reversibility,
    ReversibilityClass,
    Timings,
    Verdict,
)
from goexd.domain.plans import PlanExchange
from goexd.domain.resource import (
    READ_CHECKPOINT,
    Checkpoint,
    FallsBackToSnapshots,
    Journaling,
    ResolvesReadsAtOnce,
    SandboxNetwork,
)
from goexd.domain.sandbox import ExecResult, ProxyEndpoint, Stream, Termination
from goexd.domain.snapshots import ChangeSet
from goexd.engine import egress as egress_plan
from goexd.engine.action_refs import new_id
from goexd.engine.core import Core, Part
from goexd.engine.egress import EgressRoute
from goexd.engine.facts import check_limits, facts, pick_resource
from goexd.engine.http_calls import HttpCalls, check_egress_resources, with_calls
from goexd.engine.live import LiveSession, SessionClosed
from goexd.engine.sessions import Sessions
from goexd.engine.steps import Run, Step, Steps, tag
from goexd.engine.verdict_memory import remembered
from goexd.policy.check import MAX_APPROVAL_CHARS
from goexd.policy.model import Decision, DecisionKind
from goexd.resources.http.resource import HttpResource

log = logging.getLogger("goexd.engine")

# Terminations after which the action is stopped midway: its partial effects are rolled back.
_ROLLBACK_ON = frozenset(
    {
        Termination.TIMEOUT,
        Termination.OOM,
        Termination.PIDS_LIMIT,
        Termination.CANCELLED,
        Termination.SPAWN_FAILED,
    }
)
# A prompt is planned first (engine/prompts.py), and what it became comes here: the runner never runs one itself.
_NOT_BUILT = {
    ActionKind.PROMPT: "a prompt action is planned before it runs (Engine.submit): it has no runner of its own",
}
_RESOLVED_AT_ONCE = "read-only: nothing to undo or accept; resolved at once"


class Runner(Part):
    """Submits and runs actions."""

    def __init__(self, core: Core, sessions: Sessions, steps: Steps, calls: HttpCalls) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.steps = steps
        self.calls = calls
        self.workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="goexd-action")

    def submit(
        self,
        session_id: str,
        spec: ActionSpec,
        inverse: ActionSpec | None = None,
        detach: bool = False,
        approval: str = "",
        caller_gone: threading.Event | None = None,
        cancel_when_unwatched: bool = False,
        plan: PlanExchange | None = None,
    ) -> Action:
        """`caller_gone` (a blocking submit): set when its caller went away, which cancels the action.
        `cancel_when_unwatched` (detached): cancelled once no watch follows it (see Watchers).
        `plan`: the planner's exchange that made `spec` and `inverse` (a prompt), journaled with the action."""
        self.life.refuse_if_stopping()
        if spec.kind in _NOT_BUILT:
            raise Unimplemented(_NOT_BUILT[spec.kind])
        if len(approval) > MAX_APPROVAL_CHARS:
            raise InvalidArgument("approval", f"at most {MAX_APPROVAL_CHARS} characters")
        check_limits(self.cfg.sandbox, "spec.limits", spec.limits)
        if spec.egress is not None and self.egress is None:
            raise Unavailable("spec.egress: this goexd runs without its egress proxy")
        live = self.sessions.live(session_id)
        if spec.egress is not None:
            egress_plan.check(spec.egress, spec.kind, self.vault)
        resource = pick_resource(live.session, spec)
        manager = live.managers[resource.name]
        if spec.egress is not None:
            check_egress_resources(live.session, spec.egress.resources)
        # The policy first: a statement it refuses is refused as such, whatever else is wrong with it. But an
        # http request is checked before: its facts need a request that stays within the base URL.
        checked_first = spec.kind is ActionKind.HTTP
        if checked_first:
            manager.precheck(spec)
        in_connection = self.kinds.traits(resource).pending_in_connection
        decision = live.policy.check(facts(resource, manager, spec, inverse, in_connection=in_connection), approval)
        if decision.allowed:
            if not checked_first:
                manager.precheck(spec)
            manager.check_inverse(spec, inverse)
        action = Action(
            id=new_id("act"),
            session_id=session_id,
            seq=0,
            spec=spec,
            inverse=inverse,
            state=ActionState.PROPOSED,
            resource=resource.name,
            created_at=time.time(),
            # Code that calls http resources carries its approval to each call the policy holds for one.
            # So does a workspace action of the inverse strategy, for a failed test ([fs] failed_inverse).
            approval=decision.approval
            or (
                approval.strip()
                if (spec.egress and spec.egress.resources) or isinstance(manager, FallsBackToSnapshots)
                else ""
            ),
            plan=plan,
        )
        if not decision.allowed:
            self._block(action, decision)
        if self.kinds.traits(
            resource
        ).copies_into_state_dir:  # refused before anything is recorded: the reserve is for rolling back
            self.space.require(f"an action on resource {resource.name!r}")
        run = Run(
            action,
            manager.journaling(spec),
            False,
            f"approved: {decision.approval}" if decision.approval else "",
            detach,
            approval.strip(),
        )
        self.channels.create(action.id).state(ActionState.PROPOSED)
        self.life.cancels[action.id] = caller_gone if caller_gone is not None and not detach else threading.Event()
        # A detached action is journaled at once: its id is answered now, and must be found. An action whose
        # preparation leaves no trace is journaled together with its way to RUNNING (or its end): fewer commits.
        if detach or run.journaling is Journaling.EACH_STEP:
            try:
                run.action, run.journaled = self.journal.insert_action(action, note=run.note), True
            except Exception:
                self.life.cancels.pop(action.id, None)
                self.channels.close(action.id)
                raise
        if detach:
            proposed = run.action  # taken first: the worker moves run.action on as soon as it starts
            if cancel_when_unwatched:
                self.watchers.cancel_when_unwatched(action.id)
            self.workers.submit(self._run_guarded, live, run)
            return proposed
        return self._run(live, run)

    def _block(self, action: Action, decision: Decision) -> None:
        """Record a refused action as BLOCKED (it never runs), then refuse the request with the rule and reason."""
        why = f"{decision.reason} [policy rule {decision.rule}]"
        if decision.kind is DecisionKind.NEEDS_APPROVAL:
            why += '; submit it again with an explicit approval (goex: --approve "who: why") to run it'
        action = self.journal.insert_action(action)
        self.steps.transition(action, ActionState.BLOCKED, error=self.redact_text(why), finished_at=time.time())
        message = f"{why} (recorded as blocked action {action.id})"
        if decision.retry_after_s is not None:
            raise ResourceExhausted(message)
        raise PermissionDenied(message)

    def cancel(self, action_id: str) -> Action:
        action = self.steps.get(action_id)
        event = self.life.cancels.get(action_id)
        if event is None or action.state not in ACTIVE_STATES:
            raise FailedPrecondition(f"action {action_id} is not running (it is {action.state.value})")
        event.set()
        return action

    def _run_guarded(self, live: LiveSession, run: Run) -> None:
        try:
            self._run(live, run)
        except Exception:
            log.exception("detached action %s failed", run.action.id)

    def _run(self, live: LiveSession, run: Run) -> Action:
        cancel = self.life.cancels[run.action.id]
        try:
            with live.lock:
                return self._run_locked(live, run, cancel)
        except SessionClosed:
            self.steps.advance(run, Step(ActionState.FAILED, {"error": "the session was closed before it started"}))
            return self.steps.get(run.action.id)
        finally:
            self.life.cancels.pop(run.action.id, None)
            self.channels.close(run.action.id)
            self.watchers.forget(run.action.id)
            self.leases.touch(live.session.id)  # its lease counts from the end of its last action

    @staticmethod
    def _failed_inverse(live: LiveSession, action: Action, tested: Reversibility) -> tuple[Reversibility | None, str]:
        """A workspace action whose inverse failed its test: its flagged record where the policy lets it run ([fs]
        failed_inverse; its undo then restores snapshots, never that inverse), else None and why it is refused."""
        decision = live.policy.failed_inverse(action.approval)
        if not decision.allowed:
            again = "; submit it again with an explicit approval to run it flagged"
            needs = decision.kind is DecisionKind.NEEDS_APPROVAL
            return None, f"; {decision.reason} [policy rule {decision.rule}]{again if needs else ''}"
        approved = f"; approved: {decision.approval}" if decision.approval else ""
        detail = (
            f"flagged: its inverse failed the reversibility test ({tested.detail}); it ran as the policy allows "
            f"([fs] failed_inverse{approved}); its undo restores the workspace's snapshots (three-way), not that "
            "inverse"
        )
        return Reversibility(ReversibilityClass.REVERSIBLE, Verdict.FAILED, detail), ""

    def _run_locked(self, live: LiveSession, run: Run, cancel: threading.Event) -> Action:
        action = run.action
        manager = live.managers[action.resource]
        started = time.monotonic()
        if self.life.stopping.is_set():
            self.steps.advance(run, Step(ActionState.INTERRUPTED, {"error": "goexd stopped before the action started"}))
            return self.steps.get(action.id)
        if cancel.is_set():
            self.steps.advance(run, Step(ActionState.FAILED, {"error": "cancelled before it started; nothing ran"}))
            return self.steps.get(action.id)
        limits = live.policy.limits(action.spec.limits, live.session.limits)
        # A database read resolved at once: no test and no checkpoint, there is nothing to undo (sql_reads.py).
        reads = run.journaling is Journaling.AFTER_RUN and isinstance(manager, ResolvesReadsAtOnce)
        try:
            tested = (
                None
                if reads
                else remembered(
                    self.verdicts,
                    manager.resource,
                    manager,
                    action.spec,
                    action.inverse,
                    f"the test before action {action.id}",
                    lambda: manager.test(action.spec, action.inverse, limits, cancel),
                )
            )
        except GoexError as exc:
            self.steps.advance(run, Step(ActionState.FAILED, {"error": self.redact_text(f"{exc}; nothing ran")}))
            return self.steps.get(action.id)
        flagged: Reversibility | None = None
        refusal = ""
        if tested is not None and tested.verdict is Verdict.FAILED and isinstance(manager, FallsBackToSnapshots):
            flagged, refusal = self._failed_inverse(live, action, tested)
            tested = flagged or tested
        if tested is not None and tested.verdict is Verdict.FAILED and flagged is None:
            # Its undo is known not to work: it does not run (no side effect), and the test says why.
            blocked = {
                "error": self.redact_text(f"its inverse failed the reversibility test: {tested.detail}{refusal}"),
                "reversibility": codec.dumps(codec.reversibility_to_json(replace(tested, tested_at=time.time()))),
                "finished_at": time.time(),
            }
            self.steps.advance(run, Step(ActionState.BLOCKED, blocked))
            return self.steps.get(action.id)
        looked = ""
        if isinstance(manager, HttpResource) and action.spec.kind is ActionKind.HTTP:
            second = self.calls.second_look(live, run, manager, limits)
            if second is None:
                return self.steps.get(action.id)
            looked = second
        if run.journaling is Journaling.EACH_STEP:
            self.steps.advance(run, Step(ActionState.PREPARING))
        try:
            checkpoint = (
                READ_CHECKPOINT
                if reads
                else manager.checkpoint(action.id, None if flagged is not None else action.inverse)
            )
        except Exception as exc:
            if is_out_of_space(exc):
                self.space.release()  # room to journal the failure
                if not isinstance(exc, GoexError):
                    exc = out_of_space(f"checkpointing resource {action.resource!r}", [self.cfg.state_dir])
            if isinstance(exc, GoexError):  # refused (e.g. what goexd cannot snapshot): said in the action's error
                log.warning("checkpoint of %s refused: %s", action.id, exc)
            else:
                log.exception("checkpoint of %s failed", action.id)
            failed = {
                "error": self.redact_text(f"could not checkpoint the resource: {exc}"),
                "finished_at": time.time(),
            }
            owed = [] if run.action.state is ActionState.PREPARING else [Step(ActionState.PREPARING)]
            self.steps.advance(run, *owed, Step(ActionState.FAILED, failed))
            self.steps.mark_lost(manager, f"the database connection was lost before action {action.id}: {exc}")
            return self.steps.get(action.id)
        faults.point("checkpoint-made", tag(manager))
        # The checkpoint is journaled with the transition that announces the run: one commit, before it runs;
        # the test's verdict too, for a restart that finds the action kept by a resource that commits at once.
        announced: dict[str, Any] = {"checkpoint": codec.dumps(checkpoint)}
        if tested is not None:  # a reused verdict keeps the time of its real test
            tested = replace(tested, tested_at=tested.tested_at or time.time())
            announced["reversibility"] = codec.dumps(codec.reversibility_to_json(tested))
        run_step = Step(ActionState.RUNNING, announced, looked)
        prepared_already = run.action.state is ActionState.PREPARING
        to_running = [run_step] if prepared_already else [Step(ActionState.PREPARING), run_step]
        if run.journaling is not Journaling.AFTER_RUN:
            self.steps.advance(run, *to_running)
            to_running.clear()
            faults.point("run-journaled", tag(manager))
        # else: it changes nothing, so there is nothing to announce before it runs; all of it is journaled at its end.

        def journaled_running() -> Action:
            """The action as RUNNING in the journal (an AFTER_RUN action that failed is journaled up to RUNNING)."""
            if to_running:
                self.steps.advance(run, *to_running)
                to_running.clear()
            return replace(run.action, checkpoint=checkpoint)

        prepared = time.monotonic()
        channel = self.channels.get(action.id)
        # One stream redactor per stream: a value split across two chunks is still caught.
        redactors = {s: self.vault.redactor.stream() for s in Stream}

        def on_output(stream: Stream, data: bytes) -> None:
            if channel is not None:
                channel.output(stream, redactors[stream].feed(data))

        route: EgressRoute | None = None
        try:
            try:
                network = None
                if action.spec.egress is not None and self.egress is not None:
                    gates = self.calls.gates(live, action, limits.timeout_s)
                    route = self.egress.open_route(egress_plan.grant(action.id, action.spec.egress, gates))
                    network = SandboxNetwork(
                        ProxyEndpoint(route.socket_path, self.egress.ca_path),
                        egress_plan.sandbox_env(action.spec.egress, self.vault),
                    )
                outcome = manager.execute(action.spec, limits, checkpoint, on_output, cancel, network)
                faults.point("run-returned", tag(manager))
            finally:
                for stream, redactor in redactors.items():
                    if channel is not None and (rest := redactor.flush()):
                        channel.output(stream, rest)
                if route is not None:
                    route.close()
                    records = route.records()
                    journaled_running()
                    self.journal.update(action.id, egress=codec.dumps(codec.egress_to_json(records)))
        except GoexError as exc:
            if isinstance(exc, OutOfSpace):
                self.space.release()  # room to journal the failure and roll back
            return self._fail_and_rollback(live, journaled_running(), checkpoint, str(exc), None, None, started)
        except Exception as exc:
            if is_out_of_space(exc):
                self.space.release()
                why = str(out_of_space(f"running action {action.id}", [self.cfg.state_dir]))
                return self._fail_and_rollback(live, journaled_running(), checkpoint, why, None, None, started)
            log.exception("action %s crashed in its resource manager", action.id)
            return self._fail_and_rollback(
                live, journaled_running(), checkpoint, f"internal error while running: {exc}", None, None, started
            )
        ran = time.monotonic()
        checkpoint = {**checkpoint, **outcome.checkpoint_extra}
        result = outcome.exec
        if result is not None:
            result = replace(
                result,
                stdout=self.redact(result.stdout, truncated=result.stdout_truncated),
                stderr=self.redact(result.stderr, truncated=result.stderr_truncated),
            )
        if result is not None and result.termination in _ROLLBACK_ON:
            reason = result.detail or f"stopped: {result.termination.value}"
            return self._fail_and_rollback(
                live,
                journaled_running(),
                checkpoint,
                reason,
                result,
                outcome.changes,
                started,
                interrupted=self.life.stopping.is_set() and result.termination is Termination.CANCELLED,
            )
        # The response, and the inverse derived from it, are written with the transition to EXECUTED: one
        # commit instead of three (a refused call's response is written before its rollback).
        recorded: dict[str, Any] = {}
        if outcome.http is not None:
            recorded["http"] = codec.dumps(codec.http_result_to_json(outcome.http))
        if outcome.failure is not None:
            running = journaled_running()
            if recorded:
                self.journal.update(action.id, **recorded)
            return self._fail_and_rollback(live, running, checkpoint, outcome.failure, result, None, started)
        if outcome.inverse is not None:
            recorded["inverse"] = codec.dumps(codec.spec_to_json(outcome.inverse))
        if tested is not None and outcome.reversibility is not None:
            # The class the resource found once it ran (an http answer), with the verdict of the test before it.
            found = outcome.reversibility
            tested = replace(found, verdict=tested.verdict, detail=f"{found.detail}; tried first: {tested.detail}")
        reversibility = (
            replace(tested, tested_at=tested.tested_at or time.time())
            if tested is not None
            else outcome.reversibility
            or with_calls(
                Reversibility(ReversibilityClass.REVERSIBLE, Verdict.UNTESTED, manager.undo_note),
                route.records() if route is not None else [],
            )
        )
        now = time.monotonic()
        executed = {
            "exec": codec.dumps(codec.exec_to_json(result)) if result else None,
            "changes": codec.dumps(codec.changes_to_json(outcome.changes)) if outcome.changes else None,
            "sql": codec.dumps(codec.sql_to_json(outcome.sql)) if outcome.sql else None,
            "checkpoint": codec.dumps(checkpoint),
            "reversibility": codec.dumps(codec.reversibility_to_json(reversibility)),
            "timings": codec.dumps(
                codec.timings_to_json(
                    Timings(
                        prepare_s=prepared - started,
                        run_s=result.duration_s if result else ran - prepared - outcome.capture_s,
                        capture_s=outcome.capture_s,
                        total_s=now - started,
                    )
                )
            ),
            "finished_at": time.time(),
            **recorded,
        }
        steps = [*to_running, Step(ActionState.EXECUTED, executed)]
        if run.journaling is Journaling.AFTER_RUN:  # it changed nothing: no one need accept or undo it
            steps.append(Step(ActionState.COMMITTED, {"resolved_at": time.time()}, _RESOLVED_AT_ONCE))
        self.steps.advance(run, *steps)
        return self.steps.get(action.id)

    def _fail_and_rollback(
        self,
        live: LiveSession,
        action: Action,
        checkpoint: Checkpoint,
        reason: str,
        result: ExecResult | None,
        changes: ChangeSet | None,
        started: float,
        interrupted: bool = False,
    ) -> Action:
        manager = live.managers[action.resource]
        try:
            self.journal.update(action.id, note=f"rolling back: {reason}")
        except OutOfSpace as exc:  # only a note: the rollback must not wait for it (it may free the space)
            log.warning("action %s: %s", action.id, exc)
        detail = ""
        try:
            report = manager.rollback(action.id, checkpoint)
            detail = f"; rolled back ({report.detail})"
        except Exception as exc:
            if is_out_of_space(exc):
                self.space.release()
                log.warning("rollback of %s failed: %s", action.id, exc)
            else:
                log.exception("rollback of %s failed", action.id)
            detail = f"; ROLLBACK FAILED: {exc}"
        calls = self.calls.undo_calls(live, self.steps.get(action.id), keep_going=True)
        if calls is not None:
            detail += f"; its calls: {calls.detail}"
        final = ActionState.INTERRUPTED if interrupted else ActionState.FAILED
        self.steps.transition(
            action,
            final,
            error=self.redact_text(reason + detail),
            exec=codec.dumps(codec.exec_to_json(result)) if result is not None else None,
            changes=codec.dumps(codec.changes_to_json(changes)) if changes is not None else None,
            timings=codec.dumps(codec.timings_to_json(Timings(total_s=time.monotonic() - started))),
            finished_at=time.time(),
        )
        self.steps.mark_lost(manager, f"the database discarded its open transaction when action {action.id} failed")
        return self.steps.get(action.id)
