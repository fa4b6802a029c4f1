"""Policy.check: decide allow / deny (with the rule) / needs-approval for one action's facts.

Order, first refusal wins: the action's own class rules (SQL statement classes, sandbox limits
and network, HTTP method and path), then deny patterns on the request, then the effect of the
action's reversibility class, then rate limits. An approval turns a needs-approval into an allow
(it is recorded with the action); it never overrides a deny. Rate limits count allowed actions
only, in a sliding window per resource.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import lru_cache

from goexd.engine.models import LimitsRequest
from goexd.policy.model import (
    ALLOW,
    ActionFacts,
    Decision,
    DecisionKind,
    DenyRule,
    Effect,
    HttpRequestFacts,
    Policy,
    RateLimit,
    SandboxRules,
)
from goexd.sandbox.base import Limits

MAX_APPROVAL_CHARS = 500


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    """'*' matches within one path segment, '**' across segments, '?' one character."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def covers(allowed: str, requested: str) -> bool:
    """Whether an allowed host pattern admits a requested one ("*.example.com" admits its subdomains)."""
    a_host, _, a_port = allowed.rpartition(":") if allowed.count(":") == 1 else (allowed, "", "")
    r_host, _, r_port = requested.rpartition(":") if requested.count(":") == 1 else (requested, "", "")
    if a_port and a_port != r_port:
        return False
    if a_host.startswith("*."):
        return r_host.endswith(a_host[1:]) and r_host != a_host[2:]
    return a_host == r_host


def path_allowed(patterns: tuple[str, ...], path: str) -> bool:
    return any(_glob(p).fullmatch(path) for p in patterns)


def _needs(rule: str, reason: str) -> Decision:
    return Decision(DecisionKind.NEEDS_APPROVAL, rule, reason)


def _deny(rule: str, reason: str) -> Decision:
    return Decision(DecisionKind.DENY, rule, reason)


def _effect(effect: Effect, rule: str, what: str) -> Decision | None:
    if effect is Effect.DENY:
        return _deny(rule, f'{what}; the policy refuses it ({rule} = "deny")')
    if effect is Effect.APPROVAL:
        return _needs(rule, f'{what}; the policy needs an explicit approval for it ({rule} = "approval")')
    return None


def _first(decisions: Iterator[Decision | None]) -> Decision | None:
    """The first deny; else the first needs-approval; else None."""
    pending: Decision | None = None
    for d in decisions:
        if d is None:
            continue
        if d.kind is DecisionKind.DENY:
            return d
        pending = pending or d
    return pending


# ---------------------------------------------------------------- deny patterns


def _json_values(node: object, path: tuple[str, ...]) -> Iterator[object]:
    """Every value at the dotted path; lists on the way (and at the end) are walked element by element."""
    if isinstance(node, list):
        for item in node:
            yield from _json_values(item, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, dict) and path[0] in node:
        yield from _json_values(node[path[0]], path[1:])


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def deny_matches(rule: DenyRule, request: HttpRequestFacts) -> str | None:
    """What matched (for the reason), or None."""
    if rule.methods is not None and request.method not in rule.methods:
        return None
    if rule.json is not None:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return None  # not JSON: a json rule has nothing to look at (a contains/regex rule still does)
        for value in _json_values(body, rule.json):
            if rule.above is not None and (n := _as_number(value)) is not None and n > rule.above:
                return f"{'.'.join(rule.json)} = {value!r} is above {rule.above:g}"
            if rule.not_matching is not None and isinstance(value, str) and not rule.not_matching.search(value):
                return f"{'.'.join(rule.json)} = {value!r} does not match {rule.not_matching.pattern!r}"
        return None
    texts = {
        "url": lambda: request.url,
        "headers": lambda: "\n".join(f"{k}: {v}" for k, v in request.headers.items()),
        "body": lambda: request.body.decode("utf-8", "replace"),
    }
    where = ("url", "headers", "body") if rule.where == "any" else (rule.where,)
    for part in where:
        text = texts[part]()
        if rule.contains is not None and rule.contains in text:
            return f"the request {part} contains {rule.contains!r}"
        if rule.regex is not None and rule.regex.search(text):
            return f"the request {part} matches {rule.regex.pattern!r}"
    return None


# ---------------------------------------------------------------- the checks per kind


def _sql(policy: Policy, facts: ActionFacts) -> Decision | None:
    def each() -> Iterator[Decision | None]:
        for i, st in enumerate(facts.statements):
            effect = policy.sql.get(st.cls)
            if effect is not None:
                yield _effect(effect, f"sql.{st.cls}", f"statement {i + 1} is {st.cls} ({st.reason})")

    return _first(each())


def _sandbox(policy: Policy, facts: ActionFacts) -> Decision | None:
    rules = policy.sandbox
    lim = facts.limits
    if lim is not None:
        for key, value, ceiling in (
            ("max_timeout_s", lim.timeout_s, rules.max_timeout_s),
            ("max_memory", lim.memory_bytes, rules.max_memory_bytes),
            ("max_processes", lim.max_processes, rules.max_processes),
        ):
            if ceiling is not None and value is not None and value > ceiling:
                return _deny(f"sandbox.{key}", f"the action asks for {key} {value:g}, above the policy's {ceiling:g}")
    if not facts.uses_egress:
        return None
    network = _effect(rules.network, "sandbox.network", "the action asks for network egress")
    if network is not None and network.kind is DecisionKind.DENY:
        return network
    for host in facts.egress_hosts:
        if not any(covers(a, host) for a in policy.egress_hosts):
            return _deny(
                "egress.hosts",
                f"{host} is not among the hosts code may reach ({', '.join(policy.egress_hosts) or 'none'}; "
                "the daemon's default is its egress.allowed_hosts); a secret's own hosts need no listing",
            )
    return network  # allowed, or allowed with an approval


def _http(policy: Policy, facts: ActionFacts) -> Decision | None:
    req = facts.request
    assert req is not None
    rules = policy.rules_for(facts.resource)
    scope = f"http.resources.{facts.resource}" if facts.resource in policy.http_resources else "http"
    if rules.methods is not None and req.method not in rules.methods:
        return _deny(
            f"{scope}.methods", f"{req.method} is not among the allowed methods ({', '.join(sorted(rules.methods))})"
        )
    if rules.paths is not None and not path_allowed(rules.paths, req.path):
        return _deny(f"{scope}.paths", f"{req.path} matches none of the allowed paths ({', '.join(rules.paths)})")
    for rule in policy.deny:
        if rule.resources is not None and facts.resource not in rule.resources:
            continue
        if (what := deny_matches(rule, req)) is not None:
            return _deny(f"deny.{rule.name}", f"{rule.reason} ({what})")
    if req.reversibility:
        effect = rules.classes.get(req.reversibility, Effect.ALLOW)
        return _effect(effect, f"{scope}.{req.reversibility}", f"the call is {req.reversibility.replace('_', ' ')}")
    return None


_BY_KIND: dict[str, Callable[[Policy, ActionFacts], Decision | None]] = {
    "sql": _sql,
    "shell": _sandbox,
    "python": _sandbox,
    "http": _http,
}


def clamp(limits: Limits, rules: SandboxRules) -> Limits:
    """The session's limits lowered to the policy's ceilings (an action that asks for more is denied instead)."""
    return Limits(
        timeout_s=min(limits.timeout_s, rules.max_timeout_s or limits.timeout_s),
        memory_bytes=min(limits.memory_bytes, rules.max_memory_bytes or limits.memory_bytes),
        max_processes=min(limits.max_processes, rules.max_processes or limits.max_processes),
        output_bytes=limits.output_bytes,
    )


def check(policy: Policy, facts: ActionFacts, approval: str = "") -> Decision:
    """Stateless: the decision without rate limits."""
    decide = _BY_KIND.get(facts.kind)
    decision = decide(policy, facts) if decide is not None else None
    if decision is None:
        return ALLOW
    if decision.kind is DecisionKind.NEEDS_APPROVAL and approval.strip():
        return Decision(DecisionKind.ALLOW, decision.rule, decision.reason, approval=approval.strip())
    return decision


# ---------------------------------------------------------------- rate limits


class RateCounter:
    """Sliding-window counts of allowed actions, per key (a resource)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, limit: RateLimit) -> float | None:
        """Count one action and return None, or return the seconds until one would be allowed."""
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - limit.per_s:
                events.popleft()
            if len(events) >= limit.count:
                return events[0] + limit.per_s - now
            events.append(now)
            return None


class SessionPolicy:
    """One session's policy and its rate-limit state: the engine's `Policy.check(action, session)`."""

    def __init__(self, policy: Policy, text: str = "", counter: RateCounter | None = None) -> None:
        self.policy = policy
        self.text = text  # the session's own TOML, as given
        self._rates = counter or RateCounter()

    def limits(self, requested: LimitsRequest, session: Limits) -> Limits:
        """An action's effective sandbox limits: what it asked for, else the session's within the policy's."""
        return requested.over(clamp(session, self.policy.sandbox))

    def check(self, facts: ActionFacts, approval: str = "") -> Decision:
        decision = check(self.policy, facts, approval)
        if not decision.allowed or facts.kind != "http":
            return decision
        rules = self.policy.rules_for(facts.resource)
        if rules.rate_limit is not None:
            wait = self._rates.take(facts.resource, rules.rate_limit)
            if wait is not None:
                scope = f"http.resources.{facts.resource}" if facts.resource in self.policy.http_resources else "http"
                return Decision(
                    DecisionKind.DENY,
                    f"{scope}.rate_limit",
                    f"rate limit {rules.rate_limit.text} reached for {facts.resource!r}; next call in {wait:.1f} s",
                    retry_after_s=wait,
                )
        return decision
