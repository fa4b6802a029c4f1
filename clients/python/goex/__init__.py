"""goex: thin client for the goexd runtime (sync and asyncio) and the `goex` CLI.

    import goex

    with goex.Client() as client:
        session = client.create_session(fs="/path/to/workspace")
        action = client.run_shell(session.id, ["sh", "-c", "echo hi > a.txt"])
        print(action.state, [c.line for c in action.changes.changes])
        client.undo(session.id)

Everything public is listed in `__all__`; the underscore modules are private.
"""

from importlib import metadata as _metadata

from goex._aio import AsyncClient
from goex._client import Client
from goex._diffs import Diff, DiffSide, FileDiff
from goex._enums import (
    ActionKind,
    ActionState,
    ChangeKind,
    DiffContent,
    EgressDecision,
    OutputStream,
    ResourceKind,
    ReversibilityClass,
    SecretKind,
    SessionState,
    Termination,
    UndoStrategy,
    Verdict,
)
from goex._exceptions import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DaemonNotRunning,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    GoexError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from goex._models import (
    Action,
    ActionEvent,
    ChangeSet,
    ClosedSession,
    ComponentHealth,
    EgressRecord,
    ExecResult,
    FileChange,
    GcResult,
    Health,
    HttpResult,
    OAuthStart,
    OutputEvent,
    PolicyCheck,
    PolicyError,
    Resource,
    ResourceDescription,
    Reversibility,
    SecretInfo,
    Session,
    SqlResult,
    StateEvent,
    Stats,
    Timings,
)
from goex._pairs import PairHistory, PairJudgement, PairVerdict
from goex._set_asides import SetAside, SetAsideRestored
from goex._socket import default_socket_path
from goex._specs import (
    ActionBody,
    ActionSpec,
    Egress,
    Http,
    Injection,
    Limits,
    Prompt,
    Python,
    ResourceSpec,
    Shell,
    Sql,
)

try:
    __version__ = _metadata.version("goex-client")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Aborted",
    "Action",
    "ActionBody",
    "ActionEvent",
    "ActionKind",
    "ActionSpec",
    "ActionState",
    "AlreadyExists",
    "AsyncClient",
    "Cancelled",
    "ChangeKind",
    "ChangeSet",
    "Client",
    "ClosedSession",
    "ComponentHealth",
    "DaemonNotRunning",
    "DataLoss",
    "DeadlineExceeded",
    "Diff",
    "DiffContent",
    "DiffSide",
    "Egress",
    "EgressDecision",
    "EgressRecord",
    "ExecResult",
    "FailedPrecondition",
    "FileChange",
    "FileDiff",
    "GcResult",
    "GoexError",
    "Health",
    "Http",
    "HttpResult",
    "Injection",
    "Internal",
    "InvalidArgument",
    "Limits",
    "NotFound",
    "OAuthStart",
    "OutOfRange",
    "OutputEvent",
    "OutputStream",
    "PairHistory",
    "PairJudgement",
    "PairVerdict",
    "PermissionDenied",
    "PolicyCheck",
    "PolicyError",
    "Prompt",
    "Python",
    "Resource",
    "ResourceDescription",
    "ResourceExhausted",
    "ResourceKind",
    "ResourceSpec",
    "Reversibility",
    "ReversibilityClass",
    "SecretInfo",
    "SecretKind",
    "Session",
    "SessionState",
    "SetAside",
    "SetAsideRestored",
    "Shell",
    "Sql",
    "SqlResult",
    "StateEvent",
    "Stats",
    "Termination",
    "Timings",
    "Unauthenticated",
    "Unavailable",
    "UndoStrategy",
    "Unimplemented",
    "Unknown",
    "Verdict",
    "__version__",
    "default_socket_path",
]
