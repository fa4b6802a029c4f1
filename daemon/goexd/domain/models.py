"""Domain model of sessions and actions (see docs/architecture.md). Plain data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from goexd.domain.egress import EgressRecordData
from goexd.domain.plans import PlanExchange
from goexd.domain.sandbox import ExecResult, Limits
from goexd.domain.snapshots import ChangeSet


class ActionState(enum.StrEnum):
    PROPOSED = "proposed"
    PREPARING = "preparing"
    RUNNING = "running"
    EXECUTED = "executed"  # pending validation
    COMMITTED = "committed"
    UNDONE = "undone"
    FAILED = "failed"  # rolled back automatically
    BLOCKED = "blocked"  # refused by policy; no side effect
    INTERRUPTED = "interrupted"  # the daemon died or stopped mid-action; rolled back


# The state machine. Anything not listed is a bug and is refused by the engine.
TRANSITIONS: dict[ActionState, frozenset[ActionState]] = {
    ActionState.PROPOSED: frozenset(
        {ActionState.PREPARING, ActionState.BLOCKED, ActionState.FAILED, ActionState.INTERRUPTED}
    ),
    ActionState.PREPARING: frozenset({ActionState.RUNNING, ActionState.FAILED, ActionState.INTERRUPTED}),
    ActionState.RUNNING: frozenset({ActionState.EXECUTED, ActionState.FAILED, ActionState.INTERRUPTED}),
    # EXECUTED -> INTERRUPTED: a database discarded the open transaction holding the action's
    # effects (goexd stopped, or SQLite rolled back the whole transaction on an interrupted write).
    ActionState.EXECUTED: frozenset({ActionState.COMMITTED, ActionState.UNDONE, ActionState.INTERRUPTED}),
    ActionState.COMMITTED: frozenset(),
    ActionState.UNDONE: frozenset(),
    ActionState.FAILED: frozenset(),
    ActionState.BLOCKED: frozenset(),
    ActionState.INTERRUPTED: frozenset(),
}

ACTIVE_STATES = frozenset({ActionState.PROPOSED, ActionState.PREPARING, ActionState.RUNNING})


class ActionKind(enum.StrEnum):
    SHELL = "shell"
    PYTHON = "python"
    SQL = "sql"
    HTTP = "http"
    PROMPT = "prompt"


class ResourceKind(enum.StrEnum):
    FS = "fs"
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    HTTP = "http"


class UndoStrategy(enum.StrEnum):
    VERSIONED = "versioned"
    INVERSE = "inverse"
    TRANSACTION = "transaction"
    CLONE = "clone"
    CONFINE = "confine"


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"  # idle past its lease with actions pending (engine/leases.py)


class CloseMode(enum.StrEnum):
    REFUSE_IF_PENDING = "refuse"
    COMMIT_ALL = "commit_all"
    UNDO_ALL = "undo_all"


class ReversibilityClass(enum.StrEnum):
    REVERSIBLE = "reversible"
    BEST_EFFORT = "best_effort"
    IRREVERSIBLE = "irreversible"
    READ_ONLY = "read_only"


class Verdict(enum.StrEnum):
    UNTESTED = "untested"
    PASSED = "passed"
    FAILED = "failed"
    UNKNOWN = "unknown"  # could not be tried (its detail says why); never taken for passed


@dataclass(frozen=True)
class LimitsRequest:
    """Per-session or per-action overrides; None = inherit."""

    timeout_s: float | None = None
    memory_bytes: int | None = None
    max_processes: int | None = None
    output_bytes: int | None = None

    def over(self, base: Limits) -> Limits:
        return Limits(
            timeout_s=self.timeout_s or base.timeout_s,
            memory_bytes=self.memory_bytes or base.memory_bytes,
            max_processes=self.max_processes or base.max_processes,
            output_bytes=self.output_bytes or base.output_bytes,
        )


@dataclass(frozen=True)
class ResourceRequest:
    name: str
    kind: ResourceKind
    location: str  # fs: path as given; db/http: URL
    strategy: UndoStrategy | None = None
    secret: str = ""
    rules: str = ""  # http: rule set name
    staging: str = ""  # http: base URL of a staging copy, where reversibility tests try calls ("" = none)
    sandbox: str = ""  # fs: the sandbox backend its actions run in ("" = the daemon's)
    image: str = ""  # fs: the container backend's image ("" = its default)


@dataclass(frozen=True)
class Resource:
    name: str
    kind: ResourceKind
    uri: str  # canonical: resolved absolute path, or URL without credentials
    strategy: UndoStrategy
    secret: str = ""  # vault secret the daemon authenticates with (postgres password, http credential)
    rules: str = ""  # http: the rule set that derives inverses ("rest", "s3", or a user's)
    staging: str = ""  # http: canonical base URL of its staging copy, where reversibility tests try calls
    sandbox: str = ""  # fs: the sandbox backend its actions run in, as chosen at open ("" = the daemon's default)
    image: str = ""  # fs: the container image its actions run in, as chosen at open ("" = not a container's)


@dataclass(frozen=True)
class HttpRequest:
    """A declarative HTTP call, relative to its resource's base URL."""

    method: str  # upper case
    path: str  # starts with "/", percent-encoded as sent; no query
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    json: bool = False  # the body is JSON text, sent as application/json

    @classmethod
    def as_sent(
        cls,
        method: str,
        path: str,
        query: tuple[tuple[str, str], ...],
        headers: tuple[tuple[str, str], ...],
        body: bytes,
    ) -> HttpRequest:
        """A request goexd built (an inverse): a body under a JSON content type is its JSON."""
        is_json = bool(body) and any(k.lower() == "content-type" and "json" in v.lower() for k, v in headers)
        return cls(method, path, query, headers, body, json=is_json)


@dataclass(frozen=True)
class HttpResult:
    """What the service answered (headers and body redacted; the body capped)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    body_truncated: bool = False


@dataclass(frozen=True)
class EgressRequest:
    """Network for a sandboxed action: only through the egress proxy, with these secrets and hosts."""

    secrets: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()  # the session's http resources it may call (their policy applies)


@dataclass(frozen=True)
class ActionSpec:
    kind: ActionKind
    argv: tuple[str, ...] = ()  # shell
    code: str = ""  # python
    sql: str = ""  # sql: one statement or a script
    params: tuple[str, ...] = ()  # sql: positional parameters of a single statement
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    cwd: str = ""  # shell, python: where it runs, relative to the workspace root (os.fsdecode'd; "" = the root)
    resource: str = ""
    limits: LimitsRequest = field(default_factory=LimitsRequest)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # kinds not built yet keep their payload here
    egress: EgressRequest | None = None  # None = no network at all
    http: HttpRequest | None = None  # http actions


@dataclass(frozen=True)
class SqlResult:
    """What a SQL action returned: the last statement's rows (capped) and the rows all statements changed."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str | None, ...], ...] = ()  # rendered as text; None is NULL
    total_rows: int = 0
    truncated: bool = False
    affected_rows: int = 0


@dataclass(frozen=True)
class Reversibility:
    reversibility_class: ReversibilityClass
    verdict: Verdict
    detail: str = ""
    tested_at: float | None = None


@dataclass(frozen=True)
class Timings:
    prepare_s: float = 0.0
    run_s: float = 0.0
    capture_s: float = 0.0
    total_s: float = 0.0
    undo_s: float = 0.0


@dataclass(frozen=True)
class Session:
    id: str
    label: str
    state: SessionState
    resources: tuple[Resource, ...]
    limits: Limits
    created_at: float
    closed_at: float | None = None
    pending_actions: int = 0
    total_actions: int = 0


@dataclass(frozen=True)
class Action:
    id: str
    session_id: str
    seq: int
    spec: ActionSpec
    state: ActionState
    resource: str
    created_at: float
    inverse: ActionSpec | None = None
    error: str = ""
    exec: ExecResult | None = None
    changes: ChangeSet | None = None
    reversibility: Reversibility | None = None
    timings: Timings = field(default_factory=Timings)
    finished_at: float | None = None
    resolved_at: float | None = None
    checkpoint: dict[str, str] = field(default_factory=dict)  # e.g. {"pre": <snapshot id>}
    undo_started: bool = False
    egress: tuple[EgressRecordData, ...] = ()  # requests made through the egress proxy, in order
    sql: SqlResult | None = None
    http: HttpResult | None = None
    approval: str = ""  # the explicit approval it carried, when the policy asked for one
    plan: PlanExchange | None = None  # a prompt action's: how the planner made its spec (domain/plans.py)

    @property
    def kind(self) -> ActionKind:
        return self.spec.kind
