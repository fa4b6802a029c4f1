"""Micro-benchmark of what showing the workspace at its real path adds to a sandbox spawn (paired).

    .venv/bin/python bench/real_path_micro.py [--rounds 200]

Each round spawns `true` over a workspace with a `.git` (bound read-only, as goexd binds it) two
ways back to back, in a random order: as goexd does now (the workspace at /workspace and at its
real path, `.git` read-only at both, the real path's parents made by bwrap) and with the alias only
(`bwrap_plan._workspace_places` patched to `/workspace` alone: the plan before issue 19). Direct
and over an overlay. Prints each way's p50 and the paired p50 difference, which cancels most of a
shared machine's drift. Real bwrap; no daemon.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import progress, table

from goexd.domain.sandbox import Limits, SandboxSpec, Termination, WorkspaceOverlay
from goexd.sandbox import bwrap_plan
from goexd.sandbox.bwrap import BwrapSandbox

Places = Callable[[str, str], tuple[str, ...]]
BOTH: Places = bwrap_plan._workspace_places


def alias_only(mount: str, real: str) -> tuple[str, ...]:
    return (mount,)


WAYS: dict[str, Places] = {"alias only (before)": alias_only, "alias + real path": BOTH}


def run_once(sandbox: BwrapSandbox, ws: Path, scratch: Path | None, places: Places) -> float:
    spec_overlay = None
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "upper").mkdir(parents=True)
        (scratch / "work").mkdir()
        spec_overlay = WorkspaceOverlay(scratch / "upper", scratch / "work")
    spec = SandboxSpec(["true"], ws, readonly_subpaths=[".git"], overlay=spec_overlay, limits=Limits(timeout_s=30.0))
    bwrap_plan._workspace_places = places
    try:
        t0 = time.perf_counter()
        ran = sandbox.run(spec)
        elapsed = (time.perf_counter() - t0) * 1000
    finally:
        bwrap_plan._workspace_places = BOTH
    if ran.termination is not Termination.EXITED or ran.exit_code != 0:
        raise SystemExit(f"the run failed: {ran}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=200)
    args = p.parse_args()
    sandbox = BwrapSandbox()
    rows = []
    with tempfile.TemporaryDirectory(prefix="goex-real-path-micro-", dir="/var/tmp") as tmp:
        ws = Path(tmp) / "project" / "ws"
        (ws / ".git").mkdir(parents=True)
        (ws / "a.txt").write_text("a\n")
        for isolation, scratch in (("direct", None), ("overlay", Path(tmp) / "overlay")):
            times: dict[str, list[float]] = {w: [] for w in WAYS}
            for r in range(args.rounds + 5):
                order = list(WAYS)
                random.shuffle(order)
                for way in order:
                    ms = run_once(sandbox, ws, scratch, WAYS[way])
                    if r >= 5:  # the first rounds warm caches
                        times[way].append(ms)
                if r % 50 == 0:
                    progress(f"{isolation}: round {r}/{args.rounds + 5}")
            before = times["alias only (before)"]
            for way, ts in times.items():
                diff = [a - b for a, b in zip(ts, before, strict=True)]
                rows.append([isolation, way, f"{statistics.median(ts):.2f}", f"{statistics.median(diff):+.3f}"])
    print(table(["isolation", "spawn", "p50 (ms)", "paired p50 over before (ms)"], "llrr", rows))
    print(f"\n{args.rounds} rounds each")


if __name__ == "__main__":
    main()
