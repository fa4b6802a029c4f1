"""The egress forwarder: runs inside a `Network.PROXY` sandbox, in front of the command.

The sandbox has its own network namespace with only a loopback interface, and the
daemon's egress proxy bound in as a Unix socket at `SOCKET_PATH`. HTTP clients know
TCP proxies, not Unix sockets, so this program listens on `LISTEN_HOST:LISTEN_PORT`
(the address the sandbox's HTTP(S)_PROXY names) and copies each TCP connection to the
socket, byte for byte. It starts the command as its child once it listens, forwards
SIGTERM/SIGINT to it, and ends the way the child ended: the same exit code, or death by
the same signal, so the sandbox reports the command's termination, not its own.

bwrap runs it as `python3 -I -S -c <this file's text> <argv...>` (`SOURCE` below), with
the system python3: stdlib only, no goexd imports. It is an ordinary module as well,
so it is linted and type-checked with the rest of the daemon.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading

SOCKET_PATH = "/run/goex/egress.sock"
CA_PATH = "/run/goex/ca.pem"
LISTEN_HOST = "127.0.0.1"
LISTEN_PORT = 3128
PROXY_URL = f"http://{LISTEN_HOST}:{LISTEN_PORT}"
# What it prints when the command cannot be started; the sandbox reports that as a spawn failure.
EXEC_FAILED = "goex-forwarder: cannot execute "
EXEC_FAILED_STATUS = 127  # as a shell reports a command it could not run
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Python ignores these at start-up; the command must get them with their default action.
_DEFAULT_FOR_CHILD = (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED_SIGNALS)
_CHUNK = 64 * 1024


def _original_environ() -> dict[bytes, bytes]:
    """The environment this process was started with.

    Not os.environ: with LANG=C, Python's start-up coerces the locale and *adds*
    LC_CTYPE to it, which the command would then inherit.
    """
    with open("/proc/self/environ", "rb") as f:
        raw = f.read()
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, _, value in pairs}


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until EOF, then pass the EOF on (HTTP clients may half-close)."""
    try:
        while data := src.recv(_CHUNK):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        # One side reset: end both directions.
        for s in (src, dst):
            try:  # noqa: SIM105 - contextlib costs ~8 ms of start-up in the sandbox; every proxied run pays it
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(client: socket.socket) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(SOCKET_PATH)
    except OSError as e:
        # The proxy route is gone (the action is ending): the client sees the connection close.
        print(f"goex-forwarder: egress proxy unreachable: {e}", file=sys.stderr, flush=True)
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _listen() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LISTEN_HOST, LISTEN_PORT))
    listener.listen(128)
    return listener


def _spawn(argv: list[str]) -> int:
    try:
        return os.posix_spawnp(argv[0], argv, _original_environ(), setsigdef=_DEFAULT_FOR_CHILD, setsigmask=())
    except OSError as e:
        print(f"{EXEC_FAILED}{argv[0]}: {e.strerror}", file=sys.stderr, flush=True)
        os._exit(EXEC_FAILED_STATUS)


def _serve_until_exit(listener: socket.socket, child: int, wakeup: int) -> int:
    """Accept and relay connections until the child exits; its wait status."""
    pidfd = os.pidfd_open(child)
    with select.epoll() as ep:
        ep.register(listener.fileno(), select.EPOLLIN)
        ep.register(pidfd, select.EPOLLIN)
        ep.register(wakeup, select.EPOLLIN)
        while True:
            for fd, _ in ep.poll():
                if fd == pidfd:
                    return os.waitpid(child, 0)[1]
                if fd == wakeup:
                    os.read(wakeup, 512)  # a signal came in: its handler runs when poll returns
                    continue
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue  # the client gave up before we got to it
                threading.Thread(target=_relay, args=(client,), daemon=True).start()


def _end_like(status: int) -> None:
    """Exit with the child's exit code, or die of the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    signo = -code
    import resource  # noqa: PLC0415 - only needed on this path

    # The child may have dumped core already; a second dump, of the forwarder, helps no one.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    try:  # noqa: SIM105 - see _pump
        signal.signal(signo, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP cannot be (and need not be) reset
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
    os.kill(os.getpid(), signo)
    os._exit(128 + signo)  # only reached for a signal whose default action is not to terminate


def main(argv: list[str]) -> None:
    if not argv:
        print("goex-forwarder: no command given", file=sys.stderr, flush=True)
        os._exit(2)
    listener = _listen()  # before the child starts: it may connect at once
    children: list[int] = []

    def forward(signo: int, _frame: object) -> None:
        for pid in children:
            os.kill(pid, signo)

    # A signal may land on a relay thread, which does not wake the main thread's poll:
    # the wake-up pipe does. Held back until the child's pid is known, so none is lost.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    for signo in FORWARDED_SIGNALS:
        signal.signal(signo, forward)
    children.append(_spawn(argv))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    status = _serve_until_exit(listener, children[0], wake_r)
    sys.stdout.flush()
    sys.stderr.flush()
    _end_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
else:
    # What bwrap runs with `python3 -c` (where there is no __file__).
    with open(__file__, encoding="utf-8") as _f:
        SOURCE = _f.read()
