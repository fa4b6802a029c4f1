"""The runner: the main process (pid 1) of every goexd container, the daemon's hand inside it.

A pooled container is started ahead of any action with this program as its command, attached to the
daemon over the container's stdio (the engine's attach stream). It says it is ready and waits. When the
container is leased, the daemon sends one request (the command's argv, environment, directory, stdin
and seccomp programs); the runner starts the command as its child and relays its output; when the
command ends, it kills whatever the command left (every other process of the container: it is pid 1,
so all of them are its descendants or orphans it adopted), reaps them all, and reports how the command
ended. Then it exits, and the container with it: one container, one command.

Why a runner and not the engine's exec: an exec is three round trips to the engine (create, start,
inspect) and a process the engine spawns (55-90 ms measured); a request over an attached stream that is
already open costs a write and a read (bench/container_bench.py).

Wire format (lengths big-endian): daemon -> runner: one byte once attached (HELLO), a 4-byte length and a
request (`encode`: a line per field, its values base64), then `stdin` bytes; runner -> daemon: frames of one
kind byte, a 4-byte length and the payload: `R` ready, `O` / `E` a chunk of the command's stdout / stderr,
`X` the end (fields as the request's). The runner forwards at
most `cap` bytes of each stream and counts the rest, so a command that writes without end costs the
daemon nothing.

It is pid 1 of the container's pid namespace, so no process in the container can kill or stop it; it
makes itself non-dumpable, so the command (the same uid) cannot read or write its memory or its
descriptors through /proc; the command runs under goexd's seccomp programs (sandbox/seccomp.py), which
the runner loads in the child before exec (ptrace is refused there).

Limits: the engine holds the container's cgroup to the memory and process limits. The runner reads the
cgroup's counters (v2 `memory.events`, `pids.events`; v1 `memory.oom_control`, `pids/pids.events`) as
seen in the container: a pids limit hit ends the run at once (everything killed), an OOM kill is
reported with the end.

Stdlib only, no goexd imports: it runs with whatever python3 the image has (`python3 -I -S -c`).
"""

from __future__ import annotations

import binascii
import ctypes
import fcntl
import os
import select
import signal
import struct
import sys

# Not `typing`, nor base64 or json (which import re): ~10-50 ms of the runner's start, in every container.
Request = dict[str, list[bytes]]  # a decoded message: field name -> values
FRAME = struct.Struct(">cI")
LENGTH = struct.Struct(">I")
READY, STDOUT, STDERR, END = b"R", b"O", b"E", b"X"
HELLO = b"G"  # the daemon's first byte, once attached
ALIVE = "/run/goex-alive"  # goexd's life lock, bound read-only (see _start_watchdog)
EXEC_FAILED_STATUS = 127
POLL_S = 0.01  # how often the pids counter is looked at while the command runs
_CHUNK = 65536
_PR_SET_DUMPABLE, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 4, 22, 2
_DEFAULT_FOR_CHILD = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PIDS_EVENTS = ("/sys/fs/cgroup/pids.events", "/sys/fs/cgroup/pids/pids.events")
MEMORY_EVENTS = (("/sys/fs/cgroup/memory.events", "oom_kill"), ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"))


def encode(fields: dict[str, list[bytes]]) -> bytes:
    """A message: a line per field, its name then its values, each base64 (JSON's module would import `re`)."""
    lines = [
        name.encode() + b"".join(b" " + binascii.b2a_base64(v, newline=False) for v in values)
        for name, values in fields.items()
    ]
    return b"\n".join(lines)


def decode(data: bytes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for line in data.split(b"\n"):
        if line:
            name, *values = line.split(b" ")
            out[name.decode()] = [binascii.a2b_base64(v) for v in values]
    return out


def number(fields: dict[str, list[bytes]], name: str) -> int | None:
    """A field holding one integer, or None when it is not there."""
    values = fields.get(name)
    return int(values[0]) if values else None


def _end(**values: object) -> bytes:
    """The end frame's payload: None is left out, True/False are 1/0, the rest as text."""
    fields = {k: [str(int(v) if isinstance(v, bool) else v).encode()] for k, v in values.items() if v is not None}
    return encode(fields)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _send(kind: bytes, payload: bytes) -> None:
    out = sys.stdout.buffer
    out.write(FRAME.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


_watch: list[int] = []  # the watchdog's pidfd, once it runs


def _read_exact(n: int) -> bytes:
    data = b""
    while len(data) < n:
        ready, _, _ = select.select([0, *_watch], [], [])
        if _watch and _watch[0] in ready:
            _daemon_gone()
        chunk = os.read(0, n - len(data))
        if not chunk:
            raise EOFError("the daemon went away")
        data += chunk
    return data


def _start_watchdog() -> None:
    """A child that waits for goexd's end: goexd holds an exclusive lock on the file bound at ALIVE for its life
    (the kernel lets go of it however goexd ends), the child asks for a shared one. Once it has it, it kills
    every process of the container but pid 1 and itself, and exits; the runner sees it exit and exits too, so no
    container outlives a goexd killed -9 (its next start removes the stopped container)."""
    try:
        fd = os.open(ALIVE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # not bound: an engine goexd cannot bind its files into (a remote one)
    pid = os.fork()
    if pid == 0:
        try:  # noqa: SIM105 - see _kill_the_rest
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            pass
        try:  # noqa: SIM105
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.close(fd)
    _watch.append(os.pidfd_open(pid))


def _daemon_gone() -> None:
    _kill_the_rest()
    os._exit(0)


def _counter(paths: tuple[tuple[str, str], ...]) -> int | None:
    """The first readable counter among (file, key); None when the cgroup is not visible."""
    for path, name in paths:
        try:
            with open(path, "rb") as f:
                for line in f.read().decode().splitlines():
                    k, _, v = line.partition(" ")
                    if k == name:
                        return int(v)
        except (OSError, ValueError):
            continue
    return None


def _pids_hits() -> int | None:
    return _counter(tuple((p, "max") for p in PIDS_EVENTS))


def _oom_kills() -> int | None:
    return _counter(MEMORY_EVENTS)


def _child(
    req: Request, argv: list[bytes], passed: list[int], fds: dict[str, int], err_w: int, libc: ctypes.CDLL
) -> None:
    """In the forked child: take the pipes, the directory, the filters; become the command."""
    try:
        os.setsid()
        for signo in _DEFAULT_FOR_CHILD:
            signal.signal(signo, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.dup2(fds["stdin"], 0)
        os.dup2(fds["stdout"], 1)
        os.dup2(fds["stderr"], 2)
        os.chdir(req["cwd"][0])
        for fd in passed:
            os.set_inheritable(fd, True)
        for raw in req["filters"]:
            buf = ctypes.create_string_buffer(raw, len(raw))
            prog = _SockFprog(len(raw) // 8, ctypes.cast(buf, ctypes.c_void_p))
            if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "cannot load the command's seccomp filter")
        pairs = req["env"]
        env = dict(zip(pairs[::2], pairs[1::2], strict=True))
        os.execvpe(argv[0], argv, env)  # noqa: S606 - the command, exactly as given
    except OSError as e:
        os.write(err_w, f"{e.errno or 0} {e.strerror or e}".encode())
    except BaseException as e:  # anything else, said the same way
        os.write(err_w, f"0 {e}".encode())
    os._exit(EXEC_FAILED_STATUS)


class _Stream:
    def __init__(self, fd: int, kind: bytes, cap: int) -> None:
        self.fd, self.kind, self.left, self.total = fd, kind, cap, 0

    def pump(self) -> bool:
        """Forward what is there (up to the cap); False at EOF."""
        try:
            chunk = os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return True
        if not chunk:
            os.close(self.fd)
            return False
        self.total += len(chunk)
        if self.left > 0:
            kept = chunk[: self.left]
            self.left -= len(kept)
            _send(self.kind, kept)
        return True


def _kill_the_rest() -> None:
    """SIGKILL every other process of the container and reap them all (pid 1 adopts every orphan)."""
    try:  # noqa: SIM105 - contextlib costs start-up time in the container, for one use
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass  # none left
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def _command(req: Request) -> tuple[list[bytes], list[int]]:
    """The argv to exec and the descriptors it inherits: behind the egress forwarder with `proxy`
    (sandbox/egress_forwarder.py: the proxy's socket as an O_PATH descriptor, and a pipe holding the
    program that refuses Unix sockets, which the forwarder loads on the command)."""
    argv = req["argv"]
    if "proxy_socket" not in req:
        return argv, []
    sock = os.open(req["proxy_socket"][0], os.O_PATH | os.O_CLOEXEC)
    prog_r, prog_w = os.pipe2(os.O_CLOEXEC)
    os.write(prog_w, req["proxy_filter"][0])
    os.close(prog_w)
    prefix = req["proxy_prefix"]
    return [*prefix, str(sock).encode(), str(prog_r).encode(), b"--", *argv], [sock, prog_r]


def run(req: Request, stdin: bytes, libc: ctypes.CDLL) -> bytes:
    """Start the command, relay its output, end it and everything it started; the end frame's content."""
    pids_before, oom_before = _pids_hits(), _oom_kills()
    argv, passed = _command(req)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    spawn_r, spawn_w = os.pipe2(os.O_CLOEXEC)
    fds = {"stdin": in_r, "stdout": out_w, "stderr": err_w}
    pid = os.fork()
    if pid == 0:
        for fd in (in_w, out_r, err_r, spawn_r):
            os.close(fd)
        _child(req, argv, passed, fds, spawn_w, libc)
    for fd in (in_r, out_w, err_w, spawn_w, *passed):
        os.close(fd)
    failed = b""
    while chunk := os.read(spawn_r, 4096):  # EOF at the child's exec (close-on-exec), or its message first
        failed += chunk
    os.close(spawn_r)
    pidfd = os.pidfd_open(pid)
    cap = number(req, "cap") or 0
    out, err = _Stream(out_r, STDOUT, cap), _Stream(err_r, STDERR, cap)
    streams = {out.fd: out, err.fd: err}
    for fd in streams:
        os.set_blocking(fd, False)
    left = memoryview(stdin)
    os.set_blocking(in_w, False)
    stdin_fd: int | None = in_w
    if not left:
        os.close(in_w)
        stdin_fd = None
    status: int | None = None
    pids_hit = False
    while status is None:
        readers = [*streams, pidfd, *_watch]
        writers = [stdin_fd] if stdin_fd is not None else []
        ready_r, ready_w, _ = select.select(readers, writers, [], POLL_S)
        for fd in ready_r:
            if fd in _watch:
                _daemon_gone()
            elif fd == pidfd:
                status = os.waitpid(pid, 0)[1]
            elif not streams[fd].pump():
                del streams[fd]
        if ready_w and stdin_fd is not None:
            try:
                left = left[os.write(stdin_fd, left[:_CHUNK]) :]
            except BlockingIOError:
                pass
            except OSError:  # EPIPE: the command closed its stdin; the rest is dropped
                left = memoryview(b"")
            if not left:
                os.close(stdin_fd)
                stdin_fd = None
        hits = _pids_hits()
        if status is None and hits is not None and pids_before is not None and hits > pids_before:
            pids_hit = True
            _watch.clear()  # the watchdog goes too: its end is not goexd's
            os.kill(-1, signal.SIGKILL)
    os.close(pidfd)
    if stdin_fd is not None:
        os.close(stdin_fd)
    _watch.clear()
    _kill_the_rest()
    for s in list(streams.values()):  # every writer is dead: each pipe reaches EOF
        os.set_blocking(s.fd, True)
        while s.pump():
            pass
    hits, ooms = _pids_hits(), _oom_kills()
    return _end(
        status=status,
        spawn_error=failed.decode(errors="replace") if failed else None,
        pids_hit=pids_hit or (hits is not None and pids_before is not None and hits > pids_before),
        oom_kills=None if ooms is None or oom_before is None else ooms - oom_before,
        stdout_total=out.total,
        stderr_total=err.total,
    )


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        _send(END, _end(error="cannot make the runner non-dumpable"))
        return
    _start_watchdog()
    try:
        _read_exact(len(HELLO))  # the daemon attaches after the start: nothing is written before it is there
    except EOFError:
        return
    _send(READY, _end(pid=os.getpid(), uid=os.getuid(), gid=os.getgid()))
    try:
        (size,) = LENGTH.unpack(_read_exact(LENGTH.size))
        req = decode(_read_exact(size))
        stdin = _read_exact(number(req, "stdin") or 0)
    except (EOFError, ValueError, binascii.Error) as e:
        _send(END, _end(error=f"no request: {e}"))
        return
    try:
        end = run(req, stdin, libc)
    except OSError as e:
        end = _end(error=f"runner: {os.strerror(e.errno) if e.errno else e}")
    _send(END, end)


def compact(source: str) -> str:
    """`source` without its docstrings and comments: what the container's `python3 -c` gets, its pid 1's argv
    (shown by ps in the container and on the host), kept short."""
    import ast  # noqa: PLC0415 - the daemon's side only

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


if __name__ == "__main__":
    main()
else:
    with open(__file__, encoding="utf-8") as _f:
        SOURCE = compact(_f.read())
