"""What the daemon returns, as frozen dataclasses built from the protobuf messages.

Conventions: enums are lower-case `StrEnum`s, timestamps are aware UTC datetimes,
durations are float seconds, unset sub-messages are None. Each model keeps the
message it came from in `.proto` (and `to_dict()` gives its JSON form).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf.message import Message

from goex._enums import (
    ActionKind,
    ActionState,
    ChangeKind,
    EgressDecision,
    OutputStream,
    ResourceKind,
    ReversibilityClass,
    SessionState,
    Termination,
    UndoStrategy,
    Verdict,
)
from goex._protoutil import message_to_dict, seconds, timestamp
from goex._specs import ActionSpec, Http, Limits, http_from_proto
from goex.v1 import sessions_pb2, types_pb2

if TYPE_CHECKING:
    from goex._prompts import PromptPlan

__all__ = [
    "Action",
    "ActionEvent",
    "ChangeSet",
    "ClosedSession",
    "EgressRecord",
    "ExecResult",
    "FileChange",
    "HttpResult",
    "OutputEvent",
    "Resource",
    "ResourceDescription",
    "Reversibility",
    "Session",
    "SqlResult",
    "StateEvent",
    "Timings",
    "action_event_from_proto",
]

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class _Model(Generic[M]):
    proto: M = field(repr=False, compare=False, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The message's JSON form (proto field names, enums by name, bytes as base64)."""
        return message_to_dict(self.proto)


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Resource(_Model[types_pb2.Resource]):
    name: str
    kind: ResourceKind
    uri: str
    strategy: UndoStrategy
    rules: str  # http: the rule set deriving inverses ("rest", "s3", ...); empty for other kinds
    staging_base_url: str  # http: where reversibility tests try calls for real; empty: nowhere
    sandbox: str  # fs: the sandbox backend its actions run in; empty: the daemon's
    image: str  # fs: the container image its actions run in; empty: not a container backend

    @classmethod
    def from_proto(cls, msg: types_pb2.Resource) -> Resource:
        return cls(
            name=msg.name,
            kind=ResourceKind.from_proto(msg.kind),
            uri=msg.uri,
            strategy=UndoStrategy.from_proto(msg.strategy),
            rules=msg.rules,
            staging_base_url=msg.staging_base_url,
            sandbox=msg.sandbox,
            image=msg.image,
            proto=msg,
        )


@dataclass(frozen=True)
class Session(_Model[types_pb2.Session]):
    id: str
    state: SessionState
    label: str
    resources: tuple[Resource, ...]
    limits: Limits
    created_at: datetime | None
    closed_at: datetime | None
    pending_actions: int
    total_actions: int
    # create_session only: what goexd warned of at open (workspace entries the action user cannot write, ...)
    warnings: tuple[str, ...] = ()
    reused: bool = False  # create_session only: reuse found it open (or expired) over the same resources

    @classmethod
    def from_proto(cls, msg: types_pb2.Session) -> Session:
        return cls(
            id=msg.id,
            state=SessionState.from_proto(msg.state),
            label=msg.label,
            resources=tuple(Resource.from_proto(r) for r in msg.resources),
            limits=Limits.from_proto(msg.limits),
            created_at=timestamp(msg, "created_at"),
            closed_at=timestamp(msg, "closed_at"),
            pending_actions=msg.pending_actions,
            total_actions=msg.total_actions,
            proto=msg,
        )


@dataclass(frozen=True)
class ClosedSession(_Model[sessions_pb2.CloseSessionResponse]):
    session: Session
    resolved: tuple[Action, ...]  # actions committed or undone by the close

    @classmethod
    def from_proto(cls, msg: sessions_pb2.CloseSessionResponse) -> ClosedSession:
        return cls(
            session=Session.from_proto(msg.session),
            resolved=tuple(Action.from_proto(a) for a in msg.resolved),
            proto=msg,
        )


@dataclass(frozen=True)
class ResourceDescription(_Model[sessions_pb2.ResourceDescription]):
    resource: str
    text: str

    @classmethod
    def from_proto(cls, msg: sessions_pb2.ResourceDescription) -> ResourceDescription:
        return cls(resource=msg.resource, text=msg.text, proto=msg)


# ---------------------------------------------------------------- action results


@dataclass(frozen=True)
class ExecResult(_Model[types_pb2.ExecResult]):
    termination: Termination
    exit_code: int
    signal: int
    stdout: bytes  # capped at the output limit; redacted
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_total_bytes: int
    stderr_total_bytes: int
    detail: str
    limits_enforced_by: str
    trimmed: str = ""  # retention trimmed the output of the resolved action: when, how much, sha256 of each stream

    @property
    def succeeded(self) -> bool:
        return self.termination is Termination.EXITED and self.exit_code == 0

    @classmethod
    def from_proto(cls, msg: types_pb2.ExecResult) -> ExecResult:
        return cls(
            termination=Termination.from_proto(msg.termination),
            exit_code=msg.exit_code,
            signal=msg.signal,
            stdout=msg.stdout,
            stderr=msg.stderr,
            stdout_truncated=msg.stdout_truncated,
            stderr_truncated=msg.stderr_truncated,
            stdout_total_bytes=msg.stdout_total_bytes,
            stderr_total_bytes=msg.stderr_total_bytes,
            detail=msg.detail,
            limits_enforced_by=msg.limits_enforced_by,
            trimmed=msg.trimmed,
            proto=msg,
        )


@dataclass(frozen=True)
class FileChange(_Model[types_pb2.FileChange]):
    kind: ChangeKind
    # Relative to the workspace; directories end with "/". For people: goexd's display form of
    # path_bytes, one printable line (a byte that is not UTF-8 as \xHH, a backslash as \\, ...).
    path: str
    old_mode: int
    new_mode: int
    path_bytes: bytes = b""  # the exact name on disk (Linux names are bytes, not always UTF-8)
    runs_code: bool = False  # a path tools may execute or obey later (hooks, .envrc, editor/CI config)

    @property
    def fspath(self) -> str:
        """The exact name as Python's os functions take it (os.fsdecode of path_bytes)."""
        return os.fsdecode(self.path_bytes)

    @property
    def line(self) -> str:
        """`git status --short`-like form: "A a.txt", "M b.txt", "P run.sh"."""
        return f"{self.kind.letter} {self.path}"

    @classmethod
    def from_proto(cls, msg: types_pb2.FileChange) -> FileChange:
        return cls(
            kind=ChangeKind.from_proto(msg.kind),
            path=msg.path,
            old_mode=msg.old_mode,
            new_mode=msg.new_mode,
            path_bytes=msg.path_bytes or msg.path.encode(),  # a goexd before path_bytes sent the name itself
            runs_code=msg.runs_code,
            proto=msg,
        )


@dataclass(frozen=True)
class ChangeSet(_Model[types_pb2.ChangeSet]):
    changes: tuple[FileChange, ...]  # capped; see truncated
    added: int
    modified: int
    deleted: int
    total: int
    truncated: bool
    # What goexd changed after the action (set-id bits, file capabilities it took away).
    warnings: tuple[str, ...] = ()

    @property
    def omitted(self) -> int:
        """How many changes the daemon counted but did not list."""
        return max(0, self.total - len(self.changes))

    @property
    def summary(self) -> str:
        """Counts as "+added ~modified -deleted"."""
        return f"+{self.added} ~{self.modified} -{self.deleted}"

    @classmethod
    def from_proto(cls, msg: types_pb2.ChangeSet) -> ChangeSet:
        return cls(
            changes=tuple(FileChange.from_proto(c) for c in msg.changes),
            added=msg.added,
            modified=msg.modified,
            deleted=msg.deleted,
            total=msg.total,
            truncated=msg.truncated,
            warnings=tuple(msg.warnings),
            proto=msg,
        )


@dataclass(frozen=True)
class SqlResult(_Model[types_pb2.SqlResult]):
    columns: tuple[str, ...]
    rows: tuple[tuple[str | None, ...], ...]  # None for SQL NULL
    total_rows: int
    truncated: bool
    affected_rows: int

    @classmethod
    def from_proto(cls, msg: types_pb2.SqlResult) -> SqlResult:
        rows = tuple(
            tuple(None if i < len(row.is_null) and row.is_null[i] else value for i, value in enumerate(row.values))
            for row in msg.rows
        )
        return cls(
            columns=tuple(msg.columns),
            rows=rows,
            total_rows=msg.total_rows,
            truncated=msg.truncated,
            affected_rows=msg.affected_rows,
            proto=msg,
        )


@dataclass(frozen=True)
class HttpResult(_Model[types_pb2.HttpResult]):
    status: int
    headers: Mapping[str, str] = field(hash=False)
    body: bytes  # redacted, capped
    body_truncated: bool

    @classmethod
    def from_proto(cls, msg: types_pb2.HttpResult) -> HttpResult:
        return cls(
            status=msg.status,
            headers=MappingProxyType(dict(msg.headers)),
            body=msg.body,
            body_truncated=msg.body_truncated,
            proto=msg,
        )


@dataclass(frozen=True)
class Reversibility(_Model[types_pb2.Reversibility]):
    reversibility_class: ReversibilityClass
    verdict: Verdict
    detail: str
    tested_at: datetime | None

    @classmethod
    def from_proto(cls, msg: types_pb2.Reversibility) -> Reversibility:
        return cls(
            reversibility_class=ReversibilityClass.from_proto(msg.reversibility_class),
            verdict=Verdict.from_proto(msg.verdict),
            detail=msg.detail,
            tested_at=timestamp(msg, "tested_at"),
            proto=msg,
        )


@dataclass(frozen=True)
class Timings(_Model[types_pb2.Timings]):
    """Phase durations in seconds; None for a phase that did not happen (yet)."""

    prepare: float | None  # checkpoint before the action
    run: float | None  # sandbox / statement / request
    capture: float | None  # post-action snapshot and change set
    total: float | None
    undo: float | None

    @classmethod
    def from_proto(cls, msg: types_pb2.Timings) -> Timings:
        return cls(
            prepare=seconds(msg, "prepare"),
            run=seconds(msg, "run"),
            capture=seconds(msg, "capture"),
            total=seconds(msg, "total"),
            undo=seconds(msg, "undo"),
            proto=msg,
        )


@dataclass(frozen=True)
class EgressRecord(_Model[types_pb2.EgressRecord]):
    """One request a sandboxed action made through the egress proxy."""

    method: str
    url: str  # as the sandbox sent it: placeholders, never secret values; redacted
    host: str
    status: int  # upstream status; 0 when refused or when the upstream failed
    decision: EgressDecision
    reason: str  # why it was refused, or the upstream error
    secrets_used: tuple[str, ...]
    request_bytes: int
    response_bytes: int
    duration: float | None  # seconds
    at: datetime | None
    request_headers: Mapping[str, str] = field(hash=False)  # as sent: placeholders, never values; redacted
    request_body: bytes  # redacted, capped
    request_body_truncated: bool
    response: HttpResult | None  # None when nothing came back
    # Set for a call to one of the action's http resources (Egress.resources):
    resource: str
    reversibility: Reversibility | None  # its class; after an undo, the verdict and what the check found
    inverse: Http | None  # derived from the recorded response

    @property
    def allowed(self) -> bool:
        return self.decision is EgressDecision.ALLOWED

    @classmethod
    def from_proto(cls, msg: types_pb2.EgressRecord) -> EgressRecord:
        return cls(
            method=msg.method,
            url=msg.url,
            host=msg.host,
            status=msg.status,
            decision=EgressDecision.from_proto(msg.decision),
            reason=msg.reason,
            secrets_used=tuple(msg.secrets_used),
            request_bytes=msg.request_bytes,
            response_bytes=msg.response_bytes,
            duration=seconds(msg, "duration"),
            at=timestamp(msg, "at"),
            request_headers=MappingProxyType(dict(msg.request_headers)),
            request_body=msg.request_body,
            request_body_truncated=msg.request_body_truncated,
            response=HttpResult.from_proto(msg.response) if msg.HasField("response") else None,
            resource=msg.resource,
            reversibility=Reversibility.from_proto(msg.reversibility) if msg.HasField("reversibility") else None,
            inverse=http_from_proto(msg.inverse) if msg.HasField("inverse") else None,
            proto=msg,
        )


def _sub(msg: Message, name: str) -> Any:
    """The sub-message `name` of `msg`, or None when unset."""
    return getattr(msg, name) if msg.HasField(name) else None


@dataclass(frozen=True)
class Action(_Model[types_pb2.Action]):
    id: str
    session_id: str
    seq: int  # position in the session's timeline, from 1
    kind: ActionKind
    state: ActionState
    resource: str
    spec: ActionSpec | None
    inverse: ActionSpec | None
    reversibility: Reversibility | None
    error: str  # why it FAILED, was BLOCKED or INTERRUPTED; redacted
    exec: ExecResult | None
    changes: ChangeSet | None
    sql: SqlResult | None
    http: HttpResult | None
    timings: Timings | None
    created_at: datetime | None
    finished_at: datetime | None
    resolved_at: datetime | None  # committed or undone
    egress: tuple[EgressRecord, ...]  # requests made through the egress proxy, in order
    approval: str  # the explicit approval it was submitted with, when its policy asked for one

    @property
    def is_pending(self) -> bool:
        """Executed: its effects are visible and it awaits commit or undo."""
        return self.state.is_pending

    @property
    def plan(self) -> PromptPlan | None:
        """A prompt action's exchange with the planner's model (what it was asked, each answer); None otherwise."""
        from goex._prompts import PromptPlan  # noqa: PLC0415 - loaded only where a prompt is looked at

        return PromptPlan.from_proto(self.proto.plan) if self.proto.HasField("plan") else None

    @property
    def is_active(self) -> bool:
        """Proposed, preparing or running."""
        return self.state.is_active

    @classmethod
    def from_proto(cls, msg: types_pb2.Action) -> Action:
        def opt(name: str, conv: Any) -> Any:
            sub = _sub(msg, name)
            return None if sub is None else conv(sub)

        return cls(
            id=msg.id,
            session_id=msg.session_id,
            seq=msg.seq,
            kind=ActionKind.from_proto(msg.kind),
            state=ActionState.from_proto(msg.state),
            resource=msg.resource,
            spec=opt("spec", ActionSpec.from_proto),
            inverse=opt("inverse", ActionSpec.from_proto),
            reversibility=opt("reversibility", Reversibility.from_proto),
            error=msg.error,
            exec=opt("exec", ExecResult.from_proto),
            changes=opt("changes", ChangeSet.from_proto),
            sql=opt("sql", SqlResult.from_proto),
            http=opt("http", HttpResult.from_proto),
            timings=opt("timings", Timings.from_proto),
            created_at=timestamp(msg, "created_at"),
            finished_at=timestamp(msg, "finished_at"),
            resolved_at=timestamp(msg, "resolved_at"),
            egress=tuple(EgressRecord.from_proto(r) for r in msg.egress),
            approval=msg.approval,
            proto=msg,
        )


# ---------------------------------------------------------------- watch events


@dataclass(frozen=True)
class StateEvent(_Model[types_pb2.ActionEvent]):
    """The action entered `state`."""

    action_id: str
    at: datetime | None
    state: ActionState


@dataclass(frozen=True)
class OutputEvent(_Model[types_pb2.ActionEvent]):
    """A chunk of the action's output (redacted)."""

    action_id: str
    at: datetime | None
    stream: OutputStream
    data: bytes


ActionEvent = StateEvent | OutputEvent


def action_event_from_proto(msg: types_pb2.ActionEvent) -> ActionEvent | None:
    """The event as a model; None for an event kind this client does not know."""
    at = timestamp(msg, "at")
    which = msg.WhichOneof("event")
    if which == "state":
        return StateEvent(action_id=msg.action_id, at=at, state=ActionState.from_proto(msg.state), proto=msg)
    if which == "output":
        return OutputEvent(
            action_id=msg.action_id,
            at=at,
            stream=OutputStream.from_proto(msg.output.stream),
            data=msg.output.data,
            proto=msg,
        )
    return None
