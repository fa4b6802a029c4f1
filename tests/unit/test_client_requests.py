"""Request messages the clients build from Python arguments, and the CLI's secret-value input.

The end-to-end tests cannot see what went on the wire (and goexd does not serve egress
or OAuth2 flows yet): these check the requests themselves (no daemon needed).
"""

from __future__ import annotations

import inspect
import io
import json
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


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("run_sql", ["sql", "params", "inverse", "resource", "detach", "limits", "approval"]),
        (
            "run_http",
            [
                "method", "path", "query", "headers", "json", "body", "inverse",
                "resource", "approval", "detach", "limits",
            ],
        ),
        (
            "run_shell",
            [
                "argv", "env", "stdin", "resource", "inverse", "detach", "limits",
                "secrets", "hosts", "http_resources", "approval",
            ],
        ),
        (
            "run_python",
            ["code", "env", "stdin", "resource", "detach", "limits", "secrets", "hosts", "http_resources", "approval"],
        ),
    ],
)  # fmt: skip
def test_run_helpers_have_the_same_signature_on_both_clients(method: str, parameters: list[str]) -> None:
    sync, aio = inspect.signature(getattr(goex.Client, method)), inspect.signature(getattr(goex.AsyncClient, method))
    assert sync == aio
    assert list(sync.parameters) == ["self", "session_id", *parameters]
    assert inspect.iscoroutinefunction(getattr(goex.AsyncClient, method))
    # approval is keyword-only and defaults to none (no approval).
    assert (
        sync.parameters["approval"].default == "" and sync.parameters["approval"].kind is inspect.Parameter.KEYWORD_ONLY
    )


def test_http_bodies_json_as_text_or_as_a_value() -> None:
    as_text, none = rq.http_bodies(
        "post", "/items", query=None, headers=None, json='{"name": "x"}', body=None, inverse=None
    )
    assert as_text == goex.Http("POST", "/items", json='{"name": "x"}') and none is None
    # Text is sent as given, not re-serialised (nor checked: goexd says what is wrong with it).
    assert rq.http_bodies("POST", "/", query=None, headers=None, json="{bad", body=None, inverse=None)[0].json == "{bad"
    value = {"name": "ü", "tags": ["a", 1, None, True], "n": 1.5}
    as_value, _ = rq.http_bodies("PUT", "/items/1", query=None, headers=None, json=value, body=None, inverse=None)
    assert as_value.json is not None and json.loads(as_value.json) == value and as_value.body is None
    # A list, a number, False: any JSON value; None means no body.
    for other in ([1, 2], 0, False):
        sent = rq.http_bodies("POST", "/", query=None, headers=None, json=other, body=None, inverse=None)[0].json
        assert sent is not None and json.loads(sent) == other
    nothing = rq.http_bodies("GET", "/", query=None, headers=None, json=None, body=None, inverse=None)[0]
    assert nothing.json is None and nothing.body is None
    with pytest.raises(ValueError, match="not JSON compliant"):
        rq.http_bodies("POST", "/", query=None, headers=None, json={"x": math.nan}, body=None, inverse=None)
    with pytest.raises(TypeError, match="not JSON serializable"):
        rq.http_bodies("POST", "/", query=None, headers=None, json={"x": object()}, body=None, inverse=None)
    with pytest.raises(TypeError, match="pass bytes as body"):
        rq.http_bodies("POST", "/", query=None, headers=None, json=b"{}", body=None, inverse=None)
    with pytest.raises(ValueError, match="not both"):
        rq.http_bodies("POST", "/", query=None, headers=None, json={}, body=b"x", inverse=None)


def test_http_bodies_raw_body_query_headers_and_inverse() -> None:
    undo = goex.Http("DELETE", "/items/7")
    action, inverse = rq.http_bodies(
        "PUT",
        "/blob",
        query={"versionId": "3", "q": "a b"},
        headers={"Content-Type": "application/octet-stream"},
        json=None,
        body=b"\x00\xff",
        inverse=undo,
    )
    assert inverse is undo
    assert action.body == b"\x00\xff" and action.json is None
    assert dict(action.query) == {"versionId": "3", "q": "a b"}
    assert action.text == "PUT /blob?q=a+b&versionId=3"
    text_body = rq.http_bodies("POST", "/t", query=None, headers=None, json=None, body="é", inverse=None)[0]
    assert text_body.body == "é".encode()


def test_http_submit_request() -> None:
    action, inverse = rq.http_bodies(
        "POST",
        "/items",
        query={"dry": "0"},
        headers={"Accept": "application/json"},
        json={"name": "x"},
        body=None,
        inverse=goex.Http("DELETE", "/items/by-name/x", json="{}"),
    )
    req = rq.submit(
        "ses_1",
        action,
        resource="api",
        inverse=inverse,
        detach=False,
        limits=goex.Limits(timeout=5),
        description="add x",
        approval="ann: ok",
    )
    assert req.spec.WhichOneof("body") == "http" and req.spec.resource == "api" and req.approval == "ann: ok"
    h = req.spec.http
    assert (h.method, h.path, h.WhichOneof("payload"), h.json) == ("POST", "/items", "json", '{"name": "x"}')
    assert dict(h.query) == {"dry": "0"} and dict(h.headers) == {"Accept": "application/json"}
    assert req.inverse.resource == "api" and req.inverse.limits.timeout.ToSeconds() == 5
    assert (req.inverse.http.method, req.inverse.http.path, req.inverse.http.json) == (
        "DELETE",
        "/items/by-name/x",
        "{}",
    )
    raw = rq.http_bodies("PUT", "/b", query=None, headers=None, json=None, body=b"", inverse=None)[0]
    # An empty body is still a body (the payload oneof is set), unlike no body at all.
    assert goex.ActionSpec(raw).to_proto().http.WhichOneof("payload") == "body"
    bare = rq.http_bodies("GET", "/b", query=None, headers=None, json=None, body=None, inverse=None)[0]
    assert goex.ActionSpec(bare).to_proto().http.WhichOneof("payload") is None


def test_http_resource_spec_rules() -> None:
    spec = goex.ResourceSpec.http("https://api.example/v1", secret="tok", name="api", strategy="confine", rules="s3")
    msg = spec.to_proto()
    assert (msg.name, msg.http.base_url, msg.http.secret, msg.http.rules) == (
        "api",
        "https://api.example/v1",
        "tok",
        "s3",
    )
    assert msg.strategy == pb.UNDO_STRATEGY_CONFINE
    default = goex.ResourceSpec.http("http://127.0.0.1:3000").to_proto()
    assert default.http.rules == "" and default.strategy == pb.UNDO_STRATEGY_UNSPECIFIED and default.name == ""
    # Only http resources have a rule set.
    assert goex.ResourceSpec.db("sqlite:///a.db").rules == ""


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
    # The shortcuts, in the order fs, db, http, before `resources`.
    three = rq.create_session(
        fs="w",
        db="sqlite:///shop.db",
        http="https://api.example.com/v1",
        label="",
        limits=None,
        resources=[goex.ResourceSpec.http("https://other.example", name="other")],
        policy=None,
    )
    assert [r.WhichOneof("kind") for r in three.resources] == ["fs", "db", "http", "http"]
    assert three.resources[1].db.url == "sqlite:///shop.db"
    assert three.resources[2].http.base_url == "https://api.example.com/v1" and three.resources[3].name == "other"


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
