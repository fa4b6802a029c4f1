"""Gates through a CONNECT tunnel: sandboxed code (the real BwrapSandbox, python3's urllib) calls an
http resource over HTTPS through the real egress proxy, and each request under the resource's base
URL goes to a real `ResourceGate` over a real `HttpResource`: the session policy, the pre-image,
the resource's secret, the inverse derived from the response, and the undo.

The service is json-server with its collections under /api (a routes file), behind a TLS front
whose certificate the test CA (trustme) issued: the proxy trusts that CA through
egress.upstream_ca_file. The proxy, its vault, the sandbox and the FETCH script are
tests/integration/test_egress_proxy.py's.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from goexd.domain.egress import Decision, EgressGrant, EgressRecordData, GateRequest, GateResponse, RecordedCall
from goexd.domain.models import Resource, ResourceKind, UndoStrategy
from goexd.domain.secrets import SecretKind, SecretRequest
from goexd.egress.proxy import EgressProxy, Route
from goexd.egress.upstream import tls_context as upstream_tls_context
from goexd.engine.http_gate import ResourceGate, undo_call
from goexd.policy.check import SessionPolicy
from goexd.policy.defaults import daemon_layers
from goexd.policy.parse import build, build_session, parse
from goexd.resources.http.resource import HttpResource, validate_base_url
from goexd.resources.http.rules import load_rule_sets
from goexd.resources.http.send import HttpSender
from goexd.sandbox.bwrap import BwrapSandbox
from tests.integration.test_egress_proxy import (  # noqa: F401 - the proxy and what it is built on, used by name
    assert_refused,
    fetch,
    http_upstream,
    https_upstream,
    proxy,
    state,
    upstream_ca,
    vault,
)
from tests.services.http_service import serve_http
from tests.services.json_server import json_server_command

SEED = {"items": [{"id": 1, "name": "lamp", "price": 40}, {"id": 2, "name": "desk", "price": 120}]}
GATE_VALUE = "gate-" + secrets.token_hex(12)


# --- the service: json-server under /api, behind TLS -----------------------------------------------


@dataclass(frozen=True)
class ApiServer:
    port: int  # plain http, for the test's own look at the state

    def items(self) -> list[dict[str, Any]]:
        r = httpx.get(f"http://127.0.0.1:{self.port}/items", trust_env=False, timeout=10)
        got: list[dict[str, Any]] = sorted(r.raise_for_status().json(), key=lambda i: i["id"])
        return got


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    """A fresh json-server from SEED whose collections are also under /api (/api/items is /items)."""
    (tmp_path / "db.json").write_text(json.dumps(SEED))
    (tmp_path / "routes.json").write_text(json.dumps({"/api/*": "/$1"}))
    argv = [*json_server_command(), "--routes", "routes.json", "db.json"]
    with serve_http(
        "json-server",
        lambda port: [*argv, "--host", "127.0.0.1", "--port", str(port)],
        "/db",
        tmp_path / "json-server.log",
        cwd=tmp_path,
    ) as started:
        yield ApiServer(started.port)


class TlsFront:
    """TLS under the test CA in front of a plain HTTP service; keeps what arrived, decrypted."""

    def __init__(self, backend_port: int, ctx: ssl.SSLContext) -> None:
        self._backend_port = backend_port
        self._ctx = ctx
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.received = bytearray()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            client = self._ctx.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        backend = socket.create_connection(("127.0.0.1", self._backend_port))
        with self._lock:
            self._open.update((client, backend))
        back = threading.Thread(target=self._pump, args=(backend, client, False), daemon=True)
        back.start()
        self._pump(client, backend, True)
        back.join()
        for s in (client, backend):
            s.close()
        with self._lock:
            self._open.difference_update((client, backend))

    def _pump(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        """Bytes one way until either side ends; then both ends are shut (HTTP needs no half-close)."""
        try:
            while data := src.recv(65536):
                if keep:
                    with self._lock:
                        self.received += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(s, socket.SHUT_RDWR)  # the raw socket's: wakes the other pump

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(s, socket.SHUT_RDWR)


def tls_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def front(api_server: ApiServer, upstream_ca: trustme.CA) -> Iterator[TlsFront]:  # noqa: F811
    tls = TlsFront(api_server.port, tls_context(upstream_ca))
    yield tls
    tls.close()


# --- the gate and its route ----------------------------------------------------------------------


@dataclass
class Gated:
    gate: ResourceGate
    manager: HttpResource
    persisted: list[EgressRecordData]


@pytest.fixture
def make_gate(
    proxy: EgressProxy,  # noqa: F811
    front: TlsFront,
) -> Iterator[Callable[..., Gated]]:
    """A ResourceGate for resource "api" at https://{front}/api, built as the engine builds one."""
    store = proxy.vault
    store.put(
        SecretRequest(
            "GATE", SecretKind.BEARER, {"value": GATE_VALUE.encode()}, allowed_hosts=(front.host,), overwrite=True
        )
    )
    made: list[HttpResource] = []

    def maker(policy_toml: str = "", secret: str = "", approval: str = "") -> Gated:
        resource = Resource(
            name="api",
            kind=ResourceKind.HTTP,
            uri=validate_base_url(f"https://{front.host}/api/", "base_url"),
            strategy=UndoStrategy.INVERSE,
            secret=secret,
            rules="rest",
        )
        # As the engine makes it: trusting what the proxy trusts (the system's CAs + egress.upstream_ca_file).
        sender = HttpSender(
            resource.uri,
            resource.secret,
            store.resolve,
            verify=upstream_tls_context(proxy.cfg),
            addresses=proxy.addresses,
        )
        manager = HttpResource(resource, sender, load_rule_sets()["rest"], store.redactor, store.redactor.text)
        made.append(manager)
        # As Engine.parse_policy makes a session's policy: its own beside the daemon's (no layers configured here).
        policy = SessionPolicy(build(daemon_layers(None, ())), build_session(parse(policy_toml)), policy_toml)
        persisted: list[EgressRecordData] = []
        gate = ResourceGate(resource, manager, policy, approval, 10.0, persisted.append, store.redactor.text)
        return Gated(gate, manager, persisted)

    yield maker
    for manager in made:
        manager.close()


@pytest.fixture
def open_route(proxy: EgressProxy) -> Iterator[Callable[..., Route]]:  # noqa: F811
    routes: list[Route] = []

    def opener(*gates: ResourceGate, hosts: tuple[str, ...] = ()) -> Route:
        route = proxy.open_route(EgressGrant(f"act-gate-{len(routes)}", hosts=hosts, gates=gates))
        routes.append(route)
        return route

    yield opener
    for r in routes:
        r.close()


def send_json(method: str, url: str, value: object) -> dict[str, Any]:
    return {"method": method, "url": url, "data": json.dumps(value), "headers": {"Content-Type": "application/json"}}


def no_value_in(answers: list[dict[str, Any]]) -> None:
    assert GATE_VALUE not in json.dumps(answers)


# --- the tests ---------------------------------------------------------------------------------------


def test_calls_in_a_tunnel_go_through_the_gate_with_their_inverses_and_are_undone(
    sandbox: BwrapSandbox,
    open_route: Callable[..., Route],
    make_gate: Callable[..., Gated],
    front: TlsFront,
    api_server: ApiServer,
) -> None:
    gated = make_gate(secret="GATE")
    route = open_route(gated.gate)
    base = f"https://{front.host}/api"
    answers = fetch(
        sandbox,
        route,
        {"url": f"{base}/items/1"},
        send_json("POST", f"{base}/items", {"name": "chair", "price": 30}),
        send_json("PATCH", f"{base}/items/1", {"price": 45}),
    )
    no_value_in(answers)
    assert [a["status"] for a in answers] == [200, 201, 200], answers
    created = json.loads(answers[1]["body"])
    assert api_server.items() == [{**SEED["items"][0], "price": 45}, SEED["items"][1], created]

    records = route.records()
    get, post, patch = records
    assert all(r.decision is Decision.ALLOWED and r.call is not None for r in records), records
    assert [(r.method, r.url, r.status) for r in records] == [
        ("GET", f"{base}/items/1", 200),
        ("POST", f"{base}/items", 201),
        ("PATCH", f"{base}/items/1", 200),
    ]
    assert all(r.call is not None and r.call.resource == "api" for r in records)
    assert get.call is not None and (get.call.reversibility, get.call.inverse) == ("read_only", None)
    assert post.call is not None and post.call.reversibility == "reversible"
    assert post.call.inverse == RecordedCall("DELETE", f"/items/{created['id']}")
    assert patch.call is not None and patch.call.reversibility == "reversible"
    inverse = patch.call.inverse
    assert inverse is not None and (inverse.method, inverse.path) == ("PUT", "/items/1")
    assert json.loads(inverse.body) == SEED["items"][0]  # the pre-image, fetched over TLS first
    # The resource's secret went upstream inside the tunnel, and no further: the records hold none.
    assert all(r.secrets_used == ("GATE",) for r in records)
    assert f"bearer {GATE_VALUE}".encode() in bytes(front.received).lower()
    assert GATE_VALUE not in repr(records)
    # Each record was handed to the gate's persist as soon as it existed (the journal keeps it).
    assert gated.persisted == records

    for record in (patch, post):  # newest first, as the engine undoes them
        undone, report = undo_call(gated.manager, route.grant.action_id, record)
        assert report.verified and undone.call is not None and undone.call.verdict == "passed", undone.call
    assert api_server.items() == SEED["items"]


def test_outside_the_base_path_the_host_is_out_of_reach_unless_granted(
    sandbox: BwrapSandbox,
    open_route: Callable[..., Route],
    make_gate: Callable[..., Gated],
    front: TlsFront,
    api_server: ApiServer,
) -> None:
    gated = make_gate()
    route = open_route(gated.gate)
    outside = [f"https://{front.host}{path}" for path in ("/items", "/apix/items", "/db", "/")]
    answers = fetch(sandbox, route, *({"url": url} for url in outside))
    for answer in answers:
        assert_refused(answer, 403, "not reachable", front.host)
    climb, encoded = fetch(
        sandbox,
        route,
        {"url": f"https://{front.host}/api/items/../../db"},
        {"url": f"https://{front.host}/api/%2E%2e/db"},
    )
    assert_refused(climb, 400, "dot segments", "'api'")
    assert_refused(encoded, 400, "dot segments", "'api'")
    assert front.received == b""  # the tunnel was open, yet nothing went upstream
    records = route.records()
    assert len(records) == 6 and all(r.decision is Decision.REFUSED and r.call is None for r in records), records
    assert gated.persisted == []  # nothing admitted, nothing to journal

    # A host the action is granted anyway: outside the base path it is plain egress, inside it the gate's.
    granted = open_route(make_gate().gate, hosts=(front.host,))
    plain, gated_get = fetch(sandbox, granted, {"url": outside[0]}, {"url": f"https://{front.host}/api/items"})
    assert json.loads(plain["body"]) == json.loads(gated_get["body"]) == SEED["items"]
    first, second = granted.records()
    assert (first.status, first.call) == (200, None)
    assert second.call is not None and second.call.resource == "api"


def test_the_gate_opens_its_own_https_host_and_port_only(
    sandbox: BwrapSandbox,
    open_route: Callable[..., Route],
    make_gate: Callable[..., Gated],
    front: TlsFront,
    api_server: ApiServer,
    upstream_ca: trustme.CA,  # noqa: F811
) -> None:
    route = open_route(make_gate().gate)
    elsewhere = TlsFront(api_server.port, tls_context(upstream_ca))  # the same service on another port
    try:
        other_port, plain_http = fetch(
            sandbox,
            route,
            {"url": f"https://{elsewhere.host}/api/items"},
            {"url": f"http://{front.host}/api/items"},  # the gate's host and port, but not its scheme
        )
    finally:
        elsewhere.close()
    assert other_port["status"] == 0 and "403" in other_port["error"], other_port  # "Tunnel connection failed"
    assert_refused(plain_http, 403, "not reachable")
    assert elsewhere.received == front.received == b""
    connect, http = route.records()
    assert (connect.method, connect.url, connect.decision) == ("CONNECT", elsewhere.host, Decision.REFUSED)
    assert "is not reachable" in connect.reason
    assert (http.method, http.decision, http.call) == ("GET", Decision.REFUSED, None)


def test_the_policys_refusals_reach_the_sandbox_with_their_status_and_rule(
    sandbox: BwrapSandbox,
    open_route: Callable[..., Route],
    make_gate: Callable[..., Gated],
    front: TlsFront,
    api_server: ApiServer,
) -> None:
    base = f"https://{front.host}/api"
    route = open_route(make_gate('[http]\nmethods = ["GET"]\n').gate)
    post, get = fetch(sandbox, route, send_json("POST", f"{base}/items", {"name": "chair"}), {"url": f"{base}/items"})
    assert_refused(post, 403, "[policy rule http.methods]", "resource 'api'", "POST is not among the allowed methods")
    assert get["status"] == 200
    refused, allowed = route.records()
    assert (refused.decision, refused.status, refused.call) == (Decision.REFUSED, 0, None)
    assert "[policy rule http.methods]" in refused.reason
    assert allowed.call is not None and allowed.call.reversibility == "read_only"
    assert b"POST" not in front.received  # refused before anything was sent
    assert api_server.items() == SEED["items"]

    # A rate limit refuses with 429; the class the rule set predicts needs an approval when the policy says so.
    policy = '[http]\nrate_limit = "1/minute"\nreversible = "approval"\n'
    route = open_route(make_gate(policy).gate)
    first, second = fetch(sandbox, route, {"url": f"{base}/items/1"}, {"url": f"{base}/items/2"})
    assert first["status"] == 200
    assert_refused(second, 429, "[policy rule http.rate_limit]", "rate limit 1/minute")
    route = open_route(make_gate('[http]\nreversible = "approval"\n').gate)
    (held,) = fetch(sandbox, route, send_json("POST", f"{base}/items", {"name": "chair"}))
    assert_refused(held, 403, "[policy rule http.reversible]", "--approve")
    approved = open_route(make_gate('[http]\nreversible = "approval"\n', approval="ann: ok").gate)
    (sent,) = fetch(sandbox, approved, send_json("POST", f"{base}/items", {"name": "chair"}))
    assert sent["status"] == 201
    assert [i["name"] for i in api_server.items()] == ["lamp", "desk", "chair"]


def test_a_pre_image_the_resources_secret_may_no_longer_fetch_refuses_the_call(
    sandbox: BwrapSandbox,
    open_route: Callable[..., Route],
    make_gate: Callable[..., Gated],
    front: TlsFront,
    api_server: ApiServer,
    proxy: EgressProxy,  # noqa: F811
) -> None:
    """The secret's hosts are looked up per call: once it may no longer go to the service, the GET
    for the pre-image cannot be sent, and neither is the call (refused, recorded, the sandbox told)."""
    route = open_route(make_gate(secret="GATE").gate)
    moved = SecretRequest(
        "GATE", SecretKind.BEARER, {"value": GATE_VALUE.encode()}, allowed_hosts=("elsewhere.test",), overwrite=True
    )
    proxy.vault.put(moved)
    (answer,) = fetch(sandbox, route, send_json("PATCH", f"https://{front.host}/api/items/1", {"price": 45}))
    assert_refused(answer, 403, "resource 'api'", f"may not be sent to https://{front.host}", "not sent")
    (record,) = route.records()
    assert (record.decision, record.status, record.call) == (Decision.REFUSED, 0, None)
    assert "could not take the pre-image" in record.reason
    assert front.received == b"" and api_server.items() == SEED["items"]


def test_a_call_whose_resource_secret_may_no_longer_go_to_the_service_is_refused(
    sandbox: BwrapSandbox,
    open_route: Callable[..., Route],
    make_gate: Callable[..., Gated],
    front: TlsFront,
    api_server: ApiServer,
    proxy: EgressProxy,  # noqa: F811
) -> None:
    """A POST needs no pre-image; it must still not go out without the resource's credential."""
    route = open_route(make_gate(secret="GATE").gate)
    moved = SecretRequest(
        "GATE", SecretKind.BEARER, {"value": GATE_VALUE.encode()}, allowed_hosts=("elsewhere.test",), overwrite=True
    )
    proxy.vault.put(moved)
    (answer,) = fetch(sandbox, route, send_json("POST", f"https://{front.host}/api/items", {"name": "chair"}))
    assert_refused(
        answer, 403, "resource 'api'", "its secret 'GATE' cannot be used", f"may not be sent to https://{front.host}"
    )
    (record,) = route.records()
    assert record.decision is Decision.REFUSED
    assert front.received == b"" and api_server.items() == SEED["items"]


def test_an_answer_cut_at_the_capture_limit_leaves_a_read_read_only_and_a_write_irreversible(
    make_gate: Callable[..., Gated],
) -> None:
    gate = make_gate().gate
    cut = GateResponse(200, {"content-type": "application/json"}, b'{"id": 7, "name": "la', truncated=True)
    read = gate.settle(gate.admit(GateRequest("GET", "/items/7", (), (), b"")), cut)
    assert read.reversibility == "read_only" and read.inverse is None
    write = gate.settle(gate.admit(GateRequest("POST", "/items", (), (), b'{"name": "lamp"}')), cut)
    assert write.reversibility == "irreversible" and write.inverse is None
    assert "too large to derive an inverse" in write.note and write.undo_state["sent"] == "yes"
