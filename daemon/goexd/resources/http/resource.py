"""A REST API as a resource: declarative calls run by goexd, undone by inverses built from recorded responses.

Strategies:
- `inverse` (default): before a write, the resource's rule set (resources/http/rule_sets/) says whether
  to capture a pre-image (a GET before the call) and predicts the call's reversibility class
  (the policy decides on it). The pre-image is taken before the call is announced as running
  (`look`), and the class it leaves (`RuleSet.predict`: a capture answered 401 or 500 leaves no
  outcome that can undo the write) is what the policy decides on once more when it is weaker
  than the prediction, before the write is sent. After the call the inverse is built from the *recorded response*
  (the real id, the version the service assigned) and stored in the checkpoint. Undo sends the
  inverse and checks it (the created item is gone, the item equals its pre-image...): verified,
  not verified, or unverified where there is nothing to compare the result against.
  A client's own inverse is sent instead of the derived one but checked the same way: whatever
  rule set plans the call still captures the pre-image and says what the undo must achieve; a
  call no rule covers gets an unverified undo, never a verified one. Nor does a client inverse
  make a call reversible for the policy (unless the policy trusts client inverses).
- `confine`: no undo at all; every write is irreversible and the session's policy decides
  (by default: only with an explicit approval).

A call is sent once and never retried. A 4xx/5xx answer fails the action (recorded, with the
response); a call that got no answer fails with its cause, and says when the service may still
have acted on it. Pre-images are checked against the redactor: one that holds a vault secret
is kept redacted and the undo is downgraded to best effort rather than storing the value.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx

from goexd.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from goexd.domain.models import (
    ActionKind,
    ActionSpec,
    HttpRequest,
    HttpResult,
    Resource,
    Reversibility,
    ReversibilityClass,
    UndoStrategy,
    Verdict,
)
from goexd.domain.resource import Checkpoint, Journaling, Outcome, OutputCallback, RollbackReport, SandboxNetwork
from goexd.domain.sandbox import Limits
from goexd.domain.secrets import host_matches
from goexd.domain.textcap import shown
from goexd.egress.addresses import AddressRefused, AddressRule
from goexd.egress.dial import resolve_checked_sync
from goexd.resources.http.rules import (
    Derived,
    Exchange,
    HttpCall,
    Planned,
    RuleSet,
    Verify,
    VerifyKind,
    pre_image_matches,
    without_fields,
)
from goexd.resources.http.send import FORBIDDEN_HEADERS, CallFailed, HttpSender

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PRE_IMAGE_BYTES = 4 * 1024 * 1024  # larger pre-images are not kept: such a call is irreversible
# How much of an answer an inverse may be derived from (a larger one makes the call irreversible).
MAX_DERIVE_BYTES = MAX_PRE_IMAGE_BYTES
_PLACEHOLDER = "goex-secret"
MAX_HOST_BYTES = 253  # a DNS name's length in text form
# What a declarative call's headers may hold: each header is journaled with the action, and
# servers refuse far less (8-16 KiB per field, typically; the whole gRPC request is 4 MiB).
MAX_HEADER_BYTES = 16 * 1024  # one header's name + value
MAX_HEADERS_BYTES = 64 * 1024  # all of them
MAX_HEADERS = 100

Redact = Callable[[bytes, bool], bytes]
# From the strongest to the weakest: what "less reversible than predicted" means.
_STRENGTH = (ReversibilityClass.REVERSIBLE, ReversibilityClass.BEST_EFFORT, ReversibilityClass.IRREVERSIBLE)


@dataclass(frozen=True)
class PreImage:
    """A write's pre-image taken before it is sent, and the class the call has once it is in."""

    taken: Checkpoint | str  # what the checkpoint records of it, or why it could not be taken
    predicted: ReversibilityClass  # the plan's, before the capture: what the policy was told first
    found: ReversibilityClass  # once the capture is in (RuleSet.predict)
    why: str  # what the capture answered, when that made the call less reversible ("" otherwise)

    @property
    def weaker(self) -> bool:
        """Whether the capture made the call less reversible than predicted (the policy must look again)."""
        strength = {c: i for i, c in enumerate(_STRENGTH)}
        return strength.get(self.found, 0) > strength.get(self.predicted, 0)


def validate_base_url(url: str, fld: str) -> str:
    """http(s)://host[:port][/prefix], without credentials, query or fragment; returned without a trailing '/'."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(fld, f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(fld, f"{shown(url)} is not an http(s)://host[:port][/path] URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(fld, "must not carry credentials; store them in the vault and name the secret")
    if parts.query or parts.fragment:
        raise InvalidArgument(fld, "must not have a query or fragment")
    _check_host_name(parts.hostname, fld)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port else host
    base = f"{parts.scheme}://{netloc.lower()}{parts.path.rstrip('/')}"
    try:  # what the sender's client parses it as; some hosts a resolver takes it refuses ("0177.0.0.1")
        httpx.URL(base)
    except httpx.InvalidURL as exc:
        raise InvalidArgument(fld, f"not a URL goexd can send requests to: {exc}") from None
    return base


def _check_host_name(host: str, fld: str) -> None:
    """A DNS name the resolver can take (labels of 1..63 bytes, 253 in all) or an IP address."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        raise InvalidArgument(fld, f"host {shown(host)} is not a DNS name (each label 1 to 63 bytes)") from None
    if len(encoded.rstrip(b".")) > MAX_HOST_BYTES:
        raise InvalidArgument(fld, f"host {shown(host)} is longer than {MAX_HOST_BYTES} bytes")


def check_address(url: str, addresses: AddressRule, fld: str) -> None:
    """PERMISSION_DENIED when the base URL's host resolves only to addresses goexd may not connect to (loopback,
    private, ... outside the daemon's egress.allowed_addresses). A name that does not resolve passes here: the
    connection check that follows says UNAVAILABLE; and every call resolves and checks again."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        resolve_checked_sync(addresses, parts.hostname or "", port)
    except AddressRefused as exc:
        raise PermissionDenied(f"{fld}: {exc}") from None
    except OSError:
        pass


def check_http_host(resource: Resource, allowed: tuple[str, ...] | None, whose: str = "") -> None:
    """A policy's `[http] hosts`, when set, names every host an http resource may point at. `whose`: said in the
    refusal (which policy it was)."""
    if allowed is None:
        return
    parts = urlsplit(resource.uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not any(host_matches(p, parts.hostname or "", port) for p in allowed):
        raise PermissionDenied(
            f"resource {resource.name!r}: {parts.hostname}:{port} is not among the policy's http hosts "
            f"({', '.join(allowed)}){f' ({whose})' if whose else ''} [policy rule http.hosts]"
        )


def call_of(req: HttpRequest) -> HttpCall:
    headers = req.headers
    if req.json and not any(k.lower() == "content-type" for k, _ in headers):
        headers = (*headers, ("content-type", "application/json"))
    return HttpCall(req.method, req.path, req.query, headers, req.body)


# Sent with every pre-image and verification GET: a cache between goexd and the service (a CDN, a caching proxy,
# the service's own) must answer what the service holds now, or a stale answer would "verify" an undo.
NO_CACHE = (("cache-control", "no-cache"), ("pragma", "no-cache"))


def uncached(call: HttpCall) -> HttpCall:
    """The call with the cache bypass headers in place of any the rule gave."""
    kept = tuple((k, v) for k, v in call.headers if k.lower() not in ("cache-control", "pragma"))
    return replace(call, headers=(*kept, *NO_CACHE))


def request_of(call: HttpCall) -> HttpRequest:
    return HttpRequest.as_sent(call.method, call.path, call.query, call.headers, call.body)


def _call_json(call: HttpCall) -> str:
    return json.dumps(
        {
            "method": call.method,
            "path": call.path,
            "query": [list(p) for p in call.query],
            "headers": [list(h) for h in call.headers],
            "body": base64.b64encode(call.body).decode(),
        }
    )


def _call_from(text: str) -> HttpCall:
    d = json.loads(text)
    return HttpCall(
        d["method"],
        d["path"],
        tuple((k, v) for k, v in d["query"]),
        tuple((k, v) for k, v in d["headers"]),
        base64.b64decode(d["body"]),
    )


def _exchange_json(x: Exchange) -> str:
    return json.dumps({"status": x.status, "headers": dict(x.headers), "body": base64.b64encode(x.body).decode()})


def _exchange_from(text: str) -> Exchange:
    d = json.loads(text)
    return Exchange(d["status"], d["headers"], base64.b64decode(d["body"]))


class HttpResource:
    def __init__(
        self,
        resource: Resource,
        sender: HttpSender,
        rules: RuleSet,
        redact: Redact,
        redact_text: Callable[[str], str],
        staging: HttpSender | None = None,
    ) -> None:
        """`staging`: the sender to the resource's staging copy (`Resource.staging`), where reversibility
        tests try calls for real; None when it names none."""
        self.resource = resource
        self.sender = sender
        self.staging = staging
        self.rules = rules
        # The staging copy's answers name places under its own base URL (a Location), so they are read with the
        # same rule sets bound to it.
        self.staging_rules = rules.bound(staging.base_url, rules.fallbacks) if staging is not None else None
        # Set by a staging trial that could not put the copy back (http_trial.StagingLeft): later trials answer
        # unknown until it matches again. In memory: a restarted goexd trusts the copy again.
        self.staging_left: object | None = None
        self._redact = redact
        self._redact_text = redact_text
        self._confine = resource.strategy is UndoStrategy.CONFINE
        self.undo_note = (
            "no undo: the confine strategy leaves each call to the policy"
            if self._confine
            else f"undo sends the inverse built from the recorded response (rule sets {rules.chain}) and verifies it"
        )
        self._lock = threading.Lock()
        self._looked: dict[str, PreImage] = {}  # action id -> its pre-image, taken before checkpoint() asks for it

    # ------------------------------------------------------------ before anything is recorded

    def describe(self, samples: bool = False) -> str:
        lines = [f"REST API at {self.resource.uri}"]
        if self.resource.secret:
            lines.append("authentication: added by goexd to every call (the credential is never shown)")
        if self._confine:
            lines.append("undo: none (confine strategy); writes are irreversible and subject to approval")
        else:
            lines.append(f"undo: inverses derived by the rule sets {self.rules.chain}: {self.rules.description}")
        if self.resource.staging:
            lines.append(f"reversibility tests: tried for real on the staging copy at {self.resource.staging}")
        lines.append("actions: http {method, path relative to the base URL, query, headers, json or body}")
        return "\n".join(lines)

    def precheck(self, spec: ActionSpec) -> None:
        if spec.kind is not ActionKind.HTTP or spec.http is None:
            raise InvalidArgument("spec", f"{spec.kind.value} actions do not run on an http resource")
        self._check_request(spec.http, "spec.http")

    @staticmethod
    def _check_header_sizes(req: HttpRequest, fld: str) -> None:
        if len(req.headers) > MAX_HEADERS:
            raise InvalidArgument(f"{fld}.headers", f"{len(req.headers)} headers, more than {MAX_HEADERS}")
        total = 0
        for name, value in req.headers:
            size = len(name.encode(errors="replace")) + len(value.encode(errors="replace"))
            if size > MAX_HEADER_BYTES:
                raise InvalidArgument(
                    f"{fld}.headers[{shown(name)}]", f"{size} bytes, more than one header may hold ({MAX_HEADER_BYTES})"
                )
            total += size
        if total > MAX_HEADERS_BYTES:
            raise InvalidArgument(f"{fld}.headers", f"{total} bytes in all, more than {MAX_HEADERS_BYTES}")

    def _check_request(self, req: HttpRequest, fld: str) -> None:
        base = urlsplit(self.resource.uri)
        full = urlsplit(self.sender.url(call_of(req)))
        prefix = base.path.rstrip("/")
        segments = [s for s in req.path.split("/") if s]
        if (
            (full.scheme, full.netloc) != (base.scheme, base.netloc)
            or not full.path.startswith(prefix + "/")
            or any(s in (".", "..") or s.lower() in ("%2e", "%2e%2e", ".%2e", "%2e.") for s in segments)
            or req.path.startswith("//")
        ):
            raise InvalidArgument(
                f"{fld}.path", f"{req.path!r} leads outside the resource's base URL {self.resource.uri}"
            )
        self._check_header_sizes(req, fld)
        for name, value in req.headers:
            if name.lower() in FORBIDDEN_HEADERS:
                raise InvalidArgument(f"{fld}.headers[{name}]", "is set by goexd itself")
            if _PLACEHOLDER in value:
                raise InvalidArgument(
                    f"{fld}.headers[{name}]",
                    "secret placeholders are for sandboxed code; the resource's secret is added by goexd",
                )
        content_type = next((v for k, v in req.headers if k.lower() == "content-type"), "")
        if req.json or "json" in content_type.lower():
            where = f"{fld}.json" if req.json else f"{fld}.body"
            if req.json and content_type and "json" not in content_type.lower():
                raise InvalidArgument(f"{fld}.headers[content-type]", f"{content_type!r} contradicts a JSON payload")
            if req.body or req.json:
                try:
                    json.loads(req.body)
                except ValueError as exc:
                    raise InvalidArgument(where, f"is not valid JSON ({exc}) but is sent as JSON") from None
        if req.method in ("GET", "HEAD") and req.body:
            raise InvalidArgument(f"{fld}.body", f"a {req.method} carries no body")

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        if inverse is None:
            return
        if self._confine:
            raise InvalidArgument("inverse", f"{self.resource.name!r} uses the confine strategy: nothing is undone")
        if inverse.kind is not ActionKind.HTTP or inverse.http is None:
            raise InvalidArgument("inverse", "the inverse of an http action is an http action")
        if inverse.resource and inverse.resource != self.resource.name:
            raise InvalidArgument("inverse.resource", "an inverse acts on the same resource as its action")
        if spec.http is not None and spec.http.method.upper() in READ_METHODS:
            # Never silently dropped (trial 15b E09): a read has nothing to undo.
            raise InvalidArgument("inverse", f"{spec.http.method} is read-only: it needs no inverse (nothing to undo)")
        self._check_request(inverse.http, "inverse.http")

    def plan(self, spec: ActionSpec) -> Planned:
        assert spec.http is not None
        return self.plan_call(call_of(spec.http))

    def plan_call(self, call: HttpCall) -> Planned:
        if call.method in READ_METHODS:
            return Planned("", None, ReversibilityClass.READ_ONLY, {})
        if self._confine:
            return Planned("", None, ReversibilityClass.IRREVERSIBLE, {})
        return self.rules.plan(call)

    def predicted_class(self, spec: ActionSpec) -> ReversibilityClass:
        """What the policy is told before the call: what its rule set predicts. A client inverse changes nothing
        here (the policy is told it is there, and decides whether to trust it)."""
        return self.plan(spec).predicted

    def url(self, spec: ActionSpec) -> str:
        assert spec.http is not None
        call = call_of(spec.http)
        query = "&".join(f"{k}={v}" for k, v in call.query)
        return self.sender.url(call) + (f"?{query}" if query else "")

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility | None:
        """Before a write, on a resource naming a staging copy: the pair (the client's inverse, else the one derived
        from the staging answer) tried there for real; a failed trial keeps the call from being sent. Otherwise
        nothing: a call cannot be tried without its side effect, and its undo is checked when it runs."""
        assert spec.http is not None
        if self.staging is None or spec.http.method in READ_METHODS or self._confine:
            return None
        from goexd.resources.http.trial import test_http  # noqa: PLC0415 - http_trial builds on this module

        tried = test_http(self, spec, inverse, limits.timeout_s)
        return replace(tried, detail=self._redact_text(tried.detail))

    def journaling(self, spec: ActionSpec) -> Journaling:
        # test() touches only the staging copy and checkpoint() is in memory (the pre-image GET is taken in execute,
        # once RUNNING is durable); a read-only call has no side effect to announce at all.
        assert spec.http is not None
        return Journaling.AFTER_RUN if spec.http.method in READ_METHODS else Journaling.BEFORE_RUN

    def commit_check(self, action_ids: Sequence[str]) -> None:
        return None

    def take_lost(self) -> list[str]:
        return []

    # ------------------------------------------------------------ the action

    def recovers_by_rollback(self, checkpoint: Checkpoint) -> bool:
        """A call cut short may have been carried out by the service: nothing is sent again on a guess."""
        return False

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        """The client's inverse, and the pre-image look() took for the action (else execute() takes it)."""
        cp: Checkpoint = {}
        looked = self._looked.pop(action_id, None)
        if looked is not None and looked.taken != {}:  # {}: the call's rule captures nothing (a read, say)
            taken = looked.taken
            cp.update({"pre_image": "taken", **taken} if isinstance(taken, dict) else {"capture_failed": taken})
        if inverse is not None and inverse.http is not None:
            cp["client_inverse"] = _call_json(call_of(inverse.http))
        return cp

    def look(self, action_id: str, spec: ActionSpec, timeout_s: float) -> PreImage:
        """Take the action's pre-image now (a read: before the action is journaled as running) and say the class
        the call has once it is in. Kept for checkpoint() until forget() drops it (the call was refused)."""
        assert spec.http is not None
        looked = self.pre_image(call_of(spec.http), timeout_s)
        self._looked[action_id] = looked
        return looked

    def forget(self, action_id: str) -> None:
        self._looked.pop(action_id, None)

    def pre_image(self, call: HttpCall, timeout_s: float, sender: HttpSender | None = None) -> PreImage:
        """The call's capture (see capture()) and the class it leaves the call: IRREVERSIBLE when no outcome of its
        rule can follow what the capture answered (a 401, a 500, a collection's 301), or when it is too large to
        keep; BEST_EFFORT at most when it holds a vault secret (kept only redacted)."""
        planned = self.plan_call(call)
        taken = self.capture(call, timeout_s, sender)
        found, why = planned.predicted, ""
        if planned.capture is not None and isinstance(taken, dict):
            asked = f"its pre-image {planned.capture.method} {planned.capture.path}"
            if "capture" in taken:
                capture = _exchange_from(taken["capture"])
                found = self.rules.predict(planned, call, capture)
                why = f"{asked} answered {capture.status}, after which no outcome of {planned.rule} can undo the call"
                if taken.get("capture_redacted") and found is ReversibilityClass.REVERSIBLE:
                    found, why = ReversibilityClass.BEST_EFFORT, f"{asked} holds a vault secret, kept only redacted"
            else:
                found, why = ReversibilityClass.IRREVERSIBLE, f"{asked}: {taken.get('capture_dropped', 'not taken')}"
        return PreImage(taken, planned.predicted, found, why)

    def capture(self, call: HttpCall, timeout_s: float, sender: HttpSender | None = None) -> Checkpoint | str:
        """The pre-image the rule asks for (a GET before the call), or why it could not be taken. `sender`: where
        (the resource itself unless given: a reversibility test passes the staging copy's)."""
        planned = self.plan_call(call)
        if planned.capture is None:
            return {}
        try:
            captured = (sender or self.sender).send(uncached(planned.capture), timeout_s, max_body=MAX_PRE_IMAGE_BYTES)
        except CallFailed as exc:
            return f"could not take the pre-image ({planned.capture.method} {planned.capture.path}): {exc.why}"
        if captured.truncated:
            return {"capture_dropped": f"the pre-image is larger than {MAX_PRE_IMAGE_BYTES} bytes"}
        cp: Checkpoint = {}
        redacted = self._redact(captured.body, False)
        if redacted != captured.body:
            cp["capture_redacted"] = "1"
            captured = Exchange(captured.status, captured.headers, redacted)
        cp["capture"] = _exchange_json(captured)
        related = []
        for probe in planned.related:  # what else the call changes, as the rule names it: compared at undo too
            try:
                answer = (sender or self.sender).send(uncached(probe), timeout_s, max_body=MAX_PRE_IMAGE_BYTES)
            except CallFailed as exc:
                return f"could not take the pre-image ({probe.method} {probe.path}, related): {exc.why}"
            if answer.truncated:
                return {"capture_dropped": f"{probe.method} {probe.path} answers more than {MAX_PRE_IMAGE_BYTES} bytes"}
            if self._redact(answer.body, False) != answer.body:
                return {"capture_dropped": f"{probe.method} {probe.path} holds a vault secret"}
            related.append([_call_json(probe), _exchange_json(answer)])
        if related:
            cp["capture_related"] = json.dumps(related)
        return cp

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        assert spec.http is not None
        call = call_of(spec.http)
        if "capture_failed" in checkpoint:
            captured: Checkpoint | str = checkpoint["capture_failed"]
        elif checkpoint.get("pre_image") == "taken":  # by look(), before the policy's second look
            captured = {k: v for k, v in checkpoint.items() if k.startswith("capture")}
        else:
            captured = self.capture(call, limits.timeout_s)
        if isinstance(captured, str):
            return Outcome(exec=None, changes=None, checkpoint_extra={"sent": "no"}, failure=f"{captured}; not sent")
        checkpoint = {**checkpoint, **captured}
        try:
            response = self.sender.send(call, limits.timeout_s, max_body=max(limits.output_bytes, MAX_DERIVE_BYTES))
        except CallFailed as exc:
            unanswered = {**captured, "sent": "maybe" if exc.maybe_sent else "no"}
            return Outcome(exec=None, changes=None, checkpoint_extra=unanswered, failure=exc.why)
        result = self._record(response, limits.output_bytes)
        if response.status >= 400:
            failure = f"the service answered {response.status}"
            refused = {**captured, "sent": "refused"}
            return Outcome(exec=None, changes=None, checkpoint_extra=refused, http=result, failure=failure)
        derived, extra = self.settle(call, response, checkpoint)
        inverse_spec: ActionSpec | None = None
        if derived.inverse is not None:
            inverse_spec = ActionSpec(ActionKind.HTTP, resource=self.resource.name, http=request_of(derived.inverse))
        return Outcome(
            exec=None,
            changes=None,
            checkpoint_extra={**captured, **extra},
            http=result,
            reversibility=Reversibility(derived.reversibility, Verdict.UNTESTED, self._redact_text(derived.note)),
            inverse=inverse_spec,
        )

    def settle(
        self, call: HttpCall, response: Exchange, checkpoint: Mapping[str, str], rules: RuleSet | None = None
    ) -> tuple[Derived, Checkpoint]:
        """After a successful call: its class and inverse from the response, and what rollback() needs. `rules`:
        the rule sets bound to where the call went (the resource's own unless given: the staging copy's)."""
        derived = self._derive(call, response, checkpoint, rules or self.rules)
        extra: Checkpoint = {"sent": "yes", "class": derived.reversibility.value, "note": derived.note}
        extra["verify"] = json.dumps(
            {
                "kind": derived.verify.kind.value,
                "call": _call_json(derived.verify.call) if derived.verify.call else None,
                "compare": "json" if derived.verify.as_json else "bytes",
                "ignore": list(derived.verify.ignore),
            }
        )
        if derived.inverse is not None:
            extra["inverse"] = _call_json(derived.inverse)
        return derived, extra

    def _derive(self, call: HttpCall, response: Exchange, cp: Mapping[str, str], rules: RuleSet) -> Derived:
        if call.method in READ_METHODS:
            return Derived(
                ReversibilityClass.READ_ONLY, None, Verify(VerifyKind.NONE, None), "read-only: nothing to undo"
            )
        if self._confine:
            return Derived(
                ReversibilityClass.IRREVERSIBLE, None, Verify(VerifyKind.NONE, None), "confine strategy: no undo"
            )
        derived = self._rule_derived(call, response, cp, rules)
        if "client_inverse" in cp:
            return client_inverse_checked(derived, _call_from(cp["client_inverse"]))
        return derived

    def _rule_derived(self, call: HttpCall, response: Exchange, cp: Mapping[str, str], rules: RuleSet) -> Derived:
        """What the rule set planning the call derives from its response and pre-image (or why nothing)."""
        if response.truncated:
            why = f"no undo: the response is larger than {MAX_DERIVE_BYTES} bytes, too large to derive an inverse"
            return Derived(ReversibilityClass.IRREVERSIBLE, None, Verify(VerifyKind.NONE, None), why)
        planned = self.plan_call(call)
        capture = _exchange_from(cp["capture"]) if "capture" in cp else None
        if planned.capture is not None and capture is None:
            why = cp.get("capture_dropped", "no pre-image was taken")
            return Derived(ReversibilityClass.IRREVERSIBLE, None, Verify(VerifyKind.NONE, None), f"no undo: {why}")
        derived = rules.derive(planned, call, response, capture)
        if cp.get("capture_redacted") and derived.reversibility is ReversibilityClass.REVERSIBLE:
            return Derived(
                ReversibilityClass.BEST_EFFORT,
                derived.inverse,
                derived.verify,
                derived.note + "; the pre-image held a vault secret, which goexd keeps only redacted",
            )
        return derived

    def _record(self, response: Exchange, cap: int) -> HttpResult:
        body = response.body[:cap]
        truncated = response.truncated or len(response.body) > cap
        return HttpResult(
            status=response.status,
            headers=tuple((k, self._redact_text(v)) for k, v in sorted(response.headers.items())),
            body=self._redact(body, truncated),
            body_truncated=truncated,
        )

    # ------------------------------------------------------------ resolution

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        return None  # the call is done already; accepting it only drops the pre-image with the checkpoint

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        sent = checkpoint.get("sent")
        if sent in (None, "no", "refused"):
            return RollbackReport(True, "nothing to undo: the service did not act on the call")
        if sent == "maybe":
            return RollbackReport(
                False, "the call got no answer and may have been carried out; goexd does not retry or guess an undo"
            )
        if checkpoint.get("class") == ReversibilityClass.READ_ONLY.value:
            return RollbackReport(True, "read-only: nothing to undo")
        if "inverse" not in checkpoint:
            if checkpoint.get("class") == ReversibilityClass.IRREVERSIBLE.value:
                raise FailedPrecondition(f"action {action_id} is irreversible: {checkpoint.get('note', '')}")
            head = f"nothing to undo: {checkpoint.get('note', 'the call changed nothing')}"
            if not json.loads(checkpoint.get("verify", '{"call": null}')).get("call"):
                return RollbackReport(True, head)  # its rule says the call changed nothing, and has nothing to check
            with self._lock:  # the rule says what must still hold (the item still absent, still its pre-image)
                report = self.check_undo(checkpoint, head, self.sender)
                return replace(report, detail=self._redact_text(report.detail))
        inverse = _call_from(checkpoint["inverse"])
        verify = json.loads(checkpoint.get("verify", '{"kind": "status", "call": null}'))
        unchecked = VerifyKind(verify["kind"]) in (VerifyKind.STATUS, VerifyKind.NONE) or not verify["call"]
        if inverse.method in READ_METHODS and unchecked:
            # A read takes nothing back, and nothing would check it: an undo recorded as done would claim what did
            # not happen (trial 15b H28: a sent mail "undone" by a GET). Refused; the action stays as it is.
            raise FailedPrecondition(
                f"cannot undo action {action_id}: its inverse {inverse.method} {inverse.path} is read-only, so it "
                "takes nothing back, and nothing would check the result; the action stays pending (commit it)"
            )
        with self._lock:
            if (done := self._already_undone(checkpoint)) is not None:
                return done
            try:
                head = self.send_inverse(checkpoint, self.sender)
            except FailedPrecondition as exc:
                raise FailedPrecondition(f"{exc}; the action stays pending") from None
            report = self.check_undo(checkpoint, head, self.sender)
            return replace(report, detail=self._redact_text(report.detail))  # it names fields of what the service holds

    def _already_undone(self, checkpoint: Checkpoint) -> RollbackReport | None:
        """The undo's result, when it can be checked and already holds: then the inverse is not sent (again). An undo
        is done again when goexd was killed after its inverse went out (recovery finishes it) or a retry follows one
        whose answer was lost: a create's DELETE would be answered 404 and the action stay pending for good, a
        delete's re-creation would be sent twice. One look (a GET) before every undo that has something to check."""
        verify = json.loads(checkpoint.get("verify", '{"kind": "status", "call": null}'))
        if VerifyKind(verify["kind"]) in (VerifyKind.STATUS, VerifyKind.NONE) or not verify["call"]:
            return None  # nothing to look at: the inverse is sent, and only its status tells
        report = self.check_undo(checkpoint, "the service already holds what the undo must give back", self.sender)
        if not report.verified:
            return None
        detail = f"{report.detail} (the inverse was not sent: nothing was left to undo)"
        return replace(report, detail=self._redact_text(detail))

    @staticmethod
    def send_inverse(checkpoint: Checkpoint, sender: HttpSender) -> str:
        """Send the checkpoint's inverse; what it answered (UNAVAILABLE without an answer, FAILED_PRECONDITION for a
        4xx/5xx)."""
        inverse = _call_from(checkpoint["inverse"])
        try:
            answer = sender.send(inverse, 60.0, max_body=MAX_DERIVE_BYTES)
        except CallFailed as exc:
            raise Unavailable(f"the inverse {inverse.method} {inverse.path} failed: {exc.why}") from None
        if answer.status >= 400:
            raise FailedPrecondition(f"the inverse {inverse.method} {inverse.path} was answered {answer.status}")
        return f"inverse {inverse.method} {inverse.path} answered {answer.status}"

    @staticmethod
    def check_undo(checkpoint: Checkpoint, head: str, sender: HttpSender) -> RollbackReport:
        """After the inverse: compare what the service holds now with what the undo must achieve (absent after a
        create; the pre-image back after an update or delete). Unverified (compared=False) where the checkpoint has
        nothing to compare against: an inverse's 2xx alone proves nothing."""
        verify = json.loads(checkpoint.get("verify", '{"kind": "status", "call": null}'))
        kind = VerifyKind(verify["kind"])
        if kind in (VerifyKind.STATUS, VerifyKind.NONE) or not verify["call"]:
            why = "only the inverse's own status" if kind is VerifyKind.STATUS else "no check possible"
            return RollbackReport(
                False,
                f"{head}; nothing to compare the result against ({why}): whether the call was taken back is not known",
                compared=False,
            )
        probe = _call_from(verify["call"])
        try:
            now = sender.send(uncached(probe), 60.0, max_body=MAX_PRE_IMAGE_BYTES)
        except CallFailed as exc:
            return RollbackReport(
                False, f"{head}; the check {probe.method} {probe.path} failed: {exc.why}", compared=False
            )
        if kind is VerifyKind.ABSENT:
            ok = now.status in (404, 410)
            report = RollbackReport(
                ok,
                f"{head}; {probe.method} {probe.path} answered {now.status}"
                + (" (gone, as expected)" if ok else ", but it should be gone"),
            )
            related_absent = json.loads(checkpoint.get("capture_related", "[]"))
            as_json = verify.get("compare", "json") == "json"
            return _with_related(report, related_absent, sender, as_json, tuple(verify.get("ignore", ())))
        capture = _exchange_from(checkpoint["capture"]) if "capture" in checkpoint else None
        if capture is None:
            return RollbackReport(False, f"{head}; no pre-image to compare with", compared=False)
        as_json = verify.get("compare", "json") == "json"  # (checkpoints from before compare was kept: json)
        ignore = tuple(verify.get("ignore", ()))
        ok = pre_image_matches(capture, now, as_json, ignore)
        left_out = f"; left out of the comparison, as the rule set says: {', '.join(ignore)}" if ignore else ""
        related = json.loads(checkpoint.get("capture_related", "[]"))
        if not related:
            scope = (
                f" (this item only{left_out}: what the service keeps beside it, such as a trash, a log or other "
                "collections, is not compared unless the rule names it as related)"
            )
        else:
            scope = f" ({left_out.removeprefix('; ')})" if left_out else ""
        said = (
            f"equals the pre-image{scope}"
            if ok
            else f"differs from the pre-image ({_difference(capture, now, as_json, ignore)}{left_out})"
        )
        report = RollbackReport(ok, f"{head}; {probe.method} {probe.path} {said}")
        return _with_related(report, related, sender, as_json, ignore)

    def fingerprint(self) -> str:
        raise FailedPrecondition("a REST service has no fingerprint; each undo is verified call by call")

    def close(self) -> None:
        self.sender.close()
        if self.staging is not None:
            self.staging.close()


def _with_related(
    report: RollbackReport, related: list[list[str]], sender: HttpSender, as_json: bool, ignore: Sequence[str]
) -> RollbackReport:
    """The report with the rule's related calls compared too (each must answer what it did before the call)."""
    if not related:
        return report
    differ, same = [], []
    for call_text, answer_text in related:
        probe, before = _call_from(call_text), _exchange_from(answer_text)
        try:
            now = sender.send(uncached(probe), 60.0, max_body=MAX_PRE_IMAGE_BYTES)
        except CallFailed as exc:
            differ.append(f"{probe.method} {probe.path} got no answer ({exc.why})")
            continue
        if pre_image_matches(before, now, as_json, ignore):
            same.append(f"{probe.method} {probe.path}")
        else:
            what = _difference(before, now, as_json, ignore)
            differ.append(f"{probe.method} {probe.path} differs from before the call ({what})")
    if differ:
        return RollbackReport(False, f"{report.detail}; but {'; '.join(differ)}")
    return replace(report, detail=f"{report.detail}; {', '.join(same)} answer(s) as before the call")


def _difference(before: Exchange, now: Exchange, as_json: bool, ignore: Sequence[str] = ()) -> str:
    """What differs between a pre-image and what the service answers now, by field name (values are not shown:
    they may be anything the service holds)."""
    if before.status != now.status:
        return f"status {now.status}, was {before.status}"
    was, is_now = (e.headers.get("content-type", "").split(";")[0].strip().lower() for e in (before, now))
    if was != is_now:
        same = "the same body bytes" if before.body == now.body else "a different body"
        return f"the content type changed: {is_now or 'none'}, was {was or 'none'} ({same})"
    if not as_json:
        if before.body == now.body:
            return "the same body bytes"
        return f"the body's bytes differ ({len(now.body)} bytes, was {len(before.body)}; compared byte for byte)"
    try:
        old, new = without_fields(json.loads(before.body), ignore), without_fields(json.loads(now.body), ignore)
    except ValueError:
        return f"body of {len(now.body)} bytes, was {len(before.body)} bytes, not the same"
    if isinstance(old, dict) and isinstance(new, dict):
        changed = [k for k in old if k in new and json.dumps(old[k]) != json.dumps(new[k])]
        parts = [
            f"{label}: {', '.join(shown(k) for k in keys[:10])}{', ...' if len(keys) > 10 else ''}"
            for label, keys in (
                ("changed", changed),
                ("missing", [k for k in old if k not in new]),
                ("added", [k for k in new if k not in old]),
            )
            if keys
        ]
        if parts:
            return "; ".join(parts)
    return "the JSON body is not the same"


def client_inverse_checked(derived: Derived, inverse: HttpCall) -> Derived:
    """A client's inverse in place of the derived one, held to the same check: what the rule set planning the call
    says the undo must leave (the created item absent, the pre-image back). Where it says nothing comparable (no
    rule, no pre-image, a status-only check) the undo will be unverified; the class is then best effort, never
    reversible, and never irreversible either (the client's inverse can still be sent)."""
    sent = f"the client's inverse {inverse.method} {inverse.path}"
    check = derived.verify
    if check.kind in (VerifyKind.ABSENT, VerifyKind.PRE_IMAGE) and check.call is not None:
        cls = derived.reversibility
        if cls not in (ReversibilityClass.REVERSIBLE, ReversibilityClass.BEST_EFFORT):
            cls = ReversibilityClass.BEST_EFFORT
        want = "must answer 404/410" if check.kind is VerifyKind.ABSENT else "must answer the pre-image"
        probe = f"{check.call.method} {check.call.path}"
        note = f"{sent}, checked when undone as the rule's own: {probe} {want} ({derived.note})"
        return Derived(cls, inverse, check, note)
    note = f"{sent}; nothing to check it against, so its undo is unverified ({derived.note})"
    return Derived(ReversibilityClass.BEST_EFFORT, inverse, Verify(VerifyKind.NONE, None), note)
