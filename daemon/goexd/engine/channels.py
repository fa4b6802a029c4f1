"""Per-action event channels feeding WatchAction: state changes and output chunks.

A channel keeps its events (output capped) so a watcher that arrives late replays them;
it is closed when the action leaves the running phase.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from goexd.domain.models import ActionState
from goexd.domain.sandbox import Stream

REPLAY_BYTES = 4 * 1024 * 1024
KEEP_CLOSED = 256


@dataclass(frozen=True)
class Event:
    at: float
    state: ActionState | None = None
    stream: Stream | None = None
    data: bytes = b""


class Channel:
    def __init__(self) -> None:
        self._events: list[Event] = []
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()

    def state(self, state: ActionState) -> None:
        self._put(Event(time.time(), state=state))

    def output(self, stream: Stream, data: bytes) -> None:
        if self._bytes >= REPLAY_BYTES:
            return
        self._bytes += len(data)
        self._put(Event(time.time(), stream=stream, data=data))

    def _put(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def follow(self, alive: threading.Event | None = None, poll_s: float = 0.5) -> Iterator[Event]:
        """Every event from the start, then new ones until closed (or `alive` is cleared)."""
        i = 0
        while True:
            with self._cond:
                while i >= len(self._events) and not self._closed:
                    self._cond.wait(poll_s)
                    if alive is not None and not alive.is_set():
                        return
                batch = self._events[i:]
                i = len(self._events)
                done = self._closed
            yield from batch
            if done and i >= len(self._events):
                return


class ChannelRegistry:
    def __init__(self) -> None:
        self._open: dict[str, Channel] = {}
        self._closed: OrderedDict[str, Channel] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, action_id: str) -> Channel:
        ch = Channel()
        with self._lock:
            self._open[action_id] = ch
        return ch

    def get(self, action_id: str) -> Channel | None:
        with self._lock:
            return self._open.get(action_id) or self._closed.get(action_id)

    def close(self, action_id: str) -> None:
        with self._lock:
            ch = self._open.pop(action_id, None)
            if ch is None:
                return
            self._closed[action_id] = ch
            while len(self._closed) > KEEP_CLOSED:
                self._closed.popitem(last=False)
        ch.close()
