"""The egress forwarder: runs inside a `Network.PROXY` sandbox, in front of the command.

The sandbox has its own network namespace with only a loopback interface. The daemon's
egress proxy listens on a Unix socket this program reaches through an inherited O_PATH
descriptor (connect to /proc/self/fd/N: no path of the host is mounted in). HTTP clients
know TCP proxies, not Unix sockets, so this program listens on `LISTEN_HOST:LISTEN_PORT`
(the address the sandbox's HTTP(S)_PROXY names) and copies each TCP connection to the
socket, byte for byte. It starts the command as its child once it listens, forwards
SIGTERM/SIGINT to it, and ends the way the child ended: the same exit code, or death by
the same signal, so the sandbox reports the command's termination, not its own.

The command runs under one more seccomp program than this forwarder: the one refusing
socket(AF_UNIX) (sandbox/seccomp.py), loaded in the child before exec, since the
forwarder itself needs a Unix socket per connection. The forwarder makes itself
non-dumpable, so the command (same uid) cannot read or write its memory or descriptors
through /proc; ptrace is refused to the whole sandbox.

bwrap runs it as `python3 -I -S -c <this file's text> SOCKET_FD FILTER_FD -- <argv...>`
(`SOURCE` below), with the system python3: stdlib only, no goexd imports. It is an
ordinary module as well, so it is linted and type-checked with the rest of the daemon.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import threading

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
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


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


def _relay(client: socket.socket, proxy: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(proxy)
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


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def _spawn(argv: list[str], env: dict[bytes, bytes], program: bytes, libc: ctypes.CDLL) -> int:
    """Fork; the child takes the command's seccomp program and becomes the command."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    pid = os.fork()  # still single-threaded: the relay threads start later
    if pid:
        return pid
    try:
        for signo in _DEFAULT_FOR_CHILD:
            signal.signal(signo, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot load the command's seccomp filter")
        os.execvpe(argv[0], argv, env)  # noqa: S606 - the command, exactly as given
    except OSError as e:
        print(f"{EXEC_FAILED}{argv[0]}: {e.strerror}", file=sys.stderr, flush=True)
    os._exit(EXEC_FAILED_STATUS)


def _serve_until_exit(listener: socket.socket, proxy: str, child: int, wakeup: int) -> int:
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
                threading.Thread(target=_relay, args=(client, proxy), daemon=True).start()


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
    if len(argv) < 4 or argv[2] != "--":
        print("goex-forwarder: usage: SOCKET_FD FILTER_FD -- COMMAND...", file=sys.stderr, flush=True)
        os._exit(2)
    socket_fd, program, command = int(argv[0]), _read_all(int(argv[1])), argv[3:]
    os.set_inheritable(socket_fd, False)  # the command must not get it
    proxy = f"/proc/self/fd/{socket_fd}"  # the socket itself, whatever its path on the host
    env = _original_environ()  # first: once not dumpable, /proc/self is no longer ours to read
    libc = ctypes.CDLL(None, use_errno=True)
    # Not dumpable: the command, with the same uid, cannot open our /proc/PID/mem or fds.
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        print("goex-forwarder: cannot make itself non-dumpable", file=sys.stderr, flush=True)
        os._exit(EXEC_FAILED_STATUS)
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
    children.append(_spawn(command, env, program, libc))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    status = _serve_until_exit(listener, proxy, children[0], wake_r)
    sys.stdout.flush()
    sys.stderr.flush()
    _end_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
else:
    # What bwrap runs with `python3 -c` (where there is no __file__).
    with open(__file__, encoding="utf-8") as _f:
        SOURCE = _f.read()
