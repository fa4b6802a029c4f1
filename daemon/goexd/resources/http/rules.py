"""The undo of a REST call, derived from its recorded response by declarative rule sets.

A rule set (TOML, one file per service: shipped in rule_sets/, extendable from the user's
directories; grammar in docs/http-rules.md) matches a write by method and path. Before the call,
`plan` says whether to capture a pre-image (a GET sent first) and predicts the reversibility
class, for the policy. After it, `derive` picks the first outcome whose conditions hold on the
response (and the capture), and builds the inverse call from the real values the service
returned (ids, version ids, the captured body), with the check that proves the undo worked.
Pure: no I/O but reading the rule files; the HTTP resource manager sends the calls.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from goexd.domain.models import ReversibilityClass
from goexd.policy.locate import line_of
from goexd.resources.http.rules_parse import parse_rule_file
from goexd.resources.http.rules_spec import (
    CallSpec,
    Outcome,
    Rule,
    RuleError,
    RuleFile,
    VerifyKind,
    VerifySpec,
    When,
)
from goexd.resources.http.rules_template import (
    Missing,
    Ref,
    Template,
    Value,
    json_value,
    parse_json_body,
    render,
    render_json,
)

__all__ = [
    "Derived",
    "Exchange",
    "HttpCall",
    "Planned",
    "RuleError",
    "RuleSet",
    "Verify",
    "VerifyKind",
    "load_rule_sets",
    "pre_image_matches",
    "select_rules",
    "verified",
]

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GONE = (404, 410)
GENERIC = "generic"  # the built-in fallback: generic HTTP semantics (RFC 9110), tried after the named sets
ONLY = "only:"  # a resource's `rules` with this prefix gets exactly the sets it names, no fallback
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')
# From the strongest to the weakest: a rule's prediction is its weakest outcome.
_STRENGTH = (ReversibilityClass.REVERSIBLE, ReversibilityClass.BEST_EFFORT, ReversibilityClass.IRREVERSIBLE)


@dataclass(frozen=True)
class HttpCall:
    """One request, relative to the resource's base URL."""

    method: str  # upper case
    path: str  # starts with "/", percent-encoded as sent, no query
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Exchange:
    """A recorded response."""

    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    truncated: bool = False  # the service sent more than was read


@dataclass(frozen=True)
class Planned:
    rule: str  # "<ruleset>.<rule name>", "" when no rule matched
    capture: HttpCall | None  # the GET to send before the call (pre-image), or None
    predicted: ReversibilityClass  # the weakest class among the rule's outcomes
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    related: tuple[HttpCall, ...] = ()  # the rule's related GETs, sent with the capture and compared at undo


@dataclass(frozen=True)
class Verify:
    kind: VerifyKind
    # ABSENT: expect 404/410; PRE_IMAGE: expect what the capture got; None for STATUS and NONE.
    call: HttpCall | None
    as_json: bool = False  # PRE_IMAGE: bodies JSON-equal (the rule set's compare = "json"), else byte-equal
    ignore: tuple[str, ...] = ()  # PRE_IMAGE with as_json: JSON fields left out (the rule set's ignore_fields)


@dataclass(frozen=True)
class Derived:
    reversibility: ReversibilityClass
    inverse: HttpCall | None  # None: nothing to undo, or no undo possible (IRREVERSIBLE)
    verify: Verify
    note: str  # one line for the user: the rule, the outcome and why (never body contents)


_NO_CHECK = Verify(VerifyKind.NONE, None)


class RuleSet:
    def __init__(self, spec: RuleFile, source: str) -> None:
        self.name = spec.name
        self.description = spec.description
        self.compare = spec.compare
        self.ignore_fields = spec.ignore_fields
        self.source = source  # the file it was loaded from
        self.rules = spec.rules
        self._by_name = {r.name: r for r in spec.rules}
        # Set by bound(): what Location headers are resolved against, and the sets tried after this one.
        self.base_url = ""
        self.fallbacks: tuple[RuleSet, ...] = ()
        # An action's call is planned up to three times in a row (the policy's facts, the pre-image, the
        # derivation): the last plan is kept. One only: a call holds its body, which may be large.
        self._last: tuple[HttpCall, Planned] | None = None

    def __repr__(self) -> str:
        return f"RuleSet({self.chain!r}, {len(self.rules)} rules, from {self.source})"

    @property
    def chain(self) -> str:
        """The names of the sets tried, in order: "rest+generic"."""
        return "+".join(s.name for s in (self, *self.fallbacks))

    def comparison(self, rule: Rule | None) -> tuple[bool, tuple[str, ...]]:
        """How this set's pre-image checks compare bodies: as JSON or as bytes, and the JSON fields left out
        (the set's ignore_fields, then `rule`'s own)."""
        ignore = (*self.ignore_fields, *(rule.ignore_fields if rule is not None else ()))
        return self.compare == "json", ignore

    def rule_named(self, name: str) -> Rule | None:
        """A rule by its qualified name ("rest.update"), in this set or its fallbacks."""
        set_name, _, rule_name = name.partition(".")
        owner = next((s for s in (self, *self.fallbacks) if s.name == set_name), None)
        return owner._by_name.get(rule_name) if owner is not None else None

    def bound(self, base_url: str, fallbacks: Sequence[RuleSet] = ()) -> RuleSet:
        """This set for one resource: Location headers resolve against `base_url`, and a write none
        of its rules matches is planned by the first of `fallbacks` that has a rule for it."""
        chained = copy.copy(self)
        chained.base_url = base_url.rstrip("/")
        chained.fallbacks = tuple(fallbacks)
        chained._last = None
        return chained

    def plan(self, call: HttpCall) -> Planned:
        """The first rule matching the call (in file order, then in each fallback set's), its capture
        and its prediction."""
        last = self._last  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == call:
            return last[1]
        planned = self._plan(call)
        self._last = (call, planned)
        return planned

    def _plan(self, call: HttpCall) -> Planned:
        if call.method in READ_ONLY_METHODS:
            return Planned("", None, ReversibilityClass.READ_ONLY)
        for rule_set in (self, *self.fallbacks):
            planned = rule_set._match(call)
            if planned is not None:
                return planned
        return Planned("", None, ReversibilityClass.IRREVERSIBLE)

    def _match(self, call: HttpCall) -> Planned | None:
        """The plan of this set's own first rule matching the call, or None."""
        for rule in self.rules:
            if call.method not in rule.methods or (rule.no_query and call.query):
                continue
            variables = rule.pattern.match(call.path)
            if variables is None:
                continue
            context = _Context(variables, call, None, None)
            capture = None
            related: list[HttpCall] = []
            if rule.capture is not None:
                # From a request value that is not there: no capture, and derive falls through.
                with contextlib.suppress(Missing):
                    capture = _build(rule.capture, context)
                    related = [_build(r, context) for r in rule.related]
            predicted = max((o.reversibility for o in rule.outcomes), key=_STRENGTH.index)
            name = f"{self.name}.{rule.name}"
            return Planned(name, capture, predicted, MappingProxyType(variables), tuple(related))
        return None

    def _candidates(self, planned: Planned, call: HttpCall) -> list[tuple[Planned, Rule]]:
        """The planned rule, then each later set's rule for the call that planned the same capture:
        a specific rule that cannot undo an answer (a non-JSON body for `rest`) leaves it to them."""
        set_name, _, rule_name = planned.rule.partition(".")
        chain = (self, *self.fallbacks)
        owner = next((i for i, s in enumerate(chain) if s.name == set_name), None)
        rule = chain[owner]._by_name.get(rule_name) if owner is not None else None
        if owner is None or rule is None:
            raise ValueError(f"{planned.rule!r} is not a rule of {self.chain}")
        found = [(planned, rule)]
        for later in chain[owner + 1 :]:
            other = later._match(call)
            if other is not None and other.capture == planned.capture:
                found.append((other, later._by_name[other.rule.partition(".")[2]]))
        return found

    def predict(self, planned: Planned, call: HttpCall, capture: Exchange | None) -> ReversibilityClass:
        """The prediction once the capture is in: the weakest class among the outcomes whose capture
        conditions hold on it (IRREVERSIBLE when none can: a capture answered 301 or 500, say)."""
        if not planned.rule:
            return planned.predicted
        if planned.capture is None:
            return planned.predicted  # nothing learnt since the plan
        context = _Context(dict(planned.variables), call, None, capture, self.base_url)
        classes = []
        for candidate, rule in self._candidates(planned, call):
            context.variables = dict(candidate.variables)
            for outcome in rule.outcomes:
                try:
                    _check_capture(outcome.when, context)
                except Missing:
                    continue
                classes.append(outcome.reversibility)
                if not _on_response(outcome.when):
                    return max(classes, key=_STRENGTH.index)  # it applies whatever the answer: none after it can
        return ReversibilityClass.IRREVERSIBLE  # some answer meets no outcome

    def derive(self, planned: Planned, call: HttpCall, response: Exchange, capture: Exchange | None) -> Derived:
        """The undo of `call` from its recorded response (and the capture's, when one was sent)."""
        if call.method in READ_ONLY_METHODS:
            return Derived(
                ReversibilityClass.READ_ONLY, None, _NO_CHECK, f"{call.method} is read-only: nothing to undo"
            )
        if not planned.rule:
            note = f"no rule of {self.chain} matches {call.method} {call.path}"
            return Derived(ReversibilityClass.IRREVERSIBLE, None, _NO_CHECK, note)
        reasons: list[str] = []
        for i, (candidate, rule) in enumerate(self._candidates(planned, call)):
            context = _Context(dict(candidate.variables), call, response, capture, self.base_url)
            derived = _derive_rule(candidate, rule, context, reasons, f"{candidate.rule} " if i else "")
            if derived is not None:
                owner = next(s for s in (self, *self.fallbacks) if s.name == candidate.rule.partition(".")[0])
                as_json, ignore = owner.comparison(rule)
                return replace(derived, verify=replace(derived.verify, as_json=as_json, ignore=ignore))
        note = f"{planned.rule}: no outcome applies ({'; '.join(reasons)})"
        return Derived(ReversibilityClass.IRREVERSIBLE, None, _NO_CHECK, note)


def _derive_rule(planned: Planned, rule: Rule, context: _Context, reasons: list[str], prefix: str) -> Derived | None:
    """The first outcome of `rule` that applies, or None (each miss added to `reasons`, after `prefix`)."""
    for j, outcome in enumerate(rule.outcomes):
        label = f"{planned.rule} [{outcome.label or f'outcome {j + 1}'}]"
        try:
            _check(outcome.when, context)
            inverse = _build(outcome.inverse, context) if outcome.inverse is not None else None
            verify = _verify(outcome.verify, inverse, planned.capture, context)
        except Missing as exc:
            reasons.append(f"{prefix}{outcome.label or j + 1}: {exc.reason}")
            continue
        note = _note(label, outcome, inverse)
        if outcome.reversibility is ReversibilityClass.IRREVERSIBLE and reasons:
            note += f" ({'; '.join(reasons)})"  # why the outcomes before it did not apply
        return Derived(outcome.reversibility, inverse, verify, note)
    return None


def _on_response(when: When) -> bool:
    """Whether an outcome's conditions look at the response (else only at the capture)."""
    return bool(when.response_status or when.response_header or when.response_header_not or when.response_json)


def _note(label: str, outcome: Outcome, inverse: HttpCall | None) -> str:
    undo = f"undo {inverse.method} {inverse.path}" if inverse is not None else "nothing to undo"
    if outcome.reversibility is ReversibilityClass.IRREVERSIBLE:
        undo = "no undo"
    text = f"{label}: {outcome.reversibility}, {undo}" + (f": {outcome.note}" if outcome.note else "")
    return re.sub(r"\s+", " ", text)


# ---------------------------------------------------------------- building calls


@dataclass
class _Context:
    variables: dict[str, str]
    request: HttpCall
    response: Exchange | None
    capture: Exchange | None
    base_url: str = ""  # the resource's, without a trailing "/"; "" when not bound to one

    def lookup(self, ref: Ref) -> Value:
        if not ref.source:
            return self.variables[ref.field]  # checked against the pattern when loaded
        if ref.source == "request":
            headers: Mapping[str, str] = {k.lower(): v for k, v in self.request.headers}
            body = self.request.body
        else:
            exchange = self.response if ref.source == "response" else self.capture
            if exchange is None:
                raise Missing(f"{ref}: no {ref.source} was recorded")
            headers, body = exchange.headers, exchange.body
        if ref.field == "body":
            return body
        if ref.field == "location":
            return self._location(ref, headers)
        if ref.field == "etag":
            etag = headers.get("etag", "").strip()
            if not _STRONG_ETAG.fullmatch(etag):
                raise Missing(f"{ref}: no strong ETag" + (f" ({etag!r} is weak)" if etag else ""))
            return etag
        if ref.field == "headers":
            if ref.path[0] not in headers:
                raise Missing(f"{ref} is missing")
            return headers[ref.path[0]]
        return json_value(ref, parse_json_body(ref, body), ref.path)

    def _location(self, ref: Ref, headers: Mapping[str, str]) -> str:
        """The Location header as a path under the base URL (RFC 9110: resolved against the
        request's URL); Missing when absent, elsewhere, with a query, or naming the request's own
        target or one of its ancestors (a DELETE there would remove more than what was made)."""
        if "location" not in headers:
            raise Missing(f"{ref}: no Location header")
        if not self.base_url:
            raise Missing(f"{ref}: the rule set is not bound to a base URL to resolve it against")
        base = urlsplit(self.base_url)
        target = urlsplit(urljoin(self.base_url + self.request.path, headers["location"].strip()))
        prefix = base.path.rstrip("/")
        if _origin(target) != _origin(base) or not target.path.startswith(prefix + "/"):
            raise Missing(f"{ref} is outside the resource's base URL")
        path = target.path[len(prefix) :]
        if target.query or any(unquote(w) in (".", "..") for w in path.split("/")):
            raise Missing(f"{ref} has a query or a dot segment")
        own = self.request.path.rstrip("/")
        if path.rstrip("/") == own or own.startswith(path.rstrip("/") + "/") or path == "/":
            raise Missing(f"{ref} names the request's target or a container of it")
        return path


def _origin(url: SplitResult) -> tuple[str, str, int]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme.lower(), (url.hostname or "").lower(), port


def _build(spec: CallSpec, context: _Context) -> HttpCall:
    lookup = context.lookup
    path = render(spec.path, lookup, in_path=True)
    query = tuple((k, render(v, lookup)) for k, v in spec.query)
    headers: list[tuple[str, str]] = []
    for name, template in spec.headers:
        with contextlib.suppress(Missing):  # a header whose value is not there is left out
            headers.append((name, render(template, lookup)))
    body = b""
    if spec.body is not None:
        raw = _raw_body(spec.body, context)
        body = raw if raw is not None else render(spec.body, lookup).encode()
    elif spec.json is not None:
        raw = _raw_body(spec.json, context) if isinstance(spec.json, Template) else None
        if raw is not None:
            parse_json_body(_exact(spec.json), raw)  # sent as it is, but only if it is JSON
            body = raw
        else:
            body = json.dumps(render_json(spec.json, lookup), separators=(",", ":")).encode()
        if not any(name == "content-type" for name, _ in headers):
            headers.append(("content-type", "application/json"))
    return HttpCall(spec.method, path, query, tuple(headers), body)


def _exact(template: Template) -> Ref:
    ref = template.exact
    assert ref is not None
    return ref


def _raw_body(template: Template, context: _Context) -> bytes | None:
    """The bytes of `{x.body}` when the template is exactly that (sent unchanged), else None."""
    ref = template.exact
    if ref is None or ref.field != "body":
        return None
    value = context.lookup(ref)
    assert isinstance(value, bytes)
    return value


def _in(status: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


def _check(when: When, context: _Context) -> None:
    """Missing (saying which) unless every condition holds."""
    _check_capture(when, context)
    response = context.response
    assert response is not None
    if when.response_status and not _in(response.status, when.response_status):
        raise Missing(f"response status {response.status} not in the outcome's")
    for name in when.response_header:
        if name not in response.headers:
            raise Missing(f"response header {name} is missing")
    for name, value in when.response_header_not:
        if response.headers.get(name) == value:
            raise Missing(f"response header {name} is {value!r}")
    for path in when.response_json:
        ref = Ref("response", "json", path)
        context.lookup(ref)


def _check_capture(when: When, context: _Context) -> None:
    """Missing unless the conditions on the capture hold (the rest need the response)."""
    if not when.capture_status and not when.capture_allows:
        return
    capture = context.capture
    if capture is None:
        raise Missing("no capture was recorded")
    if when.capture_status and not _in(capture.status, when.capture_status):
        raise Missing(f"capture status {capture.status} not in the outcome's")
    allowed = {m.strip().upper() for m in capture.headers.get("allow", "").split(",")}
    for method in when.capture_allows:
        if method not in allowed:
            raise Missing(f"the capture's Allow header does not list {method}")


def _verify(spec: VerifySpec, inverse: HttpCall | None, capture: HttpCall | None, context: _Context) -> Verify:
    if spec.kind in (VerifyKind.STATUS, VerifyKind.NONE):
        return Verify(spec.kind, None)
    if spec.path is not None:
        lookup = context.lookup
        path = render(spec.path, lookup, in_path=True)
        return Verify(spec.kind, HttpCall(spec.method, path, tuple((k, render(v, lookup)) for k, v in spec.query)))
    if spec.kind is VerifyKind.ABSENT and inverse is not None and inverse.method == "DELETE":
        return Verify(spec.kind, HttpCall(spec.method, inverse.path))
    if capture is None:
        raise Missing("no capture call to verify with")
    if spec.kind is VerifyKind.ABSENT:
        return Verify(spec.kind, HttpCall(spec.method, capture.path, capture.query))
    return Verify(spec.kind, capture)


# ---------------------------------------------------------------- checking an undo


def pre_image_matches(capture: Exchange, now: Exchange, as_json: bool, ignore: Sequence[str] = ()) -> bool:
    """Whether `now` answers what the capture did: both gone (404/410), or the same status, media
    type (Content-Type without its parameters) and body (with `as_json`, JSON-equal when both are
    JSON, the fields in `ignore` left out; else, and otherwise, byte-equal)."""
    if capture.status in GONE:
        return now.status in GONE
    if capture.status != now.status or _media_type(capture) != _media_type(now):
        return False
    if as_json and _is_json(capture) and _is_json(now):
        try:
            return _same(without_fields(json.loads(capture.body), ignore), without_fields(json.loads(now.body), ignore))
        except ValueError:
            pass
    return capture.body == now.body


def without_fields(doc: Any, ignore: Sequence[str]) -> Any:
    """A JSON document without the fields at the dotted paths in `ignore` (through objects only; a path that
    is not there is no matter). The document is not changed: a copy is returned."""
    if not ignore or not isinstance(doc, dict):
        return doc
    out = dict(doc)
    nested: dict[str, list[str]] = {}
    for path in ignore:
        head, dot, rest = path.partition(".")
        if dot:
            nested.setdefault(head, []).append(rest)
        else:
            out.pop(head, None)
    for head, rests in nested.items():
        if head in out:
            out[head] = without_fields(out[head], rests)
    return out


def verified(verify: Verify, *, inverse: Exchange | None, check: Exchange | None, capture: Exchange | None) -> bool:
    """Whether an undo passed its check: `inverse` is the inverse call's answer (None when there
    was none to send), `check` the answer to verify.call, `capture` the pre-image."""
    if inverse is not None and not 200 <= inverse.status < 300:
        return False
    if verify.kind is VerifyKind.ABSENT:
        return check is not None and check.status in GONE
    if verify.kind is VerifyKind.PRE_IMAGE:
        return (
            check is not None
            and capture is not None
            and pre_image_matches(capture, check, verify.as_json, verify.ignore)
        )
    return True


def _media_type(exchange: Exchange) -> str:
    return exchange.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(exchange: Exchange) -> bool:
    kind = _media_type(exchange)
    return kind == "application/json" or kind.endswith("+json")


def _same(a: Any, b: Any) -> bool:
    """JSON equality that tells true from 1 (Python's == does not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b  # 1 and 1.0 are one JSON number
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- loading


def shipped_rule_files() -> list[Traversable]:
    """The rule files in the package (also in an installed wheel, hence importlib.resources)."""
    folder = resources.files("goexd.resources.http").joinpath("rule_sets")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)


def select_rules(sets: Mapping[str, RuleSet], spec: str, base_url: str = "") -> RuleSet:
    """The rule sets a resource's `rules` names, bound to its base URL: one name or several joined
    by "+" ("myapi+rest"), tried in that order, then `generic` unless named already or the value
    starts with "only:". ValueError saying why for an unknown name or a malformed value."""
    only = spec.startswith(ONLY)
    names = spec.removeprefix(ONLY).split("+")
    for name in names:
        if name not in sets:
            known = ", ".join(sorted(sets))
            raise ValueError(f"no rule set named {name!r} (known: {known}; join several with '+', prefix 'only:')")
    if len(set(names)) != len(names):
        raise ValueError(f"{spec!r} names a rule set twice")
    if not only and GENERIC not in names and GENERIC in sets:
        names.append(GENERIC)
    return sets[names[0]].bound(base_url, [sets[n] for n in names[1:]])


def load_rule_sets(dirs: Sequence[Path | str] = ()) -> dict[str, RuleSet]:
    """The shipped rule sets, then each directory's *.toml in turn: a file whose `name` is
    already loaded from an earlier place replaces it; two files of one place with the same name
    are an error."""
    sets = _load_group([(f"{f.name} (shipped)", f.read_text(encoding="utf-8")) for f in shipped_rule_files()])
    for folder in map(Path, dirs):
        if not folder.is_dir():
            raise RuleError(str(folder), 0, "not a directory of rule files")
        files = []
        for path in sorted(folder.glob("*.toml")):
            try:
                files.append((str(path), path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise RuleError(str(path), 0, f"cannot read: {exc}") from None
        sets.update(_load_group(files))
    return sets


def _load_group(files: Sequence[tuple[str, str]]) -> dict[str, RuleSet]:
    group: dict[str, RuleSet] = {}
    for file, text in files:
        rule_set = RuleSet(parse_rule_file(text, file), file)
        if rule_set.name in group:
            other = group[rule_set.name].source
            raise RuleError(file, line_of(text, ("name",)), f"rule set {rule_set.name!r} is also defined in {other}")
        group[rule_set.name] = rule_set
    return group
