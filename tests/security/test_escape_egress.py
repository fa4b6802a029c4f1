"""Class 5: through the egress proxy, an action reaches only what the daemon allows, by address
as well as by name. A "victim" HTTP service listens only on the host's loopback (127.0.0.1 and
::1) and counts every TCP connection it gets; the daemon's allowed_hosts grants names and numeric
forms that all lead there (localhost, an /etc/hosts name, 127.1, 2130706433, [::1], ...), but its
allowed_addresses holds only 127.0.0.2, where an "allowed" service listens (the control: the
proxy path works). No request, however written, smuggled or tunnelled, may open a connection to
the victim.

The requests are written by hand on a raw socket to the proxy (the sandbox's HTTP_PROXY), so no
client library normalises them first."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest

from goex.v1 import types_pb2 as pb
from tests.security.conftest import Shared, result_of, run_action

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both

ALLOWED = "127.0.0.2"  # the one special address this daemon may reach
# Names and numeric forms the daemon grants by name; every one of them means host loopback.
LOOPBACK_NAMES = ["localhost", "vm", "127.1", "2130706433", "0x7f000001", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0"]
SEC_DAEMON_CONFIG = "[egress]\nallowed_hosts = [{}]\n".format(
    ", ".join(f'"{h}"' for h in [*LOOPBACK_NAMES, ALLOWED, "169.254.169.254"])
)
SEC_ALLOWED_ADDRESSES = (f"{ALLOWED}/32",)
GRANTED = [*LOOPBACK_NAMES, ALLOWED, "169.254.169.254"]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.endswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.redirect_port}/")  # type: ignore[attr-defined]
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


class CountingServer(ThreadingHTTPServer):
    """An HTTP server that counts every TCP connection it accepts (a TLS hello counts too)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, body: bytes) -> None:
        self.address_family = family
        super().__init__(address, _Handler)
        self.body = body
        self.connections = 0
        self.redirect_port = 0

    def get_request(self) -> tuple[socket.socket, object]:
        conn = super().get_request()
        self.connections += 1
        return conn


class Services(NamedTuple):
    allowed: CountingServer  # on 127.0.0.2: reachable (the control)
    victim_v4: CountingServer  # on 127.0.0.1: host loopback only
    victim_v6: CountingServer  # on ::1, same port

    @property
    def victim_port(self) -> int:
        return int(self.victim_v4.server_address[1])

    @property
    def allowed_port(self) -> int:
        return int(self.allowed.server_address[1])

    def victim_hits(self) -> int:
        return self.victim_v4.connections + self.victim_v6.connections


@contextlib.contextmanager
def _serving(server: CountingServer) -> Iterator[CountingServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    allowed = CountingServer((ALLOWED, 0), socket.AF_INET, b"ALLOWED-OK")
    victim_v4 = CountingServer(("127.0.0.1", 0), socket.AF_INET, b"VICTIM-REACHED")
    victim_v6 = CountingServer(("::1", victim_v4.server_address[1]), socket.AF_INET6, b"VICTIM-REACHED")
    allowed.redirect_port = int(victim_v4.server_address[1])
    with _serving(allowed), _serving(victim_v4), _serving(victim_v6):
        yield Services(allowed, victim_v4, victim_v6)


RAW = """
import os, socket, sys, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
host, port = proxy.hostname, proxy.port
def send(name, raw, then=b""):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(raw)
    got = b""
    try:
        while b"\\r\\n\\r\\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        if then and got.startswith(b"HTTP/1.1 200"):
            s.sendall(then)
        s.settimeout(2)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    s.close()
    first = got.split(b"\\r\\n", 1)[0].decode(errors="replace")
    print("RESP", name, first, "|", "VICTIM-REACHED" if b"VICTIM-REACHED" in got else "-", flush=True)
"""


def request_line(method: str, url: str, host: str, extra: str = "", body: str = "") -> bytes:
    return f"{method} {url} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n{body}".encode()


def probe(s: Shared, services: Services, requests: dict[str, bytes], tunnel: bytes = b"") -> str:
    """Send each raw request through the proxy from an action; returns its output."""
    calls = "".join(f"send({name!r}, {raw!r}, {tunnel!r})\n" for name, raw in requests.items())
    control = request_line("GET", f"http://{ALLOWED}:{services.allowed_port}/", f"{ALLOWED}:{services.allowed_port}")
    calls = f"send('control', {control!r})\n" + calls
    action = run_action(s.d, s.session, RAW + calls, python=True, network=GRANTED, timeout_s=60)
    return result_of(action).out


def assert_victim_untouched(out: str, services: Services, before: int) -> None:
    assert "RESP control HTTP/1.1 200" in out, f"control: the allowed service is unreachable:\n{out}"
    assert "VICTIM-REACHED" not in out, out
    assert services.victim_hits() == before, f"the host-loopback service got a connection:\n{out}"


# "localhost." is not granted as such (not a valid host entry), but a resolver takes it for localhost.
# The proxy's resolution of a granted name: the same whichever sandbox the request comes from.
@pytest.mark.backends("bwrap")
@pytest.mark.parametrize("name", [*LOOPBACK_NAMES, "localhost."])
def test_a_granted_name_that_means_loopback_is_refused(sec_shared: Shared, services: Services, name: str) -> None:
    before = services.victim_hits()
    authority = f"{name}:{services.victim_port}"
    out = probe(sec_shared, services, {"get": request_line("GET", f"http://{authority}/", authority)})
    assert_victim_untouched(out, services, before)


def test_connect_to_loopback_is_refused(sec_shared: Shared, services: Services) -> None:
    before = services.victim_hits()
    port = services.victim_port
    tunnel = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    requests = {
        f"connect-{i}": f"CONNECT {h}:{port} HTTP/1.1\r\nHost: {h}:{port}\r\n\r\n".encode()
        for i, h in enumerate(["127.0.0.1", "localhost", "[::1]", "127.1", "vm"])
    }
    out = probe(sec_shared, services, requests, tunnel)
    assert_victim_untouched(out, services, before)


def test_the_metadata_address_is_refused(sec_shared: Shared, services: Services) -> None:
    out = probe(
        sec_shared, services, {"meta": request_line("GET", "http://169.254.169.254/latest/", "169.254.169.254")}
    )
    assert "RESP control HTTP/1.1 200" in out, out
    line = next(x for x in out.splitlines() if x.startswith("RESP meta"))
    assert " 200 " not in line and "HTTP/1.1 2" not in line, out


def test_absolute_form_urls_go_where_they_say_and_only_if_allowed(sec_shared: Shared, services: Services) -> None:
    before = services.victim_hits()
    v, a = f"127.0.0.1:{services.victim_port}", f"{ALLOWED}:{services.allowed_port}"
    requests = {
        "victim-url-allowed-host-header": request_line("GET", f"http://{v}/", a),
        "allowed-url-victim-host-header": request_line("GET", f"http://{a}/", v),
        "userinfo-at": request_line("GET", f"http://{a}@{v}/", a),
        "origin-form": request_line("GET", "/", v),
        "backslash": request_line("GET", f"http://{a}\\@{v}/", a),
        "absolute-https-to-victim": request_line("GET", f"https://{v}/", v),
    }
    out = probe(sec_shared, services, requests)
    assert_victim_untouched(out, services, before)


@pytest.mark.backends("bwrap")  # the proxy's reading of requests: the same whichever sandbox sends them
def test_request_smuggling_reaches_nothing_else(sec_shared: Shared, services: Services) -> None:
    """A second request hidden in the first one's body (CL.TE, TE.CL, two lengths, obfuscated
    Transfer-Encoding) or pipelined behind it must be judged like any request, if read at all."""
    before = services.victim_hits()
    v, a = f"127.0.0.1:{services.victim_port}", f"{ALLOWED}:{services.allowed_port}"
    smuggled = f"GET http://{v}/ HTTP/1.1\r\nHost: {v}\r\n\r\n"
    chunked_smuggle = f"0\r\n\r\n{smuggled}"
    post = f"POST http://{a}/ HTTP/1.1\r\nHost: {a}\r\n"
    requests = {
        "cl-te": f"{post}Content-Length: {len(chunked_smuggle)}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_smuggle}",
        "te-cl": f"{post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        + f"{len(smuggled):x}\r\n{smuggled}\r\n0\r\n\r\n",
        "two-lengths": f"{post}Content-Length: 0\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}",
        "te-obfuscated": f"{post}Transfer-Encoding: xchunked\r\nContent-Length: {len(chunked_smuggle)}\r\n\r\n"
        + chunked_smuggle,
        "te-space": f"{post}Transfer-Encoding : chunked\r\nContent-Length: {len(chunked_smuggle)}\r\n\r\n"
        + chunked_smuggle,
        "pipelined": f"GET http://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n{smuggled}",
        "lf-only": f"GET http://{a}/ HTTP/1.1\nHost: {a}\n\n{smuggled}",
    }
    out = probe(sec_shared, services, {k: r.encode() for k, r in requests.items()})
    assert_victim_untouched(out, services, before)


@pytest.mark.backends("bwrap")  # the proxy's handling of an answer: the same whichever sandbox the request comes from
def test_the_proxy_does_not_follow_a_redirect_to_loopback(sec_shared: Shared, services: Services) -> None:
    before = services.victim_hits()
    a = f"{ALLOWED}:{services.allowed_port}"
    out = probe(sec_shared, services, {"redirect": request_line("GET", f"http://{a}/redirect", a)})
    assert_victim_untouched(out, services, before)
    assert "RESP redirect HTTP/1.1 302" in out, out


@pytest.mark.backends("bwrap")  # the proxy's records: the same whichever sandbox the request comes from
def test_refusals_are_recorded(sec_shared: Shared, services: Services) -> None:
    authority = f"localhost:{services.victim_port}"
    code = RAW + f"send('get', {request_line('GET', f'http://{authority}/', authority)!r})\n"
    action = run_action(sec_shared.d, sec_shared.session, code, python=True, network=GRANTED, timeout_s=60)
    records = list(action.egress)
    assert records, result_of(action)
    assert all(r.decision == pb.EGRESS_DECISION_REFUSED or r.status == 0 for r in records), records
