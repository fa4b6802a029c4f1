"""Declarative HTTP actions through a real goexd against real services on loopback: json-server (a
JSON REST API), moto's S3 server (checked with boto3) and httpbin. Inverses come from the recorded
responses, undo verifies itself, irreversible calls wait for an approval, policy confines the rest,
and the credential never shows up anywhere."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as spb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_egress_e2e import httpbin_port  # noqa: F401 - the fixture: httpbin in a thread
from tests.services.http_service import serve_http
from tests.services.json_server import JsonServer
from tests.services.moto_s3 import ANY_SIGV4, MotoS3

TOKEN = "tok-e2e-http-5f1c9a7d3b"


@pytest.fixture(autouse=True)
def _close_shared_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test on the module's shared goexd closes the sessions it left open (committing what is pending)
    when it ends: an HTTP resource (the module's one httpbin) is held by one open session at a time."""
    yield
    if "shared_daemon" in request.fixturenames:
        d: DaemonProcess = request.getfixturevalue("shared_daemon")
        for s in d.sessions.ListSessions(sepb.ListSessionsRequest(), timeout=30).sessions:
            close = sepb.CloseSessionRequest(session_id=s.id, mode=sepb.CLOSE_MODE_COMMIT_ALL)
            d.sessions.CloseSession(close, timeout=60)


def put_secret(
    d: DaemonProcess, name: str, host: str, value: str, header: str = "Authorization", tpl: str = ""
) -> None:
    inj = spb.Injection(header=spb.HeaderInjection(name=header, template=tpl or "Bearer {value}"))
    info = spb.SecretInfo(name=name, kind=spb.SECRET_KIND_API_KEY, allowed_hosts=[host], injection=inj)
    d.secrets.PutSecret(spb.PutSecretRequest(info=info, value=value.encode()))


def open_http(
    d: DaemonProcess,
    url: str,
    *,
    name: str = "api",
    rules: str = "",
    secret: str = "",
    strategy: int = 0,
    policy: str = "",
) -> pb.Session:
    spec = pb.ResourceSpec(
        name=name, strategy=strategy, http=pb.HttpResourceSpec(base_url=url, secret=secret, rules=rules)
    )
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec], policy_toml=policy)).session


def call(
    d: DaemonProcess,
    session_id: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    approval: str = "",
    timeout_s: int = 0,
) -> pb.Action:
    http = pb.HttpAction(method=method, path=path, headers=headers or {}, query=query or {})
    if body is not None:
        http.json = json.dumps(body)
    if raw is not None:
        http.body = raw
    spec = pb.ActionSpec(http=http)
    if timeout_s:
        spec.limits.timeout.CopyFrom(Duration(seconds=timeout_s))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session_id, spec=spec, approval=approval)).action


def undo(d: DaemonProcess, session_id: str, action_id: str) -> pb.Action:
    return d.actions.UndoAction(apb.UndoActionRequest(session_id=session_id, action_id=action_id)).undone[-1]


CLASS = pb.ReversibilityClass


def items(server: JsonServer) -> list[dict[str, Any]]:
    """The service's state as it serves it (its db file is written a moment later)."""
    with server.client() as c:
        data: list[dict[str, Any]] = c.get("/items").json()
        return data


def users(server: JsonServer) -> list[dict[str, Any]]:
    with server.client() as c:
        data: list[dict[str, Any]] = c.get("/users").json()
        return data


# ---------------------------------------------------------------- a JSON REST API (json-server)


def test_create_update_delete_each_undone_from_the_recorded_response(
    shared_daemon: DaemonProcess, json_server: JsonServer
) -> None:
    put_secret(shared_daemon, "items-token", f"http://{json_server.host}", TOKEN)
    s = open_http(shared_daemon, json_server.base_url, secret="items-token")

    created = call(shared_daemon, s.id, "POST", "/items", body={"name": "lamp", "price": 12})
    assert created.state == pb.ACTION_STATE_EXECUTED, created.error
    assert created.http.status == 201
    item = json.loads(created.http.body)
    assert created.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert created.inverse.http.method == "DELETE" and created.inverse.http.path == f"/items/{item['id']}"
    assert [i["name"] for i in items(json_server)] == ["lamp"]
    undone = undo(shared_daemon, s.id, created.id)
    assert undone.state == pb.ACTION_STATE_UNDONE
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert "404" in undone.reversibility.detail
    assert items(json_server) == []

    kept = call(shared_daemon, s.id, "POST", "/items", body={"name": "desk", "price": 80})
    kept_id = json.loads(kept.http.body)["id"]
    shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id))
    before = items(json_server)

    updated = call(shared_daemon, s.id, "PATCH", f"/items/{kept_id}", body={"price": 95})
    assert updated.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert items(json_server)[0]["price"] == 95
    undone = undo(shared_daemon, s.id, updated.id)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED and "pre-image" in undone.reversibility.detail
    assert items(json_server) == before

    deleted = call(shared_daemon, s.id, "DELETE", f"/items/{kept_id}")
    assert deleted.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_BEST_EFFORT
    assert items(json_server) == []
    undone = undo(shared_daemon, s.id, deleted.id)
    # json-server keeps the id it is given, so the best-effort re-creation is exact, and verified as such.
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert items(json_server) == before

    read = call(shared_daemon, s.id, "GET", "/items")
    assert read.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_READ_ONLY
    assert not read.HasField("inverse") and json.loads(read.http.body) == before


def test_a_call_no_rule_covers_is_irreversible_and_needs_an_approval(
    shared_daemon: DaemonProcess, json_server: JsonServer
) -> None:
    s = open_http(shared_daemon, json_server.base_url)
    got, msg = status_of(lambda: call(shared_daemon, s.id, "POST", "/items/1/archive", body={}))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "policy rule http.irreversible" in msg, msg
    listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=s.id)).actions
    assert [a.state for a in listed] == [pb.ACTION_STATE_BLOCKED] and not listed[0].HasField("http")
    assert items(json_server) == []


def test_confine_strategy_irreversible_call_with_approval_cannot_be_undone(
    shared_daemon: DaemonProcess,
    httpbin_port: int,  # noqa: F811
) -> None:
    s = open_http(shared_daemon, f"http://127.0.0.1:{httpbin_port}", name="mail", strategy=pb.UNDO_STRATEGY_CONFINE)
    got, msg = status_of(lambda: call(shared_daemon, s.id, "POST", "/post", body={"to": "ann@example.com"}))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "explicit approval" in msg
    sent = call(shared_daemon, s.id, "POST", "/post", body={"to": "ann@example.com"}, approval="ann: send it")
    assert sent.state == pb.ACTION_STATE_EXECUTED and sent.approval == "ann: send it"
    assert sent.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_IRREVERSIBLE
    assert json.loads(sent.http.body)["json"] == {"to": "ann@example.com"}
    got, msg = status_of(lambda: undo(shared_daemon, s.id, sent.id))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "irreversible" in msg
    assert (
        shared_daemon.actions.GetAction(apb.GetActionRequest(action_id=sent.id)).action.state
        == pb.ACTION_STATE_EXECUTED
    )
    committed = shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id)).committed
    assert [a.id for a in committed] == [sent.id]


# ---------------------------------------------------------------- S3 (moto server), checked with boto3


@pytest.fixture
def s3_session(daemon: DaemonProcess, moto_s3: MotoS3) -> Iterator[pb.Session]:
    # moto's default server accepts any well-formed SigV4 header; the vault holds it and goexd adds it.
    put_secret(daemon, "s3-auth", f"http://{moto_s3.host}", ANY_SIGV4["Authorization"], tpl="{value}")
    yield open_http(daemon, moto_s3.base_url, name="s3", rules="s3", secret="s3-auth")


def test_s3_bucket_and_object_undo(daemon: DaemonProcess, moto_s3: MotoS3, s3_session: pb.Session) -> None:
    s3 = moto_s3.client()
    bucket = f"goex-e2e-{int(time.time() * 1000) % 10**9}"
    made = call(daemon, s3_session.id, "PUT", f"/{bucket}")
    assert made.state == pb.ACTION_STATE_EXECUTED, made.error
    assert made.inverse.http.method == "DELETE" and made.inverse.http.path == f"/{bucket}"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert undo(daemon, s3_session.id, made.id).reversibility.verdict == pb.VERDICT_PASSED
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    existing = moto_s3.new_bucket()
    s3.put_object(Bucket=existing, Key="notes/a.txt", Body=b"first version", ContentType="text/plain")
    overwrite = call(
        daemon, s3_session.id, "PUT", f"/{existing}/notes/a.txt", raw=b"second", headers={"content-type": "text/plain"}
    )
    assert overwrite.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_BEST_EFFORT
    assert s3.get_object(Bucket=existing, Key="notes/a.txt")["Body"].read() == b"second"
    assert undo(daemon, s3_session.id, overwrite.id).reversibility.verdict == pb.VERDICT_PASSED
    assert s3.get_object(Bucket=existing, Key="notes/a.txt")["Body"].read() == b"first version"

    fresh = call(daemon, s3_session.id, "PUT", f"/{existing}/new.bin", raw=b"\x00\x01")
    assert fresh.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert undo(daemon, s3_session.id, fresh.id).reversibility.verdict == pb.VERDICT_PASSED
    assert "Contents" not in s3.list_objects_v2(Bucket=existing, Prefix="new.bin")


def test_s3_delete_in_a_versioned_bucket_is_restored_exactly(
    daemon: DaemonProcess, moto_s3: MotoS3, s3_session: pb.Session
) -> None:
    s3 = moto_s3.client()
    bucket = moto_s3.new_bucket(versioned=True)
    s3.put_object(Bucket=bucket, Key="report.csv", Body=b"a,b\n1,2\n")
    deleted = call(daemon, s3_session.id, "DELETE", f"/{bucket}/report.csv")
    assert deleted.state == pb.ACTION_STATE_EXECUTED and deleted.http.status == 204
    assert deleted.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert "versionId" in dict(deleted.inverse.http.query)
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="report.csv")
    undone = undo(daemon, s3_session.id, deleted.id)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert s3.get_object(Bucket=bucket, Key="report.csv")["Body"].read() == b"a,b\n1,2\n"


def test_s3_subresource_calls_have_no_rule_and_are_refused_without_approval(
    daemon: DaemonProcess, moto_s3: MotoS3, s3_session: pb.Session
) -> None:
    bucket = moto_s3.new_bucket()
    got, msg = status_of(lambda: call(daemon, s3_session.id, "PUT", f"/{bucket}", query={"versioning": ""}, raw=b"x"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "irreversible" in msg
    assert moto_s3.client().get_bucket_versioning(Bucket=bucket).get("Status") is None


# ---------------------------------------------------------------- confinement and bad input


def test_policy_confines_methods_paths_patterns_and_rate(shared_daemon: DaemonProcess, json_server: JsonServer) -> None:
    policy = "\n".join(
        [
            "[http.resources.api]",
            'methods = ["GET", "POST"]',
            'paths = ["/items", "/items/*"]',
            'rate_limit = "3/minute"',
            "[[deny]]",
            'name = "no-pricey"',
            'json = "price"',
            "above = 100",
        ]
    )
    s = open_http(shared_daemon, json_server.base_url, policy=policy)
    for method, path, body, rule in (
        ("DELETE", "/items/1", None, "http.resources.api.methods"),
        ("POST", "/users", {"name": "x"}, "http.resources.api.paths"),
        ("POST", "/items", {"price": 500}, "deny.no-pricey"),
    ):
        got, msg = status_of(lambda m=method, p=path, b=body: call(shared_daemon, s.id, m, p, body=b))
        assert got == grpc.StatusCode.PERMISSION_DENIED and f"policy rule {rule}" in msg, msg
    assert items(json_server) == [] and users(json_server) == []
    for _ in range(3):
        assert (
            call(shared_daemon, s.id, "GET", "/items").state == pb.ACTION_STATE_COMMITTED
        )  # read-only: resolved at once
    got, msg = status_of(lambda: call(shared_daemon, s.id, "GET", "/items"))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit 3/minute" in msg


def test_a_read_is_resolved_at_once_so_undo_takes_back_the_last_write(
    shared_daemon: DaemonProcess, json_server: JsonServer
) -> None:
    s = open_http(shared_daemon, json_server.base_url)
    created = call(shared_daemon, s.id, "POST", "/items", body={"name": "lamp"})
    read = call(shared_daemon, s.id, "GET", "/items")
    assert read.state == pb.ACTION_STATE_COMMITTED and read.HasField("resolved_at")
    assert read.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_READ_ONLY
    assert [i["name"] for i in json.loads(read.http.body)] == ["lamp"]
    # `undo` with no action id takes back the newest pending action: the POST, not the read after it.
    [undone] = shared_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id)).undone
    assert undone.id == created.id and undone.reversibility.verdict == pb.VERDICT_PASSED
    assert items(json_server) == []
    got, msg = status_of(lambda: undo(shared_daemon, s.id, read.id))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "committed" in msg
    assert list(shared_daemon.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id)).committed) == []
    # A read the service refuses is a failed action like any other, its answer recorded.
    missing = call(shared_daemon, s.id, "GET", "/items/404")
    assert missing.state == pb.ACTION_STATE_FAILED and missing.http.status == 404 and "404" in missing.error


def _journal_rows(daemon: DaemonProcess, session_id: str) -> list[tuple[str, str]]:
    """What another reader of goexd's journal sees committed: (method path, state) of each action of the session."""
    db = sqlite3.connect(f"file:{daemon.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT spec, state FROM actions WHERE session_id = ? ORDER BY seq", (session_id,))
        return [(" ".join(json.loads(spec)["http"][k] for k in ("method", "path")), state) for spec, state in rows]
    finally:
        db.close()


def test_a_write_is_durably_running_before_it_is_sent_a_read_is_journaled_once_it_ran(
    shared_daemon: DaemonProcess,
    httpbin_port: int,  # noqa: F811
) -> None:
    s = open_http(shared_daemon, f"http://127.0.0.1:{httpbin_port}", name="bin")
    for method, while_sent in (("POST", [("POST /delay/2", "running")]), ("GET", [("POST /delay/2", "executed")])):
        with ThreadPoolExecutor(1) as pool:
            kwargs: dict[str, Any] = {"body": {}, "approval": "test"} if method == "POST" else {}
            done = pool.submit(call, shared_daemon, s.id, method, "/delay/2", **kwargs)
            # httpbin answers after 2 s: a second in, the call is out (the GET too, journaled or not).
            deadline = time.monotonic() + 1.0
            seen = _journal_rows(shared_daemon, s.id)
            while seen != while_sent or time.monotonic() < deadline:
                time.sleep(0.02)
                seen = _journal_rows(shared_daemon, s.id)
                assert time.monotonic() < deadline + 0.5, seen
            assert seen == while_sent and not done.done(), seen
            assert done.result().http.status == 200
    assert _journal_rows(shared_daemon, s.id) == [("POST /delay/2", "executed"), ("GET /delay/2", "committed")]
    listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=s.id)).actions
    assert [a.state for a in listed] == [pb.ACTION_STATE_EXECUTED, pb.ACTION_STATE_COMMITTED]
    db = sqlite3.connect(f"file:{shared_daemon.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        trail = db.execute(
            "SELECT from_state, to_state, note FROM transitions WHERE action_id = ? ORDER BY id", (listed[1].id,)
        ).fetchall()
    finally:
        db.close()
    assert trail == [
        (None, "proposed", ""),
        ("proposed", "preparing", ""),
        ("preparing", "running", ""),
        ("running", "executed", ""),
        ("executed", "committed", "read-only: nothing to undo or accept; resolved at once"),
    ]


def test_bad_input_is_refused_before_anything_is_sent(shared_daemon: DaemonProcess, json_server: JsonServer) -> None:
    s = open_http(shared_daemon, json_server.base_url)
    for method, path, kwargs, words in (
        ("GET", "/../etc/passwd", {}, "leads outside the resource's base URL"),
        ("GET", "//evil.test/x", {}, "leads outside"),
        ("GET", "/items?x=1", {}, "query"),
        ("POST", "/items", {"raw": b"not json", "headers": {"content-type": "application/json"}}, "not valid JSON"),
        ("POST", "/items", {"headers": {"Host": "evil.test"}}, "set by goexd"),
        ("POST", "/items", {"headers": {"Authorization": "Bearer goex-secret:x"}}, "placeholders"),
        ("FETCH!", "/items", {}, "not an HTTP method"),
        # Headers are journaled with the action: none may be unbounded.
        ("POST", "/items", {"headers": {"X-Big": "a" * 20_000}}, "headers['X-Big']: 20005 bytes, more than"),
        ("POST", "/items", {"headers": {f"X-{i}": "a" * 15_000 for i in range(5)}}, "bytes in all, more than"),
        ("POST", "/items", {"headers": {f"X-{i}": "1" for i in range(101)}}, "101 headers, more than 100"),
    ):
        got, msg = status_of(lambda m=method, p=path, k=kwargs: call(shared_daemon, s.id, m, p, **k))
        assert got == grpc.StatusCode.INVALID_ARGUMENT and words in msg, (path, msg)
    bad_json = pb.HttpAction(method="POST", path="/items", json="{nope")
    got, msg = status_of(
        lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=s.id, spec=pb.ActionSpec(http=bad_json))
        )
    )
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "spec.http.json" in msg
    assert list(shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=s.id)).actions) == []
    assert items(json_server) == []
    for url, words in (("ftp://127.0.0.1/x", "http(s)://"), ("http://user:pw@127.0.0.1:1/", "credentials")):
        got, msg = status_of(lambda u=url: open_http(shared_daemon, u, name="other"))
        assert got == grpc.StatusCode.INVALID_ARGUMENT and words in msg, msg
    got, msg = status_of(lambda: open_http(shared_daemon, json_server.base_url + "/v2", name="x", rules="nope"))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "no rule set named 'nope'" in msg


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_and_timeout_fail_the_action_with_the_cause_and_no_retry(
    shared_daemon: DaemonProcess,
    httpbin_port: int,  # noqa: F811
) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        s = open_http(shared_daemon, f"http://127.0.0.1:{port}", name="gone")
    finally:
        server.terminate()
        server.wait()
    failed = call(shared_daemon, s.id, "POST", "/x", body={}, approval="test")
    assert failed.state == pb.ACTION_STATE_FAILED and "cannot connect" in failed.error

    slow = open_http(shared_daemon, f"http://127.0.0.1:{httpbin_port}", name="slow")
    started = time.monotonic()
    timed_out = call(shared_daemon, slow.id, "POST", "/delay/5", body={}, approval="test", timeout_s=1)
    assert time.monotonic() - started < 4  # one attempt, no retry
    assert timed_out.state == pb.ACTION_STATE_FAILED
    assert "within 1 s" in timed_out.error and "may still act" in timed_out.error
    got, _ = status_of(lambda: open_http(shared_daemon, f"http://127.0.0.1:{_free_port()}", name="nobody"))
    assert got == grpc.StatusCode.UNAVAILABLE


def test_the_credential_is_injected_and_never_recorded(daemon: DaemonProcess, httpbin_port: int) -> None:  # noqa: F811
    put_secret(daemon, "bin-token", f"http://127.0.0.1:{httpbin_port}", TOKEN)
    s = open_http(daemon, f"http://127.0.0.1:{httpbin_port}", name="bin", secret="bin-token")
    echoed = call(daemon, s.id, "GET", "/headers")
    assert echoed.http.status == 200
    seen = json.loads(echoed.http.body)["headers"]["Authorization"]
    assert seen == "Bearer [secret:bin-token]"  # httpbin got the value; the record holds the redaction
    assert TOKEN.encode() not in echoed.SerializeToString()
    journal = b"".join(p.read_bytes() for p in daemon.state_dir.glob("journal.sqlite3*"))
    assert TOKEN.encode() not in journal and TOKEN.encode() not in daemon.log_path.read_bytes()
    described = daemon.sessions.DescribeSession(sepb.DescribeSessionRequest(session_id=s.id)).resources[0].text
    assert TOKEN not in described and "never shown" in described
    # A secret not allowed for the resource's host is refused at session open.
    put_secret(daemon, "elsewhere", "api.example.com", TOKEN + "x")
    got, msg = status_of(lambda: open_http(daemon, f"http://127.0.0.1:{httpbin_port}", name="b2", secret="elsewhere"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "may not be sent" in msg


def test_what_goes_out_is_what_is_recorded_no_cookie_is_kept_between_calls(
    shared_daemon: DaemonProcess,
    httpbin_port: int,  # noqa: F811
) -> None:
    s = open_http(shared_daemon, f"http://127.0.0.1:{httpbin_port}", name="bin")
    # httpbin answers 302 with Set-Cookie; goexd records the 3xx and follows nothing.
    set_cookie = call(shared_daemon, s.id, "GET", "/cookies/set", query={"session": "abc123"})
    assert set_cookie.http.status == 302 and "session=abc123" in set_cookie.http.headers["set-cookie"]
    assert set_cookie.state == pb.ACTION_STATE_COMMITTED
    # A later call carries no cookie it did not ask for: not in the record, so not sent.
    assert json.loads(call(shared_daemon, s.id, "GET", "/cookies").http.body) == {"cookies": {}}
    echoed = json.loads(call(shared_daemon, s.id, "GET", "/headers").http.body)["headers"]
    assert "Cookie" not in echoed and echoed["User-Agent"].startswith("goexd/") and echoed["Accept"] == "*/*"
    # The caller's own User-Agent (any case) replaces goexd's; a cookie it sends is the one that arrives.
    mine = call(shared_daemon, s.id, "GET", "/headers", headers={"user-agent": "agent/1.0", "Cookie": "mine=1"})
    echoed = json.loads(mine.http.body)["headers"]
    assert echoed["User-Agent"] == "agent/1.0" and echoed["Cookie"] == "mine=1"


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_huge_answer_is_read_only_as_far_as_it_is_used(daemon: DaemonProcess, tmp_path: Path) -> None:
    # A real static file server (the standard library's) with a 300 MB file.
    files = tmp_path / "files"
    files.mkdir()
    with (files / "huge.bin").open("wb") as f:
        f.truncate(300 * 1024 * 1024)
    with serve_http(
        "http.server",
        lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        "/",
        tmp_path / "http-server.log",
        cwd=files,
    ) as started:
        s = open_http(daemon, f"http://127.0.0.1:{started.port}", name="files")
        assert daemon.proc is not None
        before = _peak_rss_bytes(daemon.proc.pid)
        got = call(daemon, s.id, "GET", "/huge.bin")
        grew = _peak_rss_bytes(daemon.proc.pid) - before
    assert got.state == pb.ACTION_STATE_COMMITTED and got.http.status == 200
    assert got.http.body_truncated and len(got.http.body) == 1024 * 1024  # the session's output cap
    assert got.http.headers["content-length"] == str(300 * 1024 * 1024)
    assert grew < 64 * 1024 * 1024, f"goexd's peak memory grew by {grew} bytes for a capped answer"


def test_a_write_whose_answer_is_too_large_to_derive_from_is_irreversible(
    shared_daemon: DaemonProcess,
    httpbin_port: int,  # noqa: F811
) -> None:
    s = open_http(shared_daemon, f"http://127.0.0.1:{httpbin_port}", name="echo")
    # httpbin echoes the body twice (as data and as json): over the 4 MiB an inverse may be derived from.
    big = {"name": "x" * (2560 * 1024)}
    done = call(shared_daemon, s.id, "POST", "/anything", body=big, approval="ok: an echo")
    assert done.state == pb.ACTION_STATE_EXECUTED and done.http.status == 200 and done.http.body_truncated
    assert done.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_IRREVERSIBLE
    assert "too large to derive an inverse" in done.reversibility.detail and not done.HasField("inverse")
