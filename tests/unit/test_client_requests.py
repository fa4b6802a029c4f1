"""Request messages the clients build from Python arguments, and the CLI's secret-value input.

The end-to-end tests cannot see what went on the wire (and goexd does not serve egress
or OAuth2 flows yet): these check the requests themselves (no daemon needed).
"""

from __future__ import annotations

import inspect
import io
import math
import os
from pathlib import Path

import pytest

import goex
from goex import _requests as rq
from goex.cli._app import CliError
from goex.cli.cmd_secret import read_new_passphrase, read_value
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


def test_submit_request_with_egress() -> None:
    req = rq.submit(
        "s",
        goex.Shell(["curl", "https://api.github.com/user"]),
        resource=None,
        inverse=goex.Shell(["true"]),
        detach=False,
        limits=None,
        description=None,
        approval="",
        egress=goex.Egress(secrets=["gh"], hosts=["pypi.org"]),
    )
    assert list(req.spec.egress.secrets) == ["gh"] and list(req.spec.egress.hosts) == ["pypi.org"]
    # The inverse gets no network from the action's egress.
    assert not req.inverse.HasField("egress")
    assert goex.ActionSpec.from_proto(req.spec).egress == goex.Egress(["gh"], ["pypi.org"])

    # The argument overrides a spec's own egress; a spec keeps its own otherwise.
    own = goex.ActionSpec(goex.Python("1"), egress=goex.Egress(hosts=["a.example"]))
    assert rq.action_spec(own).egress == goex.Egress(hosts=["a.example"])
    assert rq.action_spec(own, egress=goex.Egress(["k"])).egress == goex.Egress(["k"])

    plain = rq.submit(
        "s", goex.Shell(["true"]), resource=None, inverse=None, detach=False, limits=None, description=None, approval=""
    )
    assert not plain.spec.HasField("egress")  # no egress: no network at all


def test_an_empty_egress_is_sent_as_given() -> None:
    # goexd refuses it and says why; the client does not silently drop it.
    spec = goex.ActionSpec(goex.Shell(["true"]), egress=goex.Egress())
    assert spec.to_proto().HasField("egress")
    assert goex.ActionSpec.from_proto(spec.to_proto()).egress == goex.Egress()


def test_run_shell_and_run_python_secrets_and_hosts_become_egress() -> None:
    assert rq.egress((), ()) is None
    assert rq.egress(["gh"], ()) == goex.Egress(secrets=["gh"])
    assert rq.egress([], (h for h in ["a.example"])) == goex.Egress(hosts=["a.example"])
    with pytest.raises(TypeError, match="not a string"):
        rq.egress("gh", ())  # would be ("g", "h")
    with pytest.raises(TypeError, match="not a string"):
        goex.Egress(hosts="pypi.org")


def test_sql_submit_request() -> None:
    body, inverse = rq.sql_bodies(
        "UPDATE users SET balance = balance + ?", ["500"], "UPDATE users SET balance = balance - 500"
    )
    req = rq.submit(
        "ses_1",
        body,
        resource="app",
        inverse=inverse,
        detach=False,
        limits=goex.Limits(timeout=2),
        description="bonus",
        approval="",
    )
    assert req.spec.WhichOneof("body") == "sql" and req.spec.resource == "app" and req.spec.description == "bonus"
    assert req.spec.sql.sql == "UPDATE users SET balance = balance + ?" and list(req.spec.sql.params) == ["500"]
    # The client-provided inverse runs on the same database, within the same limits, with no parameters.
    assert req.inverse.sql.sql == "UPDATE users SET balance = balance - 500" and not req.inverse.sql.params
    assert req.inverse.resource == "app" and req.inverse.limits.timeout.ToSeconds() == 2
    assert not req.spec.HasField("egress") and not req.inverse.HasField("egress")
    assert goex.ActionSpec.from_proto(req.spec).body == goex.Sql("UPDATE users SET balance = balance + ?", ["500"])


def test_run_sql_bodies() -> None:
    assert rq.sql_bodies("SELECT 1", (), None) == (goex.Sql("SELECT 1"), None)
    # An inverse with parameters of its own is given as a Sql, and kept as it is.
    own = goex.Sql("UPDATE users SET balance = balance - ?", ["500"])
    assert rq.sql_bodies("UPDATE users SET balance = balance + ?", ["500"], own)[1] is own
    params = (p for p in ["1", "2"])  # any iterable
    assert rq.sql_bodies("SELECT ?, ?", params, None)[0].params == ("1", "2")
    with pytest.raises(TypeError, match="not a string"):
        rq.sql_bodies("SELECT ?", "500", None)  # would be ("5", "0", "0")
    with pytest.raises(TypeError, match="not a string"):
        goex.Sql("SELECT ?", "x")


def test_run_sql_has_the_same_signature_on_both_clients() -> None:
    sync, aio = inspect.signature(goex.Client.run_sql), inspect.signature(goex.AsyncClient.run_sql)
    assert sync == aio
    assert list(sync.parameters) == [
        "self", "session_id", "sql", "params", "inverse", "resource", "detach", "limits"
    ]  # fmt: skip
    assert inspect.iscoroutinefunction(goex.AsyncClient.run_sql)


def test_start_oauth_request() -> None:
    req = rq.start_oauth(
        "gh",
        authorization_url="https://github.com/login/oauth/authorize",
        token_url="https://github.com/login/oauth/access_token",
        client_id="cid",
        scopes=["repo", "read:org"],
        allowed_hosts=["api.github.com"],
        client_secret="shh",
        overwrite=True,
    )
    assert (req.name, req.client_id, req.overwrite) == ("gh", "cid", True)
    assert req.authorization_url.endswith("/authorize") and req.token_url.endswith("/access_token")
    assert list(req.scopes) == ["repo", "read:org"] and list(req.allowed_hosts) == ["api.github.com"]
    assert req.client_secret == b"shh"  # str is sent as UTF-8
    public = rq.start_oauth(
        "x",
        authorization_url="a",
        token_url="t",
        client_id="c",
        scopes=(),
        allowed_hosts=(),
        client_secret=b"",
        overwrite=False,
    )
    assert public.client_secret == b"" and not public.overwrite


def test_await_oauth_request_and_deadline() -> None:
    req, deadline = rq.await_oauth("gh", None)
    # No timeout: the daemon waits until the flow expires, and the call has no deadline of its own.
    assert req.name == "gh" and not req.HasField("timeout") and deadline is None
    req, deadline = rq.await_oauth("gh", 90.5)
    assert req.timeout.ToMilliseconds() == 90_500
    # The call outlives the daemon's wait, so the daemon's own answer gets through.
    assert deadline is not None and deadline > 90.5
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive"):
            rq.await_oauth("gh", bad)


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
    db = rq.create_session(
        fs=None,
        label="",
        limits=None,
        resources=[goex.ResourceSpec.db("postgresql://app@db/shop", secret="pg", strategy="clone")],
        policy=None,
    )
    [spec] = db.resources
    assert (spec.db.url, spec.db.secret, spec.strategy) == ("postgresql://app@db/shop", "pg", pb.UNDO_STRATEGY_CLONE)
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


def test_new_passphrase_from_stdin_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"correct horse\n")))
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or "")
    assert read_new_passphrase() == b"correct horse" and prompts == []
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    with pytest.raises(CliError, match="empty passphrase"):
        read_new_passphrase()


def test_new_passphrase_on_a_terminal_is_typed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    typed = iter(["correct horse", "correct horse", "one", "two"])
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or next(typed))
    assert read_new_passphrase() == b"correct horse"
    assert prompts == ["new vault passphrase: ", "new vault passphrase again: "]
    with pytest.raises(CliError, match="do not match") as info:
        read_new_passphrase()
    assert info.value.code == "INVALID_ARGUMENT"
