"""Request messages the clients build from Python arguments, and the CLI's secret-value input.

goexd answers the secret RPCs with UNIMPLEMENTED today, and the end-to-end tests cannot
see what went on the wire: these check the requests themselves (no daemon needed).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import goex
from goex import _requests as rq
from goex.cli._app import CliError
from goex.cli.cmd_secret import read_value
from goex.v1 import secrets_pb2, sessions_pb2
from goex.v1 import types_pb2 as pb


def test_submit_request() -> None:
    req = rq.submit(
        "ses_1",
        goex.Python("print(1)"),
        resource="fs",
        inverse=goex.Shell(["rm", "x"]),
        detach=True,
        limits=goex.Limits(timeout=1.5, memory_bytes=1 << 20),
        description="one",
        approval="yes",
    )
    assert (req.session_id, req.detach, req.approval) == ("ses_1", True, "yes")
    assert req.spec.python.code == "print(1)" and req.spec.resource == "fs" and req.spec.description == "one"
    assert req.spec.limits.timeout.ToMilliseconds() == 1500 and req.spec.limits.memory_bytes == 1 << 20
    # The inverse runs where the action ran, within the same limits.
    assert list(req.inverse.shell.argv) == ["rm", "x"] and req.inverse.resource == "fs"
    assert req.inverse.limits == req.spec.limits

    plain = rq.submit(
        "s", goex.Shell(["true"]), resource=None, inverse=None, detach=False, limits=None, description=None, approval=""
    )
    assert not plain.HasField("inverse") and not plain.spec.HasField("limits") and not plain.detach


def test_create_session_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    req = rq.create_session(
        fs="./proj",
        label="l",
        limits=goex.Limits(max_processes=8),
        resources=[goex.ResourceSpec.http("https://api.example.com", secret="gh")],
        policy="[fs]\n",
    )
    fs, http = req.resources
    assert fs.fs.path == os.path.join(tmp_path, "proj")  # made absolute for the daemon
    assert http.http.base_url == "https://api.example.com" and http.http.secret == "gh"
    assert req.limits.max_processes == 8 and req.label == "l" and req.policy_toml == "[fs]\n"
    empty = rq.create_session(fs=None, label="", limits=goex.Limits(), resources=(), policy=None)
    assert not empty.resources and not empty.HasField("limits") and empty.policy_toml == ""


def test_close_and_list_requests() -> None:
    assert rq.close_session("s", None).mode == sessions_pb2.CLOSE_MODE_UNSPECIFIED
    assert rq.close_session("s", "commit").mode == sessions_pb2.CLOSE_MODE_COMMIT_ALL
    assert rq.close_session("s", "undo").mode == sessions_pb2.CLOSE_MODE_UNDO_ALL
    with pytest.raises(ValueError, match="mode"):
        rq.close_session("s", "both")  # type: ignore[arg-type]
    req = rq.list_actions("s", ["executed", goex.ActionState.UNDONE], "7")
    assert list(req.states) == [pb.ACTION_STATE_EXECUTED, pb.ACTION_STATE_UNDONE] and req.page_token == "7"


def test_put_secret_request() -> None:
    req = rq.put_secret(
        "gh",
        "tok",
        kind="bearer",
        injection=goex.Injection.header("Authorization", "Bearer {value}"),
        allowed_hosts=["api.github.com"],
        values=None,
        overwrite=True,
    )
    assert req.value == b"tok" and req.overwrite and not req.values
    assert req.info.name == "gh" and req.info.kind == secrets_pb2.SECRET_KIND_BEARER
    assert req.info.injection.header.name == "Authorization"
    assert req.info.injection.header.template == "Bearer {value}"
    assert list(req.info.allowed_hosts) == ["api.github.com"]
    basic = rq.put_secret(
        "db",
        None,
        kind="basic",
        injection=None,
        allowed_hosts=(),
        values={"username": "ann", "password": b"pw"},
        overwrite=False,
    )
    assert basic.value == b"" and dict(basic.values) == {"username": b"ann", "password": b"pw"}


@pytest.mark.parametrize(
    ("stdin", "value"),
    [(b"s3cret\n", b"s3cret"), (b"s3cret\r\n", b"s3cret"), (b"two\nlines\n", b"two\nlines"), (b"raw", b"raw")],
)
def test_secret_value_from_stdin_drops_one_trailing_newline(
    stdin: bytes, value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    assert read_value("k") == value


def test_secret_value_prompt_on_a_terminal_and_never_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(CliError, match="empty secret"):
        read_value("k")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or "typed")
    assert read_value("k") == b"typed" and prompts == ["value for k: "]
