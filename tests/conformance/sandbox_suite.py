"""What every Sandbox backend (domain/sandbox.py) must do, stated once and run against every backend.

A backend plugs in by subclassing `SandboxContract` in a `test_sandbox_*.py` file with its `caps` and a
`backend` fixture returning a `SandboxBackend`: the Sandbox, a workspace its commands' user may write,
how it turns a plain spec into one it runs (over an overlay, say), and where a run's writes land.

The suite states, on real runs:

- exit status: an exit code as EXITED with it, a signal as SIGNALED with it, a missing program as
  SPAWN_FAILED; it never raises for what the command does;
- output: stdout and stderr apart, byte-exact (NUL and non-UTF-8 bytes), stdin fed; streamed to the
  sink while the command runs, the streamed bytes being the result's; capped per stream (the head
  kept, the total counted, the command never blocked on a full pipe);
- limits: the wall clock ends a run as TIMEOUT (children included); memory and processes are held
  to the limit, reported as OOM / PIDS_LIMIT where the backend says it reports them
  (`caps.reports_limits`), otherwise felt by the command as failed allocations and forks;
- cancel: a set event ends the run as CANCELLED, at once;
- isolation: no network (a host listener on loopback is never reached), the workspace writable
  (the writes land where the backend says), nothing else of the host: not readable outside the
  allow list, not writable, its /tmp not shared; no process of a run outlives it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goexd.domain.sandbox import ExecResult, Limits, Sandbox, SandboxSpec, Stream, Termination

# The daemon's venv python lives under /root (hidden from the sandbox); commands use the system one.
PY = "/usr/bin/python3"


@dataclass(frozen=True)
class SandboxCaps:
    reports_limits: bool = True  # False: memory and process limits are rlimits the command meets as ENOMEM/EAGAIN
    enforced_by: frozenset[str] = frozenset({"cgroup-v2", "cgroup-v1"})  # ExecResult.limits_enforced_by


@dataclass
class SandboxBackend:
    sandbox: Sandbox
    workspace: Path  # the commands' user may write it; the suite leaves files in it
    outside: Path  # a host dir outside the workspace holding `secret.txt`, readable by the commands' user
    written: Callable[[str], bytes | None]  # what a run left at a workspace path (None: nothing there)
    prepare: Callable[[SandboxSpec], SandboxSpec] = lambda spec: spec  # e.g. adds a fresh overlay

    def run(self, script: str, *, workspace: bool = True, **kw: object) -> ExecResult:
        return self.run_argv(["sh", "-c", script], workspace=workspace, **kw)

    def run_argv(self, argv: list[str], *, workspace: bool = True, **kw: object) -> ExecResult:
        on_output = kw.pop("on_output", None)
        cancel = kw.pop("cancel", None)
        spec = SandboxSpec(argv=argv, workspace=self.workspace if workspace else None, **kw)  # type: ignore[arg-type]
        return self.sandbox.run(self.prepare(spec), on_output, cancel)  # type: ignore[arg-type]


def running(tag: str) -> list[int]:
    """Host processes whose command line holds `tag`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and tag.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile
    return found


class SandboxContract:
    """Subclass with `caps` and a `backend` fixture (see the module's docstring)."""

    caps: SandboxCaps

    # ------------------------------------------------------------ exit status

    def test_exit_code_signal_and_spawn_failure_are_reported(self, backend: SandboxBackend) -> None:
        ok = backend.run("true")
        assert (ok.termination, ok.exit_code, ok.signal) == (Termination.EXITED, 0, None), ok
        assert ok.limits_enforced_by in self.caps.enforced_by
        seven = backend.run("exit 7")
        assert (seven.termination, seven.exit_code) == (Termination.EXITED, 7)
        killed = backend.run("kill -TERM $$")
        assert (killed.termination, killed.signal) == (Termination.SIGNALED, 15), killed
        missing = backend.run_argv([f"/no/such/program-{secrets.token_hex(4)}"])
        assert missing.termination is Termination.SPAWN_FAILED, missing

    # ------------------------------------------------------------ output

    def test_output_is_byte_exact_and_stdin_is_fed(self, backend: SandboxBackend) -> None:
        r = backend.run(r"printf 'out\000\377\n'; printf 'err\n' >&2; cat; exit 3", stdin=b"in\x00put")
        assert (r.termination, r.exit_code) == (Termination.EXITED, 3)
        assert r.stdout == b"out\x00\xff\nin\x00put"
        assert r.stderr == b"err\n"
        assert (r.stdout_total, r.stderr_total) == (len(r.stdout), len(r.stderr))

    def test_output_streams_while_the_command_runs(self, backend: SandboxBackend) -> None:
        seen: list[tuple[Stream, bytes, float]] = []
        start = time.monotonic()
        r = backend.run(
            "echo first; sleep 0.6; echo second >&2",
            on_output=lambda s, chunk: seen.append((s, chunk, time.monotonic() - start)),
        )
        assert r.exit_code == 0
        first = next(item for item in seen if item[1].startswith(b"first"))
        second = next(item for item in seen if item[1].startswith(b"second"))
        # Apart by the command's sleep: the first came while it ran, not with the rest at its end (measured on
        # the receiving side alone: a backend's start-up, a process's or a container's, is not in it).
        assert first[0] is Stream.STDOUT and first[2] < second[2] - 0.3, (first, second)
        assert b"".join(c for s, c, _ in seen if s is Stream.STDOUT) == r.stdout == b"first\n"
        assert b"".join(c for s, c, _ in seen if s is Stream.STDERR) == r.stderr == b"second\n"

    def test_output_is_capped_per_stream_and_drained(self, backend: SandboxBackend) -> None:
        streamed = bytearray()
        script = "head -c 3000000 /dev/zero; head -c 300 /dev/zero | tr '\\0' e >&2"
        r = backend.run(
            script, limits=Limits(output_bytes=1000, timeout_s=20), on_output=lambda s, c: streamed.extend(c)
        )
        assert (r.termination, r.exit_code) == (Termination.EXITED, 0), r
        assert r.stdout == b"\0" * 1000 and r.stdout_total == 3_000_000 and r.stdout_truncated
        assert r.stderr == b"e" * 300 and not r.stderr_truncated
        assert len(streamed) == 1300

    # ------------------------------------------------------------ limits and cancel

    def test_timeout_ends_the_run_and_its_children(self, backend: SandboxBackend) -> None:
        tag = f"9{secrets.randbelow(10**8)}.5"
        r = backend.run(f"echo started; sleep {tag} & sleep {tag}", limits=Limits(timeout_s=0.5))
        assert r.termination is Termination.TIMEOUT, r
        assert r.stdout == b"started\n"
        assert 0.5 <= r.duration_s < 4
        assert running(f"sleep\0{tag}") == []

    def test_memory_is_held_to_the_limit(self, backend: SandboxBackend) -> None:
        hog = "b = bytearray(1 << 30); b[::4096] = b'x' * len(b[::4096]); print(len(b))"
        r = backend.run_argv([PY, "-c", hog], limits=Limits(memory_bytes=64 << 20, timeout_s=30))
        assert b"1073741824" not in r.stdout, "the command got its gigabyte"
        if self.caps.reports_limits:
            assert r.termination is Termination.OOM, r
        else:
            assert (r.termination, r.exit_code) == (Termination.EXITED, 1), r
            assert b"MemoryError" in r.stderr

    def test_processes_are_held_to_the_limit(self, backend: SandboxBackend) -> None:
        tag = f"8{secrets.randbelow(10**8)}.5"
        forks = (
            "import os, sys, time\nn = 0\nfor i in range(150):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            f"    if pid == 0:\n        os.execv('/bin/sleep', ['sleep', '{tag}'])\n"
            "    n += 1\nprint(n, flush=True)\nos.kill(0, 9)\n"
        )
        r = backend.run_argv([PY, "-c", forks], limits=Limits(max_processes=20, timeout_s=20))
        if self.caps.reports_limits:
            assert r.termination is Termination.PIDS_LIMIT, r
        else:
            assert r.stdout.strip(), r
            assert int(r.stdout) < 150, f"{int(r.stdout)} forks under a limit of 20"
        assert running(f"sleep\0{tag}") == []

    def test_cancel_ends_the_run_at_once(self, backend: SandboxBackend) -> None:
        cancel = threading.Event()
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        r = backend.run("sleep 30", cancel=cancel)
        timer.join()
        assert r.termination is Termination.CANCELLED, r
        assert r.duration_s < 3

    # ------------------------------------------------------------ isolation

    def test_no_network(self, backend: SandboxBackend) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(0.2)
            port = listener.getsockname()[1]
            probe = (
                "import socket\ntry:\n"
                f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\n"
                "except OSError as e:\n    print('refused', e)\n"
                "print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n"
            )
            r = backend.run_argv([PY, "-c", probe])
            try:
                accepted = listener.accept()
            except TimeoutError:
                accepted = None
        assert r.exit_code == 0, r
        assert accepted is None, "the sandbox reached a listener on the host's loopback"
        assert r.stdout.startswith(b"refused") and r.stdout.splitlines()[-1] == b"['lo']", r.stdout

    def test_the_workspace_is_writable(self, backend: SandboxBackend) -> None:
        name = f"w-{secrets.token_hex(4)}.txt"
        r = backend.run(f"printf 'from the run' > /workspace/{name} && cat /workspace/{name}")
        assert (r.exit_code, r.stdout) == (0, b"from the run"), r
        assert backend.written(name) == b"from the run"

    def test_nothing_else_of_the_host_is_reachable(self, backend: SandboxBackend) -> None:
        mark = secrets.token_hex(6)
        outside = backend.outside
        host_tmp = Path("/tmp") / f"goex-conform-{mark}"
        script = (
            f"cat {outside}/secret.txt; ls {outside}; "
            f"for d in / /etc /usr /var /var/tmp {outside} /workspace/..; do "
            f"  (echo x > $d/goex-{mark}) 2>/dev/null && echo wrote $d; done; "
            f"echo x > /tmp/goex-conform-{mark} && echo tmp-ok"
        )
        places = (Path("/"), Path("/etc"), Path("/usr"), Path("/var"), Path("/var/tmp"), outside)
        try:
            r = backend.run(script)
            assert b"outside-secret" not in r.stdout, r.stdout
            assert b"wrote" not in r.stdout, r.stdout
            assert b"tmp-ok" in r.stdout  # a /tmp of its own is writable...
            assert not host_tmp.exists()  # ...and is not the host's
            for d in places:
                assert not (d / f"goex-{mark}").exists()
            assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        finally:  # a backend that fails here must not leave its marks on the host
            for leftover in [host_tmp, *(d / f"goex-{mark}" for d in places)]:
                leftover.unlink(missing_ok=True)

    def test_no_process_outlives_its_run(self, backend: SandboxBackend) -> None:
        tag = f"7{secrets.randbelow(10**8)}.5"
        try:
            r = backend.run(f"setsid sleep {tag} > /dev/null 2>&1 < /dev/null & echo left")
            assert (r.exit_code, r.stdout) == (0, b"left\n"), r
            deadline = time.monotonic() + 3
            while running(f"sleep\0{tag}") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert running(f"sleep\0{tag}") == []
        finally:  # a backend that fails here must not leave a sleep of three years on the host
            for pid in running(f"sleep\0{tag}"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def test_a_run_without_workspace_sees_none(self, backend: SandboxBackend) -> None:
        # Neither at the fixed path nor at its real one (a backend that isolates nothing sees the host's).
        r = backend.run(f"ls /workspace 2>&1; ls {backend.workspace} 2>&1; pwd", workspace=False)
        assert r.termination is Termination.EXITED
        assert r.stdout.count(b"No such file") == 2, r.stdout
