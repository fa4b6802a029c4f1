"""Exceptions raised by the goex clients: one class per gRPC status code.

Every RPC failure surfaces as a `GoexError` subclass carrying the status code and
the daemon's message; a raw `grpc.RpcError` never escapes the clients.

    GoexError                      any failure reported by (or on the way to) goexd
    ├── Cancelled                  CANCELLED            the call was cancelled
    ├── Unknown                    UNKNOWN              status without a better code
    ├── InvalidArgument            INVALID_ARGUMENT     bad request field or value
    ├── DeadlineExceeded           DEADLINE_EXCEEDED    the client-side timeout expired
    ├── NotFound                   NOT_FOUND            unknown session / action / secret
    ├── AlreadyExists              ALREADY_EXISTS       e.g. a secret without overwrite
    ├── PermissionDenied           PERMISSION_DENIED    refused by policy
    ├── ResourceExhausted          RESOURCE_EXHAUSTED   a daemon-side quota or size limit
    ├── FailedPrecondition         FAILED_PRECONDITION  valid request, wrong state
    ├── Aborted                    ABORTED              concurrency conflict
    ├── OutOfRange                 OUT_OF_RANGE
    ├── Unimplemented              UNIMPLEMENTED        capability not built yet
    ├── Internal                   INTERNAL             a bug or broken invariant in goexd
    ├── Unavailable                UNAVAILABLE          goexd or one of its backends is unreachable
    │   └── DaemonNotRunning       UNAVAILABLE          nothing listens on the socket: start `goexd`
    ├── DataLoss                   DATA_LOSS
    └── Unauthenticated            UNAUTHENTICATED
"""

from __future__ import annotations

import os
from typing import ClassVar

import grpc

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DaemonNotRunning",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GoexError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "from_rpc_error",
]


class GoexError(Exception):
    """Base of every error the goex clients raise for a failed call."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, action_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: grpc.StatusCode = code if code is not None else self.status
        self.action_id = action_id  # the action the failure concerns, where the client knows it

    @property
    def code_name(self) -> str:
        """The status code's canonical name, e.g. "NOT_FOUND"."""
        return self.code.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class Cancelled(GoexError):
    status = grpc.StatusCode.CANCELLED


class Unknown(GoexError):
    status = grpc.StatusCode.UNKNOWN


class InvalidArgument(GoexError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(GoexError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(GoexError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(GoexError):
    status = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(GoexError):
    status = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(GoexError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(GoexError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(GoexError):
    status = grpc.StatusCode.ABORTED


class OutOfRange(GoexError):
    status = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(GoexError):
    status = grpc.StatusCode.UNIMPLEMENTED


class Internal(GoexError):
    status = grpc.StatusCode.INTERNAL


class Unavailable(GoexError):
    status = grpc.StatusCode.UNAVAILABLE


class DaemonNotRunning(Unavailable):
    """The client could not connect at all: no daemon listens on the socket."""

    def __init__(self, message: str, *, socket_path: str | None = None) -> None:
        super().__init__(message)
        self.socket_path = socket_path


class DataLoss(GoexError):
    status = grpc.StatusCode.DATA_LOSS


class Unauthenticated(GoexError):
    status = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[GoexError]] = {
    cls.status: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}

# grpc-core's wording when it could not open a connection; a daemon-sent UNAVAILABLE
# (e.g. "postgres unreachable") never starts like this.
_CONNECT_FAILURE = "failed to connect to all addresses"


def from_rpc_error(err: grpc.RpcError, *, socket_path: str | None = None, target: str | None = None) -> GoexError:
    """Map a failed call to its `GoexError` subclass.

    `socket_path` (or `target` for non-Unix channels) names the daemon's address so
    that connection failures say where the client looked and what to do about it.
    """
    # Not every RpcError is a Call (e.g. some channel-level errors); be defensive.
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = details_fn() if callable(details_fn) else None
    message = details if isinstance(details, str) and details else code.name.lower().replace("_", " ")

    if code is grpc.StatusCode.UNAVAILABLE and message.startswith(_CONNECT_FAILURE):
        return _connect_error(message, socket_path=socket_path, target=target)
    cls = _BY_CODE.get(code, GoexError)
    return cls(message, code=code)


def _connect_error(detail: str, *, socket_path: str | None, target: str | None) -> Unavailable:
    if socket_path is None:
        where = target or "the configured target"
        return DaemonNotRunning(f"cannot connect to goexd at {where}: is `goexd` running? ({detail})")
    if not os.path.exists(socket_path):
        return DaemonNotRunning(
            f"goexd is not running: no socket at {socket_path}; start it with `goexd`",
            socket_path=socket_path,
        )
    if "Connection refused" in detail:
        return DaemonNotRunning(
            f"goexd is not running: {socket_path} refuses connections (stale socket?); start it with `goexd`",
            socket_path=socket_path,
        )
    if "Permission denied" in detail:
        return Unavailable(f"cannot connect to goexd at {socket_path}: permission denied")
    return Unavailable(f"cannot connect to goexd at {socket_path}: {detail}")
