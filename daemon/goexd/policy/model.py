"""The vocabulary of damage confinement: a parsed policy, the facts of one action, a decision.

A policy is data (see docs/policy.md for the TOML form); the facts are what the engine knows
of an action before it runs (its SQL statement classes, its HTTP request and reversibility
class, its sandbox limits and egress hosts); a decision is allow, deny (with the rule that
matched) or needs-approval. Nothing here knows about gRPC, SQL drivers or the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Effect(StrEnum):
    """What a class of actions gets: run, refuse, or run only with an explicit approval."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVAL = "approval"


class DecisionKind(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    rule: str = ""  # the policy key or deny rule that decided, e.g. "sql.privileged", "deny.big-payments"
    reason: str = ""
    retry_after_s: float | None = None  # set when a rate limit denied: when the next action would pass
    approval: str = ""  # the approval an allowed action carried, when one was needed

    @property
    def allowed(self) -> bool:
        return self.kind is DecisionKind.ALLOW


ALLOW = Decision(DecisionKind.ALLOW)


@dataclass(frozen=True)
class RateLimit:
    count: int
    per_s: float
    text: str  # as written, for messages ("30/minute")


@dataclass(frozen=True)
class HttpRules:
    """Rules for the http resources of a session (the `[http]` table, or one `[http.resources.NAME]`)."""

    methods: frozenset[str] | None = None  # None = any method
    paths: tuple[str, ...] | None = None  # glob patterns ('*' one segment, '**' any); None = any path
    rate_limit: RateLimit | None = None
    classes: Mapping[str, Effect] = field(default_factory=dict)  # reversibility class -> effect
    # A write carrying a client's inverse counts as reversible (True), or keeps its rule set's class (False; None:
    # not said, which is False). A client inverse is checked only when undone, so trusting it is the policy's call.
    trust_client_inverses: bool | None = None


@dataclass(frozen=True)
class DenyRule:
    """A pattern that refuses a request wherever it matches (`[[deny]]`)."""

    name: str
    reason: str
    where: str = "any"  # "url" | "headers" | "body" | "any"
    contains: str | None = None
    regex: re.Pattern[str] | None = None
    json: tuple[str, ...] | None = None  # a dotted path into a JSON body
    above: float | None = None  # with json: a number greater than this matches
    not_matching: re.Pattern[str] | None = None  # with json: a string (or list element) not matching this matches
    resources: frozenset[str] | None = None  # None = every http resource and code action egress
    methods: frozenset[str] | None = None


@dataclass(frozen=True)
class SandboxRules:
    """Limits on code actions (shell, python), tighter than the daemon's ceilings."""

    max_timeout_s: float | None = None
    max_memory_bytes: int | None = None
    max_processes: int | None = None
    network: Effect = Effect.ALLOW  # egress through the proxy at all


@dataclass(frozen=True)
class Policy:
    sql: Mapping[str, Effect]  # statement class ("read", "write", "ddl", "privileged", "other") -> effect
    http: HttpRules
    http_resources: Mapping[str, HttpRules]  # per resource name, over `http`
    deny: tuple[DenyRule, ...]
    sandbox: SandboxRules
    # Hosts code actions may reach through the proxy without a secret; None (a session policy that does not
    # say) restricts nothing of its own.
    egress_hosts: tuple[str, ...] | None
    http_hosts: tuple[str, ...] | None  # hosts an http resource may point at; None = any
    # An fs action whose inverse failed its reversibility test: deny (refused), approval (runs flagged with an
    # explicit approval) or allow (runs flagged); flagged, its undo restores snapshots. None: not said.
    fs_failed_inverse: Effect | None = None

    def rules_for(self, resource: str) -> HttpRules:
        """The `[http]` defaults with the resource's own table over them, key by key."""
        own = self.http_resources.get(resource)
        if own is None:
            return self.http
        return HttpRules(
            methods=own.methods if own.methods is not None else self.http.methods,
            paths=own.paths if own.paths is not None else self.http.paths,
            rate_limit=own.rate_limit if own.rate_limit is not None else self.http.rate_limit,
            classes={**self.http.classes, **own.classes},
            trust_client_inverses=(
                own.trust_client_inverses if own.trust_client_inverses is not None else self.http.trust_client_inverses
            ),
        )


# ---------------------------------------------------------------- facts about one action


@dataclass(frozen=True)
class SqlStatementFacts:
    cls: str  # goexd.sql StatementClass value
    reason: str  # what the classifier said the statement does
    n: int = 0  # its place in its script, from 1 (0: its place among all the facts' statements)
    # The request field of its script: the action's, or the client inverse's ("inverse.sql.sql"), which goexd
    # runs too (in the test before the action, and at undo), so the same rules hold for it.
    sql_field: str = "spec.sql.sql"
    # What of it no inverse takes back once the action commits (a notification sent: goexd.sql's
    # Classified.escapes), where the resource commits each action at once; "" otherwise ([sql] irreversible).
    escapes: str = ""


@dataclass(frozen=True)
class HttpRequestFacts:
    method: str
    url: str  # full URL as it will be sent, before credentials are injected
    path: str  # the URL's path
    headers: Mapping[str, str]
    body: bytes
    reversibility: str = ""  # "reversible" | "best_effort" | "irreversible" | "read_only"; "" = not known
    client_inverse: bool = False  # the client attached its own inverse (`reversibility` is still the rule set's)


@dataclass(frozen=True)
class LimitsFacts:
    """The limits an action asks for itself; None where it takes the session's (lowered to the policy's)."""

    timeout_s: float | None = None
    memory_bytes: int | None = None
    max_processes: int | None = None


@dataclass(frozen=True)
class ActionFacts:
    kind: str  # "sql" | "http" | "shell" | "python"
    resource: str
    statements: tuple[SqlStatementFacts, ...] = ()
    request: HttpRequestFacts | None = None
    limits: LimitsFacts | None = None
    egress_hosts: tuple[str, ...] = ()
    uses_egress: bool = False
