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
(HttpResource.test): a failed pair is not sent to the service; the real service is never called.
After a trial whose inverse did not restore, the staging copy is put back from the trial's own
pre-image (a PUT of the captured representation, or a DELETE where the capture found nothing; the
rule's own inverse for what a create made; the item a client's inverse wrote to elsewhere, captured
before the trial) and checked; when that cannot be verified, the copy is not trusted: later trials answer unknown ("the
staging copy differs from what a trial left: reset it") until the item answers its pre-image again.
"""

from __future__ import annotations

from dataclasses import dataclass

from goexd.domain.errors import FailedPrecondition, GoexError
from goexd.domain.models import ActionSpec, Reversibility, ReversibilityClass, UndoStrategy, Verdict
from goexd.resources.http.resource import (
    MAX_DERIVE_BYTES,
    MAX_PRE_IMAGE_BYTES,
    READ_METHODS,
    HttpResource,
    _call_from,
    _call_json,
    _exchange_from,
    _exchange_json,
    call_of,
    uncached,
)
from goexd.resources.http.rules import GONE, Exchange, HttpCall, Planned, VerifyKind, pre_image_matches
from goexd.resources.http.send import CallFailed, HttpSender

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
    left = _still_left(manager, manager.staging, timeout_s)
    if left:
        return Reversibility(cls, Verdict.UNKNOWN, f"not tried: {left}; {plan}")
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
    if (
        inverse is not None and inverse.http is not None
    ):  # a client's inverse writing elsewhere: its target captured too, to put back after
        captured = {
            **captured,
            **_inverse_target(manager.plan_call(call).capture, call_of(inverse.http), staging, timeout_s),
        }
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
            why = f"{sent}; {exc}; {_put_back(manager, staging, call, response, captured, timeout_s)}"
            return Reversibility(derived.reversibility, Verdict.FAILED, why)
        # (the inverse got no answer: UNAVAILABLE, a GoexError the caller reports as unknown)
    report = manager.check_undo(checkpoint, head, staging)
    detail = report.detail
    if report.verdict is Verdict.FAILED:
        detail += f"; {_put_back(manager, staging, call, response, captured, timeout_s)}"
    return Reversibility(derived.reversibility, report.verdict, detail)


@dataclass(frozen=True)
class StagingLeft:
    """An item of the staging copy a trial changed and could not put back: what it must answer again."""

    probe: HttpCall
    capture: Exchange  # what it must answer: the pre-image, or a 404 for what the trial created
    as_json: bool
    why: str
    ignore: tuple[str, ...] = ()  # JSON fields left out (the rule set's ignore_fields)


def _put_back(
    manager: HttpResource,
    staging: HttpSender,
    call: HttpCall,
    response: Exchange,
    captured: dict[str, str],
    timeout_s: float,
) -> str:
    """After a trial that did not restore: each staging item it captured put back from that pre-image (or what it
    created deleted, by the rule's own inverse) and checked; what happened, in words. When one cannot be verified
    the copy is marked not trustworthy (StagingLeft)."""
    planned = manager.plan_call(call)
    as_json, ignore = _comparison(manager, planned)
    items: list[tuple[HttpCall, Exchange, HttpCall]] = []  # (probe, what it must answer, the call putting it back)
    probe = planned.capture
    if probe is not None and "capture" in captured:
        items.append(_restoring(probe, _exchange_from(captured["capture"])))
    else:  # nothing captured (a create): the rule's own inverse of the staging answer, checked by its own probe
        assert manager.staging_rules is not None
        own = manager.staging_rules.derive(planned, call, response, None) if planned.rule else None
        if own is None or own.inverse is None or own.verify.kind is not VerifyKind.ABSENT or own.verify.call is None:
            why = "no pre-image and no inverse of the rule's own to put it back with"
            manager.staging_left = StagingLeft(HttpCall("GET", call.path), Exchange(0, {}, b""), as_json, why, ignore)
            return f"the staging copy keeps the call's effect ({why}): trials answer unknown in this session"
        items.append((own.verify.call, Exchange(404, {}, b""), own.inverse))
    if "inverse_target" in captured:  # what the client's inverse wrote to, elsewhere
        target = _exchange_from(captured["inverse_target"])
        items.append(_restoring(_call_from(captured["inverse_target_probe"]), target))
    done = []
    for probe, capture, fix in items:
        why = ""
        try:
            staging.send(fix, timeout_s, max_body=MAX_DERIVE_BYTES)
            now = staging.send(uncached(probe), timeout_s, max_body=MAX_PRE_IMAGE_BYTES)
            if pre_image_matches(capture, now, as_json, ignore):
                done.append(f"{fix.method} {fix.path}")
                continue
            why = f"{probe.method} {probe.path} still differs after {fix.method} {fix.path}"
        except CallFailed as exc:
            why = f"{fix.method} {fix.path} got no answer ({exc.why})"
        except GoexError as exc:
            why = str(exc)
        manager.staging_left = StagingLeft(probe, capture, as_json, why, ignore)
        return f"the staging copy could not be put back ({why}): trials answer unknown until it is reset"
    return f"the staging copy was put back from the trial's pre-image ({', '.join(done)}, verified)"


def _inverse_target(
    capture: HttpCall | None, inverse: HttpCall, staging: HttpSender, timeout_s: float
) -> dict[str, str]:
    """The staging item a client's inverse writes to, captured before the trial, unless it is the call's own."""
    if inverse.method in READ_METHODS or (capture is not None and capture.path == inverse.path):
        return {}
    probe = HttpCall("GET", inverse.path, inverse.query)
    try:
        answer = staging.send(uncached(probe), timeout_s, max_body=MAX_PRE_IMAGE_BYTES)
    except CallFailed:
        return {}
    if answer.truncated or not (answer.status in GONE or 200 <= answer.status < 300):
        return {}
    return {"inverse_target": _exchange_json(answer), "inverse_target_probe": _call_json(probe)}


def _restoring(probe: HttpCall, capture: Exchange) -> tuple[HttpCall, Exchange, HttpCall]:
    """An item, what it answered before the trial, and the call putting that back (a PUT, or a DELETE)."""
    if capture.status in GONE:
        return probe, capture, HttpCall("DELETE", probe.path, probe.query)
    kind = capture.headers.get("content-type", "")
    return (
        probe,
        capture,
        HttpCall("PUT", probe.path, probe.query, (("content-type", kind),) if kind else (), capture.body),
    )


def _comparison(manager: HttpResource, planned: Planned) -> tuple[bool, tuple[str, ...]]:
    """How the planning rule set compares bodies: as JSON or not, and the JSON fields it leaves out."""
    sets = (manager.rules, *manager.rules.fallbacks)
    owner = next((s for s in sets if s.name == planned.rule.partition(".")[0]), None)
    if owner is None:
        return False, ()
    return owner.comparison(manager.rules.rule_named(planned.rule))


def _still_left(manager: HttpResource, staging: HttpSender, timeout_s: float) -> str:
    """Why the staging copy is not trusted for a trial ("" when it is): an item a failed trial left changed that
    does not answer its pre-image yet (checked again now: once it does, e.g. a person reset it, it is trusted)."""
    left = manager.staging_left
    if not isinstance(left, StagingLeft):
        return ""
    if left.capture.status:
        try:
            now = staging.send(uncached(left.probe), timeout_s, max_body=MAX_PRE_IMAGE_BYTES)
            if pre_image_matches(left.capture, now, left.as_json, left.ignore):
                manager.staging_left = None
                return ""
        except (CallFailed, GoexError):
            pass
    return (
        f"the staging copy differs from what a trial left ({left.probe.method} {left.probe.path}: {left.why}): "
        "reset it (trials resume once it answers as before the trial)"
    )
