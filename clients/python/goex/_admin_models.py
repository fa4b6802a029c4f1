"""What goexd's Admin service returns, as frozen dataclasses (as goex._models; apart so that a command
that never asks for them does not build these classes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from goex._models import _Model
from goex._protoutil import seconds
from goex.v1 import admin_pb2

__all__ = ["ComponentHealth", "GcResult", "Health", "PolicyCheck", "PolicyError", "Stats", "StopResult"]


@dataclass(frozen=True)
class ComponentHealth(_Model[admin_pb2.ComponentHealth]):
    name: str  # "journal", "sandbox", "snapshots", "vault"
    ok: bool
    detail: str

    @classmethod
    def from_proto(cls, msg: admin_pb2.ComponentHealth) -> ComponentHealth:
        return cls(name=msg.name, ok=msg.ok, detail=msg.detail, proto=msg)


@dataclass(frozen=True)
class Health(_Model[admin_pb2.GetHealthResponse]):
    ok: bool
    version: str
    uptime: float | None  # seconds
    components: tuple[ComponentHealth, ...]

    @classmethod
    def from_proto(cls, msg: admin_pb2.GetHealthResponse) -> Health:
        return cls(
            ok=msg.ok,
            version=msg.version,
            uptime=seconds(msg, "uptime"),
            components=tuple(ComponentHealth.from_proto(c) for c in msg.components),
            proto=msg,
        )


@dataclass(frozen=True)
class Stats(_Model[admin_pb2.GetStatsResponse]):
    open_sessions: int
    actions_by_state: Mapping[str, int] = field(hash=False)
    journal_bytes: int
    snapshot_store_bytes: int
    running_actions: int

    @classmethod
    def from_proto(cls, msg: admin_pb2.GetStatsResponse) -> Stats:
        return cls(
            open_sessions=msg.open_sessions,
            actions_by_state=MappingProxyType(dict(msg.actions_by_state)),
            journal_bytes=msg.journal_bytes,
            snapshot_store_bytes=msg.snapshot_store_bytes,
            running_actions=msg.running_actions,
            proto=msg,
        )


@dataclass(frozen=True)
class GcResult(_Model[admin_pb2.RunGcResponse]):
    snapshots_removed: int
    bytes_freed: int  # the snapshots' and the journal's
    reasons: tuple[str, ...]
    outputs_trimmed: int = 0  # resolved actions whose large outputs were trimmed (gc.output_* settings)
    output_bytes_trimmed: int = 0
    journal_bytes_freed: int = 0

    @classmethod
    def from_proto(cls, msg: admin_pb2.RunGcResponse) -> GcResult:
        return cls(
            snapshots_removed=msg.snapshots_removed,
            bytes_freed=msg.bytes_freed,
            reasons=tuple(msg.reasons),
            outputs_trimmed=msg.outputs_trimmed,
            output_bytes_trimmed=msg.output_bytes_trimmed,
            journal_bytes_freed=msg.journal_bytes_freed,
            proto=msg,
        )


@dataclass(frozen=True)
class StopResult(_Model[admin_pb2.StopResponse]):
    """What stopping goexd interrupts (with drain: what it waits for), by kind: {kind: action ids}."""

    interrupted: dict[str, tuple[str, ...]]
    summary: str
    draining: bool

    @classmethod
    def from_proto(cls, msg: admin_pb2.StopResponse) -> StopResult:
        found = {i.kind: tuple(i.action_ids) for i in msg.interrupted}
        return cls(interrupted=found, summary=msg.summary, draining=msg.draining, proto=msg)


@dataclass(frozen=True)
class PolicyError(_Model[admin_pb2.PolicyError]):
    line: int
    message: str

    @classmethod
    def from_proto(cls, msg: admin_pb2.PolicyError) -> PolicyError:
        return cls(line=msg.line, message=msg.message, proto=msg)


@dataclass(frozen=True)
class PolicyCheck(_Model[admin_pb2.CheckPolicyResponse]):
    ok: bool
    errors: tuple[PolicyError, ...]

    @classmethod
    def from_proto(cls, msg: admin_pb2.CheckPolicyResponse) -> PolicyCheck:
        return cls(ok=msg.ok, errors=tuple(PolicyError.from_proto(e) for e in msg.errors), proto=msg)
