"""The policy decides on an http write's class once its pre-image is in (issue 15): a capture GET whose answer
no outcome of the planning rule can follow (a 401 from a write-only container, a collection's 301, a 500)
leaves the call irreversible, so a call first predicted reversible or best effort is asked for again and,
without an approval, refused before it is sent (PERMISSION_DENIED naming the capture's answer, recorded as a
blocked action, the service untouched); with one it runs. Through a real goexd against real services on
loopback: the Community Solid Server (WAC: a container whose ACL lets everyone write but not read) and
WsgiDAV."""

from __future__ import annotations

import grpc
import httpx

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_http_e2e import (  # noqa: F401 - _close_shared_sessions: the autouse fixture
    CLASS,
    _close_shared_sessions,
    call,
    open_http,
    undo,
)
from tests.services.solid_server import SolidServer, solid_server  # noqa: F401 - the fixture
from tests.services.wsgidav_server import WsgiDav, wsgidav  # noqa: F401 - the fixture

# Everyone may write into the container and what it holds, no one may read: a drop box (Web Access Control).
WRITE_ONLY_ACL = b"""@prefix acl: <http://www.w3.org/ns/auth/acl#>.
@prefix foaf: <http://xmlns.com/foaf/0.1/>.
<#public> a acl:Authorization; acl:agentClass foaf:Agent;
  acl:accessTo <./>; acl:default <./>; acl:mode acl:Append, acl:Write.
"""
TEXT = {"content-type": "text/plain"}


def _blocked(d: DaemonProcess, session_id: str) -> list[pb.Action]:
    listed = d.actions.ListActions(apb.ListActionsRequest(session_id=session_id)).actions
    return [a for a in listed if a.state == pb.ACTION_STATE_BLOCKED]


def test_a_capture_answered_401_makes_the_write_irreversible_before_it_is_sent(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.put("/drop/kept.txt", content=b"kept", headers=TEXT).status_code == 201
        assert c.put("/drop/.acl", content=WRITE_ONLY_ACL, headers={"content-type": "text/turtle"}).status_code == 201
        assert c.get("/drop/new.txt").status_code == 401  # what goexd's capture will get
    s = open_http(shared_daemon, solid_server.base_url, rules="generic")
    before = solid_server.files()

    # Predicted best effort (generic.put-nested): allowed at submit; its pre-image answers 401, which no outcome
    # follows, so the policy is asked again with "irreversible" and refuses it before the PUT is sent.
    got, msg = status_of(lambda: call(shared_daemon, s.id, "PUT", "/drop/new.txt", raw=b"new", headers=TEXT))
    assert got == grpc.StatusCode.PERMISSION_DENIED, msg
    for words in ("irreversible", "predicted best effort", "GET /drop/new.txt answered 401", "http.irreversible"):
        assert words in msg, (words, msg)
    assert "recorded as blocked action" in msg and "--approve" in msg, msg
    assert solid_server.files() == before
    [blocked] = _blocked(shared_daemon, s.id)
    assert "answered 401" in blocked.error and not blocked.HasField("http"), blocked
    assert blocked.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_IRREVERSIBLE
    assert "answered 401" in blocked.reversibility.detail

    # A PUT over an item it cannot read either; then with an approval: sent, and irreversible as found.
    got, msg = status_of(lambda: call(shared_daemon, s.id, "PUT", "/drop/kept.txt", raw=b"over", headers=TEXT))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "answered 401" in msg, msg
    assert (solid_server.root / "drop" / "kept.txt").read_bytes() == b"kept"
    done = call(shared_daemon, s.id, "PUT", "/drop/new.txt", raw=b"new", headers=TEXT, approval="ann: drop box")
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    assert done.approval == "ann: drop box"
    assert done.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_IRREVERSIBLE, done.reversibility
    assert (solid_server.root / "drop" / "new.txt").read_bytes() == b"new"
    got, msg = status_of(lambda: undo(shared_daemon, s.id, done.id))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "irreversible" in msg, msg


def test_a_capture_answered_500_or_301_is_refused_and_the_normal_case_is_unchanged(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
    wsgidav: WsgiDav,  # noqa: F811
) -> None:
    # Solid: an item whose stored metadata is broken answers every GET 500.
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.put("/broken/item.txt", content=b"b", headers=TEXT).status_code == 201
        (solid_server.root / "broken" / "item.txt.meta").write_text("not turtle <<<")
        assert c.get("/broken/item.txt").status_code == 500
    s = open_http(shared_daemon, solid_server.base_url, rules="generic")
    got, msg = status_of(lambda: call(shared_daemon, s.id, "DELETE", "/broken/item.txt"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "GET /broken/item.txt answered 500" in msg, msg
    assert (solid_server.root / "broken" / "item.txt").read_bytes() == b"b"
    approved = call(shared_daemon, s.id, "DELETE", "/broken/item.txt", approval="ann: clean up")
    assert approved.http.status == 500 and approved.state == pb.ACTION_STATE_FAILED, approved  # sent, this time
    assert "the service answered 500" in approved.error

    # WsgiDAV: a collection without its slash answers 301; DELETE there would take the whole collection.
    with httpx.Client(base_url=wsgidav.base_url, trust_env=False, timeout=10) as c:
        assert c.request("MKCOL", "/reports").status_code == 201
        assert c.put("/reports/q1.txt", content=b"q1", headers=TEXT).status_code == 201
        assert c.put("/plain.txt", content=b"v1", headers=TEXT).status_code == 201
        assert c.get("/reports").status_code == 301
    d = open_http(shared_daemon, wsgidav.base_url, rules="generic")
    before = wsgidav.files()
    got, msg = status_of(lambda: call(shared_daemon, d.id, "DELETE", "/reports"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "GET /reports answered 301" in msg, msg
    assert "predicted best effort" in msg, msg
    assert wsgidav.files() == before

    # The normal case: a capture that answers 200 leaves the class as predicted; no approval asked, undone.
    plain = call(shared_daemon, d.id, "PUT", "/plain.txt", raw=b"v2", headers=TEXT)
    assert plain.state == pb.ACTION_STATE_EXECUTED and plain.approval == "", plain
    assert plain.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert undo(shared_daemon, d.id, plain.id).reversibility.verdict == pb.VERDICT_PASSED
    assert wsgidav.files() == before

    approved = call(shared_daemon, d.id, "DELETE", "/reports", approval="ann: the reports go")
    assert approved.state == pb.ACTION_STATE_EXECUTED, approved.error
    assert approved.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_IRREVERSIBLE
    assert not (wsgidav.root / "reports").exists()


def test_a_detached_write_refused_after_its_capture_ends_blocked(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.put("/box/.acl", content=WRITE_ONLY_ACL, headers={"content-type": "text/turtle"}).status_code == 201
    s = open_http(shared_daemon, solid_server.base_url, rules="generic")
    spec = pb.ActionSpec(http=pb.HttpAction(method="PUT", path="/box/a.txt", headers=TEXT, body=b"a"))
    proposed = shared_daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=spec, detach=True))
    events = shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id=proposed.action.id))
    states = [e.state for e in events if e.HasField("state")]
    assert states[-1] == pb.ACTION_STATE_BLOCKED, states
    assert pb.ACTION_STATE_RUNNING not in states
    got = shared_daemon.actions.GetAction(apb.GetActionRequest(action_id=proposed.action.id)).action
    assert "answered 401" in got.error, got
    assert not (solid_server.root / "box" / "a.txt").exists()
