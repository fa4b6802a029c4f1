"""Class 5 of issue 13, addresses: goexd's HTTP reaches a special-purpose address only where its own config says.

The egress proxy used to connect to whatever an allowed *name* resolved to, so a name resolving to
127.0.0.1 reached a service listening only on the host's loopback. Now every connection goexd makes
over HTTP resolves the name itself, refuses loopback, private, link-local (the cloud metadata
address), CGNAT, unspecified and multicast addresses and the IPv6 forms that carry them, unless the
daemon's `egress.allowed_addresses` holds the address, and connects to the address it checked.

Two daemons per mode: "closed" allows no special address, "open" allows 127.0.0.1/32 only. Both
list every spelling below among the hosts code may reach, so what refuses is the address rule, not
the host allow list. Each spelling is tried through the proxy's plain-HTTP path (absolute-form
request) and its CONNECT path (https), by Python's urllib in the sandbox, which sends the host as
written (curl would rewrite numeric forms itself); the same request through "open" is the control.
Declarative http resources on loopback are refused at CreateSession the same way.

Every test runs against a real goexd as root and as an unprivileged user (tests/security/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.security.conftest import MODES, make_workspace, start_daemon
from tests.security.upstreams import Service, serving

# Names and numerals of the host's loopback: what each stands for once resolved.
LOOPBACK_SPELLINGS = {
    "127.0.0.1": "127.0.0.1",
    "localhost": "127.0.0.1",  # /etc/hosts (and ::1, which "open" does not allow: it takes 127.0.0.1)
    "127.1": "127.0.0.1",
    "2130706433": "127.0.0.1",
    "0x7f000001": "127.0.0.1",
    "127.0.0.2": "127.0.0.2",  # loopback, but not the address "open" allows
    "[::1]": "::1",
    "[::ffff:127.0.0.1]": "127.0.0.1",
    "[::ffff:7f00:1]": "127.0.0.1",
}
# Other special-purpose addresses, each with what the refusal calls it; refused before any connection.
SPECIAL = {
    "169.254.169.254": "link-local",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "192.168.0.1": "private",
    "100.64.0.1": "CGNAT",
    "0.0.0.0": "unspecified",
    "[::]": "unspecified",
    "[fe80::1]": "link-local",
    "[fc00::1]": "unique local",
    "224.0.0.1": "multicast",
    "[::ffff:169.254.169.254]": "link-local",
}


@dataclass(frozen=True)
class Env:
    closed: DaemonProcess  # no special address allowed
    open: DaemonProcess  # 127.0.0.1/32 allowed
    service: Service


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with serving() as s:
        yield s


def _hosts(port: int) -> list[str]:
    loopback = [f"{h}:{port}" for h in (*LOOPBACK_SPELLINGS, "0177.0.0.1")]
    return loopback + [f"{h}:80" for h in SPECIAL] + [f"{h}:443" for h in SPECIAL]


@pytest.fixture(scope="module", params=MODES)
def env(request: pytest.FixtureRequest, service: Service) -> Iterator[Env]:
    config = f"[egress]\nallowed_hosts = {json.dumps(_hosts(service.port))}\n"
    with (
        start_daemon(request.param, config) as closed,
        start_daemon(request.param, config, allowed_addresses=("127.0.0.1/32",)) as opened,
    ):
        yield Env(closed, opened, service)


@contextlib.contextmanager
def session(d: DaemonProcess) -> Iterator[str]:
    with make_workspace(d.uid, d.gid) as ws:
        req = spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))])
        s = d.sessions.CreateSession(req, timeout=60).session.id
        try:
            yield s
        finally:
            d.sessions.CloseSession(spb.CloseSessionRequest(session_id=s, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60)


# Each URL through the proxy (HTTP_PROXY/HTTPS_PROXY are set in the sandbox): the status of a plain request, or
# for https the status of the CONNECT, sent by hand with the authority as written (Python 3.11's urllib drops the
# brackets of an IPv6 literal in a CONNECT line).
PROBE = r"""
import json, os, socket, sys, urllib.error, urllib.parse, urllib.request
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
out = {}
for url in json.loads(sys.stdin.read()):
    if url.startswith("https://"):
        authority = urllib.parse.urlsplit(url).netloc
        with socket.create_connection((proxy.hostname, proxy.port), timeout=20) as s:
            s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            out[url] = s.recv(4096).split(b" ", 2)[1].decode()
        continue
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            out[url] = str(r.status)
    except urllib.error.HTTPError as e:
        out[url] = str(e.code)
    except Exception as e:
        out[url] = "error: " + str(e)
print(json.dumps(out))
"""


def probe(
    d: DaemonProcess, urls: list[str], hosts: list[str], secrets: tuple[str, ...] = ()
) -> tuple[dict[str, str], pb.Action]:
    """Run PROBE in a sandbox of `d` whose egress grants `hosts`; each URL's outcome and the action."""
    spec = pb.ActionSpec(python=pb.PythonAction(code=PROBE, stdin=json.dumps(urls).encode()))
    spec.limits.timeout.FromSeconds(120)
    spec.egress.hosts.extend(hosts)
    spec.egress.secrets.extend(secrets)
    with session(d) as s:
        action = d.actions.SubmitAction(apb.SubmitActionRequest(session_id=s, spec=spec), timeout=180).action
    assert action.state in (pb.ACTION_STATE_EXECUTED, pb.ACTION_STATE_COMMITTED), action.error
    return json.loads(action.exec.stdout.decode()), action


def _reason(action: pb.Action, host: str) -> str:
    bare = host.strip("[]")
    return " | ".join(r.reason for r in action.egress if r.host.strip("[]") == bare)


# ---------------------------------------------------------------- code through the egress proxy


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_loopback_by_any_name_is_refused_and_reached_only_where_the_daemon_allows_it(env: Env, scheme: str) -> None:
    port = env.service.port
    urls = {h: f"{scheme}://{h}:{port}/anything/x" for h in LOOPBACK_SPELLINGS}
    hosts = _hosts(port)
    before = len(env.service.requests)
    closed, action = probe(env.closed, list(urls.values()), hosts)
    assert {h: closed[u] for h, u in urls.items()} == dict.fromkeys(LOOPBACK_SPELLINGS, "403"), closed
    for h in LOOPBACK_SPELLINGS:
        assert "loopback" in _reason(action, h) and "egress.allowed_addresses" in _reason(action, h), h
    assert len(env.service.requests) == before  # nothing reached the service

    # control: "open" allows 127.0.0.1, and every spelling of it gets through; 127.0.0.2 and ::1 do not
    opened, _ = probe(env.open, list(urls.values()), hosts)
    through = "200"  # the answer, or the CONNECT's
    expected = {h: through if a == "127.0.0.1" else "403" for h, a in LOOPBACK_SPELLINGS.items()}
    assert {h: opened[u] for h, u in urls.items()} == expected, opened
    if scheme == "http":
        assert len(env.service.requests) == before + sum(a == "127.0.0.1" for a in LOOPBACK_SPELLINGS.values())


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_private_link_local_and_other_special_addresses_are_refused_before_any_connection(
    env: Env, scheme: str
) -> None:
    port = 80 if scheme == "http" else 443
    urls = {h: f"{scheme}://{h}:{port}/latest/meta-data/" for h in SPECIAL}
    got, action = probe(env.open, list(urls.values()), _hosts(env.service.port))  # loopback allowed: not these
    assert {h: got[u] for h, u in urls.items()} == dict.fromkeys(SPECIAL, "403"), got
    for h, kind in SPECIAL.items():
        assert kind in _reason(action, h), (h, _reason(action, h))
    assert all(r.duration.ToTimedelta().total_seconds() < 5 for r in action.egress)  # refused, not timed out


def test_a_secret_allowed_for_loopback_does_not_open_loopback(env: Env) -> None:
    """A client chooses a secret's hosts (PutSecret): they make a host reachable, never a refused address."""
    url = f"http://127.0.0.1:{env.service.port}/anything/s"
    for d in (env.closed, env.open):
        info = secpb.SecretInfo(
            name="lo", kind=secpb.SECRET_KIND_BEARER, allowed_hosts=[f"http://127.0.0.1:{env.service.port}"]
        )
        d.secrets.PutSecret(secpb.PutSecretRequest(info=info, value=b"lo-value-123456", overwrite=True), timeout=30)
    before = len(env.service.requests)
    got, action = probe(env.closed, [url], [], secrets=("lo",))
    assert got[url] == "403" and "loopback" in _reason(action, "127.0.0.1")
    assert len(env.service.requests) == before
    got, _ = probe(env.open, [url], [], secrets=("lo",))  # control
    assert got[url] == "200" and len(env.service.requests) == before + 1


# ---------------------------------------------------------------- declarative http resources


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "2130706433", "[::ffff:127.0.0.1]"])
def test_an_http_resource_on_loopback_is_refused_at_create_session(env: Env, host: str) -> None:
    url = f"http://{host}:{env.service.port}"
    spec = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=url))
    listed = env.closed.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True), timeout=30).sessions
    got, msg = status_of(
        lambda: env.closed.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60)
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED, (got, msg)
    assert "resources[0].http.base_url" in msg and "loopback" in msg and "egress.allowed_addresses" in msg, msg
    after = env.closed.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True), timeout=30).sessions
    assert len(after) == len(listed)

    # control: where the daemon allows 127.0.0.1, the same base URL opens and a call goes through
    s = env.open.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60).session
    try:
        call = pb.ActionSpec(http=pb.HttpAction(method="GET", path="/anything/r"), resource="api")
        action = env.open.actions.SubmitAction(apb.SubmitActionRequest(session_id=s.id, spec=call), timeout=60).action
        assert action.http.status == 200
    finally:
        env.open.sessions.CloseSession(
            spb.CloseSessionRequest(session_id=s.id, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60
        )


def test_an_octal_loopback_is_refused_as_a_url_goexd_cannot_send_to(env: Env) -> None:
    """0177.0.0.1 is 127.0.0.1 to the resolver, but no valid IPv4 text to httpx: nothing is ever sent to it."""
    port = env.service.port
    spec = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=f"http://0177.0.0.1:{port}"))
    for d in (env.closed, env.open):
        got, msg = status_of(
            lambda d=d: d.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60)
        )
        assert got == grpc.StatusCode.INVALID_ARGUMENT and "resources[0].http.base_url" in msg, (got, msg)
    url = f"http://0177.0.0.1:{port}/anything/o"
    before = len(env.service.requests)
    got, action = probe(env.open, [url], [f"0177.0.0.1:{port}"])
    assert got[url] == "502" and "Invalid IPv4 address" in action.egress[0].reason
    assert len(env.service.requests) == before


def test_the_metadata_address_as_an_http_resource_is_refused_without_a_connection(env: Env) -> None:
    spec = pb.ResourceSpec(name="meta", http=pb.HttpResourceSpec(base_url="http://169.254.169.254/latest"))
    got, msg = status_of(
        lambda: env.open.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60)
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED and "link-local" in msg, (got, msg)
