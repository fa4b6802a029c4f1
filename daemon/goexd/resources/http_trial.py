"""The reversibility test of an http action (TestReversibility): what can honestly be said before the call.

An HTTP call cannot be tried without its side effect, so on the resource itself nothing is tried:
- a read is read-only (nothing to undo);
- a write some rule set covers gets its plan: the pre-image it captures, the class it predicts, the
  inverse templates of its outcomes and how each undo is checked; the verdict is unknown (not tried);
- a write with a client inverse is unknown: the pair is checked only when it is undone, against what
  the rule set planning the call says the undo must achieve.
When the resource names a staging copy (`Resource.staging`), the pair is tried there for real, the
same way an action and its undo run: the pre-image is captured, the call sent, the inverse (the
client's, else the one derived from the staging answer by the rule sets bound to the staging base
URL, so a Location it answers is its own) sent, and the result compared. The verdict is passed,
failed (what differs), or unknown (why: staging unreachable or refused the call, nothing to compare
against, no inverse to try). The same trial runs before every write submitted to such a resource
(HttpResource.test): a failed pair is not sent to the service. The staging copy keeps whatever a
failed pair left; the real service is never called.
"""

from __future__ import annotations

from goexd.engine.models import ActionSpec, Reversibility, ReversibilityClass, UndoStrategy, Verdict
from goexd.errors import FailedPrecondition, GoexError
from goexd.resources.http import (
    MAX_DERIVE_BYTES,
    READ_METHODS,
    HttpResource,
    call_of,
)
from goexd.resources.http_rules import HttpCall, Planned, VerifyKind
from goexd.resources.http_send import CallFailed, HttpSender

NOT_TRIED = "an HTTP call cannot be tried without its side effect"
_CHECKS = {
    VerifyKind.ABSENT: "checked: the item must be gone (404/410)",
    VerifyKind.PRE_IMAGE: "checked: the item must answer its pre-image",
    VerifyKind.STATUS: "unchecked: only the inverse's status (unverified)",
    VerifyKind.NONE: "unchecked (unverified)",
}


def test_http(manager: HttpResource, spec: ActionSpec, inverse: ActionSpec | None, timeout_s: float) -> Reversibility:
    """The verdict on `spec` (and the client's `inverse`, if any); never raises for what the service answers."""
    assert spec.http is not None  # prechecked
    call = call_of(spec.http)
    planned = manager.plan_call(call)
    if call.method in READ_METHODS:
        why = f"{call.method} is read-only: nothing to undo"
        return Reversibility(ReversibilityClass.READ_ONLY, Verdict.PASSED, why)
    if manager.resource.strategy is UndoStrategy.CONFINE:
        why = "not tried: the confine strategy undoes nothing; the call is irreversible and left to the policy"
        return Reversibility(ReversibilityClass.IRREVERSIBLE, Verdict.UNKNOWN, why)
    plan = describe_plan(manager, planned)
    # A rule predicting irreversible may still derive an inverse from some answers (a POST's 201 Location): a
    # staging copy shows which one it gives; without a rule, or a copy, there is nothing to try.
    if (
        inverse is None
        and planned.predicted is ReversibilityClass.IRREVERSIBLE
        and (manager.staging is None or not planned.rule)
    ):
        why = f"not tried: predicted irreversible, with no inverse to try before the answer ({plan})"
        return Reversibility(ReversibilityClass.IRREVERSIBLE, Verdict.UNKNOWN, why)
    given = ""
    if inverse is not None:
        assert inverse.http is not None  # checked by check_inverse
        client = call_of(inverse.http)
        given = f"the client's inverse {client.method} {client.path} is checked when undone against the plan; "
    cls = planned.predicted if inverse is None else _client_class(planned)
    if manager.staging is None:
        why = f"not tried: {NOT_TRIED} (the resource names no staging base URL); {given}{plan}"
        return Reversibility(cls, Verdict.UNKNOWN, why)
    try:
        return _on_staging(manager, manager.staging, call, inverse, timeout_s)
    except (_NotTried, GoexError) as exc:  # GoexError: e.g. the vault refused the credential for the staging host
        return Reversibility(cls, Verdict.UNKNOWN, f"not tried on the staging copy: {exc}; {plan}")


def _client_class(planned: Planned) -> ReversibilityClass:
    """What a client inverse's call is expected to be once run (client_inverse_checked decides on the answer)."""
    if planned.predicted in (ReversibilityClass.REVERSIBLE, ReversibilityClass.BEST_EFFORT) and planned.rule:
        return planned.predicted
    return ReversibilityClass.BEST_EFFORT


def describe_plan(manager: HttpResource, planned: Planned) -> str:
    """The rule's plan in one line: the capture, the predicted class, each outcome's inverse template and check."""
    sets = (manager.rules, *manager.rules.fallbacks)  # the resource's sets, then the ones it falls back on
    if not planned.rule:
        return f"plan: no rule of {'+'.join(s.name for s in sets)} covers the call (irreversible)"
    words = [f"plan (rule {planned.rule})"]
    if planned.capture is not None:
        words.append(f"capture {planned.capture.method} {planned.capture.path} first")
    words.append(f"predicted {planned.predicted.value}")
    set_name, _, rule_name = planned.rule.partition(".")
    rule_set = next((s for s in sets if s.name == set_name), None)
    rule = next((r for r in rule_set.rules if r.name == rule_name), None) if rule_set is not None else None
    if rule is not None:
        for o in rule.outcomes:
            undo = "no inverse" if o.inverse is None else f"{o.inverse.method} {o.inverse.path.source}"
            words.append(f"if {o.label or 'it applies'}: {o.reversibility.value}, {undo}, {_CHECKS[o.verify.kind]}")
    return "; ".join(words)


class _NotTried(Exception):
    """Why the staging copy could not try the pair (the verdict is then unknown)."""


def _on_staging(
    manager: HttpResource,
    staging: HttpSender,
    call: HttpCall,
    inverse: ActionSpec | None,
    timeout_s: float,
) -> Reversibility:
    """The pair run on the staging copy and checked; raises _NotTried or GoexError when it cannot be tried."""
    captured = manager.capture(call, timeout_s, staging)
    if isinstance(captured, str):
        raise _NotTried(captured)
    try:
        response = staging.send(call, timeout_s, max_body=MAX_DERIVE_BYTES)
    except CallFailed as exc:
        raise _NotTried(f"the call got no answer ({exc.why})") from None
    if response.status >= 400:
        raise _NotTried(f"the staging service answered the call {response.status}, so there is nothing to undo")
    checkpoint = dict(captured)
    if inverse is not None:
        checkpoint.update(manager.checkpoint("staging-test", inverse))
    derived, extra = manager.settle(call, response, checkpoint, manager.staging_rules)
    checkpoint.update(extra)
    sent = f"{call.method} {call.path} answered {response.status} on the staging copy {staging.base_url}"
    if derived.inverse is None:
        if derived.reversibility is ReversibilityClass.IRREVERSIBLE:  # (only a derived pair: a client's is sent)
            why = (
                f"{sent}; nothing undoes it ({derived.note}), so there was no inverse to try; the policy decides "
                "on the class; the staging copy keeps its effect"
            )
            return Reversibility(ReversibilityClass.IRREVERSIBLE, Verdict.UNKNOWN, why)
        head = f"{sent}; nothing to undo ({derived.note})"
    else:
        try:
            head = f"{sent}; " + manager.send_inverse(checkpoint, staging)
        except FailedPrecondition as exc:  # a 4xx/5xx: the pair restored nothing
            why = f"{sent}; {exc}; the staging copy keeps the call's effect"
            return Reversibility(derived.reversibility, Verdict.FAILED, why)
        # (the inverse got no answer: UNAVAILABLE, a GoexError the caller reports as unknown)
    report = manager.check_undo(checkpoint, head, staging)
    return Reversibility(derived.reversibility, report.verdict, report.detail)
