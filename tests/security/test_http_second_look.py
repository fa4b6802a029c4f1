"""Issue 15: an http write is decided on the class it has once its pre-image is in, not only on the class its rule
predicted. A Solid container whose ACL lets everyone write but not read answers the capture GET 401, after which
no outcome of generic.put-nested can undo the PUT (it would be accepted): predicted best effort, it is
irreversible, and without an approval it must not be sent, whether a client submits it or sandboxed code makes
it through the egress proxy. Against a real goexd as root and as an unprivileged user (tests/security/conftest.py),
with the Community Solid Server on loopback; each refusal is tried, and the service checked unchanged."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import NamedTuple

import grpc
import httpx
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_http_second_look import WRITE_ONLY_ACL
from tests.security.conftest import make_workspace, mode_of
from tests.services.solid_server import SolidServer, solid_server  # noqa: F401 - the fixture

SEC_ALLOWED_ADDRESSES = ("127.0.0.1/32",)  # the Solid server listens on loopback
APPROVAL = "sec-suite: approved"


@contextlib.contextmanager
def _session(d: DaemonProcess, server: SolidServer) -> Iterator[pb.Session]:
    with make_workspace(d.uid, d.gid) as ws:
        resources = [
            pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws))),
            pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=server.base_url, rules="generic")),
        ]
        session = d.sessions.CreateSession(spb.CreateSessionRequest(resources=resources), timeout=60).session
        try:
            yield session
        finally:
            close = spb.CloseSessionRequest(session_id=session.id, mode=spb.CLOSE_MODE_COMMIT_ALL)
            d.sessions.CloseSession(close, timeout=60)


class Box(NamedTuple):
    d: DaemonProcess
    server: SolidServer
    path: str  # a write-only container of the test's own


@pytest.fixture
def box(sec_daemon: DaemonProcess, solid_server: SolidServer) -> Box:  # noqa: F811
    """A write-only container of this test's own (its ACL cannot be changed once it is written)."""
    path = f"/drop-{mode_of(sec_daemon)}-{uuid.uuid4().hex[:8]}/"
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        acl = c.put(f"{path}.acl", content=WRITE_ONLY_ACL, headers={"content-type": "text/turtle"})
        assert acl.status_code in (201, 205), acl
        assert c.get(f"{path}probe.txt").status_code == 401
    return Box(sec_daemon, solid_server, path)


def _exists(server: SolidServer, path: str) -> bool:
    return any(k == path.lstrip("/") or k.startswith(path.lstrip("/") + "$") for k in server.files())


def test_a_declarative_write_its_capture_makes_irreversible_needs_an_approval(box: Box) -> None:
    d, server, drop = box
    with _session(d, server) as s:
        http = pb.HttpAction(method="PUT", path=f"{drop}a.txt", headers={"content-type": "text/plain"}, body=b"a")
        req = apb.SubmitActionRequest(session_id=s.id, spec=pb.ActionSpec(http=http, resource="api"))
        got, msg = status_of(lambda: d.actions.SubmitAction(req, timeout=120))
        assert got == grpc.StatusCode.PERMISSION_DENIED, (got, msg)
        assert f"GET {drop}a.txt answered 401" in msg and "[policy rule http.irreversible]" in msg, msg
        assert not _exists(server, f"{drop}a.txt")
        req.approval = APPROVAL  # control: approved, it is sent
        done = d.actions.SubmitAction(req, timeout=120).action
        assert done.state == pb.ACTION_STATE_EXECUTED and done.http.status == 201, done.error
        assert done.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_IRREVERSIBLE


def test_code_making_that_write_through_the_proxy_needs_the_approval_too(box: Box) -> None:
    d, server, drop = box
    url = f"{server.base_url}{drop}b.txt"
    script = (
        "curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: text/plain' --data-binary b "
        f"--max-time 20 '{url}'"
    )
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    spec.limits.timeout.FromSeconds(30)
    spec.egress.resources.append("api")
    with _session(d, server) as s:
        req = apb.SubmitActionRequest(session_id=s.id, spec=spec)
        action = d.actions.SubmitAction(req, timeout=120).action
        assert action.exec.stdout.decode() == "403", (action.exec.stdout, action.error)
        refusal = next(r for r in action.egress if r.method == "PUT")
        assert f"GET {drop}b.txt answered 401" in refusal.reason and "irreversible" in refusal.reason, refusal
        assert not _exists(server, f"{drop}b.txt")
        req.approval = APPROVAL  # control: the action's approval reaches the call
        approved = d.actions.SubmitAction(req, timeout=120).action
        assert approved.exec.stdout.decode() == "201", (approved.exec.stdout, approved.error)
