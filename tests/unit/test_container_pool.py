"""The warm pool's rules (sandbox/container_pool.py), on containers that are plain objects: the pool's logic
alone; the real engine's containers are the conformance and end-to-end suites' (test_sandbox_container.py,
tests/e2e/test_container_sandbox.py)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from goexd.sandbox import container_pool
from goexd.sandbox.container_pool import Pool, Shape

SHAPE = Shape("img", "1000:1000", 64 << 20, 32, True)
OTHER = Shape("img", "1000:1000", 128 << 20, 32, True)


@dataclass
class Fake:
    shape: Shape
    n: int
    dead: bool = False

    def alive(self) -> bool:
        return not self.dead


@dataclass
class Engine:
    """Makes and removes Fakes, counting; `fail_removals` makes removals raise until cleared."""

    counter: Iterator[int] = field(default_factory=itertools.count)
    made: list[Fake] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    fail_removals: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def make(self, shape: Shape) -> Fake:
        time.sleep(0.01)
        with self.lock:
            fake = Fake(shape, next(self.counter))
            self.made.append(fake)
        return fake

    def remove(self, fake: Fake) -> None:
        if self.fail_removals:
            raise OSError("engine away")
        with self.lock:
            self.removed.append(fake.n)

    def live(self) -> set[int]:
        with self.lock:
            return {f.n for f in self.made} - set(self.removed)


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)
    assert check(), "timed out"  # type: ignore[operator]


@pytest.fixture
def engine() -> Engine:
    return Engine()


def test_a_lease_is_never_handed_out_twice_and_the_pool_refills(engine: Engine) -> None:
    pool: Pool[Fake] = Pool(engine.make, engine.remove, size=2, idle_s=60)
    first, hit = pool.lease(SHAPE)
    assert not hit  # nothing was warm: a miss, made on the spot
    wait_until(lambda: pool.stats().warm == 2)
    leased = [first]
    for _ in range(6):
        c, _ = pool.lease(SHAPE)
        leased.append(c)
        pool.discard(c)
    assert len({c.n for c in leased}) == 7
    stats = pool.stats()
    assert stats.leases == 7 and stats.misses >= 1
    pool.close()
    assert engine.live() == {first.n}  # the pool removed all but the one leased and never discarded


def test_sixteen_leases_at_once_get_sixteen_containers(engine: Engine) -> None:
    pool: Pool[Fake] = Pool(engine.make, engine.remove, size=2, idle_s=60)
    got: list[Fake] = []
    start = threading.Barrier(16)

    def take() -> None:
        start.wait()
        got.append(pool.lease(SHAPE)[0])

    threads = [threading.Thread(target=take) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({c.n for c in got}) == 16
    pool.close()


def test_a_dead_warm_container_is_dropped_at_lease_and_another_taken(engine: Engine) -> None:
    pool: Pool[Fake] = Pool(engine.make, engine.remove, size=1, idle_s=60)
    pool.warm_up(SHAPE)
    wait_until(lambda: pool.stats().warm == 1)
    (warm,) = engine.made
    warm.dead = True  # its stream ended: the engine restarted, say
    taken, hit = pool.lease(SHAPE)
    assert taken is not warm and not hit
    wait_until(lambda: warm.n in engine.removed)
    pool.close()


def test_an_idle_shape_is_drained_and_its_counts_kept(engine: Engine) -> None:
    pool: Pool[Fake] = Pool(engine.make, engine.remove, size=2, idle_s=0.2)
    pool.discard(pool.lease(SHAPE)[0])
    pool.discard(pool.lease(OTHER)[0])
    wait_until(lambda: pool.stats().warm == 4)
    wait_until(lambda: pool.stats().warm == 0 and pool.stats().shapes == 0, timeout=10)
    assert engine.live() == set()
    assert pool.stats().leases == 2
    pool.close()


def test_a_failed_removal_is_tried_again_and_close_is_bounded(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container_pool, "RETRY_REMOVAL_S", 0.0)
    pool: Pool[Fake] = Pool(engine.make, engine.remove, size=0, idle_s=60)
    engine.fail_removals = True
    c, _ = pool.lease(SHAPE)
    pool.discard(c)
    time.sleep(1.5)
    assert c.n not in engine.removed
    engine.fail_removals = False
    wait_until(lambda: c.n in engine.removed, timeout=5)

    slow = threading.Event()
    pool2: Pool[Fake] = Pool(engine.make, lambda f: slow.wait(30), size=1, idle_s=60)
    pool2.warm_up(SHAPE)
    wait_until(lambda: pool2.stats().warm == 1)
    started = time.monotonic()
    pool2.close(wait_s=0.5)  # a removal that hangs holds the stop back no longer than that
    assert time.monotonic() - started < 3
    slow.set()
    pool.close()
