"""Idle-session leases (config session_idle_lease_s; 0 = off).

A session nobody uses outlives its client: an agent that crashed, a script that never closed it. With a
lease, goexd lets one go once it has been idle that long: no action queued or running, and no call that
uses it (submit, commit, undo, describe, ...; Sessions.live). One with nothing pending is closed,
its resources free; one with pending actions becomes EXPIRED: they stay pending (never committed or undone
on their own) and it keeps its resources, so no other session can act on them meanwhile; any call naming
it, or CreateSession with reuse over the same resources, opens it again. A session whose pending work
lives in an open database transaction (the transaction strategy) is never let go: closing its connection
would roll that work back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["IdleLeases"]

MAX_SWEEP_S = 30.0


class IdleLeases:
    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self._started = time.monotonic()  # sessions found open at start are idle from then
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self.lease_s > 0

    def touch(self, session_id: str) -> None:
        if self.on:
            with self._lock:
                self._used[session_id] = time.monotonic()

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._used.pop(session_id, None)

    def idle_s(self, session_id: str) -> float:
        with self._lock:
            return time.monotonic() - self._used.get(session_id, self._started)

    def expired(self, session_ids: Iterable[str]) -> list[str]:
        return [s for s in session_ids if self.idle_s(s) >= self.lease_s]

    def sweep_every(self, stop: threading.Event, sweep: Callable[[], Any]) -> threading.Thread:
        """Run `sweep` every quarter lease (at most MAX_SWEEP_S apart) until `stop` is set."""
        period = min(max(self.lease_s / 4, 0.05), MAX_SWEEP_S)

        def loop() -> None:
            while not stop.wait(period):
                sweep()

        thread = threading.Thread(target=loop, name="goexd-leases", daemon=True)
        thread.start()
        return thread
