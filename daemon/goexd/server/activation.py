"""systemd socket activation (sd_listen_fds(3)): serve on the listening socket systemd passes in.

systemd (goexd.socket) binds and listens on the CLI's socket path itself and starts goexd on the
first connection with the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID=<goexd's pid>. grpcio cannot
serve on a descriptor it is given: its only listener API is add_insecure_port(address), and the
C-core's own LISTEN_FDS support (grpc/grpc#30485) is compiled only with libsystemd, which the PyPI
wheels are not. So goexd's gRPC server binds a private socket beside the passed one, and a relay
accepts on the passed socket and copies each connection to it, byte for byte, both ways. The
passed socket is never closed or unlinked by goexd: after goexd exits, new connections queue on it
and systemd starts goexd again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import selectors
import socket
import threading
from collections.abc import MutableMapping
from pathlib import Path

from goexd.config import Config
from goexd.domain.errors import SetupError
from goexd.sandbox.egress_forwarder import _pump as pump  # stdlib-only byte pump, half-close aware

log = logging.getLogger(__name__)
SD_LISTEN_FDS_START = 3
_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited_listener(environ: MutableMapping[str, str]) -> socket.socket | None:
    """The listening Unix stream socket systemd passed to this process, or None when none was.

    The LISTEN_* variables are removed from `environ` either way, so no child (a sandbox, git, psql)
    inherits them; the descriptor is made close-on-exec for the same reason."""
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    for name in _ENV:
        environ.pop(name, None)
    if count is None or pid is None:
        return None
    if pid != str(os.getpid()):
        log.warning("LISTEN_FDS=%s ignored: LISTEN_PID=%s names another process (this is %d)", count, pid, os.getpid())
        return None
    if count != "1":
        raise SetupError(
            f"systemd passed LISTEN_FDS={count} sockets; goexd serves on exactly one, a Unix stream socket "
            "(goexd.socket: one ListenStream= with a path)"
        )
    fd = SD_LISTEN_FDS_START
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise SetupError(f"LISTEN_FDS=1, but descriptor {fd} is not a socket: {exc}") from None
    os.set_inheritable(fd, False)
    path = sock.getsockname() if sock.family == socket.AF_UNIX else ""
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        raise SetupError(
            f"the socket systemd passed (fd {fd}) is not a listening Unix stream socket "
            f"(family {sock.family.name}, type {sock.type.name}, listening {bool(listening)})"
        )
    if not isinstance(path, str) or not path.startswith("/"):
        raise SetupError(f"the socket systemd passed (fd {fd}) has no path ({path!r}): use ListenStream=/a/path")
    return sock


def adopt(cfg: Config, listener: socket.socket) -> Config:
    """`cfg` with the passed socket's path as its socket (the path clients use; goexd's own files,
    hidden from every sandbox, include its directory)."""
    path = Path(listener.getsockname())
    if cfg.socket != path:
        log.info("socket activation: serving on %s (systemd's socket) rather than %s", path, cfg.socket)
    return dataclasses.replace(cfg, socket=path)


def private_socket(public: Path) -> Path:
    """Where goexd's gRPC server listens behind the relay: beside systemd's socket, in its 0700 dir."""
    return public.with_name(f".{public.name}.grpc")


class Relay:
    """Accepts on systemd's listening socket and copies each connection to goexd's own socket."""

    def __init__(self, listener: socket.socket, target: Path) -> None:
        self.listener = listener
        self.target = str(target)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._accept_loop, name="goexd-activation", daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting (connections not yet accepted stay queued on systemd's socket); the socket
        itself stays open and bound. Connections already relayed end when the gRPC server stops."""
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in sel.select()}
                if self._wake_r in ready:
                    return
                try:
                    client, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # another accept took it
                except OSError:
                    log.exception("socket activation: accept failed")
                    continue
                threading.Thread(target=self._relay, args=(client,), name="goexd-relay", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError as exc:
            log.warning("socket activation: goexd's own socket %s did not answer: %s", self.target, exc)
            client.close()
            upstream.close()
            return
        back = threading.Thread(target=pump, args=(upstream, client), name="goexd-relay-back", daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()
