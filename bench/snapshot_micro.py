"""Micro-benchmark of GitWorkspaceStore: capture / changes / restore p50.

    .venv/bin/python bench/snapshot_micro.py [--sizes 1000 10000] [--repeat 30] [--big-mb 200]

For each workspace size and for watch=True (inotify) vs watch=False (full scans) it
prints the first capture, an unchanged capture, a capture after one small edit,
changes() between the two, and a restore of that small edit (which includes its
before-capture and verifying capture). --big-mb also times a large random file.
Targets: small-edit capture <= 5 ms and small restore <= 10 ms at 10k files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from goexd.snapshots.git_store import GitWorkspaceStore


def make_tree(root: Path, files: int) -> None:
    """Typical source layout: 10 files per directory, 10 directories per parent."""
    for i in range(files):
        d = root / f"pkg{i // 1000}" / f"mod{(i // 100) % 10}" / f"sub{(i // 10) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.py").write_text(f"# file {i}\n" + "x = 1\n" * (i % 50))


def p50(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def once(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def bench(files: int, watch: bool, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        make_tree(ws, files)
        target = ws / "pkg0" / "mod0" / "sub0" / "file0.py"
        with GitWorkspaceStore(Path(tmp) / "store.git", ws, watch=watch) as store:
            out = {"first capture": once(store.capture)}
            out["unchanged capture"] = p50(store.capture, repeat)
            counter = iter(range(10**9))

            def edit_and_capture() -> None:
                target.write_text(f"edit {next(counter)}\n")
                store.capture()

            out["capture after 1 edit"] = p50(edit_and_capture, repeat)
            target.write_text("state A\n")
            a = store.capture()
            target.write_text("state B\n")
            (ws / "pkg0" / "new.txt").write_text("new")
            b = store.capture()
            out["changes (2 paths)"] = p50(lambda: store.changes(a, b), repeat)
            flip = iter(range(10**9))
            out["restore (2 paths)"] = p50(lambda: store.restore(a if next(flip) % 2 else b), repeat)
            out["full scans"] = store.full_scans
            return out


def bench_big(mb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        (ws / "small.txt").write_text("s")
        for watch in (True, False):
            with GitWorkspaceStore(Path(tmp) / f"store-{watch}.git", ws, watch=watch) as store:
                a = store.capture()
                with open(ws / "big.bin", "wb") as f:
                    for _ in range(mb):
                        f.write(os.urandom(1 << 20))
                t = time.perf_counter()
                b = store.capture()
                t_cap = (time.perf_counter() - t) * 1000
                t_away = once(partial(store.restore, a))
                t_back = once(partial(store.restore, b))
                mode = "watch" if watch else "scan"
                print(
                    f"{mb} MB random file, {mode}: capture {t_cap:.0f} ms, "
                    f"restore without it {t_away:.0f} ms, restore with it {t_back:.0f} ms"
                )
                (ws / "big.bin").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--big-mb", type=int, default=0)
    args = parser.parse_args()
    for files in args.sizes:
        for watch in (True, False):
            result = bench(files, watch, args.repeat)
            mode = "watch=True " if watch else "watch=False"
            print(f"{files:>6} files {mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))
    if args.big_mb:
        bench_big(args.big_mb)


if __name__ == "__main__":
    main()
