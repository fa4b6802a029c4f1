"""Which addresses goexd connects to (goexd.egress.addresses) and the transports that enforce it (egress/dial.py).

Resolution is the system's getaddrinfo (numeric forms and `localhost` need no DNS server); the
connections are real, to a real HTTP server on 127.0.0.1. Only the rebinding test replaces the
resolver, with one whose answer changes between look-ups, as a rebinding DNS server's would.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from goexd import config
from goexd.domain.errors import SetupError
from goexd.egress import dial
from goexd.egress.addresses import AddressRefused, AddressRule, special
from goexd.egress.dial import GuardedAsyncTransport, GuardedTransport, resolve_checked, resolve_checked_sync

LOOPBACK_ONLY = AddressRule.from_config(["127.0.0.1/32"])


@pytest.mark.parametrize(
    "address,kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.255.1.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::7f00:1", "loopback"),  # IPv4-compatible (deprecated)
        ("64:ff9b::7f00:1", "loopback"),  # NAT64
        ("2002:7f00:1::", "loopback"),  # 6to4
        ("169.254.169.254", "link-local"),  # the cloud metadata address
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
def test_special_purpose_addresses_are_named(address: str, kind: str) -> None:
    what = special(ipaddress.ip_address(address))
    assert what is not None and kind in what, what


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_not_special(address: str) -> None:
    assert special(ipaddress.ip_address(address)) is None
    assert AddressRule().refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_lets_its_addresses_through_and_no_others() -> None:
    rule = AddressRule.from_config(["127.0.0.1/32", "10.9.0.0/16"])
    allowed = ["127.0.0.1", "::ffff:127.0.0.1", "10.9.200.1"]
    refused = ["127.0.0.2", "::1", "10.8.0.1", "169.254.169.254", "192.168.0.1"]
    assert [rule.refusal(ipaddress.ip_address(a)) for a in allowed] == [None, None, None]
    assert all(rule.refusal(ipaddress.ip_address(a)) is not None for a in refused)


@pytest.mark.parametrize(
    "host", ["localhost", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.0.0.1", "::1", "::ffff:127.0.0.1"]
)
def test_every_spelling_of_loopback_is_refused_after_resolution(host: str) -> None:
    with pytest.raises(AddressRefused, match="loopback") as info:
        resolve_checked_sync(AddressRule(), host, 80)
    assert "egress.allowed_addresses" in str(info.value)


def test_an_explicitly_allowed_loopback_address_resolves_to_itself() -> None:
    assert resolve_checked_sync(LOOPBACK_ONLY, "2130706433", 80) == ["127.0.0.1"]
    assert resolve_checked_sync(LOOPBACK_ONLY, "::ffff:127.0.0.1", 80) == ["127.0.0.1"]  # connected to as IPv4
    with pytest.raises(AddressRefused):
        resolve_checked_sync(LOOPBACK_ONLY, "::1", 80)  # 127.0.0.1/32 is not ::1


def test_a_bad_allowed_address_stops_the_daemon_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "goexd.toml"
    cfg.write_text('[egress]\nallowed_addresses = ["127.0.0.1/8"]\n')  # host bits set: which was meant?
    with pytest.raises(SetupError, match=r"egress\.allowed_addresses"):
        config.load(cfg, environ={})
    cfg.write_text('[egress]\nallowed_addresses = ["127.0.0.0/8", "::1"]\n')
    assert config.load(cfg, environ={}).egress.allowed_addresses == ("127.0.0.0/8", "::1")


# ---------------------------------------------------------------- real connections


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    srv.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join()


def _port(srv: ThreadingHTTPServer) -> int:
    return int(srv.server_address[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "2130706433", "[::ffff:127.0.0.1]"])
def test_the_sync_transport_refuses_loopback_and_sends_nothing(server: ThreadingHTTPServer, host: str) -> None:
    url = f"http://{host}:{_port(server)}/"
    refusing = GuardedTransport(AddressRule(), ssl.create_default_context())
    with httpx.Client(transport=refusing) as client, pytest.raises(AddressRefused, match="loopback"):
        client.get(url)
    assert server.hits == 0  # type: ignore[attr-defined]
    # control: the same request where the daemon's config allows the address
    with httpx.Client(transport=GuardedTransport(LOOPBACK_ONLY, ssl.create_default_context())) as client:
        assert client.get(url).text == "hello"
    assert server.hits == 1  # type: ignore[attr-defined]


def test_the_async_transport_refuses_loopback_and_sends_nothing(server: ThreadingHTTPServer) -> None:
    async def get(rule: AddressRule) -> str:
        transport = GuardedAsyncTransport(rule, ssl.create_default_context())
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.get(f"http://localhost:{_port(server)}/")).text

    with pytest.raises(AddressRefused):
        asyncio.run(get(AddressRule()))
    assert server.hits == 0  # type: ignore[attr-defined]
    assert asyncio.run(get(AddressRule.from_config(["127.0.0.1/32", "::1/128"]))) == "hello"


def test_the_reachability_probe_never_connects_to_a_refused_address(server: ThreadingHTTPServer) -> None:
    with pytest.raises(AddressRefused):
        dial.connect(AddressRule(), "127.0.0.1", _port(server), timeout=5)
    dial.connect(LOOPBACK_ONLY, "127.0.0.1", _port(server), timeout=5).close()  # control


def test_async_resolution_checks_like_the_sync_one() -> None:
    with pytest.raises(AddressRefused):
        asyncio.run(resolve_checked(AddressRule(), "0x7f000001", 443, timeout=5))
    assert asyncio.run(resolve_checked(LOOPBACK_ONLY, "0x7f000001", 443, timeout=5)) == ["127.0.0.1"]


def test_a_name_is_resolved_once_per_connection_and_the_checked_address_is_the_one_connected_to(
    server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the first answer passes the check, a second look-up would give a refused address."""
    port = _port(server)
    answers = ["127.0.0.1", "127.0.0.2"]  # 127.0.0.2 is loopback too, and not allowed by LOOPBACK_ONLY
    asked: list[str] = []

    def rebinding(host: str, p: int) -> list[tuple[object, ...]]:
        asked.append(host)
        address = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, p))]

    monkeypatch.setattr(dial, "lookup", rebinding)
    with httpx.Client(transport=GuardedTransport(LOOPBACK_ONLY, ssl.create_default_context())) as client:
        assert client.get(f"http://rebind.test:{port}/").text == "hello"
        assert asked == ["rebind.test"]  # one look-up for the connection: nothing to rebind between
    again = GuardedTransport(LOOPBACK_ONLY, ssl.create_default_context())
    with httpx.Client(transport=again) as client, pytest.raises(AddressRefused, match=r"127\.0\.0\.2"):
        client.get(f"http://rebind.test:{port}/")  # a new connection checks the new answer
    assert server.hits == 1  # type: ignore[attr-defined]


def test_of_mixed_answers_only_the_permitted_addresses_are_tried(
    server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mixed(host: str, p: int) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("169.254.169.254", p)),
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p)),
        ]

    monkeypatch.setattr(dial, "lookup", mixed)
    assert resolve_checked_sync(LOOPBACK_ONLY, "mixed.test", 80) == ["127.0.0.1"]
    with httpx.Client(transport=GuardedTransport(LOOPBACK_ONLY, ssl.create_default_context())) as client:
        assert client.get(f"http://mixed.test:{_port(server)}/").text == "hello"
