"""When goexd stops: at a signal or a Stop request; with drain, once nothing a stop would interrupt remains.

Draining (`goexd --drain` / `drain_on_stop` for signals, or Admin.Stop(drain)) refuses new sessions and
actions with UNAVAILABLE at once, and lets clients commit or undo what is pending; goexd stops when no
action is running and none is pending in a transaction-strategy database (engine/stopping.py), or at the
drain timeout. A second signal while draining stops at once.

The kernel may hand a process signal to any of gRPC's threads; Python then runs the handler only when the
main thread next runs bytecode, so the main thread must never block for good (an Event.wait() without a
timeout did, once, and goexd ignored SIGTERM): it polls. The handler only appends to a list: taking a lock
in it could deadlock against the interrupted main thread.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from goexd.engine.engine import Engine
from goexd.engine.stopping import Interrupted, summary

log = logging.getLogger("goexd")
POLL_S = 0.2


class StopControl:
    def __init__(self, engine: Engine, drain_on_signal: bool, drain_timeout_s: float) -> None:
        self.engine = engine
        self.drain_on_signal = drain_on_signal
        self.drain_timeout_s = drain_timeout_s
        self._signals: list[int] = []
        self._now = threading.Event()  # stop without (further) draining
        self._lock = threading.Lock()
        self._drain_until: float | None = None

    def install(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self._signals.append(signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def request(self, drain: bool, timeout_s: float = 0.0) -> list[Interrupted]:
        """A Stop request (any thread): what stopping now interrupts; with drain, what goexd waits for."""
        found = self.engine.interrupted_by_stop()
        if drain:
            self._start_drain(timeout_s or self.drain_timeout_s, "a Stop request")
        else:
            log.warning("Stop requested: stopping now; %s", summary(found))
            self._now.set()
        return found

    def _start_drain(self, timeout_s: float, by: str) -> None:
        with self._lock:
            until = time.monotonic() + timeout_s
            self._drain_until = until if self._drain_until is None else min(self._drain_until, until)
        self.engine.drain()
        log.warning(
            "draining (%s): refusing new sessions and actions for up to %g s; waiting for: %s",
            by,
            timeout_s,
            summary(self.engine.interrupted_by_stop()),
        )

    def wait(self) -> str:
        """Block the main thread until goexd should stop; why, for the log."""
        handled = 0
        while True:
            if len(self._signals) > handled:
                name = signal.Signals(self._signals[handled]).name
                handled = len(self._signals)
                if not self.drain_on_signal or self.engine.draining:
                    return f"received {name}"
                self._start_drain(self.drain_timeout_s, f"received {name}; send it again to stop at once")
            if self._now.is_set():
                return "Stop requested"
            if self._drain_until is not None:
                if not self.engine.interrupted_by_stop():
                    return "drained: nothing running or pending in a database transaction"
                if time.monotonic() >= self._drain_until:
                    return "the drain timed out"
            time.sleep(POLL_S)
