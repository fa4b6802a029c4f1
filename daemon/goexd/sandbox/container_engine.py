"""The container engine goexd talks to: one Docker Engine API endpoint (Docker, or Podman's compatible
service), through the `docker` SDK's low-level client.

Words: the *endpoint* (container_endpoint.py): `unix:///path`, `tcp://host:port` (with TLS when
DOCKER_TLS_VERIFY and DOCKER_CERT_PATH say so, as the docker CLI reads them) or `ssh://user@host` (through
the ssh client); *local* when it is a Unix socket, *remote* otherwise. goexd's containers carry three labels:
`io.goex.owner` (the state dir's key, as the sandbox mark has it: sandbox/reaper.py), `io.goex.instance`
(one start of goexd) and `io.goex.pid` (its process).

Rules: every container goexd creates is labelled; a start removes every container, volume and network
labelled with its owner by an earlier start (`reap`), and a stop removes its own; an engine that cannot be
reached is said with its endpoint and the engine's own words, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.utils
import requests.exceptions

log = logging.getLogger(__name__)

API_VERSION = "1.41"  # what Podman 4's compatible service answers; Docker 20.10 and later speak it
LABEL_OWNER = "io.goex.owner"
LABEL_INSTANCE = "io.goex.instance"
LABEL_PID = "io.goex.pid"  # the goexd process: what made a container, for whoever clears up after a dead one
POOL_CONNECTIONS = 64  # concurrent API calls: leases, refills and removals of many sessions at once
ENGINE_ERRORS: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    OSError,
)


class EngineUnavailable(Exception):
    """The engine did not answer, or refused; the message names the endpoint and what it said."""


def connect(endpoint: str, timeout_s: float = 60.0) -> Any:
    """A low-level client for `endpoint` (no call made yet). TLS for tcp:// as the docker CLI reads it from
    DOCKER_TLS_VERIFY / DOCKER_CERT_PATH; ssh:// through the system's ssh client."""
    kwargs: dict[str, Any] = {}
    if endpoint.startswith("tcp://"):
        env = docker.utils.kwargs_from_env(environment={**os.environ, "DOCKER_HOST": endpoint})
        if env.get("tls"):
            kwargs["tls"] = env["tls"]
    try:
        return docker.APIClient(
            base_url=endpoint,
            version=API_VERSION,
            timeout=int(timeout_s),
            use_ssh_client=endpoint.startswith("ssh://"),
            max_pool_size=POOL_CONNECTIONS,
            **kwargs,
        )
    except ENGINE_ERRORS as e:
        raise EngineUnavailable(f"cannot use the container engine at {endpoint}: {describe(e)}") from e


def describe(e: BaseException) -> str:
    """The engine's own words for an error, without the SDK's wrapping."""
    if isinstance(e, docker.errors.APIError):
        return str(e.explanation or e)
    if isinstance(e, requests.exceptions.ConnectionError):
        return "cannot connect (is the engine running, and may goexd open its socket?)"
    return str(e) or type(e).__name__


def labels(owner: str, instance: str) -> dict[str, str]:
    return {LABEL_OWNER: owner, LABEL_INSTANCE: instance, LABEL_PID: str(os.getpid())}


@dataclass(frozen=True)
class Reaped:
    kind: str  # "container", "volume", "network"
    name: str
    instance: str


def reap(api: Any, owner: str, keep_instance: str = "") -> list[Reaped]:
    """Remove every container, volume and network labelled as `owner`'s but not `keep_instance`'s
    (an earlier start's, or, with no instance kept, all of them)."""
    found: list[Reaped] = []
    wanted = {"label": [f"{LABEL_OWNER}={owner}"]}
    for c in api.containers(all=True, filters=wanted):
        instance = (c.get("Labels") or {}).get(LABEL_INSTANCE, "")
        if keep_instance and instance == keep_instance:
            continue
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(c["Id"], force=True)
            found.append(Reaped("container", c["Id"][:12], instance))
    for v in (api.volumes(filters=wanted) or {}).get("Volumes") or []:
        instance = (v.get("Labels") or {}).get(LABEL_INSTANCE, "")
        if not (keep_instance and instance == keep_instance):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(v["Name"], force=True)
                found.append(Reaped("volume", v["Name"], instance))
    for n in api.networks(filters=wanted):
        instance = (n.get("Labels") or {}).get(LABEL_INSTANCE, "")
        if not (keep_instance and instance == keep_instance):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_network(n["Id"])
                found.append(Reaped("network", n["Name"], instance))
    return found


# --- the attach stream ---------------------------------------------------------------------

_HEADER = struct.Struct(">BxxxI")  # the engine's multiplexing header: stream (1 stdout, 2 stderr), size
STDOUT, STDERR = 1, 2


class StreamClosed(Exception):
    """The attach stream ended (the container's main process exited, or the engine went away)."""


class Attached:
    """A container's attached stdio over the engine's hijacked HTTP connection (Tty off: the engine
    multiplexes stdout and stderr with 8-byte headers). `send` writes the container's stdin; `fill` moves
    what arrived into `out` (stdout payload) and `stderr` (the runner's own complaints)."""

    def __init__(self, sock: Any) -> None:
        self._keep = sock  # holds the HTTP response (and so a TLS socket) alive
        self.sock: socket.socket = getattr(sock, "_sock", sock)
        self._buf = bytearray()  # received, not yet demultiplexed (at most a partial header)
        self._stream = 0
        self._left = 0  # payload bytes of the current engine frame still to come
        self.out = bytearray()  # stdout payload, for the caller to consume
        self.stderr = bytearray()
        self.eof = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise StreamClosed(f"cannot write to the container: {e}") from e

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.eof = True

    def fill(self, timeout: float) -> bool:
        """Wait up to `timeout` s for bytes and take them (one recv); whether any came. StreamClosed at EOF."""
        if self.eof:
            raise StreamClosed("the container's output ended")
        pending = getattr(self.sock, "pending", None)  # TLS: bytes decrypted already, invisible to select
        if not (pending is not None and pending()):
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not ready:
                return False
        try:
            chunk = self.sock.recv(256 * 1024)
        except BlockingIOError:
            return False
        except OSError as e:
            self.eof = True
            raise StreamClosed(f"the container's output ended: {e}") from e
        if not chunk:
            self.eof = True
            raise StreamClosed("the container's output ended")
        self._buf += chunk
        self._demux()
        return True

    def read_exactly(self, n: int, deadline: float) -> bytes:
        """`n` stdout bytes, waiting until `deadline` (monotonic) at most: TimeoutError after it."""
        while len(self.out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.fill(left)
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def _demux(self) -> None:
        while self._buf:
            if self._left == 0:
                if len(self._buf) < _HEADER.size:
                    return
                self._stream, self._left = _HEADER.unpack_from(self._buf)
                del self._buf[: _HEADER.size]
                continue
            take = min(self._left, len(self._buf))
            (self.out if self._stream == STDOUT else self.stderr).extend(self._buf[:take])
            del self._buf[:take]
            self._left -= take


@contextlib.contextmanager
def engine_errors(endpoint: str, doing: str) -> Iterator[None]:
    """Turn the SDK's and the transport's exceptions into EngineUnavailable naming the endpoint."""
    try:
        yield
    except ENGINE_ERRORS as e:
        raise EngineUnavailable(f"container engine at {endpoint}: {doing}: {describe(e)}") from e
