"""The public surface of the goex package is exactly what __all__ promises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import goex

EXPECTED = {
    # clients
    "Client",
    "AsyncClient",
    "default_socket_path",
    "interrupted_action",
    "__version__",
    # requests
    "ActionBody",
    "ActionSpec",
    "Shell",
    "Python",
    "Sql",
    "Http",
    "Prompt",
    "Limits",
    "ResourceSpec",
    "Injection",
    "Egress",
    # results
    "Action",
    "ActionEvent",
    "StateEvent",
    "OutputEvent",
    "ChangeSet",
    "FileChange",
    "ExecResult",
    "EgressRecord",
    "SqlResult",
    "HttpResult",
    "PairHistory",
    "PairJudgement",
    "PairVerdict",
    "FunctionInfo",
    "FunctionSetInfo",
    "PlanAttempt",
    "PlanReview",
    "PromptPlan",
    "Reversibility",
    "Timings",
    "Session",
    "ClosedSession",
    "Resource",
    "ResourceDescription",
    "SecretInfo",
    "OAuthStart",
    "Health",
    "ComponentHealth",
    "Stats",
    "StopResult",
    "GcResult",
    "PolicyCheck",
    "PolicyError",
    "Diff",
    "DiffSide",
    "FileDiff",
    "SetAside",
    "SetAsideRestored",
    # enums
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
    # errors
    "GoexError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DaemonNotRunning",
    "DataLoss",
    "Unauthenticated",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(goex.__all__) == EXPECTED
    assert len(goex.__all__) == len(set(goex.__all__)), "duplicates in __all__"


def test_every_public_name_resolves() -> None:
    for name in goex.__all__:
        assert getattr(goex, name) is not None, name


def test_no_other_public_attributes_leak() -> None:
    public = {n for n in vars(goex) if not n.startswith("_")}
    # Submodules are attributes once imported; they are namespaces, not API.
    modules = {"cli", "v1"}
    assert public - modules <= EXPECTED


def test_package_is_typed() -> None:
    assert (Path(goex.__file__).parent / "py.typed").exists()


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOEX_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert goex.default_socket_path() == "/run/user/1000/goex/goexd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert goex.default_socket_path() == f"/tmp/goex-{os.getuid()}/goexd.sock"
    monkeypatch.setenv("GOEX_SOCKET", "/x/y.sock")
    assert goex.default_socket_path() == "/x/y.sock"
