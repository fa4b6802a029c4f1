"""Domain errors. The server maps each class to one gRPC status code in one place
(server/errors.py); nothing below the server layer knows about gRPC.

    GoexError
    ├── InvalidArgument      bad request field or value          -> INVALID_ARGUMENT
    ├── NotFound             unknown session / action / secret   -> NOT_FOUND
    ├── AlreadyExists        e.g. a secret put without overwrite -> ALREADY_EXISTS
    ├── FailedPrecondition   valid request, wrong state          -> FAILED_PRECONDITION
    ├── PermissionDenied     refused by policy                   -> PERMISSION_DENIED
    ├── ResourceExhausted    a policy rate limit was reached     -> RESOURCE_EXHAUSTED
    ├── Unavailable          a backend cannot be reached         -> UNAVAILABLE
    ├── DeadlineExceeded     waited for something that did not come -> DEADLINE_EXCEEDED
    ├── Unimplemented        capability not built yet            -> UNIMPLEMENTED
    └── InternalError        a bug or broken invariant           -> INTERNAL
"""

from __future__ import annotations


class GoexError(Exception):
    """Base of every error goexd reports to a client."""


class InvalidArgument(GoexError):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFound(GoexError):
    def __init__(self, what: str, ident: str) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"{what} {ident!r} not found")


class AlreadyExists(GoexError):
    pass


class DeadlineExceeded(GoexError):
    pass


class FailedPrecondition(GoexError):
    pass


class StoppedPartWay(FailedPrecondition):
    """An undo that failed after writing part of the way (a write the filesystem refused): its journaled intent
    stays, so that nothing commits a half-undone action; a retry or the next start finishes it."""

    partial = True


class PermissionDenied(GoexError):
    pass


class ResourceExhausted(GoexError):
    pass


class Unavailable(GoexError):
    pass


class Unimplemented(GoexError):
    pass


class InternalError(GoexError):
    pass


class SetupError(Exception):
    """The daemon cannot start (missing dependency, bad config). Printed, never served."""
