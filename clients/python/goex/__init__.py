"""goex: thin client for the goexd runtime (sync and asyncio) and the `goex` CLI.

    import goex

    with goex.Client() as client:
        session = client.create_session(fs="/path/to/workspace")
        action = client.run_shell(session.id, ["sh", "-c", "echo hi > a.txt"])
        print(action.state, [c.line for c in action.changes.changes])
        client.undo(session.id)

Everything public is listed in `__all__`; the underscore modules are private. The names are
imported on first use (PEP 562), so that `goex --version` and a CLI command load only what
they need: the asyncio client (grpc.aio) costs ~100 ms of start-up and most commands never use it.
"""

# No `from __future__ import annotations`, and the helpers under private names: every public
# attribute of this module is API (tests/unit/test_client_api.py).
import importlib as _importlib
import typing as _typing

from goex._version import __version__

if _typing.TYPE_CHECKING:
    from goex._admin_models import ComponentHealth, GcResult, Health, PolicyCheck, PolicyError, Stats, StopResult
    from goex._aio import AsyncClient
    from goex._client import Client, interrupted_action
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
        EgressRecord,
        ExecResult,
        FileChange,
        HttpResult,
        OutputEvent,
        Resource,
        ResourceDescription,
        Reversibility,
        Session,
        SqlResult,
        StateEvent,
        Timings,
    )
    from goex._pairs import PairHistory, PairJudgement, PairVerdict
    from goex._prompts import FunctionInfo, FunctionSetInfo, PlanAttempt, PlanReview, PromptPlan
    from goex._secret_models import OAuthStart, SecretInfo
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


# Where the public names live, cheapest first: a name is looked up in each until found, so that
# `goex.Client` loads what the sync client needs and never the asyncio one (goex._aio, last).
_MODULES = (
    "goex._socket",
    "goex._exceptions",
    "goex._enums",
    "goex._specs",
    "goex._models",
    "goex._secret_models",
    "goex._admin_models",
    "goex._diffs",
    "goex._pairs",
    "goex._prompts",
    "goex._set_asides",
    "goex._client",
    "goex._aio",
)


def __getattr__(name: str) -> _typing.Any:
    if name not in __all__:
        raise AttributeError(f"module 'goex' has no attribute {name!r}")
    for module_name in _MODULES:
        module = _importlib.import_module(module_name)
        if name in module.__all__:
            value = getattr(module, name)
            globals()[name] = value  # later lookups skip this function
            return value
    raise AttributeError(f"goex.{name} is in __all__ but in none of {_MODULES}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "FunctionInfo",
    "FunctionSetInfo",
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
    "PlanAttempt",
    "PlanReview",
    "PolicyCheck",
    "PolicyError",
    "Prompt",
    "PromptPlan",
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
    "StopResult",
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
    "interrupted_action",
]
