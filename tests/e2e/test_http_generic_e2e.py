"""Generic HTTP semantics through a real goexd against two real services on loopback whose shapes
json-server's `rest` rules do not know: WsgiDAV (WebDAV: files at the root and below
collections, text and binary bodies, 201/204 answers) and the Community Solid Server (LDP: POST
answered 201 with a Location, 205 answers, Allow headers). Each write is derived reversible (or
best effort) from its recorded answer, undone, and verified by goexd, and the files the service
stores are compared with what they were; an undo over a change someone made meanwhile is refused
and reported, and the resource's `rules` choose whether generic semantics apply at all."""

from __future__ import annotations

from collections.abc import Callable

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

BINARY = bytes(range(256)) * 2


def _put(base_url: str, path: str, body: bytes, content_type: str = "text/plain") -> int:
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as c:
        return c.put(path, content=body, headers={"content-type": content_type}).status_code


def write_and_undo(
    d: DaemonProcess,
    session_id: str,
    state: Callable[[], dict[str, bytes]],
    method: str,
    path: str,
    body: bytes | None,
    content_type: str,
) -> pb.Action:
    """Send one write, check it changed the service's files, undo it: verified, and the files as they were."""
    before = state()
    headers = {"content-type": content_type} if content_type else None
    done = call(d, session_id, method, path, raw=body, headers=headers)
    assert done.state == pb.ACTION_STATE_EXECUTED, done
    assert state() != before
    undone = undo(d, session_id, done.id)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert state() == before, path
    return done


def test_webdav_writes_at_every_depth_are_undone_and_verified(
    shared_daemon: DaemonProcess,
    wsgidav: WsgiDav,  # noqa: F811
) -> None:
    with httpx.Client(base_url=wsgidav.base_url, trust_env=False, timeout=10) as c:
        assert c.request("MKCOL", "/e2e").status_code == 201
        assert c.request("MKCOL", "/e2e/deep").status_code == 201
    assert _put(wsgidav.base_url, "/e2e/deep/blob.bin", BINARY, "application/octet-stream") == 201
    assert _put(wsgidav.base_url, "/e2e/deep/app.json", b'{"debug": true}', "application/json") == 201
    s = open_http(shared_daemon, wsgidav.base_url)  # rules "rest", then generic semantics
    cases = [
        ("PUT", "/report.txt", b"new at the root", CLASS.REVERSIBILITY_CLASS_REVERSIBLE, "generic.put [created]"),
        ("PUT", "/e2e/deep/blob.bin", BINARY[::-1], CLASS.REVERSIBILITY_CLASS_REVERSIBLE, "[replaced]"),
        ("PUT", "/e2e/deep/new.txt", b"nested", CLASS.REVERSIBILITY_CLASS_BEST_EFFORT, "[created]"),
        ("DELETE", "/e2e/deep/app.json", None, CLASS.REVERSIBILITY_CLASS_BEST_EFFORT, "generic.delete [deleted]"),
    ]
    for method, path, body, cls, label in cases:
        content_type = "text/plain" if body else ""
        done = write_and_undo(shared_daemon, s.id, wsgidav.files, method, path, body, content_type)
        assert done.reversibility.reversibility_class == cls, done.reversibility.detail
        assert label in done.reversibility.detail, done.reversibility.detail


def test_webdav_undo_over_a_file_changed_since_is_refused_and_reported(
    shared_daemon: DaemonProcess,
    wsgidav: WsgiDav,  # noqa: F811
) -> None:
    assert _put(wsgidav.base_url, "/shared.txt", b"v1") == 201
    s = open_http(shared_daemon, wsgidav.base_url, rules="generic")
    done = call(shared_daemon, s.id, "PUT", "/shared.txt", raw=b"v2", headers={"content-type": "text/plain"})
    assert done.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert "if-match" in done.inverse.http.headers
    assert _put(wsgidav.base_url, "/shared.txt", b"v3, someone else's") == 204
    got, msg = status_of(lambda: undo(shared_daemon, s.id, done.id))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "412" in msg and "stays pending" in msg, msg
    assert (wsgidav.root / "shared.txt").read_bytes() == b"v3, someone else's"


def test_only_named_sets_leave_other_shapes_irreversible(
    shared_daemon: DaemonProcess,
    wsgidav: WsgiDav,  # noqa: F811
) -> None:
    s = open_http(shared_daemon, wsgidav.base_url, rules="only:rest")
    got, msg = status_of(lambda: call(shared_daemon, s.id, "PUT", "/only.txt", raw=b"x"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "irreversible" in msg, msg
    assert not (wsgidav.root / "only.txt").exists()
    got, msg = status_of(lambda: open_http(shared_daemon, wsgidav.base_url, name="b", rules="rest+nope"))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "no rule set named 'nope'" in msg, msg


def test_solid_post_needs_an_approval_and_is_undone_by_its_location(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    assert _put(solid_server.base_url, "/notes/first.txt", b"first") == 201
    s = open_http(shared_daemon, solid_server.base_url, rules="generic")
    before = solid_server.files()
    # a POST may do anything: generic semantics predict irreversible until the answer names what it made
    got, msg = status_of(lambda: call(shared_daemon, s.id, "POST", "/notes/", raw=b"hello"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "irreversible" in msg, msg
    assert solid_server.files() == before
    done = call(
        shared_daemon, s.id, "POST", "/notes/", raw=b"hello", headers={"content-type": "text/plain"}, approval="ann"
    )
    assert done.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_BEST_EFFORT, done.reversibility.detail
    assert done.inverse.http.method == "DELETE" and done.inverse.http.path.startswith("/notes/")
    made = done.inverse.http.path[1:]  # stored as that name plus "$.txt", the extension of its type
    assert [v for k, v in solid_server.files().items() if k.startswith(made)] == [b"hello"]
    undone = undo(shared_daemon, s.id, done.id)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert solid_server.files() == before


def test_solid_put_patch_and_delete_are_undone_and_verified(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    turtle = b'<#me> <http://xmlns.com/foaf/0.1/name> "Ann".\n'
    assert _put(solid_server.base_url, "/profile/card.ttl", turtle, "text/turtle") == 201
    assert _put(solid_server.base_url, "/profile/app.json", b'{"theme": "dark"}', "application/json") == 201
    s = open_http(shared_daemon, solid_server.base_url)  # rules "rest", then generic semantics
    sparql = b'INSERT DATA { <#me> <http://xmlns.com/foaf/0.1/nick> "annie". }'
    cases = [
        ("PUT", "/profile/app.json", b'{"theme": "light"}', "application/json", "[replaced]"),
        ("PATCH", "/profile/card.ttl", sparql, "application/sparql-update", "[patched, PUT allowed]"),
        ("DELETE", "/profile/app.json", None, "", "[deleted, PUT allowed]"),
    ]
    for method, path, body, content_type, label in cases:
        done = write_and_undo(shared_daemon, s.id, solid_server.files, method, path, body, content_type)
        assert done.reversibility.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE, done
        assert label in done.reversibility.detail, done.reversibility.detail


def test_generic_compares_bytes_so_a_reserialised_json_inverse_is_not_verified(
    shared_daemon: DaemonProcess,
    wsgidav: WsgiDav,  # noqa: F811
) -> None:
    # Trial 2, H12: generic semantics promise a representation's bytes back; an inverse that puts the same JSON
    # back re-serialised (key order, 1.0 for 1, spacing, no final newline) leaves other bytes in the file.
    original = b'{"a": 1, "b": [1, 2]}\n'
    assert _put(wsgidav.base_url, "/data.json", original, "application/json") == 201
    s = open_http(shared_daemon, wsgidav.base_url, rules="generic")
    http = pb.HttpAction(method="PUT", path="/data.json", body=b"x", headers={"content-type": "text/plain"})
    inverse = pb.HttpAction(method="PUT", path="/data.json", json='{"b":[1,2],"a":1.0}')
    req = apb.SubmitActionRequest(session_id=s.id, spec=pb.ActionSpec(http=http), inverse=pb.ActionSpec(http=inverse))
    done = shared_daemon.actions.SubmitAction(req).action
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    undone = undo(shared_daemon, s.id, done.id)
    assert (wsgidav.root / "data.json").read_bytes() == b'{"b":[1,2],"a":1.0}'
    assert undone.reversibility.verdict == pb.VERDICT_FAILED, undone.reversibility.detail
    assert "the body's bytes differ" in undone.reversibility.detail, undone.reversibility.detail
