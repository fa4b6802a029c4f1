"""The warm pool: containers started ahead of the actions that will use them, one per action.

Words: a *shape* is what a container is made with and cannot change once made (image, user, memory
and process limits, whether it has a workspace and, where the engine binds workspaces at create time,
which binds); a *warm* container is one started and attached, its runner waiting for a request
(container_runner.py); a *lease* takes one warm container of a shape for one run; a *miss* is a lease
that found none and had one made on the spot (a cold start).

Rules:
- a leased container is never given back: its run ends it, and it is removed (`discard`); so no two
  runs, and no two sessions, ever share a container;
- the pool keeps `size` warm containers of every shape leased in the last `idle_s` seconds, refilled in
  the background after each lease; a shape unused that long is drained (its warm containers removed);
- a warm container whose stream has ended (the engine restarted, someone removed it) is dropped at
  lease time and another taken;
- `close` stops the refills and removes every container the pool holds; removals are done by a small
  set of background workers, so a run never waits for one; a removal that fails (the engine away) is tried
  again every `RETRY_REMOVAL_S` while goexd runs (and a next start removes what is left: container_engine.reap).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

REFILL_WORKERS = 2
REMOVE_WORKERS = 2
TICK_S = 1.0  # how often the pool looks for shapes to drain
RETRY_REMOVAL_S = 10.0
CLOSE_WAIT_S = 10.0  # at a stop, for the warm containers' removal
CLOSE_WORKERS = 8


@dataclass(frozen=True)
class Shape:
    image: str
    user: str  # "uid:gid"
    memory_bytes: int
    max_processes: int
    workspace: bool  # /workspace is there (a slot or a bind)
    binds: tuple[str, ...] = ()  # binds made at create time (engines without slots); () with slots


class Container(Protocol):
    shape: Shape

    def alive(self) -> bool:
        """Whether it is still warm (its runner waiting, its stream open)."""


C = TypeVar("C", bound=Container)


@dataclass
class ShapeStats:
    warm: int = 0
    leases: int = 0
    misses: int = 0
    made: int = 0
    failed: int = 0


@dataclass(frozen=True)
class PoolStats:
    """What `goex health` shows: totals, and per image."""

    warm: int
    leases: int
    misses: int
    made: int
    failed: int
    removing: int
    shapes: int  # kept warm now
    per_image: dict[str, tuple[int, int, int, int, int]]  # image -> (warm, leases, misses, made, failed)


class Pool(Generic[C]):
    def __init__(
        self,
        make: Callable[[Shape], C],
        discard: Callable[[C], None],
        size: int,
        idle_s: float,
        remove_in_background: bool = True,
    ) -> None:
        self._make = make
        self._in_background = remove_in_background
        self._discard = discard
        self.size = size
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._warm: dict[Shape, collections.deque[C]] = {}
        self._stats: dict[Shape, ShapeStats] = {}  # every shape ever leased (counts kept when drained)
        self._active: dict[Shape, float] = {}  # shapes kept warm -> when last leased (monotonic)
        self._filling: dict[Shape, int] = collections.Counter()
        # Daemon threads, not an executor: a fill waiting on an engine that does not answer must not hold up
        # goexd's exit (an executor's workers are joined at interpreter exit).
        self._refill = _Workers(REFILL_WORKERS, "goex-pool-fill")
        self._remove = _Workers(REMOVE_WORKERS, "goex-pool-remove")
        self._removing = 0
        self._unremoved: list[C] = []  # removals that failed: tried again by the ticker
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="goex-pool-tick", daemon=True)
        self._ticker.start()

    # -- leasing

    def lease(self, shape: Shape) -> tuple[C, bool]:
        """A warm container of `shape` (True), or one made now (False: a miss); the pool refills."""
        if self._closed.is_set():
            raise RuntimeError("the container pool is closed")
        taken: C | None = None
        dead: list[C] = []
        with self._lock:
            stats = self._stats.setdefault(shape, ShapeStats())
            self._active[shape] = time.monotonic()
            stats.leases += 1
            queue = self._warm.setdefault(shape, collections.deque())
            while queue:
                candidate = queue.popleft()
                if candidate.alive():
                    taken = candidate
                    break
                dead.append(candidate)
            if taken is None:
                stats.misses += 1
        for c in dead:
            log.warning("a warm container of %s was gone (engine restarted?): dropped", shape.image)
            self.discard(c)
        self._top_up(shape)
        if taken is not None:
            return taken, True
        try:
            made = self._make(shape)
        except BaseException:
            with self._lock:
                stats.failed += 1
            raise
        with self._lock:
            stats.made += 1
        return made, False

    def discard(self, container: C) -> None:
        """Remove a container (a leased one after its run, a dead one) in the background."""
        with self._lock:
            self._removing += 1
        if not self._in_background:
            self._removed(container)
            return
        if not self._remove.submit(lambda: self._removed(container)):
            self._removed(container)  # the workers are gone (a stop): here, then

    def _removed(self, container: C) -> None:
        try:
            self._discard(container)
        except Exception as e:
            log.warning("cannot remove a container of %s yet: %s", container.shape.image, e)
            with self._lock:
                self._unremoved.append(container)
        finally:
            with self._lock:
                self._removing -= 1

    # -- filling

    def _top_up(self, shape: Shape) -> None:
        """Start as many fills as the shape lacks (warm + being made < size)."""
        with self._lock:
            if self._closed.is_set():
                return
            lacking = self.size - len(self._warm.get(shape, ())) - self._filling[shape]
            self._filling[shape] += max(0, lacking)
        for _ in range(max(0, lacking)):
            self._refill.submit(lambda: self._fill_one(shape))

    def _fill_one(self, shape: Shape) -> None:
        try:
            if self._closed.is_set():
                return
            try:
                made = self._make(shape)
            except Exception as e:
                with self._lock:
                    self._stats.setdefault(shape, ShapeStats()).failed += 1
                log.warning("cannot start a warm container of %s: %s", shape.image, e)
                return
            with self._lock:
                keep = not self._closed.is_set() and shape in self._active
                if keep:
                    self._warm.setdefault(shape, collections.deque()).append(made)
                    self._stats[shape].made += 1
            if not keep:
                self.discard(made)
        finally:
            with self._lock:
                self._filling[shape] -= 1

    def warm_up(self, shape: Shape) -> None:
        """Fill `shape` now in the background, before its first lease (a session opening, say)."""
        with self._lock:
            self._stats.setdefault(shape, ShapeStats())
            self._active[shape] = time.monotonic()
        self._top_up(shape)

    def _tick(self) -> None:
        last_retry = time.monotonic()
        while not self._closed.wait(TICK_S):
            self._drain_idle()
            if self._unremoved and time.monotonic() - last_retry >= RETRY_REMOVAL_S:
                last_retry = time.monotonic()
                with self._lock:
                    again, self._unremoved = self._unremoved, []
                for c in again:
                    self.discard(c)

    def _drain_idle(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        drained: list[C] = []
        with self._lock:
            for shape, last in list(self._active.items()):
                if now - last > self.idle_s:
                    drained += self._warm.pop(shape, collections.deque())
                    del self._active[shape]
        for c in drained:
            self.discard(c)

    # -- reporting and shutting down

    def stats(self) -> PoolStats:
        with self._lock:
            per_image: dict[str, tuple[int, int, int, int, int]] = {}
            totals = ShapeStats()
            for shape, s in self._stats.items():
                warm = len(self._warm.get(shape, ()))
                w, le, m, ma, f = per_image.get(shape.image, (0, 0, 0, 0, 0))
                per_image[shape.image] = (w + warm, le + s.leases, m + s.misses, ma + s.made, f + s.failed)
                totals.warm += warm
                totals.leases += s.leases
                totals.misses += s.misses
                totals.made += s.made
                totals.failed += s.failed
            return PoolStats(
                totals.warm,
                totals.leases,
                totals.misses,
                totals.made,
                totals.failed,
                self._removing,
                len(self._active),
                per_image,
            )

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop refilling, let the fills under way end (what they make is removed), remove every warm container;
        `wait_s` at most for all that (what is left then, an engine that does not answer, say, the next start
        removes: container_engine.reap)."""
        deadline = time.monotonic() + wait_s
        self._closed.set()
        self._refill.stop()
        if not self._refill.idle(wait_s):
            log.warning("a container being made %.0f s after the stop began: left to the next start", wait_s)
        with self._lock:
            left = [c for q in self._warm.values() for c in q] + self._unremoved
            self._warm.clear()
            self._unremoved = []
        # Many at once: each removal waits mostly on the engine, and a stop should not take a removal per container.
        closers = _Workers(CLOSE_WORKERS, "goex-pool-close")
        for c in left:
            with self._lock:
                self._removing += 1
            closers.submit(functools.partial(self._removed, c))
        closers.idle(max(0.0, deadline - time.monotonic()))
        closers.stop()
        if not self._remove.idle(max(0.0, deadline - time.monotonic())):
            log.warning("container removals still running %.0f s after the stop began: left to the next start", wait_s)
        self._remove.stop()


class _Workers:
    """A few daemon threads running jobs from a queue, in order."""

    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._count = count
        self._stopped = False
        for i in range(count):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue `job`; False once stopped (nothing queued)."""
        with self._done:
            if self._stopped:
                return False
            self._pending += 1
        self._jobs.put(job)
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("a container pool job failed")
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until no job is queued or running (at most `timeout` s); whether that came."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        """Take no more jobs; the workers end after the one they run (queued ones are dropped)."""
        with self._done:
            self._stopped = True
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
            with self._done:
                self._pending -= 1
        for _ in range(self._count):
            self._jobs.put(None)


def readable_now(fd: int) -> bool:
    """Whether `fd` has something to read (or is at EOF) right now."""
    with contextlib.suppress(OSError, ValueError):
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready)
    return True
