"""httpx transports that connect only to addresses the `AddressRule` allows, and only to the ones it checked.

httpcore hands its network backend the host name of the URL; the backends here resolve it once,
drop the addresses the rule refuses, and connect to a checked address (an IP literal, which no
resolver looks up again). TLS still runs against the name: httpcore passes it as the server name
for SNI and certificate checks. Connection pooling stays keyed by the name, as in httpx.

httpx builds its connection pool in its transports' constructors without a way to pass a network
backend; the transports below build that pool again, with the same settings and the guarded backend.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import httpcore
import httpx

from goexd.egress.addresses import AddressRefused, AddressRule, lookup, permitted

__all__ = [
    "AddressRefused",
    "GuardedAsyncTransport",
    "GuardedTransport",
    "connect",
    "resolve_checked",
    "resolve_checked_sync",
]

SocketOptions = Iterable[httpcore.SOCKET_OPTION] | None

# httpx's default limits, and no retries (a request may have had side effects).
_POOL: dict[str, Any] = {"max_connections": 100, "max_keepalive_connections": 20, "keepalive_expiry": 5.0, "retries": 0}
_CONNECT_ERRORS = (httpcore.ConnectError, httpcore.ConnectTimeout)
T = TypeVar("T")


def resolve_checked_sync(rule: AddressRule, host: str, port: int) -> list[str]:
    """The addresses of `host` goexd may connect to; AddressRefused, or OSError if it does not resolve."""
    return permitted(rule, host, port, lookup(host, port))


async def resolve_checked(rule: AddressRule, host: str, port: int, timeout: float | None = None) -> list[str]:
    """As `resolve_checked_sync`, off the event loop (getaddrinfo blocks)."""
    async with asyncio.timeout(timeout):
        infos = await asyncio.to_thread(lookup, host, port)
    return permitted(rule, host, port, infos)


def _first_that_connects(addresses: list[str], attempt: Callable[[str], T], errors: tuple[type[Exception], ...]) -> T:
    """`attempt` on each address in turn until one succeeds; the last error when none does."""
    error: Exception | None = None
    for address in addresses:
        try:
            return attempt(address)
        except errors as exc:
            error = exc
    assert error is not None  # resolve_checked* return at least one address
    raise error


def connect(rule: AddressRule, host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first checked address of `host` that answers (a socket.create_connection
    that refuses what the rule refuses)."""
    addresses = resolve_checked_sync(rule, host, port)
    return _first_that_connects(addresses, lambda a: socket.create_connection((a, port), timeout), (OSError,))


class _Backend(httpcore.SyncBackend):
    def __init__(self, rule: AddressRule) -> None:
        self.rule = rule

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: SocketOptions = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_checked_sync(self.rule, host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        return _first_that_connects(
            addresses,
            lambda a: super(_Backend, self).connect_tcp(a, port, timeout, local_address, socket_options),
            _CONNECT_ERRORS,
        )


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, rule: AddressRule) -> None:
        self.rule = rule
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: SocketOptions = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve_checked(self.rule, host, port, timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        error: Exception | None = None
        for address in addresses:  # as _first_that_connects, awaiting each attempt
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except _CONNECT_ERRORS as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: SocketOptions = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("goexd connects out over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx.HTTPTransport (no retries, no environment proxies) whose connections pass the rule."""

    def __init__(self, rule: AddressRule, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify, trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(ssl_context=verify, network_backend=_Backend(rule), **_POOL)


class GuardedAsyncTransport(httpx.AsyncHTTPTransport):
    """httpx.AsyncHTTPTransport (no retries, no environment proxies) whose connections pass the rule."""

    def __init__(self, rule: AddressRule, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify, trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=verify, network_backend=_AsyncBackend(rule), **_POOL)
