"""`make bench`, verdict memory part (issue 15): what a remembered verdict costs against the test it saves.

For a workspace (inverse strategy, overlay trials in bwrap, inotify change detection as goexd's
default) at 1k / 10k files, and a SQLite database (inverse strategy) at 10k / 100k rows, each round
in a fresh random order:

- test: `engine/verdict_memory.remembered` with no verdict kept for the pair (its lookup, the
  resource's fingerprint, the real test, the verdict written to the journal);
- reuse: the same call once the pair's verdict is kept and the state unchanged (the lookup and the
  fingerprint: no test);
- bare test: the resource's test alone (`manager.test`), for what the memory adds to a test.

Journal with sync=full, as goexd's default. Prints Markdown and writes bench/verdict_memory_results.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import ms_since, pct, progress, publish, table
from run import make_workspace

from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, Reversibility, UndoStrategy, Verdict
from goexd.domain.sandbox import Limits
from goexd.engine.journal import Journal
from goexd.engine.verdict_memory import VerdictMemory, remembered
from goexd.resources.fs.inverse import FsInverseResource
from goexd.resources.sqlite.inverse import SqliteInverseResource
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore

LIMITS = Limits(timeout_s=120)
OUT = Path(__file__).with_name("verdict_memory_results.md")


def sh(script: str) -> ActionSpec:
    return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", script))


def sql(text: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=text)


Manager = FsInverseResource | SqliteInverseResource


def rounds_of(
    manager: Manager, memory: VerdictMemory, pair: tuple[ActionSpec, ActionSpec], rounds: int
) -> dict[str, list[float]]:
    spec, inverse = pair
    resource = manager.resource

    def call(variant: ActionSpec) -> Reversibility | None:
        return remembered(
            memory, resource, manager, variant, inverse, "bench", lambda: manager.test(variant, inverse, LIMITS, None)
        )

    counter = iter(range(10**9))

    def test() -> float:
        # A pair never seen: the same action with a different no-op suffix each time (a new key, the same work).
        fresh = (
            sh(f"{spec.argv[2]}; : {next(counter)}")
            if spec.kind is ActionKind.SHELL
            else sql(f"{spec.sql}; SELECT {next(counter)}")
        )
        t0 = time.perf_counter()
        got = call(fresh)
        ms = ms_since(t0)
        assert got is not None and got.verdict is Verdict.PASSED and "reused" not in got.detail, got
        return ms

    def reuse() -> float:
        t0 = time.perf_counter()
        got = call(spec)
        ms = ms_since(t0)
        assert got is not None and got.detail.startswith("reused: passed"), got
        return ms

    def bare() -> float:
        t0 = time.perf_counter()
        got = manager.test(spec, inverse, LIMITS, None)
        ms = ms_since(t0)
        assert got.verdict is Verdict.PASSED, got
        return ms

    call(spec)  # kept once: every reuse() finds it; also warms the caches
    variants: dict[str, Callable[[], float]] = {"test": test, "reuse": reuse, "bare test": bare}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            times[name].append(variants[name]())
    return times


def workspace(base: Path, n: int, memory: VerdictMemory, rounds: int) -> dict[str, list[float]]:
    progress(f"workspace of {n} files")
    ws = make_workspace(base, n)
    store = GitWorkspaceStore(base / f"store{n}.git", ws, watch=True)
    store.capture()
    overlays = base / f"overlays{n}"
    overlays.mkdir()
    resource = Resource("fs", ResourceKind.FS, str(ws), UndoStrategy.INVERSE)
    manager = FsInverseResource(resource, store, BwrapSandbox(), [base / f"store{n}.git"], overlays_dir=overlays)
    try:
        return rounds_of(manager, memory, (sh("echo x >> d0/f0.txt"), sh("sed -i '$ d' d0/f0.txt")), rounds)
    finally:
        manager.close()


def database(base: Path, rows: int, memory: VerdictMemory, rounds: int) -> dict[str, list[float]]:
    progress(f"sqlite database of {rows} rows")
    path = base / f"db{rows}.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, i, f"row {i}") for i in range(rows)))
    manager = SqliteInverseResource(Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.INVERSE))
    try:
        pair = (sql("UPDATE t SET n = n + 1 WHERE id = 7"), sql("UPDATE t SET n = n - 1 WHERE id = 7"))
        return rounds_of(manager, memory, pair, rounds)
    finally:
        manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="goex-vmem-bench-", dir="/var/tmp") as tmp:
        base = Path(tmp)
        memory = VerdictMemory(Journal(base / "journal.sqlite3", sync="full"))
        cases = [
            ("workspace, 1k files", lambda: workspace(base, 1000, memory, args.rounds)),
            ("workspace, 10k files", lambda: workspace(base, 10000, memory, args.rounds)),
            ("sqlite, 10k rows", lambda: database(base, 10_000, memory, args.rounds)),
            ("sqlite, 100k rows", lambda: database(base, 100_000, memory, args.rounds)),
        ]
        for name, run in cases:
            times = run()
            for variant, xs in times.items():
                rows.append([name, variant, str(len(xs)), f"{pct(xs, 0.5):.1f}", f"{pct(xs, 0.9):.1f}"])
        memory.journal.close()
    text = "\n\n".join(
        [
            "# Verdict memory: a remembered verdict against the test it saves (bench/verdict_memory_bench.py)",
            f"One run on this shared 2-core machine (1-minute load average {load:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end). Times in ms; each variant once per round, in a random "
            "order per round. `test`: a pair never seen (lookup, fingerprint, the test, the verdict journaled); "
            "`reuse`: the same pair on the same state (lookup and fingerprint only); `bare test`: the "
            "resource's test alone.",
            table(["resource", "variant", "rounds", "p50", "p90"], "llrrr", rows),
        ]
    )
    publish(text + "\n", OUT, started)


if __name__ == "__main__":
    main()
