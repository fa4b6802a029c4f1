"""What `Client.set_asides` and `Client.restore_set_aside` return, and their requests.

A set-aside is a version of someone's work goexd overwrote and kept: by a forced undo
(`undo(..., force=True)`), or when an action changed a file the person changed while it ran.
It stays until it is restored or expires under the snapshot retention.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from goex._models import _Model
from goex._protoutil import timestamp
from goex.v1 import actions_pb2

__all__ = ["SetAside", "SetAsideRestored", "list_request", "restore_request"]


@dataclass(frozen=True)
class SetAside(_Model[actions_pb2.SetAside]):
    """Versions of a workspace's paths that goexd overwrote, kept as they were."""

    id: str
    resource: str  # the session's fs resource (workspace) it belongs to
    action_id: str  # the action whose undo or apply overwrote them; "" when a forced restore did
    created_at: datetime | None
    reason: str
    paths: tuple[str, ...]  # display form (escaped, one printable line each)
    paths_bytes: tuple[bytes, ...]  # the exact names, in the same order

    @property
    def fspaths(self) -> tuple[str, ...]:
        """The exact names as Python's os functions take them (os.fsdecode of paths_bytes)."""
        return tuple(os.fsdecode(p) for p in self.paths_bytes)

    @classmethod
    def from_proto(cls, msg: actions_pb2.SetAside) -> SetAside:
        return cls(
            id=msg.id,
            resource=msg.resource,
            action_id=msg.action_id,
            created_at=timestamp(msg, "created_at"),
            reason=msg.reason,
            paths=tuple(msg.paths),
            # A goexd that sent no exact names: the display form is the name (as FileChange does).
            paths_bytes=tuple(msg.paths_bytes) or tuple(p.encode() for p in msg.paths),
            proto=msg,
        )


@dataclass(frozen=True)
class SetAsideRestored(_Model[actions_pb2.RestoreSetAsideResponse]):
    """The outcome of bringing a set-aside back. `verified`: goexd confirmed its paths are back as
    they were kept (False: it could not, and `detail` says why); `detail` says what it brought back
    and, when forced, what it set aside in turn."""

    verified: bool
    detail: str

    @classmethod
    def from_proto(cls, msg: actions_pb2.RestoreSetAsideResponse) -> SetAsideRestored:
        return cls(verified=msg.verified, detail=msg.detail, proto=msg)


def list_request(session_id: str) -> actions_pb2.ListSetAsidesRequest:
    return actions_pb2.ListSetAsidesRequest(session_id=session_id)


def restore_request(session_id: str, set_aside_id: str, force: bool) -> actions_pb2.RestoreSetAsideRequest:
    return actions_pb2.RestoreSetAsideRequest(session_id=session_id, set_aside_id=set_aside_id, force=force)
