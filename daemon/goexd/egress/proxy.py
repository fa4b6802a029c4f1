"""`EgressProxy`: an asyncio loop on its own thread, serving one Unix-socket `Route` per action.

The daemon is threaded (gRPC pool, sandbox event loops on the calling threads); the proxy
keeps all of its I/O on one event loop in a daemon thread, and the public methods
(`start`, `stop`, `open_route`, `Route.close`) hand work to it and wait. They must not be
called from the loop's own thread.

Each route is a socket file (0600) in `run_dir`, which is created 0700; the sandbox gets
it bound in at /run/goex/egress.sock, so a sandboxed action can reach its own route and
no other. A closed route refuses new connections, ends the open ones, and its socket
file is gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from goexd.config import EgressConfig
from goexd.domain.egress import EgressGrant, EgressRecordData
from goexd.domain.sandbox import ProxyEndpoint
from goexd.domain.vault import SecretSource
from goexd.egress import connection
from goexd.egress.addresses import AddressRule
from goexd.egress.exchange import RouteContext
from goexd.egress.tls import CertificateAuthority
from goexd.egress.upstream import make_client

log = logging.getLogger("goexd.egress")

T = TypeVar("T")
CA_FILE = "egress-ca.pem"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, NUL included
_SOCKET_NAME_LEN = len("egress-0123456789abcdef.sock")
CALL_TIMEOUT_S = 30.0  # for the loop to carry out a start/open/close; it only does socket work


class EgressProxy:
    def __init__(self, vault: SecretSource, cfg: EgressConfig, run_dir: Path) -> None:
        self.vault = vault
        self.cfg = cfg
        self.addresses = AddressRule.from_config(cfg.allowed_addresses)
        self.run_dir = run_dir
        if len(os.fsencode(run_dir)) + 1 + _SOCKET_NAME_LEN > _SUN_PATH_MAX:
            raise ValueError(f"egress run dir {run_dir} is too long for Unix socket paths (108 bytes)")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._ca: CertificateAuthority | None = None
        self._routes: set[Route] = set()
        self._lock = threading.Lock()

    @property
    def ca_path(self) -> Path:
        """The proxy CA's public certificate (PEM), for the sandbox to trust."""
        return self.run_dir / CA_FILE

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the egress proxy is already started")
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ca = CertificateAuthority()
        tmp = self.run_dir / f".{CA_FILE}.{secrets.token_hex(4)}"
        tmp.write_bytes(self._ca.cert_pem)
        tmp.chmod(0o644)  # public: read by the sandbox, which keeps the daemon's uid but not its capabilities
        tmp.replace(self.ca_path)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="goexd-egress", daemon=True)
        self._thread.start()
        self._client = self._call(self._make_client())
        log.info("egress proxy started (run dir %s)", self.run_dir)

    async def _make_client(self) -> httpx.AsyncClient:
        return make_client(self.cfg, self.addresses)

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_quiet_cancellations)
        loop.run_forever()

    def stop(self) -> None:
        """Close every route and the upstream client; stop the loop. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with self._lock:
            routes = list(self._routes)
        for route in routes:
            route.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._call(self._client.aclose())
        with contextlib.suppress(Exception):  # vault look-ups still running (an OAuth2 refresh) are waited for
            self._call(loop.shutdown_default_executor())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        loop.close()
        self._loop = self._thread = self._client = None
        self.ca_path.unlink(missing_ok=True)
        log.info("egress proxy stopped")

    def __enter__(self) -> EgressProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open_route(self, grant: EgressGrant) -> Route:
        """A new socket for one action's sandbox; close it when the action has run."""
        if self._client is None or self._ca is None:
            raise RuntimeError("the egress proxy is not started")
        path = self.run_dir / f"egress-{secrets.token_hex(8)}.sock"
        route = Route(self, grant, path)
        ctx = RouteContext(grant, self.vault, self.cfg, self.addresses, self._client, self._ca, route._add_record)
        self._call(route._listen(ctx))
        with self._lock:
            self._routes.add(route)
        log.info(
            "egress route for %s: secrets [%s], hosts [%s]",
            grant.action_id,
            ", ".join(grant.secrets),
            ", ".join(grant.hosts),
        )
        return route

    def _forget(self, route: Route) -> None:
        with self._lock:
            self._routes.discard(route)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the proxy loop and wait for it (from any other thread)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the egress proxy is not running")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(CALL_TIMEOUT_S)


class Route:
    """One action's way out: a Unix socket, the exchanges made through it, and their records."""

    def __init__(self, proxy: EgressProxy, grant: EgressGrant, socket_path: Path) -> None:
        self._proxy = proxy
        self.grant = grant
        self.socket_path = socket_path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._records: list[EgressRecordData] = []
        self._records_lock = threading.Lock()
        self._closed = False

    @property
    def endpoint(self) -> ProxyEndpoint:
        """What `SandboxSpec.proxy` takes."""
        return ProxyEndpoint(socket_path=self.socket_path, ca_path=self._proxy.ca_path)

    def records(self) -> list[EgressRecordData]:
        """The exchanges so far, oldest first (a copy)."""
        with self._records_lock:
            return list(self._records)

    def close(self) -> None:
        """Stop accepting, end open connections, remove the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the proxy was stopped already
            self._proxy._call(self._shutdown())
        self.socket_path.unlink(missing_ok=True)
        self._proxy._forget(self)

    def _add_record(self, record: EgressRecordData) -> None:
        with self._records_lock:
            self._records.append(record)

    async def _listen(self, ctx: RouteContext) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Owner-only before bind: the socket file is created with the socket's mode.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)
        except BaseException:
            sock.close()
            raise

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            if self._closed:
                writer.close()
                return
            self._clients.add(task)
            try:
                await connection.serve(ctx, reader, writer)
            finally:
                self._clients.discard(task)

        self._server = await asyncio.start_unix_server(on_client, sock=sock)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5.0)


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Python 3.11's streams report a connection cancelled by Route.close() as an error with a
    traceback (fixed in 3.12); that is the expected end of a route, not a fault."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)
