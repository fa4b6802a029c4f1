"""Who follows each running action (WatchAction streams), for actions submitted `cancel_when_unwatched`.

A client that submits detached and then watches can be killed outright (SIGKILL, a crashed agent): nothing
of it is left to cancel what it started. Such an action is cancelled, and rolled back, once no watch
follows it any more: its last watcher's stream ended while it still ran, or none was opened within
GRACE_S of the submit. A watch ending because the action ended cancels nothing (it is no longer running).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["GRACE_S", "Watchers"]

GRACE_S = 10.0  # from the submit to the first watch: a client's submit-then-watch takes milliseconds


class Watchers:
    def __init__(self, on_unwatched: Callable[[str], None], grace_s: float = GRACE_S) -> None:
        """`on_unwatched(action_id)` cancels the action (it does nothing for one no longer running)."""
        self._on_unwatched = on_unwatched
        self._grace_s = grace_s
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}
        self._armed: dict[str, threading.Timer] = {}

    def cancel_when_unwatched(self, action_id: str) -> None:
        timer = threading.Timer(self._grace_s, self._grace_over, (action_id,))
        timer.daemon = True
        with self._lock:
            self._armed[action_id] = timer
        timer.start()

    def _grace_over(self, action_id: str) -> None:
        with self._lock:
            if action_id not in self._armed or self._count.get(action_id):
                return
        self._on_unwatched(action_id)

    @contextmanager
    def watching(self, action_id: str) -> Iterator[None]:
        with self._lock:
            self._count[action_id] = self._count.get(action_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._count.pop(action_id) - 1
                if left:
                    self._count[action_id] = left
                unwatched = not left and action_id in self._armed
            if unwatched:
                self._on_unwatched(action_id)

    def forget(self, action_id: str) -> None:
        """The action left the running phase: nothing to cancel any more."""
        with self._lock:
            timer = self._armed.pop(action_id, None)
        if timer is not None:
            timer.cancel()
