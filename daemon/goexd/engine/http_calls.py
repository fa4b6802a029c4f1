"""Egress routing and http gates: the http resources a code action may call through the egress proxy, the
pre-image and second policy look before an http write, and undoing the calls an action made.

Rules: a code action reaches only the http resources it named, each through a gate that holds every call to the
session's policy and records it (CallJournal) before it is answered; an undone call is journaled at once, so a
retry never sends an inverse twice; an http write's pre-image is read before the call is announced and the
policy asked again when it shows the call less reversible than first decided (http_gate.second_look).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from goexd.domain import codec
from goexd.domain.egress import EgressRecordData
from goexd.domain.errors import GoexError, InvalidArgument, PermissionDenied
from goexd.domain.models import Action, ActionState, ResourceKind, Reversibility, ReversibilityClass, Session, Verdict
from goexd.domain.resource import RollbackReport
from goexd.domain.sandbox import Limits
from goexd.engine.core import Core, Part
from goexd.engine.facts import facts
from goexd.engine.http_gate import CallJournal, ResourceGate, second_look, settled_calls, undo_call
from goexd.engine.live import LiveSession
from goexd.engine.steps import Run, Step, Steps
from goexd.policy.model import DecisionKind
from goexd.resources.http.resource import HttpResource


def touched(action: Action) -> set[str]:
    """The resources an action changed: its own, and the http resources its code called."""
    return {action.resource} | {c.resource for i in settled_calls(action.egress) if (c := action.egress[i].call)}


def with_calls(base: Reversibility, records: Sequence[EgressRecordData]) -> Reversibility:
    """A code action's class with its calls to http resources: the least reversible of them all."""
    calls = [(records[i], records[i].call) for i in settled_calls(records)]
    if not calls:
        return base
    classes = {c.reversibility for _, c in calls if c is not None}
    cls = base.reversibility_class
    for worse in (ReversibilityClass.BEST_EFFORT, ReversibilityClass.IRREVERSIBLE):
        if worse.value in classes:
            cls = worse
    listing = "; ".join(f"{r.method} {r.url}: {c.note}" for r, c in calls if c is not None)
    return Reversibility(cls, base.verdict, f"{base.detail}; and {len(calls)} call(s) to http resources: {listing}")


def check_egress_resources(session: Session, names: Sequence[str]) -> None:
    http = {r.name for r in session.resources if r.kind is ResourceKind.HTTP}
    for i, name in enumerate(names):
        if name not in http:
            known = ", ".join(sorted(http)) or "none"
            raise InvalidArgument(
                f"spec.egress.resources[{i}]",
                f"the session has no http resource named {name!r} (its http resources: {known})",
            )


class HttpCalls(Part):
    """The http side of actions: gates for code, undo of calls, the second look before a write."""

    def __init__(self, core: Core, steps: Steps) -> None:
        super().__init__(core)
        self.steps = steps

    def gates(self, live: LiveSession, action: Action, timeout_s: float) -> list[ResourceGate]:
        """The http resources a code action named, opened to it through its egress route."""
        assert action.spec.egress is not None
        if not action.spec.egress.resources:
            return []
        calls = CallJournal(
            lambda records: self.journal.update(action.id, egress=codec.dumps(codec.egress_to_json(records)))
        )
        by_name = {r.name: r for r in live.session.resources}
        gates = []
        for name in action.spec.egress.resources:
            manager = live.managers[name]
            assert isinstance(manager, HttpResource)  # checked at submit
            gates.append(
                ResourceGate(
                    by_name[name], manager, live.policy, action.approval, timeout_s, calls.persist, self.redact_text
                )
            )
        return gates

    def undo_calls(self, live: LiveSession, action: Action, keep_going: bool) -> RollbackReport | None:
        """Send the inverses of the calls a code action made to http resources, newest first, each verified.

        Each undone call is journaled at once, so a retry after a failure does not send an inverse twice.
        `keep_going` (the action failed): a call that cannot be undone is reported and the rest still are;
        otherwise its error stops the undo, and the action stays pending.
        """
        records = list(action.egress)
        pending = [i for i in settled_calls(records) if (c := records[i].call) is not None and c.verdict == "untested"]
        if not pending:
            return None
        details: list[str] = []
        report = RollbackReport(True, "")
        for i in reversed(pending):
            record = records[i]
            assert record.call is not None
            what = f"{record.method} {record.url}"
            manager = live.managers.get(record.call.resource)
            if not isinstance(manager, HttpResource):
                report = report.with_calls(RollbackReport(False, ""))
                details.append(f"{what}: NOT undone: the session has no http resource {record.call.resource!r}")
                continue
            try:
                records[i], one = undo_call(manager, action.id, record)
            except GoexError as exc:
                if not keep_going:
                    raise
                report = report.with_calls(RollbackReport(False, ""))
                details.append(f"{what}: NOT undone: {exc}")
                continue
            self.journal.update(action.id, egress=codec.dumps(codec.egress_to_json(records)))
            report = report.with_calls(one)
            undone = records[i].call
            details.append(f"{what}: {undone.undo_detail if undone is not None else ''}")
        return replace(report, detail="; ".join(details))

    def second_look(self, live: LiveSession, run: Run, manager: HttpResource, limits: Limits) -> str | None:
        """An http write's pre-image, taken before the call is announced (a read), and the policy asked again when
        what it answered leaves the call less reversible than first decided (http_gate.second_look). None: the
        action ended here (BLOCKED, and PERMISSION_DENIED to a client still waiting; FAILED when the pre-image
        could not be asked for); else the note for its RUNNING row (the approval the second look took)."""
        action = run.action
        try:
            looked = manager.look(action.id, action.spec, limits.timeout_s)
        except GoexError as exc:  # e.g. the vault refused the resource's credential: nothing was sent
            self.steps.advance(run, Step(ActionState.FAILED, {"error": self.redact_text(f"{exc}; nothing was sent")}))
            return None
        resource = next(r for r in live.session.resources if r.name == action.resource)
        told = facts(resource, manager, action.spec, action.inverse)
        decision = second_look(live.policy, told, action.approval or run.approval, looked)
        if decision.allowed and not (decision.approval and looked.weaker):
            return ""
        if decision.allowed:  # the approval it came with lets it through: kept with the action, as at submit
            run.action = replace(run.action, approval=decision.approval)
            if run.journaled:
                self.journal.update(action.id, approval=decision.approval)
            return f"approved: {decision.approval} ({decision.reason})"
        manager.forget(action.id)
        why = self.redact_text(f"{decision.reason} [policy rule {decision.rule}]; only the pre-image was read")
        if decision.kind is DecisionKind.NEEDS_APPROVAL:
            why += '; submit it again with an explicit approval (goex: --approve "who: why") to run it'
        found = Reversibility(looked.found, Verdict.UNTESTED, self.redact_text(looked.why))
        blocked = {
            "error": why,
            "reversibility": codec.dumps(codec.reversibility_to_json(found)),
            "finished_at": time.time(),
        }
        self.steps.advance(run, Step(ActionState.BLOCKED, blocked))
        if not run.detached:
            raise PermissionDenied(f"{why} (recorded as blocked action {action.id})")
        return None
