"""grpc status -> goex exception mapping."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import goex
from goex import _exceptions
from goex._exceptions import from_rpc_error


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str | None) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details


EXPECTED = {
    grpc.StatusCode.CANCELLED: goex.Cancelled,
    grpc.StatusCode.UNKNOWN: goex.Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: goex.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: goex.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: goex.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: goex.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: goex.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: goex.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: goex.FailedPrecondition,
    grpc.StatusCode.ABORTED: goex.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: goex.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: goex.Unimplemented,
    grpc.StatusCode.INTERNAL: goex.Internal,
    grpc.StatusCode.UNAVAILABLE: goex.Unavailable,
    grpc.StatusCode.DATA_LOSS: goex.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: goex.Unauthenticated,
}


def test_every_error_status_has_its_class() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize(("code", "cls"), EXPECTED.items(), ids=lambda v: getattr(v, "name", ""))
def test_status_maps_to_class_with_code_and_message(code: grpc.StatusCode, cls: type[goex.GoexError]) -> None:
    err = from_rpc_error(FakeRpcError(code, "session 's1' not found"))
    assert type(err) is cls
    assert isinstance(err, goex.GoexError)
    assert err.code is code
    assert err.code_name == code.name
    assert err.message == "session 's1' not found"
    assert str(err) == "session 's1' not found"


def test_missing_details_fall_back_to_the_code_name() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, None))
    assert isinstance(err, goex.Internal)
    assert err.message == "internal"


def test_rpc_error_that_is_not_a_call_maps_to_unknown() -> None:
    err = from_rpc_error(grpc.RpcError())
    assert type(err) is goex.Unknown
    assert err.code is grpc.StatusCode.UNKNOWN


def test_daemon_sent_unavailable_keeps_its_message() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "postgres unreachable"), socket_path="/nope")
    assert type(err) is goex.Unavailable
    assert err.message == "postgres unreachable"


def test_connect_failure_without_socket_says_start_goexd() -> None:
    detail = "failed to connect to all addresses; last error: UNKNOWN: unix:/x.sock: No such file or directory"
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, detail), socket_path="/run/nowhere/goexd.sock")
    assert isinstance(err, goex.DaemonNotRunning)
    assert isinstance(err, goex.Unavailable)
    assert err.code is grpc.StatusCode.UNAVAILABLE
    assert "/run/nowhere/goexd.sock" in err.message
    assert "`goexd`" in err.message
    assert err.socket_path == "/run/nowhere/goexd.sock"


def test_hierarchy_is_drawn_in_the_module_docstring() -> None:
    doc = _exceptions.__doc__ or ""
    for name in _exceptions.__all__:
        obj = getattr(_exceptions, name)
        if isinstance(obj, type):
            assert issubclass(obj, goex.GoexError)
            assert name in doc, name


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="gx", dir="/tmp") as d:
        yield Path(d)


def test_client_raises_daemon_not_running_for_a_missing_socket(short_dir: Path) -> None:
    path = short_dir / "goexd.sock"
    with goex.Client(str(path), timeout=5) as client, pytest.raises(goex.DaemonNotRunning) as info:
        client.health()
    assert str(path) in info.value.message
    assert "start it with `goexd`" in info.value.message


def test_client_raises_daemon_not_running_for_a_stale_socket(short_dir: Path) -> None:
    path = short_dir / "goexd.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))  # bound but never listening: connections are refused
    try:
        with goex.Client(str(path), timeout=5) as client, pytest.raises(goex.DaemonNotRunning) as info:
            client.list_sessions()
    finally:
        sock.close()
    assert "refuses connections" in info.value.message


def test_async_client_maps_errors_too(short_dir: Path) -> None:
    async def go() -> None:
        async with goex.AsyncClient(str(short_dir / "goexd.sock"), timeout=5) as client:
            await client.health()

    with pytest.raises(goex.DaemonNotRunning):
        asyncio.run(go())
