"""An http resource opened to sandboxed code: the egress proxy's `Gate` for one action.

A python or shell action that names a session's http resource (`Egress.resources`) reaches it
through the egress proxy, and each of its requests there is treated as a declarative call
would be: the session policy decides on it (methods, paths, deny rules, rate limits, and the
class the resource's rule set predicts; an irreversible call needs the action's approval), the
rule set's pre-image is fetched first (and when what it answered leaves the call less reversible
than predicted, the policy decides again on that class, before the call is sent: `second_look`,
also what the engine asks for a declarative call), the resource's secret is added, and the inverse is
derived from the recorded response. What undo needs is journaled as soon as the call is
settled, so a crash does not lose it; undoing (or failing) the action sends the inverses,
newest first, and verifies each one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from goexd.domain.egress import EgressRecordData, GateRequest, GateResponse, RecordedCall, ResourceCall
from goexd.domain.errors import GoexError, Unavailable
from goexd.domain.models import Resource, ReversibilityClass
from goexd.domain.resource import Checkpoint, RollbackReport
from goexd.egress.substitute import Refused
from goexd.policy.check import SessionPolicy
from goexd.policy.model import ALLOW, ActionFacts, Decision, DecisionKind, HttpRequestFacts
from goexd.resources.http.resource import MAX_DERIVE_BYTES, HttpResource, PreImage
from goexd.resources.http.rules import Exchange, HttpCall
from goexd.resources.http.send import FORBIDDEN_HEADERS

# Headers of the sandbox's request that concern its connection to the proxy, not the call: those goexd
# sets itself on a declarative call, and the proxy's hop-by-hop ones.
_NOT_PART_OF_THE_CALL = FORBIDDEN_HEADERS | {"proxy-connection", "keep-alive", "expect"}

Persist = Callable[[EgressRecordData], None]


def second_look(policy: SessionPolicy, facts: ActionFacts, approval: str, looked: PreImage) -> Decision:
    """The policy's decision on a write once its pre-image is in: when the capture left it less reversible than
    the class it was first decided on, asked again with the class it has now (without counting it against the
    rate limits a second time); the decision carries why (what the capture answered). ALLOW otherwise."""
    if not looked.weaker or facts.request is None:
        return ALLOW
    request = replace(facts.request, reversibility=looked.found.value)
    decision = policy.check(replace(facts, request=request), approval, count=False)
    predicted = looked.predicted.value.replace("_", " ")
    return replace(decision, reason=f"{decision.reason} once its pre-image is in (predicted {predicted}): {looked.why}")


@dataclass(frozen=True)
class _Ticket:
    call: HttpCall
    captured: Checkpoint


class ResourceGate:
    def __init__(
        self,
        resource: Resource,
        manager: HttpResource,
        policy: SessionPolicy,
        approval: str,
        timeout_s: float,
        persist: Persist,
        redact_text: Callable[[str], str],
    ) -> None:
        self.resource = resource.name
        self.base_url = resource.uri
        self.secret = resource.secret
        self.capture_bytes = MAX_DERIVE_BYTES  # as much of an answer as an inverse may be derived from
        self._manager = manager
        self._policy = policy
        self._approval = approval
        self._timeout_s = timeout_s
        self._persist = persist
        self._redact_text = redact_text

    def admit(self, request: GateRequest) -> _Ticket:
        headers = tuple((k, v) for k, v in request.headers if k not in _NOT_PART_OF_THE_CALL)
        call = HttpCall(request.method, request.path, request.query, headers, request.body)
        query = "&".join(f"{k}={v}" for k, v in call.query)
        facts = HttpRequestFacts(
            method=call.method,
            url=self.base_url + call.path + (f"?{query}" if query else ""),
            path=call.path,
            headers=dict(headers),
            body=call.body,
            reversibility=self._manager.plan_call(call).predicted.value,
        )
        asked = ActionFacts("http", self.resource, request=facts)
        self._refuse_unless(self._policy.check(asked, self._approval))
        try:
            looked = self._manager.pre_image(call, self._timeout_s)
        except GoexError as exc:  # the resource's secret: gone, no longer allowed for the host, or unusable
            why = f"resource {self.resource!r}: could not take the pre-image: {exc}; not sent"
            raise Refused(why, status=502 if isinstance(exc, Unavailable) else 403) from None
        if isinstance(looked.taken, str):
            raise Refused(f"resource {self.resource!r}: {looked.taken}; not sent", status=502)
        self._refuse_unless(second_look(self._policy, asked, self._approval, looked))
        return _Ticket(call, looked.taken)

    def _refuse_unless(self, decision: Decision) -> None:
        if decision.allowed:
            return
        why = f"{decision.reason} [policy rule {decision.rule}]"
        if decision.kind is DecisionKind.NEEDS_APPROVAL:
            why += "; run the action again with an explicit approval (goex --approve) to let it through"
        raise Refused(f"resource {self.resource!r}: {why}", status=429 if decision.retry_after_s else 403)

    def settle(self, ticket: object, response: GateResponse) -> ResourceCall:
        assert isinstance(ticket, _Ticket)
        if response.status >= 400:
            note = f"the service answered {response.status}: nothing to undo"
            return self._call(ReversibilityClass.READ_ONLY, note, None, {**ticket.captured, "sent": "refused"})
        # A body cut at capture_bytes is settled as the manager settles its own: a write's answer too large
        # to derive an inverse from makes it irreversible; a read stays read-only.
        exchange = Exchange(response.status, dict(response.headers), response.body, response.truncated)
        derived, extra = self._manager.settle(ticket.call, exchange, ticket.captured)
        inverse = derived.inverse
        recorded = (
            None
            if inverse is None
            else RecordedCall(inverse.method, inverse.path, inverse.query, inverse.headers, inverse.body)
        )
        return self._call(derived.reversibility, derived.note, recorded, {**ticket.captured, **extra})

    def unanswered(self, ticket: object, why: str, maybe_sent: bool) -> ResourceCall:
        assert isinstance(ticket, _Ticket)
        if not maybe_sent:
            return self._call(ReversibilityClass.READ_ONLY, f"not sent: {why}", None, {"sent": "no"})
        note = f"no answer ({why}); the service may have carried it out, and goexd cannot undo what it cannot see"
        return self._call(ReversibilityClass.BEST_EFFORT, note, None, {**ticket.captured, "sent": "maybe"})

    def persist(self, record: EgressRecordData) -> None:
        self._persist(record)

    def _call(
        self, cls: ReversibilityClass, note: str, inverse: RecordedCall | None, state: Mapping[str, str]
    ) -> ResourceCall:
        return ResourceCall(self.resource, cls.value, self._redact_text(note), inverse, dict(state))


class CallJournal:
    """The records of one action's gated calls, journaled each time one is settled."""

    def __init__(self, write: Callable[[list[EgressRecordData]], None]) -> None:
        self._write = write
        self._records: list[EgressRecordData] = []
        self._lock = threading.Lock()

    def persist(self, record: EgressRecordData) -> None:
        with self._lock:
            self._records.append(record)
            self._write(list(self._records))


def settled_calls(records: Sequence[EgressRecordData]) -> list[int]:
    """Indexes of the records whose call reached (or may have reached) its service, oldest first."""
    return [
        i
        for i, r in enumerate(records)
        if r.call is not None
        and r.call.undo_state.get("sent") in ("yes", "maybe")
        and r.call.reversibility != ReversibilityClass.READ_ONLY.value
    ]


def undo_call(
    manager: HttpResource, action_id: str, record: EgressRecordData
) -> tuple[EgressRecordData, RollbackReport]:
    """Send one call's inverse and check it; the record with the verdict, and how it was checked.

    Raises as `HttpResource.rollback` does (the inverse failed or was refused): the call stays as it was.
    """
    assert record.call is not None
    report: RollbackReport = manager.rollback(action_id, dict(record.call.undo_state))
    call = replace(record.call, verdict=report.verdict.value, undo_detail=report.detail)
    return replace(record, call=call), report
