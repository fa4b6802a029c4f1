"""The contract's enums as `StrEnum`s with lower-case values ("executed", "fs", ...).

Each member's name is the proto value's name without the enum prefix, so
`ActionState.EXECUTED` <-> `ACTION_STATE_EXECUTED`. A number this client does not
know (a newer daemon) converts to `UNSPECIFIED` instead of failing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self, cast

from google.protobuf.descriptor import EnumDescriptor

from goex.v1 import actions_pb2, secrets_pb2, types_pb2

__all__ = [
    "ActionKind",
    "ActionState",
    "ChangeKind",
    "DiffContent",
    "EgressDecision",
    "OutputStream",
    "ResourceKind",
    "ReversibilityClass",
    "SecretKind",
    "SessionState",
    "Termination",
    "UndoStrategy",
    "Verdict",
]

_DESCRIPTORS: dict[type[ProtoEnum], EnumDescriptor] = {}
_BY_NUMBER: dict[type[ProtoEnum], dict[int, ProtoEnum]] = {}


class ProtoEnum(StrEnum):
    """Base of the enums mirrored from the contract."""

    @classmethod
    def _descriptor(cls) -> EnumDescriptor:
        return _DESCRIPTORS[cls]

    @classmethod
    def _prefix(cls) -> str:
        # Every contract enum has a zero value named <PREFIX>UNSPECIFIED.
        return cls._descriptor().values_by_number[0].name.removesuffix("UNSPECIFIED")

    @classmethod
    def from_proto(cls, number: int) -> Self:
        by_number = _BY_NUMBER.get(cls)
        if by_number is None:  # built once per enum: every result converts a few
            prefix = cls._prefix()
            by_number = _BY_NUMBER[cls] = {
                v.number: cls[v.name.removeprefix(prefix)]
                for v in cls._descriptor().values
                if v.name.removeprefix(prefix) in cls.__members__
            }
        member = by_number.get(number)
        return cast(Self, member) if member is not None else cls["UNSPECIFIED"]

    @property
    def proto_name(self) -> str:
        """The contract's name for this value, e.g. "ACTION_STATE_EXECUTED"."""
        return self._prefix() + self.name

    def to_proto(self) -> int:
        number: int = self._descriptor().values_by_name[self.proto_name].number
        return number


class ResourceKind(ProtoEnum):
    UNSPECIFIED = "unspecified"
    FS = "fs"
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    HTTP = "http"


class UndoStrategy(ProtoEnum):
    UNSPECIFIED = "unspecified"  # the kind's default
    VERSIONED = "versioned"
    INVERSE = "inverse"
    TRANSACTION = "transaction"
    CLONE = "clone"
    CONFINE = "confine"


class SessionState(ProtoEnum):
    UNSPECIFIED = "unspecified"
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"  # idle past goexd's lease with actions pending: used again, it opens again


class ActionKind(ProtoEnum):
    UNSPECIFIED = "unspecified"
    SHELL = "shell"
    PYTHON = "python"
    SQL = "sql"
    HTTP = "http"
    PROMPT = "prompt"


class ActionState(ProtoEnum):
    UNSPECIFIED = "unspecified"
    PROPOSED = "proposed"
    PREPARING = "preparing"
    RUNNING = "running"
    EXECUTED = "executed"  # pending: awaits commit or undo
    COMMITTED = "committed"
    UNDONE = "undone"
    FAILED = "failed"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        """Still on its way to a result (the phase WatchAction follows)."""
        return self in (ActionState.PROPOSED, ActionState.PREPARING, ActionState.RUNNING)

    @property
    def is_pending(self) -> bool:
        return self is ActionState.EXECUTED


class Termination(ProtoEnum):
    UNSPECIFIED = "unspecified"
    EXITED = "exited"
    SIGNALED = "signaled"
    TIMEOUT = "timeout"
    OOM = "oom"
    PIDS_LIMIT = "pids_limit"
    CANCELLED = "cancelled"
    SPAWN_FAILED = "spawn_failed"


class ChangeKind(ProtoEnum):
    UNSPECIFIED = "unspecified"
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    TYPE_CHANGED = "type_changed"
    MODE_CHANGED = "mode_changed"

    @property
    def letter(self) -> str:
        """One-letter code as in `git status --short`: A, M, D, T (type), P (permissions)."""
        return _LETTERS[self]


_LETTERS = {
    ChangeKind.UNSPECIFIED: "?",
    ChangeKind.ADDED: "A",
    ChangeKind.MODIFIED: "M",
    ChangeKind.DELETED: "D",
    ChangeKind.TYPE_CHANGED: "T",
    ChangeKind.MODE_CHANGED: "P",
}


class DiffContent(ProtoEnum):
    """How a changed file's content was compared in a diff."""

    UNSPECIFIED = "unspecified"
    NONE = "none"  # no content changed: mode, owner, a directory
    TEXT = "text"  # compared as text: additions and deletions count lines
    BINARY = "binary"  # compared, binary: sizes and hashes only
    NOT_READ = "not_read"  # not compared (too large to read for a diff): sizes and blob ids only


class ReversibilityClass(ProtoEnum):
    UNSPECIFIED = "unspecified"
    REVERSIBLE = "reversible"
    BEST_EFFORT = "best_effort"
    IRREVERSIBLE = "irreversible"
    READ_ONLY = "read_only"


class Verdict(ProtoEnum):
    UNSPECIFIED = "unspecified"
    UNTESTED = "untested"
    PASSED = "passed"
    FAILED = "failed"
    UNKNOWN = "unknown"


class OutputStream(ProtoEnum):
    UNSPECIFIED = "unspecified"
    STDOUT = "stdout"
    STDERR = "stderr"


class EgressDecision(ProtoEnum):
    """What the egress proxy did with one request of a sandboxed action."""

    UNSPECIFIED = "unspecified"
    ALLOWED = "allowed"
    REFUSED = "refused"


class SecretKind(ProtoEnum):
    UNSPECIFIED = "unspecified"
    API_KEY = "api_key"
    BEARER = "bearer"
    BASIC = "basic"
    OAUTH2 = "oauth2"
    DSN = "dsn"
    GENERIC = "generic"


for _cls in (
    ResourceKind,
    UndoStrategy,
    SessionState,
    ActionKind,
    ActionState,
    Termination,
    ChangeKind,
    ReversibilityClass,
    Verdict,
    OutputStream,
    EgressDecision,
):
    _DESCRIPTORS[_cls] = types_pb2.DESCRIPTOR.enum_types_by_name[_cls.__name__]
_DESCRIPTORS[SecretKind] = secrets_pb2.DESCRIPTOR.enum_types_by_name["SecretKind"]
_DESCRIPTORS[DiffContent] = actions_pb2.DESCRIPTOR.enum_types_by_name["DiffContent"]
