"""The egress proxy end to end: the real BwrapSandbox with Network.PROXY, the real vault,
the proxy's real Unix-socket routes, and httpbin (plain HTTP, and HTTPS under a trustme
CA) served by werkzeug on 127.0.0.1. Sandboxed code is the system python3 (urllib) and curl.
"""

from __future__ import annotations

import errno
import http.client
import json
import random
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpbin
import pytest
import trustme
from werkzeug.serving import make_server

from goexd import config
from goexd.domain.egress import Decision, EgressGrant, EgressRecordData
from goexd.domain.sandbox import ExecResult, Limits, Network, SandboxSpec, Stream, Termination
from goexd.domain.secrets import Injection, InjectionTarget, SecretKind, SecretRequest
from goexd.egress.proxy import EgressProxy, Route
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.vault.vault import Vault

PY = "/usr/bin/python3"
CURL = "/usr/bin/curl"
MAX_REQUEST_BYTES = 256 * 1024

API_VALUE = "api-" + secrets.token_hex(12)  # bearer: Authorization added by default
HDR_VALUE = "hdr-" + secrets.token_hex(12)  # header X-Api-Key: "Key {value}"
KEY_VALUE = "k/" + secrets.token_hex(8) + "+x"  # query api_key; needs URL-encoding
ELSEWHERE_VALUE = "els-" + secrets.token_hex(12)  # allowed for another host only
UNDECLARED_VALUE = "und-" + secrets.token_hex(12)  # allowed here, never declared
STREAM_VALUE = "str-" + secrets.token_hex(12)  # what /secret-stream sends back
VALUES = (API_VALUE, HDR_VALUE, KEY_VALUE, ELSEWHERE_VALUE, UNDECLARED_VALUE, STREAM_VALUE)
STREAM_BYTES = 1024 * 1024
STREAM_OCCURRENCES = 200


# --- upstream servers ---------------------------------------------------------------------


@dataclass
class Upstream:
    """httpbin behind a recorder of what actually arrived (the only place values may appear)."""

    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        self.seen.append({"path": environ["PATH_INFO"], "query": environ["QUERY_STRING"], "headers": headers})
        if environ["PATH_INFO"] == "/secret-stream":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return secret_stream()
        if environ["PATH_INFO"] == "/broken-stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return broken_stream()
        result: Iterable[bytes] = httpbin.app(environ, start_response)
        return result


def secret_stream() -> Iterator[bytes]:
    """1 MiB with STREAM_VALUE at random places, yielded in pieces cut inside the values."""
    rng = random.Random(7)
    value = STREAM_VALUE.encode()
    filler = STREAM_BYTES // STREAM_OCCURRENCES - len(value)
    blob = b"".join(bytes(rng.choices(b"abcdefghij", k=filler)) + value for _ in range(STREAM_OCCURRENCES))
    step = filler + len(value)
    cuts = sorted({i * step + filler + rng.randrange(1, len(value)) for i in range(0, STREAM_OCCURRENCES, 3)})
    start = 0
    for cut in [*cuts, len(blob)]:
        yield blob[start:cut]
        start = cut


def broken_stream() -> Iterator[bytes]:
    yield b"partial " * 1000
    raise ConnectionAbortedError("the upstream dies mid-response (expected in this test)")


def serve(app: Upstream, ssl_context: ssl.SSLContext | None = None) -> Iterator[Upstream]:
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
    app.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def http_upstream() -> Iterator[Upstream]:
    yield from serve(Upstream())


@pytest.fixture(scope="module")
def upstream_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https_upstream(upstream_ca: trustme.CA) -> Iterator[Upstream]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    yield from serve(Upstream(), ctx)


@pytest.fixture(autouse=True)
def _fresh_upstream_logs(http_upstream: Upstream, https_upstream: Upstream) -> None:
    http_upstream.seen.clear()
    https_upstream.seen.clear()


def arrived(*upstreams: Upstream) -> list[dict[str, Any]]:
    return [r for u in upstreams for r in u.seen]


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- vault, proxy, sandbox ------------------------------------------------------------------


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("egress")


@pytest.fixture(scope="module")
def vault(state: Path, http_upstream: Upstream, https_upstream: Upstream) -> Vault:
    v = Vault.open(config.load(None, {"state_dir": str(state / "state")}, {}))
    here = f"http://127.0.0.1:{http_upstream.port}"  # plain http is allowed only by an http:// entry
    here_tls = f"127.0.0.1:{https_upstream.port}"  # a bare entry: https

    def put(name: str, kind: SecretKind, value: str, hosts: tuple[str, ...], inj: Injection | None = None) -> None:
        v.put(SecretRequest(name=name, kind=kind, values={"value": value.encode()}, injection=inj, allowed_hosts=hosts))

    put("API", SecretKind.BEARER, API_VALUE, (here, here_tls))
    put("HDR", SecretKind.GENERIC, HDR_VALUE, (here,), Injection(InjectionTarget.HEADER, "X-Api-Key", "Key {value}"))
    put("KEY", SecretKind.API_KEY, KEY_VALUE, (here,), Injection(InjectionTarget.QUERY, "api_key"))
    put("ELSEWHERE", SecretKind.GENERIC, ELSEWHERE_VALUE, ("api.elsewhere.example",))
    put("UNDECLARED", SecretKind.GENERIC, UNDECLARED_VALUE, (here,))
    put("STREAM", SecretKind.GENERIC, STREAM_VALUE, (here,))
    return v


@pytest.fixture(scope="module")
def proxy(state: Path, vault: Vault, upstream_ca: trustme.CA) -> Iterator[EgressProxy]:
    ca_file = state / "upstream-ca.pem"
    upstream_ca.cert_pem.write_to_path(str(ca_file))
    cfg = replace(
        config.EgressConfig(),
        allowed_addresses=("127.0.0.1/32",),  # the upstreams of these tests listen on loopback
        upstream_ca_file=ca_file,
        connect_timeout_s=5.0,
        read_timeout_s=10.0,
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    # Outside /tmp (which the sandbox replaces anyway), so that hiding the route sockets is real.
    run_dir = Path("/var/tmp") / f"goex-egress-{secrets.token_hex(6)}"
    with EgressProxy(vault, cfg, run_dir) as p:
        yield p
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def open_route(proxy: EgressProxy) -> Iterator[Callable[..., Route]]:
    routes: list[Route] = []

    def opener(secrets: tuple[str, ...] = (), hosts: tuple[str, ...] = ()) -> Route:
        route = proxy.open_route(EgressGrant(f"act-{len(routes)}", secrets, hosts))
        routes.append(route)
        return route

    yield opener
    for r in routes:
        r.close()


@pytest.fixture
def route(open_route: Callable[..., Route]) -> Route:
    """The usual action: declares API, HDR and KEY, and may reach the TLS upstream's host."""
    return open_route(("API", "HDR", "KEY"))


def run(sandbox: BwrapSandbox, route: Route, argv: list[str], **kw: Any) -> ExecResult:
    on_output, cancel = kw.pop("on_output", None), kw.pop("cancel", None)
    result = sandbox.run(run_spec(route, argv, **kw), on_output, cancel)
    for value in VALUES:  # whatever the test, no value reaches the sandbox's output
        assert value.encode() not in result.stdout + result.stderr, result
    return result


def run_spec(route: Route, argv: list[str], **kw: Any) -> SandboxSpec:
    kw.setdefault("limits", Limits(timeout_s=30))
    return SandboxSpec(argv=argv, workspace=None, network=Network.PROXY, proxy=route.endpoint, **kw)


# urllib in the sandbox: the requests as a JSON list on stdin, the answers as one on stdout.
FETCH = r"""
import json, sys, urllib.error, urllib.request
out = []
for spec in json.load(sys.stdin):
    data = spec["data"].encode() if "data" in spec else None
    req = urllib.request.Request(spec["url"], data=data, headers=spec.get("headers", {}), method=spec.get("method"))
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            out.append({"status": r.status, "headers": dict(r.headers), "body": r.read().decode("utf-8", "replace")})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code, "headers": dict(e.headers), "body": e.read().decode("utf-8", "replace")})
    except Exception as e:
        out.append({"status": 0, "error": repr(e)})
print(json.dumps(out))
"""


def fetch(sandbox: BwrapSandbox, route: Route, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    r = run(sandbox, route, [PY, "-c", FETCH], stdin=json.dumps(list(requests)).encode())
    assert (r.termination, r.exit_code) == (Termination.EXITED, 0), r
    answers: list[dict[str, Any]] = json.loads(r.stdout)
    return answers


def body_json(answer: dict[str, Any]) -> Any:
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])


def only_record(route: Route) -> EgressRecordData:
    records = route.records()
    assert len(records) == 1, records
    return records[0]


# --- injection and redaction ----------------------------------------------------------------


def test_declared_header_secrets_are_added_by_template_and_echoes_come_back_redacted(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    url = f"http://127.0.0.1:{http_upstream.port}/headers"
    (answer,) = fetch(sandbox, route, {"url": url})
    echoed = body_json(answer)["headers"]
    assert echoed["Authorization"] == "Bearer [secret:API]"
    assert echoed["X-Api-Key"] == "Key [secret:HDR]"
    (got,) = arrived(http_upstream)
    assert got["headers"]["authorization"] == f"Bearer {API_VALUE}"  # the real value went upstream
    assert got["headers"]["x-api-key"] == f"Key {HDR_VALUE}"
    assert got["query"] == "api_key=" + KEY_VALUE.replace("/", "%2F").replace("+", "%2B")  # and the query one
    rec = only_record(route)
    assert (rec.method, rec.url, rec.host, rec.status, rec.decision) == ("GET", url, "127.0.0.1", 200, Decision.ALLOWED)
    assert set(rec.secrets_used) == {"API", "HDR", "KEY"}
    assert rec.response_bytes == len(answer["body"]) and rec.request_bytes == 0
    assert 0 < rec.duration_s < 10 and abs(rec.at - time.time()) < 60


def test_placeholders_in_their_own_headers_are_replaced_and_nothing_is_added_twice(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    headers = {"Authorization": "Token goex-secret:API", "x-api-key": "goex-secret:HDR and goex-secret:HDR"}
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/headers", "headers": headers})
    echoed = body_json(answer)["headers"]
    assert echoed["Authorization"] == "Token [secret:API]"
    assert echoed["X-Api-Key"] == "[secret:HDR] and [secret:HDR]"
    (got,) = arrived(http_upstream)
    assert got["headers"]["authorization"] == f"Token {API_VALUE}"  # the sandbox's header stays; no second one
    assert got["headers"]["x-api-key"] == f"{HDR_VALUE} and {HDR_VALUE}"  # raw values, not templates


def test_a_placeholder_in_another_header_is_refused_and_nothing_goes_upstream(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    # An echoing upstream (httpbin's /headers) would hand the value back, in whatever form it likes.
    headers = {"X-Both": "goex-secret:HDR and goex-secret:API"}
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/headers", "headers": headers})
    assert_refused(answer, 403, "'HDR' in header X-Both is refused", "only into header X-Api-Key")
    assert arrived(http_upstream) == []
    assert only_record(route).decision == Decision.REFUSED


def test_query_secrets_are_added_or_replaced_url_encoded(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    base = f"http://127.0.0.1:{http_upstream.port}/get"
    added, replaced, elsewhere = fetch(
        sandbox,
        route,
        {"url": f"{base}?q=1"},
        {"url": f"{base}?q=2&api_key=goex-secret:KEY"},
        {"url": f"{base}?q=3&h=goex-secret:HDR"},
    )
    assert body_json(added)["args"] == {"q": "1", "api_key": "[secret:KEY]"}
    assert body_json(replaced)["args"] == {"q": "2", "api_key": "[secret:KEY]"}
    # A header-injected secret's placeholder in the query: refused (the value goes only into its header).
    assert_refused(elsewhere, 403, "query parameter h is refused")
    encoded = KEY_VALUE.replace("/", "%2F").replace("+", "%2B")
    first, second = arrived(http_upstream)
    assert first["query"] == f"q=1&api_key={encoded}"
    assert second["query"] == f"q=2&api_key={encoded}"
    records = route.records()
    assert [r.url for r in records] == [
        f"{base}?q=1",
        f"{base}?q=2&api_key=goex-secret:KEY",
        f"{base}?q=3&h=goex-secret:HDR",
    ]
    assert "HDR" in records[1].secrets_used  # added as a header, as declared
    assert records[2].decision == Decision.REFUSED


def test_bodies_go_as_they_are_and_echoes_are_redacted(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    body = "text=goex-secret%20API&raw=" + UNDECLARED_VALUE[:4]
    url = f"http://127.0.0.1:{http_upstream.port}/anything/x"
    answer, with_placeholder = fetch(
        sandbox,
        route,
        {"url": url, "data": body, "method": "PUT"},
        {"url": url, "data": "text=goex-secret:API", "method": "PUT"},
    )
    echoed = body_json(answer)
    assert echoed["form"] == {"text": "goex-secret API", "raw": UNDECLARED_VALUE[:4]}  # byte for byte
    assert echoed["headers"]["Authorization"] == "Bearer [secret:API]"
    assert echoed["method"] == "PUT"
    # A placeholder in a body is never filled in, and refused: an echo of the body must not carry a value.
    assert_refused(with_placeholder, 403, "'API' in the request body is refused")
    assert len(arrived(http_upstream)) == 1
    assert route.records()[0].request_bytes == len(body)


def test_compressed_echoes_are_decoded_and_redacted(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/gzip"})
    assert "Content-Encoding" not in answer["headers"]  # the sandbox gets the decoded body
    assert body_json(answer)["headers"]["Authorization"] == "Bearer [secret:API]"


def test_echoed_values_in_response_headers_are_redacted(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    url = f"http://127.0.0.1:{http_upstream.port}/response-headers?X-Leak={UNDECLARED_VALUE}"
    (answer,) = fetch(sandbox, route, {"url": url})
    assert answer["headers"]["X-Leak"] == "[secret:UNDECLARED]"


def test_a_streamed_mebibyte_is_redacted_across_chunk_boundaries(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    code = f"""
import urllib.request
data = urllib.request.urlopen("http://127.0.0.1:{http_upstream.port}/secret-stream").read()
print(len(data), data.count(b"{STREAM_VALUE}"), data.count(b"[secret:STREAM]"))
"""
    r = run(sandbox, route, [PY, "-c", code])
    size, raw, labelled = map(int, r.stdout.split())
    assert (raw, labelled) == (0, STREAM_OCCURRENCES)
    shrink = len(STREAM_VALUE) - len("[secret:STREAM]")
    assert size == STREAM_OCCURRENCES * (STREAM_BYTES // STREAM_OCCURRENCES) - STREAM_OCCURRENCES * shrink
    assert only_record(route).response_bytes == size


def test_a_cookie_set_upstream_reaches_the_sandbox_but_the_proxy_keeps_none(
    sandbox: BwrapSandbox, open_route: Callable[..., Route], http_upstream: Upstream
) -> None:
    base = f"http://127.0.0.1:{http_upstream.port}"
    # The proxy's one upstream client serves every action: a cookie it kept would ride along on others'.
    (answer,) = fetch(sandbox, open_route(("API",)), {"url": f"{base}/response-headers?Set-Cookie=session%3Dabc123"})
    assert answer["status"] == 200 and answer["headers"]["Set-Cookie"] == "session=abc123"
    # urllib follows /cookies/set's redirect to /cookies itself, keeping no cookie: nor does the proxy.
    same, other = fetch(
        sandbox, open_route(("API",)), {"url": f"{base}/cookies/set?flavor=oat"}, {"url": f"{base}/cookies"}
    )
    assert body_json(same) == {"cookies": {}} and body_json(other) == {"cookies": {}}
    assert all("cookie" not in seen["headers"] for seen in arrived(http_upstream))


def test_head_and_no_content_responses_have_no_body(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    base = f"http://127.0.0.1:{http_upstream.port}"
    head, empty = fetch(sandbox, route, {"url": f"{base}/get", "method": "HEAD"}, {"url": f"{base}/status/204"})
    assert (head["status"], head["body"]) == (200, "")
    assert (empty["status"], empty["body"]) == (204, "")
    assert [r.status for r in route.records()] == [200, 204]


# --- refusals -----------------------------------------------------------------------------------


def assert_refused(answer: dict[str, Any], status: int, *words: str) -> None:
    assert answer["status"] == status, answer
    assert answer["body"].startswith("goex egress proxy: refused:"), answer
    for word in words:
        assert word in answer["body"] and word in answer["headers"]["X-Goex-Refused"], (word, answer)


def test_a_placeholder_for_a_host_the_secret_is_not_allowed_for_is_refused(
    sandbox: BwrapSandbox, open_route: Callable[..., Route], http_upstream: Upstream
) -> None:
    route = open_route(("API", "ELSEWHERE"))
    host = f"127.0.0.1:{http_upstream.port}"
    (answer,) = fetch(sandbox, route, {"url": f"http://{host}/headers", "headers": {"X-T": "goex-secret:ELSEWHERE"}})
    assert_refused(answer, 403, "ELSEWHERE", host)
    assert arrived(http_upstream) == []  # nothing went upstream
    rec = only_record(route)
    assert (rec.decision, rec.status, rec.host) == (Decision.REFUSED, 0, "127.0.0.1")
    assert "ELSEWHERE" in rec.reason and host in rec.reason


def test_a_placeholder_for_an_undeclared_secret_is_refused_wherever_it_is(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    base = f"http://127.0.0.1:{http_upstream.port}"
    answers = fetch(
        sandbox,
        route,
        {"url": f"{base}/headers", "headers": {"X-T": "goex-secret:UNDECLARED"}},
        {"url": f"{base}/get?x=goex-secret%3AUNDECLARED"},
        {"url": f"{base}/post", "data": "secret=goex-secret:UNDECLARED"},
        {"url": f"{base}/anything/goex-secret:UNDECLARED"},
    )
    for answer in answers:
        assert_refused(answer, 403, "UNDECLARED", "not declared")
    assert arrived(http_upstream) == []
    assert [r.decision for r in route.records()] == [Decision.REFUSED] * 4


def test_hosts_outside_the_route_are_refused_for_http_and_https(
    sandbox: BwrapSandbox, open_route: Callable[..., Route], http_upstream: Upstream, https_upstream: Upstream
) -> None:
    route = open_route(("HDR",))  # HDR is allowed for the plain upstream only
    http, https = fetch(
        sandbox,
        route,
        {"url": f"http://127.0.0.1:{dead_port()}/get"},
        {"url": f"https://127.0.0.1:{https_upstream.port}/get"},
    )
    assert_refused(http, 403, "not reachable")
    assert https["status"] == 0 and "403" in https["error"]  # urllib: "Tunnel connection failed: 403"
    connect = route.records()[1]
    assert (connect.method, connect.url, connect.decision) == ("CONNECT", f"127.0.0.1:{https_upstream.port}", "refused")


def test_grant_hosts_are_reachable_without_secrets(
    sandbox: BwrapSandbox, open_route: Callable[..., Route], http_upstream: Upstream
) -> None:
    route = open_route((), (f"127.0.0.1:{http_upstream.port}",))
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/headers"})
    assert "Authorization" not in body_json(answer)["headers"]
    assert only_record(route).secrets_used == ()


def test_upgrades_are_refused(sandbox: BwrapSandbox, route: Route, http_upstream: Upstream) -> None:
    headers = {"Connection": "Upgrade", "Upgrade": "websocket"}
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/get", "headers": headers})
    assert_refused(answer, 501, "WebSocket")


def test_a_body_above_the_limit_is_refused(sandbox: BwrapSandbox, route: Route, http_upstream: Upstream) -> None:
    big = "x" * (MAX_REQUEST_BYTES + 1)
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/post", "data": big})
    assert_refused(answer, 413, str(MAX_REQUEST_BYTES))


def test_a_client_still_sending_a_large_body_reads_the_refusal(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    """The refusal comes while most of the body is still on its way: the proxy reads and
    discards the rest rather than closing on unread data, which would reset the connection
    and leave the client without the answer."""
    big = "x" * (MAX_REQUEST_BYTES * 64)
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{http_upstream.port}/post", "data": big})
    assert_refused(answer, 413, str(MAX_REQUEST_BYTES))


def test_origin_form_requests_are_refused(proxy: EgressProxy, route: Route) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(route.socket_path))
        s.sendall(b"GET /get HTTP/1.1\r\nHost: example.com\r\n\r\n")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"absolute-form" in reply


# --- upstream failures --------------------------------------------------------------------


def test_an_upstream_that_is_down_gives_502_and_is_recorded(
    sandbox: BwrapSandbox, open_route: Callable[..., Route]
) -> None:
    port = dead_port()
    route = open_route((), (f"127.0.0.1:{port}",))
    (answer,) = fetch(sandbox, route, {"url": f"http://127.0.0.1:{port}/get"})
    assert answer["status"] == 502
    assert answer["body"].startswith("goex egress proxy: upstream error: ConnectError")
    rec = only_record(route)
    assert (rec.decision, rec.status) == (Decision.ALLOWED, 0)
    assert "ConnectError" in rec.reason


def test_an_upstream_failing_mid_response_cuts_the_response_and_is_recorded(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    code = f"""
import urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:{http_upstream.port}/broken-stream").read()
    print("complete")
except Exception as e:
    print("cut", type(e).__name__)
"""
    r = run(sandbox, route, [PY, "-c", code])
    assert r.stdout.decode().split()[0] == "cut", r
    rec = only_record(route)
    assert (rec.decision, rec.status) == (Decision.ALLOWED, 200)
    assert rec.reason.startswith("upstream failed mid-response: RemoteProtocolError"), rec


# --- HTTPS through CONNECT ------------------------------------------------------------------


def test_https_through_connect_injects_and_redacts(
    sandbox: BwrapSandbox, route: Route, https_upstream: Upstream
) -> None:
    url = f"https://127.0.0.1:{https_upstream.port}/headers"
    (answer,) = fetch(sandbox, route, {"url": url})
    assert body_json(answer)["headers"]["Authorization"] == "Bearer [secret:API]"
    (got,) = arrived(https_upstream)
    assert got["headers"]["authorization"] == f"Bearer {API_VALUE}"
    rec = only_record(route)
    assert (rec.url, rec.status, rec.secrets_used) == (url, 200, ("API",))


def test_the_sandbox_trusts_only_the_proxy_ca(sandbox: BwrapSandbox, route: Route) -> None:
    code = """
import ssl
ctx = ssl.create_default_context()
print([dict(x[0] for x in c["subject"])["commonName"] for c in ctx.get_ca_certs()])
"""
    r = run(sandbox, route, [PY, "-c", code])
    assert r.stdout.decode().strip() == "['goexd egress CA']"


# --- the network is the proxy only ----------------------------------------------------------


def test_a_direct_connection_to_a_host_service_fails(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream
) -> None:
    code = f"""
import socket
for target in [("127.0.0.1", {http_upstream.port}), ("10.0.0.1", 80), ("::1", {http_upstream.port})]:
    try:
        socket.create_connection(target, timeout=2).close()
        print("connected", target)
    except OSError as e:
        print("refused", type(e).__name__)
"""
    r = run(sandbox, route, [PY, "-c", code])
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 3 and all(line.startswith("refused") for line in lines), lines
    assert route.records() == []


def test_a_closed_route_refuses_connections_and_its_socket_is_gone(
    sandbox: BwrapSandbox, open_route: Callable[..., Route], http_upstream: Upstream
) -> None:
    route = open_route(("API",))
    path = route.socket_path
    assert path.is_socket() and (path.stat().st_mode & 0o777) == 0o600
    route.close()
    assert not path.exists()
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(OSError):
        s.connect(str(path))


def test_a_sandbox_reaches_its_own_route_only(
    sandbox: BwrapSandbox, proxy: EgressProxy, open_route: Callable[..., Route]
) -> None:
    mine, other = open_route(("API",)), open_route(("API",))
    code = """
import os, socket, sys
for path in sys.argv[1:]:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        print("connected", path)
    except OSError as e:
        print("refused", path, e.errno)
try:  # the forwarder (the parent) holds the route's socket: its descriptors are not ours to use
    print("listed", os.listdir(f"/proc/{os.getppid()}/fd"))
except OSError as e:
    print("refused fds", e.errno)
"""
    targets = [str(other.socket_path), str(mine.socket_path), str(proxy.run_dir), "/run/goex/egress.sock"]
    r = run(sandbox, mine, [PY, "-c", code, *targets])
    # The command cannot make a Unix socket at all (seccomp): only the forwarder, which reaches
    # its route by descriptor, talks to the proxy.
    lines = r.stdout.decode().splitlines()
    assert [line.split() for line in lines] == [
        *(["refused", t, str(errno.EAFNOSUPPORT)] for t in targets),
        ["refused", "fds", str(errno.EACCES)],
    ], lines
    # Control: the route itself works (the proxy answers, refusing a host the grant does not name).
    assert fetch(sandbox, mine, {"url": "http://not-granted.invalid/"})[0]["status"] == 403


def test_only_the_ca_certificate_is_on_disk(proxy: EgressProxy, route: Route) -> None:
    files = {p.name: p for p in proxy.run_dir.iterdir()}
    assert set(files) == {proxy.ca_path.name, route.socket_path.name}
    assert (proxy.ca_path.stat().st_mode & 0o777) == 0o644
    assert proxy.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" not in proxy.ca_path.read_bytes()
    assert (proxy.run_dir.stat().st_mode & 0o777) == 0o700


def test_keep_alive_serves_several_requests_on_one_connection(route: Route, http_upstream: Upstream) -> None:
    request = f"GET http://127.0.0.1:{http_upstream.port}/get HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(route.socket_path))
        f = s.makefile("rb")
        for _ in range(3):
            s.sendall(request)
            assert f.readline().startswith(b"HTTP/1.1 200")
            while (line := f.readline()) != b"\r\n":
                assert not line.lower().startswith(b"connection: close")
            while (size := int(f.readline(), 16)) != 0:  # chunked
                f.read(size + 2)
            f.readline()
    assert [r.status for r in route.records()] == [200] * 3


# --- curl -------------------------------------------------------------------------------------


def test_curl_http_and_https_with_keep_alive(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream, https_upstream: Upstream
) -> None:
    plain = f"http://127.0.0.1:{http_upstream.port}/headers"
    tls = f"https://127.0.0.1:{https_upstream.port}/headers"
    r = run(sandbox, route, [CURL, "-sS", "--fail", plain, plain, tls, tls])
    assert r.exit_code == 0, r
    assert r.stdout.decode().count('"Authorization": "Bearer [secret:API]"') == 4
    assert [x.status for x in route.records()] == [200] * 4


def test_curl_uploads_with_expect_100_continue(sandbox: BwrapSandbox, route: Route, http_upstream: Upstream) -> None:
    url = f"http://127.0.0.1:{http_upstream.port}/post"
    body = b"a=" + b"x" * 100_000
    start = time.monotonic()
    # curl sends "Expect: 100-continue" for a body this large and waits 1 s for the answer
    # before sending anyway; the proxy answers at once.
    argv = [CURL, "-sS", "--fail", "-H", "Content-Type: application/octet-stream", "--data-binary", "@-", url]
    r = run(sandbox, route, argv, stdin=body)
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["data"] == body.decode()
    assert time.monotonic() - start < 0.9
    assert only_record(route).request_bytes == len(body)


def test_curl_refuses_the_proxy_certificate_against_the_system_cas(
    sandbox: BwrapSandbox, route: Route, https_upstream: Upstream
) -> None:
    url = f"https://127.0.0.1:{https_upstream.port}/get"
    r = run(sandbox, route, [CURL, "-sS", "--cacert", "/etc/ssl/certs/ca-certificates.crt", url])
    assert r.exit_code == 60, r  # "SSL certificate problem": only the proxy CA vouches for its leaf
    assert route.records() == []  # nothing got through the tunnel


# --- the forwarder in front of the command -----------------------------------------------------


def test_forwarder_keeps_exit_codes_and_signals(sandbox: BwrapSandbox, route: Route) -> None:
    r = run(sandbox, route, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.termination, r.exit_code, r.stdout, r.stderr) == (Termination.EXITED, 3, b"out\n", b"err\n")
    for signo in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGSEGV):
        r = run(sandbox, route, ["sh", "-c", f"kill -{signo.name[3:]} $$"])
        assert (r.termination, r.signal, r.exit_code) == (Termination.SIGNALED, signo, None), (signo, r)


def test_forwarder_forwards_sigterm_to_the_command(sandbox: BwrapSandbox, route: Route) -> None:
    # The command signals its parent (the forwarder), which must pass it on.
    code = "import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(5); print('survived')"
    r = run(sandbox, route, [PY, "-c", code])
    assert (r.termination, r.signal) == (Termination.SIGNALED, signal.SIGTERM), r


def test_forwarder_keeps_stdin_env_and_spawn_failures(sandbox: BwrapSandbox, route: Route) -> None:
    r = run(sandbox, route, ["cat"], stdin=b"hello\x00world")
    assert r.stdout == b"hello\x00world"
    r = run(sandbox, route, ["env"], env={"LANG": "C", "FOO": "bar"})
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert env["LANG"] == "C" and env["FOO"] == "bar" and "LC_CTYPE" not in env
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://127.0.0.1:3128" and env["NO_PROXY"] == ""
    r = run(sandbox, route, ["/no/such/cmd"])
    assert r.termination is Termination.SPAWN_FAILED and "/no/such/cmd" in r.detail


def test_forwarder_keeps_timeout_cancel_and_limits(sandbox: BwrapSandbox, route: Route) -> None:
    r = run(sandbox, route, ["sh", "-c", "echo started; sleep 30"], limits=Limits(timeout_s=1))
    assert (r.termination, r.stdout) == (Termination.TIMEOUT, b"started\n")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    r = run(sandbox, route, ["sleep", "30"], cancel=cancel)
    assert r.termination is Termination.CANCELLED and r.duration_s < 5
    r = run(sandbox, route, ["sh", "-c", "f() { f | f & }; f; sleep 60"], limits=Limits(max_processes=64, timeout_s=30))
    assert r.termination is Termination.PIDS_LIMIT, r


def test_forwarder_streams_output_and_keeps_the_cap(sandbox: BwrapSandbox, route: Route) -> None:
    seen: list[tuple[Stream, bytes, float]] = []
    start = time.monotonic()
    r = run(
        sandbox,
        route,
        ["sh", "-c", "echo first; sleep 0.5; head -c 5000000 /dev/zero"],
        limits=Limits(output_bytes=1000, timeout_s=20),
        on_output=lambda s, c: seen.append((s, c, time.monotonic() - start)),
    )
    assert (r.termination, r.exit_code) == (Termination.EXITED, 0)
    assert seen[0][:2] == (Stream.STDOUT, b"first\n") and seen[0][2] < 0.45
    assert r.stdout_total == 5_000_006 and len(r.stdout) == 1000


# --- overhead ------------------------------------------------------------------------------------


def test_overhead_of_the_forwarder_and_the_proxy(
    sandbox: BwrapSandbox, route: Route, http_upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    def median_run(spec: SandboxSpec) -> float:
        times = []
        for _ in range(15):
            start = time.perf_counter()
            assert sandbox.run(spec).exit_code == 0
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    plain = median_run(SandboxSpec(argv=["true"], workspace=None))
    proxied = median_run(run_spec(route, ["true"]))

    # Per request on loopback, until the whole response is in: straight to the server, and
    # through the route (werkzeug closes its connections, so the proxy connects upstream each time).
    def per_request(conn: http.client.HTTPConnection, target: str) -> float:
        times = []
        for _ in range(40):
            start = time.perf_counter()
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
            times.append(time.perf_counter() - start)
            assert response.status == 200 and body, body
        conn.close()
        return statistics.median(times[5:])

    direct = per_request(http.client.HTTPConnection("127.0.0.1", http_upstream.port), "/get")
    through = per_request(RouteConnection(route), f"http://127.0.0.1:{http_upstream.port}/get")
    with capsys.disabled():
        ms = 1000
        print(
            f"\nforwarder start: +{(proxied - plain) * ms:.1f} ms per run ({plain * ms:.1f} -> {proxied * ms:.1f});"
            f" proxy: +{(through - direct) * ms:.2f} ms per request ({direct * ms:.2f} -> {through * ms:.2f})"
        )
    # Gross regressions only (a busy 2-core machine): python start-up is ~20 ms.
    assert proxied - plain < 0.15
    assert through - direct < 0.05


class RouteConnection(http.client.HTTPConnection):
    """An HTTP client connection to a route's Unix socket (as the forwarder makes them)."""

    def __init__(self, route: Route) -> None:
        super().__init__("localhost")
        self.path = str(route.socket_path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def test_closing_a_route_with_an_idle_connection_logs_no_error(
    open_route: Callable[..., Route], http_upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    route = open_route(("API",))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(route.socket_path))
    host = f"127.0.0.1:{http_upstream.port}"
    client.sendall(f"GET http://{host}/get HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    client.settimeout(10)
    assert client.recv(12) == b"HTTP/1.1 200"  # answered; the connection now idles in keep-alive
    with caplog.at_level("ERROR", logger="asyncio"):
        route.close()
        time.sleep(0.2)  # the loop runs the cancelled connection's callbacks
    client.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert not route.socket_path.exists()
