"""One goexd across its kills and restarts, for the seeded kill suite: start it armed at a fault
point (or not), SIGKILL it from outside after a delay (during a start too), and tell how it died."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from goexd.faults import ARM_ENV, POINT_ENV
from tests.daemon_process import DaemonProcess

_HIT = re.compile(r"goexd: fault point (\S+) hit")
RECOVERY_LINE = "recovery: "  # engine.py's warnings as it resolves each action left unresolved


class Violation(AssertionError):
    """goexd broke an invariant of the suite (the message says which, with the seed's trace)."""


@dataclass(frozen=True)
class Death:
    point: str | None  # the fault point it killed itself at; None: killed from outside
    in_recovery: bool  # the log shows recovery had begun resolving an action in this start


class Killer:
    """SIGKILL to goexd's process after `delay_s`, from a thread, unless cancelled first."""

    def __init__(self, life: Life, delay_s: float) -> None:
        self._life = life
        self._delay = delay_s
        self._cancel = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while self._life.d.proc is None and time.monotonic() < deadline:  # a start has not spawned it yet
            if self._cancel.wait(0.005):
                return
        if self._cancel.wait(self._delay):
            return
        with self._life.lock:
            proc = self._life.d.proc
            if not self._cancel.is_set() and proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                self.fired = True

    def cancel(self) -> None:
        with self._life.lock:
            self._cancel.set()
        self._thread.join(5)


class Life:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.d = DaemonProcess(root, env={ARM_ENV: "1"})
        self.lock = threading.Lock()
        self._log_from = 0
        self.last_start_s = 10.0

    def start(self, spec: str | None, startup_kill_s: float | None) -> Death | None:
        """Start goexd (armed at `spec`); None once it serves, or how it died before that."""
        if spec:
            self.d.env[POINT_ENV] = spec
        else:
            self.d.env.pop(POINT_ENV, None)
        self._log_from = len(self.d.log())
        self.d.proc = None
        killer = Killer(self, startup_kill_s) if startup_kill_s is not None else None
        t0 = time.monotonic()
        try:
            self.d.start(timeout=180)
        except RuntimeError as exc:
            if self.d.proc is None or self.d.proc.returncode != -signal.SIGKILL:
                raise Violation(f"goexd did not start: {exc}") from None
            return self.death()
        finally:
            if killer is not None:
                killer.cancel()
        if killer is not None and killer.fired:  # it came as goexd became healthy, before it was called off
            return self.death()
        self.last_start_s = time.monotonic() - t0
        return None

    def alive(self) -> bool:
        return self.d.proc is not None and self.d.proc.poll() is None

    def dead_after_error(self) -> bool:
        """After a failed call: whether goexd died (a SIGKILL'd process may take a moment to be reaped)."""
        assert self.d.proc is not None
        try:
            self.d.proc.wait(5)
        except subprocess.TimeoutExpired:
            return False
        return True

    def death(self) -> Death:
        """How the (dead) goexd died: it must be SIGKILL, never a crash of its own."""
        assert self.d.proc is not None
        code = self.d.proc.wait(30)
        self.d.kill()  # closes the client's channel
        tail = self.new_log()
        if code != -signal.SIGKILL:
            raise Violation(f"goexd exited with {code}, not by SIGKILL:\n{tail[-4000:]}")
        hit = _HIT.search(tail)
        return Death(hit[1] if hit else None, RECOVERY_LINE in tail and "serving on" not in tail)

    def kill_now(self) -> None:
        with self.lock:
            if self.d.proc is not None and self.d.proc.poll() is None:
                self.d.proc.send_signal(signal.SIGKILL)

    def new_log(self) -> str:
        return self.d.log()[self._log_from :]

    def stop(self) -> None:
        self.d.env.pop(POINT_ENV, None)
        self.d.stop()
