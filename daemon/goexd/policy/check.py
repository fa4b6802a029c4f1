"""Policy.check: decide allow / deny (with the rule) / needs-approval for one action's facts.

Order, first refusal wins: the action's own class rules (SQL statement classes, sandbox limits
and network, HTTP method and path), then deny patterns on the request, then the effect of the
action's reversibility class, then rate limits. An approval turns a needs-approval into an allow
(it is recorded with the action); it never overrides a deny. Rate limits count allowed actions
only, in a sliding window per resource.

A session is held to two policies, the daemon's and its own, each checked alone; the stricter
decision wins (deny over needs-approval over allow), limits are lowered to both ceilings and both
rate limits count. So a session's policy can add restrictions and never remove one of the
daemon's, whatever key it uses: what it asks for beyond the daemon's policy is clipped to it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import lru_cache

from goexd.domain.models import LimitsRequest
from goexd.domain.sandbox import Limits
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
            which = f"statement {st.n or i + 1}"
            if st.sql_field != "spec.sql.sql":
                which += f" of the inverse ({st.sql_field})"
            effect = policy.sql.get(st.cls)
            if effect is not None:
                yield _effect(effect, f"sql.{st.cls}", f"{which} is {st.cls} ({st.reason})")
            if st.escapes and (effect := policy.sql.get("irreversible")) is not None:
                yield _effect(effect, "sql.irreversible", f"{which} is not reversible: {st.escapes}")

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
    allowed = policy.egress_hosts
    for host in facts.egress_hosts:
        if allowed is not None and not any(covers(a, host) for a in allowed):
            return _deny(
                "egress.hosts",
                f"{host} is not among the hosts code may reach ({', '.join(allowed) or 'none'}; "
                "the daemon's come from its egress.allowed_hosts setting); a secret's own hosts need no listing",
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
        cls, why = req.reversibility, f"the call is {req.reversibility.replace('_', ' ')}"
        if req.client_inverse and cls != "read_only":
            if rules.trust_client_inverses:  # the policy's own choice: the client's inverse is taken as its undo
                cls, why = "reversible", f"{why} by its rule set; the policy trusts the client's inverse"
            else:  # checked only when it is undone: it lifts nothing
                why += " (its client inverse is not trusted: [http] trust_client_inverses)"
        effect = rules.classes.get(cls, Effect.ALLOW)
        return _effect(effect, f"{scope}.{cls}", why)
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
        refused = self.take_all([(key, limit)])
        return refused[0][1] if refused else None

    def take_all(self, limits: Sequence[tuple[str, RateLimit]]) -> list[tuple[int, float]]:
        """Count one action under every (key, limit) if each allows it and return []; else, counting nothing,
        (index, seconds until it would allow one) for each limit that refuses."""
        now = self._clock()
        with self._lock:
            refused: list[tuple[int, float]] = []
            for i, (key, limit) in enumerate(limits):
                events = self._events.setdefault(key, deque())
                while events and events[0] <= now - limit.per_s:
                    events.popleft()
                if len(events) >= limit.count:
                    refused.append((i, events[0] + limit.per_s - now))
            if not refused:
                for key, _ in limits:
                    self._events[key].append(now)
            return refused


def _failed_inverse(effect: Effect | None, approval: str) -> Decision:
    """For an fs action whose inverse failed its test (the reason follows the test's own diff)."""
    rule = "fs.failed_inverse"
    if effect is Effect.DENY:
        return Decision(DecisionKind.DENY, rule, f'the policy refuses such actions ({rule} = "deny")')
    if effect is Effect.APPROVAL:
        if approval.strip():
            return Decision(DecisionKind.ALLOW, rule, "its inverse failed its test", approval=approval.strip())
        return _needs(rule, f'the policy runs such actions (flagged) only with an approval ({rule} = "approval")')
    return ALLOW


_RANK = {DecisionKind.ALLOW: 0, DecisionKind.NEEDS_APPROVAL: 1, DecisionKind.DENY: 2}
DAEMON_NOTE = "the daemon's policy, which a session's policy can narrow but not loosen"


def stricter(daemon: Decision, session: Decision) -> Decision:
    """The decision that restricts more (deny > needs approval > allow; an allow that took an approval over one
    that needed none); the session's on a tie, as its own rule is the one its client knows. A daemon refusal
    says whose it is."""
    if (_RANK[daemon.kind], bool(daemon.approval)) <= (_RANK[session.kind], bool(session.approval)):
        return session
    if daemon.kind is DecisionKind.ALLOW:
        return daemon
    return replace(daemon, reason=f"{daemon.reason} ({DAEMON_NOTE})")


class SessionPolicy:
    """One session's policies and its rate-limit state: the engine's `Policy.check(action, session)`.

    `daemon` is the daemon's policy, `session` the session's own (parse.build_session); every check,
    limit and host list applies both, so the session's can only narrow the daemon's.
    """

    def __init__(
        self, daemon: Policy, session: Policy | None = None, text: str = "", counter: RateCounter | None = None
    ) -> None:
        self.daemon = daemon
        self.session = session
        self.text = text  # the session's own TOML, as given
        self._rates = counter or RateCounter()

    @property
    def layers(self) -> tuple[tuple[str, Policy], ...]:
        own = () if self.session is None else (("session", self.session),)
        return (("daemon", self.daemon), *own)

    @property
    def http_hosts(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """Each policy's `[http] hosts` that is set, with whose it is (for a refusal): an http resource's base URL
        must be in every one."""
        return tuple(
            (p.http_hosts, DAEMON_NOTE if name == "daemon" else "")
            for name, p in self.layers
            if p.http_hosts is not None
        )

    def limits(self, requested: LimitsRequest, session: Limits) -> Limits:
        """An action's effective sandbox limits: what it asked for, else the session's within both policies'."""
        for _, policy in self.layers:
            session = clamp(session, policy.sandbox)
        return requested.over(session)

    def failed_inverse(self, approval: str = "") -> Decision:
        """Whether an fs action whose inverse failed its test may run flagged (`[fs] failed_inverse`, both policies)."""
        decisions = [_failed_inverse(p.fs_failed_inverse, approval) for _, p in self.layers]
        decision = decisions[0]
        for own in decisions[1:]:
            decision = stricter(decision, own)
        return decision

    def check(self, facts: ActionFacts, approval: str = "", *, count: bool = True) -> Decision:
        """`count=False`: a question, not an action (a reversibility test): rate limits are not consulted."""
        decision = check(self.daemon, facts, approval)
        if self.session is not None:
            decision = stricter(decision, check(self.session, facts, approval))
        if not decision.allowed or facts.kind != "http" or not count:
            return decision
        return self._rate(facts.resource) or decision

    def _rate(self, resource: str) -> Decision | None:
        """A denial once either policy's rate limit for `resource` is reached (an allowed call counts in both)."""
        limits = [
            (name, rate, policy)
            for name, policy in self.layers
            if (rate := policy.rules_for(resource).rate_limit) is not None
        ]
        if not limits:
            return None
        refused = self._rates.take_all([(f"{name}:{resource}", rate) for name, rate, _ in limits])
        if not refused:
            return None
        i, wait = max(refused, key=lambda r: r[1])
        name, rate, policy = limits[i]
        scope = f"http.resources.{resource}" if resource in policy.http_resources else "http"
        whose = f" ({DAEMON_NOTE})" if name == "daemon" else ""
        return Decision(
            DecisionKind.DENY,
            f"{scope}.rate_limit",
            f"rate limit {rate.text} reached for {resource!r}; next call in {wait:.1f} s{whose}",
            retry_after_s=wait,
        )
