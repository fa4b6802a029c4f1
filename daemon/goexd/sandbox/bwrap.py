"""The bubblewrap sandbox backend.

Two steps, the bubblewrap way:

1. `host_view.probe` gathers the few host facts the plan depends on (the allow-listed
   trees, what in them to mask for the command's identity), then `bwrap_plan.render_plan`
   turns spec + facts into a `Plan`: an ordered, declarative list of mount operations
   plus env, cwd, flags and the seccomp program. It is pure, so it is unit-tested and
   logged as is.
2. `BwrapSandbox.run` carries the plan out: bwrap is started as the command's identity
   (`identity.run_as_for`: the workspace's owner) with an empty environment, blocked on
   reading its options from a pipe (`--args FD`), put into the run's cgroup while it
   cannot fork yet (or, cgroup v1, the launch chain's first shell joins it itself:
   `RunLimits.joins`), then released; one epoll loop on the caller's thread streams output,
   feeds stdin and enforces the timeout, cancellation and the limits.

Everything in the sandbox lives in its own pid namespace whose init is a child of the
outer bwrap, with --die-with-parent: killing the outer bwrap (or the daemon) kills the
whole tree at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goexd.domain.sandbox import (
    ExecResult,
    Limits,
    Network,
    OutputSink,
    SandboxSpec,
    SandboxUnavailable,
    Stream,
    Termination,
)
from goexd.sandbox import egress_forwarder as forwarder
from goexd.sandbox import overlay, seccomp
from goexd.sandbox.bwrap_plan import FORWARDER_PYTHON, Fds, HostView, Plan, render_plan
from goexd.sandbox.host_view import UnreadableScan, probe, system_paths
from goexd.sandbox.identity import RunAs, current, run_as_for
from goexd.sandbox.limits import Enforcer, RunLimits, detect_enforcer, join_prefix
from goexd.sandbox.overlay_mounts import OverlayMounts

log = logging.getLogger(__name__)

MISSING_BWRAP = "bubblewrap (bwrap) not found: install the 'bubblewrap' package (apt-get install bubblewrap)"
MIN_BWRAP_VERSION = (0, 8)  # --disable-userns, --size and --ro-bind-data
# util-linux: the uid switch of a root daemon, and the parent-death signal of every launch chain
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
MISSING_SETPRIV = (
    "setpriv not found: goexd starts every sandbox through it (so that the sandbox dies with goexd)"
    " and a root goexd runs actions as the workspace's owner through it (apt-get install util-linux)"
)
# The launch chain dies with the daemon thread that started it (PR_SET_PDEATHSIG, kept across
# exec, cleared by a uid change: each setpriv that switches the uid sets it again).
DIE_WITH_DAEMON = "--pdeathsig=KILL"
# Given after --args: bwrap refuses it at parse time unless --unshare-user came before, which only
# the options bring. A bwrap whose daemon died before writing them (it reads EOF) then exits
# instead of going on with no options at all (no namespaces but a mount one, all of root's
# capabilities, and a child that blocks for ever: sandbox/reaper.py).
NEEDS_THE_OPTIONS = "--disable-userns"
SCANNED_FOR_UNREADABLE = ("/etc",)  # plus the read paths (host_view's doc says why not /usr)

READ_CHUNK = 64 * 1024
POLL_TICK_S = 0.01  # how often cancel and the (v1, unnotified) limit counters are checked
DRAIN_GRACE_S = 2.0  # after the process is gone, how long to wait for output EOF


# --- running ----------------------------------------------------------------------------


class BwrapSandbox:
    """Runs commands under bubblewrap; limits through `enforcer` (default: best detected).

    `read_paths`: host paths shown read-only besides the system trees (`sandbox.read_paths`).
    `always_masked`: host paths hidden from every run (the daemon's own dirs, where they fall
    inside a visible tree).
    `overlay_mounts`: where a root daemon mounts runs' overlays itself (sandbox/overlay_mounts.py);
    without it, and always for an unprivileged daemon, the launch chain mounts them (overlay.py).
    """

    name = "bwrap"

    def __init__(
        self,
        enforcer: Enforcer | None = None,
        bwrap_path: str | None = None,
        always_masked: Sequence[Path] = (),
        read_paths: Sequence[Path] = (),
        spawn_env: Mapping[str, str] | None = None,
        overlay_mounts: OverlayMounts | None = None,
    ) -> None:
        self.overlay_mounts = overlay_mounts
        self.enforcer = enforcer if enforcer is not None else detect_enforcer()
        # The whole environment of the launch chain and of bwrap: the daemon's sandbox mark
        # (sandbox/reaper.py), never the daemon's own variables.
        self.spawn_env = dict(spawn_env or {})
        self.bwrap_path = bwrap_path if bwrap_path is not None else shutil.which("bwrap")
        self.always_masked = tuple(always_masked)
        self.system = system_paths(read_paths)
        self._scan = UnreadableScan([*SCANNED_FOR_UNREADABLE, *(str(p) for p in read_paths)])

    def check(self) -> None:
        if self.bwrap_path is None or not os.access(self.bwrap_path, os.X_OK):
            raise SandboxUnavailable(MISSING_BWRAP)
        _check_version(self.bwrap_path)
        if not os.access(SETPRIV, os.X_OK):
            raise SandboxUnavailable(MISSING_SETPRIV)
        try:
            seccomp.programs()
        except (OSError, AttributeError, RuntimeError) as e:
            raise SandboxUnavailable(
                f"cannot compile the sandbox's seccomp filter (libseccomp2 installed?): {e}"
            ) from e
        spec = SandboxSpec(argv=["true"], workspace=None, limits=Limits(timeout_s=10.0))
        result = self.run(spec)
        if result.termination is not Termination.EXITED or result.exit_code != 0:
            why = result.detail or result.stderr.decode(errors="replace").strip()
            raise SandboxUnavailable(
                f"bubblewrap cannot create a sandbox here ({result.termination.value}: {why}); "
                "user namespaces may be disabled (sysctls user.max_user_namespaces, "
                "kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
            )

    def probe(self, spec: SandboxSpec, run_as: RunAs | None = None) -> HostView:
        who = run_as if run_as is not None else run_as_for(spec.workspace)
        return probe(spec, who, self.system, self._scan, self.always_masked)

    def plan(self, spec: SandboxSpec) -> Plan:
        """The plan `run(spec)` would carry out now (for logs and debugging; placeholder fds)."""
        if spec.network is Network.PROXY:
            fds = Fds(seccomp=(3, 4), ca=5, proxy_socket=6, unix_filter=7)
        else:
            fds = Fds(seccomp=(3, 4))
        return render_plan(spec, self.probe(spec), fds)

    def run(
        self,
        spec: SandboxSpec,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        started = time.monotonic()
        try:
            run_as = run_as_for(spec.workspace)
        except OSError as e:
            return _failed(started, self.enforcer.name, f"cannot look at the workspace {spec.workspace}: {e}")
        host = self.probe(spec, run_as)
        result = self._run_once(spec, host, run_as, on_output, cancel, started)
        if result.termination is Termination.SPAWN_FAILED and (fresh := self.probe(spec, run_as)) != host:
            # The host changed under the plan (a masked path vanished between probing and
            # bwrap's setup): one retry with fresh facts.
            log.info("sandbox setup failed on a changed host, retrying: %s", result.detail)
            if spec.overlay is not None:  # the first attempt may have mounted it: its work dir is not reusable as is
                try:
                    overlay.clear_work(spec.overlay.work)
                except OSError as e:
                    return _failed(started, self.enforcer.name, f"cannot clear the overlay's work dir to retry: {e}")
            result = self._run_once(spec, fresh, run_as, on_output, cancel, started)
        return result

    def _run_once(
        self,
        spec: SandboxSpec,
        host: HostView,
        run_as: RunAs,
        on_output: OutputSink | None,
        cancel: threading.Event | None,
        started: float,
    ) -> ExecResult:
        if self.bwrap_path is None:
            return _failed(started, self.enforcer.name, MISSING_BWRAP)
        if spec.network is Network.PROXY and not os.access(FORWARDER_PYTHON, os.X_OK):
            detail = f"network=proxy runs the egress forwarder with {FORWARDER_PYTHON}: install python3"
            return _failed(started, self.enforcer.name, detail)
        try:
            limits = self.enforcer.start(spec.limits)
        except OSError as e:
            return _failed(started, self.enforcer.name, f"cannot set up resource limits: {e}")
        try:
            with _open_fds(spec, run_as) as fds, self._mounted_overlay(spec, run_as) as source:
                plan = render_plan(spec, host, fds, workspace_source=source)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("sandbox plan (as uid %d gid %d):\n%s", run_as.uid, run_as.gid, plan.describe())
                run = _Execution(
                    self.bwrap_path, plan, spec, run_as, fds, limits, on_output, cancel, started, self.spawn_env
                )
                run.overlay_mounted = source is not None  # the plan binds it: no launch chain mounts one
                return run.execute(self.enforcer.name)
        except overlay.OverlayUnavailable as e:
            return _failed(started, self.enforcer.name, str(e))
        except OSError as e:
            return _failed(started, self.enforcer.name, f"cannot prepare the sandbox: {e}")
        finally:
            limits.close()

    @contextlib.contextmanager
    def _mounted_overlay(self, spec: SandboxSpec, run_as: RunAs) -> Iterator[str | None]:
        """Where the run's overlay is mounted while the block runs, when this daemon mounts it itself
        (root, with `overlay_mounts`); else None: the workspace itself, or the launch chain's overlay."""
        if spec.overlay is None or spec.workspace is None or self.overlay_mounts is None or not current().is_root:
            yield None
            return
        with self.overlay_mounts.mounted(spec.workspace, spec.overlay, run_as) as point:
            yield str(point)


@contextlib.contextmanager
def _open_fds(spec: SandboxSpec, run_as: RunAs) -> Iterator[Fds]:
    """The descriptors a run hands to bwrap, closed when it is over.

    The proxy's socket travels as an O_PATH descriptor that the forwarder connects through
    (/proc/self/fd/N): its directory stays the daemon's own, and the command's identity
    only needs to own the socket file, which it is given here.
    """
    programs = seccomp.programs()
    opened: list[int] = []
    try:
        opened.append(seccomp.pipe_with(programs.personality))
        if spec.network is Network.NONE or spec.proxy is None:
            opened.append(seccomp.pipe_with(programs.full))
            yield Fds(seccomp=(opened[0], opened[1]))
            return
        opened.append(seccomp.pipe_with(programs.base))
        opened.append(os.open(spec.proxy.ca_path, os.O_RDONLY | os.O_CLOEXEC))
        opened.append(os.open(spec.proxy.socket_path, os.O_PATH | os.O_CLOEXEC))
        opened.append(seccomp.pipe_with(programs.unix_sockets))
        if run_as != current():
            os.chown(spec.proxy.socket_path, run_as.uid, run_as.gid)
        yield Fds(seccomp=(opened[0], opened[1]), ca=opened[2], proxy_socket=opened[3], unix_filter=opened[4])
    finally:
        for fd in opened:
            os.close(fd)


def _dying_with_daemon(argv: list[str]) -> list[str]:
    """`argv` started so that it dies with the daemon at every step, including while bwrap waits
    for its options: killed then, bwrap would read EOF and go on with no options at all, and its
    child would block for ever (sandbox/reaper.py says why). A chain that starts with the uid
    switch has the signal set by it already."""
    if argv[0] == SETPRIV and DIE_WITH_DAEMON in argv[: argv.index("--")]:
        return argv
    return [SETPRIV, DIE_WITH_DAEMON, "--", *argv]


def _check_version(bwrap: str) -> None:
    out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    if version < MIN_BWRAP_VERSION:
        want = ".".join(map(str, MIN_BWRAP_VERSION))
        raise SandboxUnavailable(f"bubblewrap >= {want} is required, found {out.strip() or 'unknown'}")


def _failed(started: float, enforced_by: str, detail: str) -> ExecResult:
    return ExecResult(
        Termination.SPAWN_FAILED, None, None, b"", b"", 0, 0, time.monotonic() - started, enforced_by, detail
    )


@dataclass
class _Capture:
    """One output stream: the first `cap` bytes kept, everything counted."""

    stream: Stream
    fd: int
    cap: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0
    open: bool = True

    def feed(self, chunk: bytes) -> bytes:
        """Record a chunk; return the part that fits under the cap."""
        self.total += len(chunk)
        kept = chunk[: max(0, self.cap - len(self.data))]
        self.data += kept
        return kept


class _Execution:
    """One run of one plan: spawn, event loop, result."""

    def __init__(
        self,
        bwrap: str,
        plan: Plan,
        spec: SandboxSpec,
        run_as: RunAs,
        fds: Fds,
        limits: RunLimits,
        on_output: OutputSink | None,
        cancel: threading.Event | None,
        started: float,
        spawn_env: Mapping[str, str] | None = None,
    ) -> None:
        self.bwrap = bwrap
        self.spawn_env = dict(spawn_env or {})
        self.plan = plan
        self.spec = spec
        self.run_as = run_as
        self.fds = fds
        self.limits = limits
        self.on_output = on_output
        self.cancel = cancel
        self.started = started
        self.deadline = started + spec.limits.timeout_s
        self.cause: Termination | None = None  # why we killed it, if we did
        self.cause_detail = ""
        self.exited_at: float | None = None
        self.stdin_left = memoryview(spec.stdin)
        self.overlay_mounted = False  # whether the daemon mounted the run's overlay itself

    def execute(self, enforced_by: str) -> ExecResult:
        try:
            proc, status_fd = self._spawn()
        except OSError as e:
            return _failed(self.started, enforced_by, f"cannot start bwrap: {e}")
        except overlay.OverlayUnavailable as e:
            return _failed(self.started, enforced_by, str(e))
        try:
            self._loop(proc)
            proc.wait()
            status = _read_status(status_fd)
        finally:
            if proc.poll() is None:  # only on an exception (e.g. from on_output)
                self._kill(Termination.CANCELLED, "aborted")
                proc.kill()
                proc.wait()
            os.close(status_fd)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        return self._result(proc.returncode, status, enforced_by)

    # -- spawn

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        args_r, args_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            # bwrap reads --args before doing anything else, so it waits there until
            # it is inside the run's cgroup: all its descendants are born limited.
            # bwrap gets no environment of the daemon's (its pid-1 init keeps what it was
            # started with, readable at /proc/1/environ), and starts as the command's
            # identity: a root daemon switches to the workspace's owner through setpriv.
            # (Popen's user=/group= would do it too, but they rule out vfork: a fork of the
            # whole daemon, ~19 ms at 110 MB, measured by bench/confine_bench.py.)
            joins = self.limits.joins()
            argv = _dying_with_daemon(
                [
                    *self._joining_overlay(joins),
                    *self._switch_user(),
                    *self.limits.launcher(self.run_as.uid, own_userns=self._overlay_userns()),
                    *(self.bwrap, "--args", str(args_r), NEEDS_THE_OPTIONS, "--json-status-fd", str(status_w)),
                    *("--", *self.plan.argv),
                ]
            )
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if self.spec.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.spawn_env,
                pass_fds=(args_r, status_w, *self.fds.passed()),
                start_new_session=True,  # keep terminal signals for the daemon away from it
                cwd="/",  # a shell in the launch chain (the overlay's) exports PWD: not the daemon's cwd
            )
        except BaseException:
            for fd in (args_w, status_r):
                os.close(fd)
            raise
        finally:
            os.close(args_r)
            os.close(status_w)
        try:
            if not joins:
                self.limits.attach(proc.pid)
            self._send_options(args_w)
        except OSError:
            proc.kill()
            proc.wait()
            os.close(status_r)
            raise
        return proc, status_r

    def _joining_overlay(self, joins: Sequence[str]) -> list[str]:
        """The chain's start: it joins the run's cgroups (`joins`) first, with the daemon's identity and
        before anything forks, then mounts the overlay if there is one. A root daemon's overlay shell
        joins them itself (one exec fewer); an unprivileged one's runs in a user namespace of its own,
        so a shell of their own joins them before it."""
        spec = self.spec
        if spec.overlay is None or spec.workspace is None or self.overlay_mounted:
            return join_prefix(joins)
        if current().is_root:
            return overlay.launch_prefix(spec.workspace, spec.overlay, privileged=True, joins=joins)
        return [*join_prefix(joins), *overlay.launch_prefix(spec.workspace, spec.overlay, privileged=False)]

    def _overlay_userns(self) -> bool:
        """Whether the launch chain runs in the overlay's own user namespace (an unprivileged daemon)."""
        return (
            self.spec.overlay is not None
            and self.spec.workspace is not None
            and not self.overlay_mounted
            and not current().is_root
        )

    def _identity_options(self) -> list[str]:
        """An unprivileged daemon's overlay puts bwrap in a user namespace as its root: bwrap is
        told the ids to show, so the command sees the ones it would without the overlay."""
        if not self._overlay_userns():
            return []
        return ["--uid", str(self.run_as.uid), "--gid", str(self.run_as.gid)]

    def _switch_user(self) -> list[str]:
        if self.run_as == current():
            return []
        who = self.run_as
        return [SETPRIV, f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups", DIE_WITH_DAEMON, "--"]

    def _send_options(self, fd: int) -> None:
        blob = os.fsencode("\0".join([*self._identity_options(), *self.plan.bwrap_options()]) + "\0")
        try:
            with open(fd, "wb", closefd=True) as f:
                f.write(blob)
        except BrokenPipeError:
            pass  # bwrap died first; its exit status tells why

    # -- event loop

    def _loop(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        caps = self.spec.limits.output_bytes
        self.captures = [
            _Capture(Stream.STDOUT, proc.stdout.fileno(), caps),
            _Capture(Stream.STDERR, proc.stderr.fileno(), caps),
        ]
        pidfd = os.pidfd_open(proc.pid)  # readable once bwrap exits: no SIGCHLD games
        try:
            with select.epoll() as ep:
                for c in self.captures:
                    ep.register(c.fd, select.EPOLLIN)
                ep.register(pidfd, select.EPOLLIN)
                for fd in self.limits.watch_fds():
                    # Edge-triggered: one wake-up per change, even once we stop reading them.
                    ep.register(fd, select.EPOLLPRI | select.EPOLLET)
                self._pump(proc, ep, pidfd)
        finally:
            os.close(pidfd)

    def _pump(self, proc: subprocess.Popen[bytes], ep: select.epoll, pidfd: int) -> None:
        """Until bwrap has exited and both outputs hit EOF: move bytes, enforce limits."""
        outputs = {c.fd: c for c in self.captures}
        stdin_fd = self._setup_stdin(proc, ep)
        while any(c.open for c in self.captures) or self.exited_at is None:
            for fd, _ in ep.poll(self._poll_timeout()):
                if fd in outputs:
                    self._read(outputs[fd], ep)
                elif fd == pidfd:
                    self.exited_at = time.monotonic()
                    ep.unregister(pidfd)
                elif fd == stdin_fd:
                    stdin_fd = self._write_stdin(proc, ep)
            self._enforce(proc)
            if self.exited_at is not None and time.monotonic() - self.exited_at > DRAIN_GRACE_S:
                log.warning("sandbox output still open %.1fs after exit; giving up", DRAIN_GRACE_S)
                return

    def _poll_timeout(self) -> float:
        if self.cause is not None or self.exited_at is not None:
            return POLL_TICK_S
        return max(0.0, min(POLL_TICK_S, self.deadline - time.monotonic()))

    def _read(self, capture: _Capture, ep: select.epoll) -> None:
        chunk = os.read(capture.fd, READ_CHUNK)
        if not chunk:
            capture.open = False
            ep.unregister(capture.fd)
            return
        kept = capture.feed(chunk)
        if kept and self.on_output is not None:
            self.on_output(capture.stream, kept)

    def _setup_stdin(self, proc: subprocess.Popen[bytes], ep: select.epoll) -> int | None:
        if proc.stdin is None:
            return None
        fd = proc.stdin.fileno()
        os.set_blocking(fd, False)  # never block the loop on a child that does not read
        ep.register(fd, select.EPOLLOUT)
        return fd

    def _write_stdin(self, proc: subprocess.Popen[bytes], ep: select.epoll) -> int | None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        try:
            written = os.write(fd, self.stdin_left[:READ_CHUNK])
            self.stdin_left = self.stdin_left[written:]
        except BlockingIOError:
            return fd
        except OSError:  # EPIPE: the command closed its stdin; the rest is dropped
            self.stdin_left = memoryview(b"")
        if self.stdin_left:
            return fd
        ep.unregister(fd)
        proc.stdin.close()  # EOF for the command
        return None

    def _enforce(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill everything on cancel, timeout or a limit hit (the first cause wins)."""
        if self.cause is not None or self.exited_at is not None:
            return
        if self.cancel is not None and self.cancel.is_set():
            self._kill(Termination.CANCELLED, "cancelled")
        elif time.monotonic() >= self.deadline:
            self._kill(Termination.TIMEOUT, f"wall-clock timeout of {self.spec.limits.timeout_s:g} s")
        elif (hit := self.limits.limit_hit()) is not None:
            self._kill(hit, self.limits.describe_hit())
        if self.cause is not None:
            proc.kill()  # the outer bwrap: its pid-namespace init dies with it, and so does the rest

    def _kill(self, cause: Termination, detail: str) -> None:
        self.cause, self.cause_detail = cause, detail
        self.limits.kill_all()

    # -- result

    def _result(self, returncode: int, status: dict[str, int], enforced_by: str) -> ExecResult:
        out, err = self.captures
        termination, exit_code, signo, detail = self._classify(returncode, status, bytes(err.data))
        return ExecResult(
            termination=termination,
            exit_code=exit_code,
            signal=signo,
            stdout=bytes(out.data),
            stderr=bytes(err.data),
            stdout_total=out.total,
            stderr_total=err.total,
            duration_s=time.monotonic() - self.started,
            limits_enforced_by=enforced_by,
            detail=detail,
        )

    def _classify(
        self, returncode: int, status: dict[str, int], stderr: bytes
    ) -> tuple[Termination, int | None, int | None, str]:
        if self.cause is None and (hit := self.limits.limit_hit()) is not None:
            self.cause, self.cause_detail = hit, self.limits.describe_hit()
        if self.cause is not None:
            return self.cause, None, None, self.cause_detail
        if returncode < 0:  # the outer bwrap itself was killed, not by us
            return Termination.SIGNALED, None, -returncode, f"bwrap killed by signal {-returncode}"
        message = stderr.decode(errors="replace").strip()
        if "exit-code" not in status:  # bwrap reports it only once the command was exec'd
            detail = message[-2000:] or f"bwrap exited {returncode}"
            if self.run_as != current() and "Permission denied" in message:
                detail += (
                    f" (the sandbox runs as the workspace's owner, uid {self.run_as.uid}, who must be able"
                    f" to reach {self.spec.workspace} and every directory above it)"
                )
            return Termination.SPAWN_FAILED, None, None, detail
        code = status["exit-code"]
        if code == 1 and stderr.startswith(b"bwrap: execvp "):
            return Termination.SPAWN_FAILED, None, None, message[-2000:]
        if (
            self.spec.network is Network.PROXY
            and code == forwarder.EXEC_FAILED_STATUS
            and stderr.startswith(forwarder.EXEC_FAILED.encode())
        ):
            return Termination.SPAWN_FAILED, None, None, message[-2000:]
        # bwrap turns "killed by signal N" into exit status 128+N, like a shell does.
        if 128 < code < 128 + signal.NSIG:
            return Termination.SIGNALED, None, code - 128, f"exit status {code}: killed by signal {code - 128}"
        return Termination.EXITED, code, None, ""


def _read_status(fd: int) -> dict[str, int]:
    """Merge bwrap's --json-status-fd documents ({"child-pid": ..} then {"exit-code": ..})."""
    os.set_blocking(fd, False)
    raw = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            raw += chunk
    out: dict[str, int] = {}
    decoder, text, pos = json.JSONDecoder(), raw.decode(errors="replace"), 0
    while (start := text.find("{", pos)) != -1:
        try:
            doc, pos = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            break
        if isinstance(doc, dict):
            out.update({k: v for k, v in doc.items() if isinstance(v, int)})
    return out
