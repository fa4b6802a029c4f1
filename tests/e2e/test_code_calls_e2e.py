"""REST calls made by sandboxed code, through a real goexd and its egress proxy, to real services
on loopback (json-server, httpbin): each request to a named http resource is confined by the
session's policy, carries the resource's secret, is recorded with the inverse derived from its
response, and is undone with the action (when undone, when it fails, and after a crash)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_egress_e2e import httpbin_port  # noqa: F401 - the fixture: httpbin in a thread
from tests.e2e.test_http_e2e import TOKEN, call, items, put_secret
from tests.services.json_server import JsonServer

CLASS = pb.ReversibilityClass

# urllib in the sandbox: HTTP_PROXY leads to goexd's proxy. Requests as JSON on stdin, answers on stdout.
FETCH = r"""
import json, sys, time, urllib.error, urllib.request
out = []
for spec in json.load(sys.stdin):
    if "sleep" in spec:
        print(json.dumps(out), flush=True)
        time.sleep(spec["sleep"])
        continue
    data = json.dumps(spec["json"]).encode() if "json" in spec else None
    headers = {"Content-Type": "application/json"} if data else {}
    req = urllib.request.Request(spec["url"], data=data, headers=headers, method=spec["method"])
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            out.append({"status": r.status, "body": r.read().decode("utf-8", "replace")})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code, "body": e.read().decode("utf-8", "replace")})
print(json.dumps(out))
"""


def open_fs_and_http(
    d: DaemonProcess, workspace: Path, url: str, *, secret: str = "", policy: str = "", rules: str = ""
) -> pb.Session:
    resources = [
        pb.ResourceSpec(name="ws", fs=pb.FsResourceSpec(path=str(workspace))),
        pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=url, secret=secret, rules=rules)),
    ]
    request = sepb.CreateSessionRequest(resources=resources, policy_toml=policy)
    return d.sessions.CreateSession(request).session


def code(
    d: DaemonProcess,
    session_id: str,
    *requests: dict[str, Any],
    resources: tuple[str, ...] = ("api",),
    approval: str = "",
    timeout_s: int = 0,
    prelude: str = "",
) -> pb.Action:
    spec = pb.ActionSpec(
        python=pb.PythonAction(code=prelude + FETCH, stdin=json.dumps(list(requests)).encode()),
        egress=pb.Egress(resources=list(resources)),
    )
    if timeout_s:
        spec.limits.timeout.CopyFrom(Duration(seconds=timeout_s))
    request = apb.SubmitActionRequest(session_id=session_id, spec=spec, approval=approval)
    return d.actions.SubmitAction(request).action


def answers(action: pb.Action) -> list[dict[str, Any]]:
    assert action.exec.exit_code == 0, action.exec.stderr.decode()
    out: list[dict[str, Any]] = json.loads(action.exec.stdout.decode().splitlines()[-1])
    return out


def undo(d: DaemonProcess, session_id: str, action_id: str) -> pb.Action:
    return d.actions.UndoAction(apb.UndoActionRequest(session_id=session_id, action_id=action_id)).undone[-1]


def get(d: DaemonProcess, action_id: str) -> pb.Action:
    return d.actions.GetAction(apb.GetActionRequest(action_id=action_id)).action


@pytest.fixture
def json_server_seed() -> dict[str, Any]:
    return {"items": [{"id": 1, "name": "lamp", "price": 40}, {"id": 2, "name": "desk", "price": 120}], "reviews": []}


SEED = [{"id": 1, "name": "lamp", "price": 40}, {"id": 2, "name": "desk", "price": 120}]


def test_calls_from_code_are_recorded_with_inverses_and_undone_with_the_action(
    shared_daemon: DaemonProcess, workspace: Path, json_server: JsonServer
) -> None:
    put_secret(shared_daemon, "items-token", f"http://{json_server.host}", TOKEN)
    s = open_fs_and_http(shared_daemon, workspace, json_server.base_url, secret="items-token")
    base = json_server.base_url
    action = code(
        shared_daemon,
        s.id,
        {"method": "GET", "url": f"{base}/items/1"},
        {"method": "POST", "url": f"{base}/items", "json": {"name": "chair", "price": 30}},
        {"method": "PATCH", "url": f"{base}/items/1", "json": {"price": 45}},
        {"method": "DELETE", "url": f"{base}/items/2"},
        prelude="open('touched.txt', 'w').write('code was here')\n",
    )
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    assert [a["status"] for a in answers(action)] == [200, 201, 200, 200]
    created = json.loads(answers(action)[1]["body"])
    assert [i["name"] for i in items(json_server)] == ["lamp", "chair"]

    get_, post, patch, delete = action.egress
    assert {r.resource for r in action.egress} == {"api"}
    assert get_.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_READ_ONLY
    assert post.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert (post.inverse.method, post.inverse.path) == ("DELETE", f"/items/{created['id']}")
    assert (patch.inverse.method, patch.inverse.path) == ("PUT", "/items/1")
    assert json.loads(patch.inverse.json) == SEED[0]  # the pre-image, fetched before the PATCH went out
    assert delete.inverse.method in ("POST", "PUT")
    # Recorded the way a declarative call is: the response, redacted and capped, and the request as sent.
    assert post.response.status == 201 and json.loads(post.response.body)["name"] == "chair"
    assert json.loads(post.request_body) == {"name": "chair", "price": 30}
    assert post.secrets_used == ["items-token"]
    assert TOKEN not in str(action)
    assert "call(s) to http resources" in action.reversibility.detail

    undone = undo(shared_daemon, s.id, action.id)
    assert undone.state == pb.ACTION_STATE_UNDONE
    # Every check passed: the workspace by content id, each call's inverse by its own verification.
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert sorted(items(json_server), key=lambda i: i["id"]) == SEED
    assert not (workspace / "touched.txt").exists()
    calls = {r.method: r for r in undone.egress if r.method != "GET"}
    assert calls["POST"].reversibility.verdict == pb.VERDICT_PASSED, calls["POST"].reversibility.detail
    assert "404" in calls["POST"].reversibility.detail
    assert calls["PATCH"].reversibility.verdict == pb.VERDICT_PASSED, calls["PATCH"].reversibility.detail
    assert "equals the pre-image" in calls["PATCH"].reversibility.detail
    assert calls["DELETE"].reversibility.verdict == pb.VERDICT_PASSED, calls["DELETE"].reversibility.detail
    # The GET was never "undone": a read-only call is left alone.
    assert undone.egress[0].reversibility.verdict == pb.VERDICT_UNTESTED


def test_the_resource_secret_is_added_and_redacted_in_what_comes_back(
    daemon: DaemonProcess,
    workspace: Path,
    httpbin_port: int,  # noqa: F811
) -> None:
    host = f"127.0.0.1:{httpbin_port}"
    put_secret(daemon, "bin-token", f"http://{host}", TOKEN)
    s = open_fs_and_http(daemon, workspace, f"http://{host}", secret="bin-token")
    action = code(daemon, s.id, {"method": "GET", "url": f"http://{host}/headers"})
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    (answer,) = answers(action)
    echoed = json.loads(answer["body"])["headers"]
    assert echoed["Authorization"] == "Bearer [secret:bin-token]"  # sent with the value; back redacted
    (record,) = action.egress
    assert record.resource == "api" and record.secrets_used == ["bin-token"]
    assert TOKEN.encode() not in record.response.body and b"[secret:bin-token]" in record.response.body
    assert TOKEN not in str(action)


def test_the_policy_confines_calls_from_code(
    shared_daemon: DaemonProcess, workspace: Path, json_server: JsonServer
) -> None:
    policy = """
[http]
methods = ["GET", "POST", "PATCH"]

[[deny]]
name = "price-cap"
reason = "no item may cost more than 500"
json = "price"
above = 500
"""
    # only:rest: no rule covers the nested POST (generic semantics would take its Location, which
    # json-server gets wrong: tests/integration/test_http_generic_live.py)
    s = open_fs_and_http(shared_daemon, workspace, json_server.base_url, policy=policy, rules="only:rest")
    base = json_server.base_url
    action = code(
        shared_daemon,
        s.id,
        {"method": "DELETE", "url": f"{base}/items/2"},
        {"method": "POST", "url": f"{base}/items", "json": {"name": "gold", "price": 9000}},
        {"method": "POST", "url": f"{base}/items/1/reviews", "json": {"stars": 5}},
        {"method": "GET", "url": f"{base}/items/1/../../db"},
    )
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    statuses = [a["status"] for a in answers(action)]
    assert statuses == [403, 403, 403, 400]
    delete, gold, review, climb = action.egress
    assert all(r.decision == pb.EGRESS_DECISION_REFUSED for r in action.egress)
    assert "[policy rule http.methods]" in delete.reason
    assert "[policy rule deny.price-cap]" in gold.reason
    assert "[policy rule http.irreversible]" in review.reason and "--approve" in review.reason
    assert "dot segments" in climb.reason
    assert sorted(items(json_server), key=lambda i: i["id"]) == SEED  # nothing reached the service
    with json_server.client() as c:
        assert not c.get("/db").json().get("reviews")

    # With the action's approval the irreversible call goes out; the action is then irreversible.
    approved = code(
        shared_daemon,
        s.id,
        {"method": "POST", "url": f"{base}/items/1/reviews", "json": {"stars": 5}},
        approval="ann: reviews may go out",
    )
    assert [a["status"] for a in answers(approved)] == [201]
    assert approved.approval == "ann: reviews may go out"
    assert approved.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_IRREVERSIBLE
    got, msg = status_of(lambda: undo(shared_daemon, s.id, approved.id))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "irreversible" in msg
    assert get(shared_daemon, approved.id).state == pb.ACTION_STATE_EXECUTED


def test_a_resource_the_action_did_not_name_is_out_of_reach(
    daemon: DaemonProcess, workspace: Path, json_server: JsonServer
) -> None:
    s = open_fs_and_http(daemon, workspace, json_server.base_url)
    base = json_server.base_url
    got, msg = status_of(lambda: code(daemon, s.id, {"method": "GET", "url": f"{base}/items"}, resources=("nope",)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "spec.egress.resources[0]" in msg
    assert "(its http resources: api)" in msg
    got, msg = status_of(lambda: code(daemon, s.id, {"method": "GET", "url": f"{base}/items"}, resources=("ws",)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "no http resource named 'ws'" in msg
    # Code with network that does not name the resource cannot reach its host at all.
    put_secret(daemon, "elsewhere", "example.org", TOKEN)
    spec = pb.ActionSpec(
        python=pb.PythonAction(code=FETCH, stdin=json.dumps([{"method": "GET", "url": f"{base}/items"}]).encode()),
        egress=pb.Egress(secrets=["elsewhere"]),
    )
    action = daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=spec)).action
    assert [a["status"] for a in answers(action)] == [403]
    (record,) = action.egress
    assert record.decision == pb.EGRESS_DECISION_REFUSED and "is not reachable" in record.reason
    assert record.resource == ""
    # Naming it opens only its base URL: another port on the same host stays closed.
    action = code(daemon, s.id, {"method": "GET", "url": "http://127.0.0.1:9/elsewhere"})
    (record,) = action.egress
    assert record.decision == pb.EGRESS_DECISION_REFUSED and "is not reachable" in record.reason


def test_a_failed_action_takes_its_calls_back(
    shared_daemon: DaemonProcess, workspace: Path, json_server: JsonServer
) -> None:
    s = open_fs_and_http(shared_daemon, workspace, json_server.base_url)
    base = json_server.base_url
    action = code(
        shared_daemon,
        s.id,
        {"method": "POST", "url": f"{base}/items", "json": {"name": "chair", "price": 30}},
        {"sleep": 60},
        timeout_s=3,
    )
    assert action.state == pb.ACTION_STATE_FAILED
    assert "its calls:" in action.error and "gone, as expected" in action.error
    assert sorted(items(json_server), key=lambda i: i["id"]) == SEED
    (post,) = action.egress
    assert post.reversibility.verdict == pb.VERDICT_PASSED


def test_later_calls_to_the_same_resource_must_be_undone_first(
    shared_daemon: DaemonProcess, workspace: Path, json_server: JsonServer
) -> None:
    s = open_fs_and_http(shared_daemon, workspace, json_server.base_url)
    base = json_server.base_url
    first = code(shared_daemon, s.id, {"method": "PATCH", "url": f"{base}/items/1", "json": {"price": 45}})
    assert first.state == pb.ACTION_STATE_EXECUTED, first.error
    second = call(shared_daemon, s.id, "PATCH", "/items/1", body={"price": 50}, headers={})
    assert second.state == pb.ACTION_STATE_EXECUTED, second.error
    got, msg = status_of(lambda: undo(shared_daemon, s.id, first.id))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and second.id in msg
    undone = shared_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id, action_id=first.id, cascade=True))
    assert [a.id for a in undone.undone] == [second.id, first.id]
    assert sorted(items(json_server), key=lambda i: i["id"]) == SEED


def test_calls_of_an_action_cut_short_by_a_crash_are_undone_at_restart(
    daemon: DaemonProcess, workspace: Path, json_server: JsonServer
) -> None:
    s = open_fs_and_http(daemon, workspace, json_server.base_url)
    base = json_server.base_url
    spec = pb.ActionSpec(
        python=pb.PythonAction(
            code=FETCH,
            stdin=json.dumps(
                [{"method": "POST", "url": f"{base}/items", "json": {"name": "chair", "price": 30}}, {"sleep": 300}]
            ).encode(),
        ),
        egress=pb.Egress(resources=["api"]),
    )
    action = daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=spec, detach=True)).action
    deadline = time.monotonic() + 30
    while len(items(json_server)) < 3:
        assert time.monotonic() < deadline, "the POST never arrived"
        time.sleep(0.05)
    while not get(daemon, action.id).egress:  # journaled as soon as it was settled
        assert time.monotonic() < deadline, "the call was not journaled"
        time.sleep(0.05)
    daemon.kill()
    daemon.start()
    after = get(daemon, action.id)
    assert after.state == pb.ACTION_STATE_INTERRUPTED
    assert "its calls:" in after.error and "gone, as expected" in after.error
    assert sorted(items(json_server), key=lambda i: i["id"]) == SEED
