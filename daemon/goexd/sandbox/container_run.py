"""One run in one leased container (container.py leases it): the request sent to its runner
(container_runner.py's wire format), its output relayed, the wall clock and cancel enforced, the end read and
turned into an ExecResult with the same terminations as bubblewrap's."""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from goexd.domain.sandbox import ExecResult, Network, OutputSink, SandboxSpec, Stream, Termination
from goexd.sandbox import container_runner as runner
from goexd.sandbox import egress_forwarder as forwarder
from goexd.sandbox import seccomp
from goexd.sandbox.bwrap_plan import command_env
from goexd.sandbox.container_engine import ENGINE_ERRORS, StreamClosed
from goexd.sandbox.container_slots import EGRESS_SOCKET

if TYPE_CHECKING:
    from goexd.sandbox.container import _Warm

WORKSPACE = "/workspace"
RUN_DIR = posixpath.dirname(forwarder.CA_PATH)  # /run/goex
PYTHON = "python3"  # the image's, on its PATH: the runner and the egress forwarder
POLL_TICK_S = 0.01  # how often cancel is looked at


class Backend(Protocol):
    """What a run needs of the backend that leased its container."""

    api: Any

    @property
    def enforced_by(self) -> str: ...

    def kill(self, warm: _Warm) -> None: ...

    def wait_gone(self, warm: _Warm, timeout: float = ...) -> bool: ...


def request(spec: SandboxSpec) -> bytes:
    """The runner's request for `spec` (container_runner.py's wire format)."""
    proxy = spec.network is Network.PROXY
    env = command_env(spec, proxy)
    cwd = posixpath.normpath(posixpath.join(WORKSPACE, spec.workdir)) if spec.workspace is not None else "/tmp"
    programs = seccomp.programs()
    fields: dict[str, list[bytes]] = {
        "argv": [os.fsencode(a) for a in spec.argv],
        "env": [os.fsencode(x) for k, v in env.items() for x in (k, v)],
        "cwd": [os.fsencode(cwd)],
        "stdin": [str(len(spec.stdin)).encode()],
        "cap": [str(spec.limits.output_bytes).encode()],
        "filters": [programs.personality, programs.base if proxy else programs.full],
    }
    if proxy:
        fields["proxy_socket"] = [posixpath.join(RUN_DIR, EGRESS_SOCKET).encode()]
        fields["proxy_filter"] = [programs.unix_sockets]
        fields["proxy_prefix"] = [a.encode() for a in (PYTHON, "-I", "-S", "-c", forwarder.SOURCE)]
    return runner.encode(fields)


@dataclass(frozen=True)
class _End:
    """The runner's end frame."""

    status: int | None = None  # the command's wait status
    spawn_error: str = ""  # "ERRNO message" when it could not be started
    pids_hit: bool = False
    oom_kills: int | None = None  # None: the runner could not read the cgroup's counters
    stdout_total: int | None = None
    stderr_total: int | None = None
    error: str = ""  # the runner itself failed

    @classmethod
    def decode(cls, payload: bytes) -> _End:
        f = runner.decode(payload)

        def text(name: str) -> str:
            return f[name][0].decode(errors="replace") if f.get(name) else ""

        return cls(
            status=runner.number(f, "status"),
            spawn_error=text("spawn_error"),
            pids_hit=bool(runner.number(f, "pids_hit")),
            oom_kills=runner.number(f, "oom_kills"),
            stdout_total=runner.number(f, "stdout_total"),
            stderr_total=runner.number(f, "stderr_total"),
            error=text("error"),
        )


class Execution:
    """One run in one leased container: send the request, relay output, enforce the clock and cancel."""

    def __init__(
        self,
        sandbox: Backend,
        warm: _Warm,
        spec: SandboxSpec,
        on_output: OutputSink | None,
        cancel: threading.Event | None,
        started: float,
    ) -> None:
        self.sandbox = sandbox
        self.warm = warm
        self.spec = spec
        self.on_output = on_output
        self.cancel = cancel
        self.started = started
        self.deadline = started + spec.limits.timeout_s
        self.out = bytearray()
        self.err = bytearray()
        self.cause: Termination | None = None
        self.cause_detail = ""
        self.ended = False  # the runner sent its end frame

    def run(self) -> ExecResult:
        if not self.spec.argv:
            raise ValueError("SandboxSpec.argv is empty")
        body = request(self.spec)
        # The clock starts with the command, not with the lease (a miss makes a container first).
        self.deadline = time.monotonic() + self.spec.limits.timeout_s
        try:
            self.warm.attached.send(runner.LENGTH.pack(len(body)) + body + bytes(self.spec.stdin))
            end = self._pump()
        except StreamClosed as e:
            return self._died(str(e))
        return self._result(end)

    def _pump(self) -> _End | None:
        """Frames until the end frame (its content), or None once killed (timeout, cancel)."""
        attached = self.warm.attached
        while True:
            while len(attached.out) >= runner.FRAME.size:
                kind, size = runner.FRAME.unpack_from(attached.out)
                if len(attached.out) < runner.FRAME.size + size:
                    break
                payload = bytes(attached.out[runner.FRAME.size : runner.FRAME.size + size])
                del attached.out[: runner.FRAME.size + size]
                if kind == runner.END:
                    self.ended = True
                    return _End.decode(payload)
                self._output(Stream.STDOUT if kind == runner.STDOUT else Stream.STDERR, payload)
            if self.cause is None:
                self._enforce()
            if self.cause is not None:
                self.sandbox.kill(self.warm)
                self.sandbox.wait_gone(self.warm)
                return None
            attached.fill(min(POLL_TICK_S, max(0.0, self.deadline - time.monotonic())))

    def _enforce(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.cause, self.cause_detail = Termination.CANCELLED, "cancelled"
        elif time.monotonic() >= self.deadline:
            self.cause = Termination.TIMEOUT
            self.cause_detail = f"wall-clock timeout of {self.spec.limits.timeout_s:g} s"

    def _output(self, stream: Stream, chunk: bytes) -> None:
        (self.out if stream is Stream.STDOUT else self.err).extend(chunk)
        if self.on_output is not None:
            self.on_output(stream, chunk)

    def _died(self, why: str) -> ExecResult:
        """The stream ended without an end frame: the container was killed, or the engine went away."""
        if self.cause is not None:
            return self._result(None)
        detail = f"the container ended before the command did ({why})"
        oom = False
        with contextlib.suppress(*ENGINE_ERRORS):
            state = self.sandbox.api.inspect_container(self.warm.id)["State"]
            oom = bool(state.get("OOMKilled"))
            detail = f"the container was stopped from outside (exit code {state.get('ExitCode')}; {why})"
        if oom:
            self.cause, self.cause_detail = Termination.OOM, "out of memory: the container's runner was killed"
            return self._result(None)
        return self._make(Termination.SIGNALED, None, signal.SIGKILL, detail)

    def _result(self, end: _End | None) -> ExecResult:
        if end is None:
            assert self.cause is not None
            return self._make(self.cause, None, None, self.cause_detail)
        if end.error:
            return self._make(Termination.SPAWN_FAILED, None, None, end.error, end)
        if end.spawn_error:
            message = end.spawn_error.partition(" ")[2]  # "ERRNO message"
            detail = f"cannot execute {self.spec.argv[0]}: {message}"
            return self._make(Termination.SPAWN_FAILED, None, None, detail, end)
        if end.pids_hit:
            limit = self.spec.limits.max_processes
            return self._make(Termination.PIDS_LIMIT, None, None, f"process limit of {limit} reached", end)
        if end.oom_kills:
            limit = self.spec.limits.memory_bytes
            return self._make(Termination.OOM, None, None, f"out of memory (limit {limit} bytes)", end)
        status = end.status or 0
        if os.WIFSIGNALED(status):
            signo = os.WTERMSIG(status)
            return self._make(Termination.SIGNALED, None, signo, f"killed by signal {signo}", end)
        code = os.waitstatus_to_exitcode(status)
        if (
            self.spec.network is Network.PROXY
            and code == forwarder.EXEC_FAILED_STATUS
            and bytes(self.err).startswith(forwarder.EXEC_FAILED.encode())
        ):
            return self._make(Termination.SPAWN_FAILED, None, None, bytes(self.err).decode(errors="replace"), end)
        return self._make(Termination.EXITED, code, None, "", end)

    def _make(
        self, termination: Termination, code: int | None, signo: int | None, detail: str, end: _End = _End()
    ) -> ExecResult:
        return ExecResult(
            termination=termination,
            exit_code=code,
            signal=signo,
            stdout=bytes(self.out),
            stderr=bytes(self.err),
            stdout_total=end.stdout_total if end.stdout_total is not None else len(self.out),
            stderr_total=end.stderr_total if end.stderr_total is not None else len(self.err),
            duration_s=time.monotonic() - self.started,
            limits_enforced_by=self.sandbox.enforced_by,
            detail=detail,
        )
