"""Micro-benchmark of what running over an overlay adds to a sandbox run (paired, in-process).

    .venv/bin/python bench/overlay_micro.py [--rounds 40]

Each round runs the same small shell command four ways back to back, in a rotating order:
directly on the workspace; over an overlay mounted `volatile` (kernel 5.10+) by the daemon itself
(mount(2) in its mount dir: a root goexd's way, sandbox/overlay_mounts.py); over one mounted by the
launch chain (`unshare` + sh + util-linux `mount`: an unprivileged goexd's way, and a root one's
before); and over one the launch chain mounts without `volatile` (overlayfs then syncs the state
dir's whole filesystem when the run's mount namespace goes). Prints each way's p50 and the paired
p50 differences, which cancel most of a shared machine's drift. Real bwrap and overlayfs; no
daemon, snapshot or journal. As root (the daemon's own mounts need it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from measure import progress, table

from goexd.domain.sandbox import Limits, SandboxSpec, Termination, WorkspaceOverlay
from goexd.sandbox import overlay
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.overlay_mounts import OverlayMounts

COMMAND = ["sh", "-c", "echo $$ > changed.txt && echo x >> a.txt"]
MOUNTED = "overlay mounted by goexd"
WAYS = ("direct", MOUNTED, "overlay, launch chain", "overlay, launch chain, synced")


def run_once(sandboxes: dict[str, BwrapSandbox], ws: Path, scratch: Path, way: str) -> float:
    spec_overlay = None
    sandbox = sandboxes[MOUNTED if way == MOUNTED else "plain"]
    if way != "direct":
        overlay.VOLATILE = not way.endswith("synced")
        upper, work = Path(tempfile.mkdtemp(dir=scratch)), Path(tempfile.mkdtemp(dir=scratch))
        os.chmod(upper, os.stat(ws).st_mode & 0o7777)
        spec_overlay = WorkspaceOverlay(upper, work)
    t0 = time.perf_counter()
    ran = sandbox.run(SandboxSpec(COMMAND, ws, overlay=spec_overlay, limits=Limits(timeout_s=30.0)))
    elapsed = (time.perf_counter() - t0) * 1000
    if ran.termination is not Termination.EXITED or ran.exit_code != 0:
        raise SystemExit(f"{way}: the run failed: {ran}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args()
    kernel_volatile = overlay.VOLATILE
    load_at_start = os.getloadavg()[0]
    if not kernel_volatile:
        raise SystemExit(f"kernel {os.uname().release} has no overlayfs volatile option: nothing to compare")
    if os.geteuid() != 0:
        raise SystemExit("run it as root: the daemon's own overlay mounts need it")
    mounts = OverlayMounts.open(f"bench{os.getpid()}")
    sandboxes = {"plain": BwrapSandbox(), MOUNTED: BwrapSandbox(overlay_mounts=mounts)}
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    with tempfile.TemporaryDirectory(prefix="goex-overlay-micro-", dir="/var/tmp") as tmp:
        ws, scratch = Path(tmp) / "ws", Path(tmp) / "scratch"
        ws.mkdir()
        scratch.mkdir()
        (ws / "a.txt").write_text("a\n")
        try:
            for r in range(args.rounds + 2):
                for k in range(len(WAYS)):
                    way = WAYS[(r + k) % len(WAYS)]
                    ms = run_once(sandboxes, ws, scratch, way)
                    if r >= 2:  # the first rounds warm caches
                        times[way].append(ms)
                if r % 10 == 0:
                    progress(f"round {r}/{args.rounds + 2}")
        finally:
            overlay.VOLATILE = kernel_volatile
            mounts.close()
    direct = times["direct"]
    rows = []
    for way in WAYS:
        diff = [a - b for a, b in zip(times[way], direct, strict=True)]
        rows.append([way, f"{statistics.median(times[way]):.1f}", f"{statistics.median(diff):+.1f}"])
    chain, synced = times["overlay, launch chain"], times["overlay, launch chain, synced"]
    mounted_minus_chain = [a - b for a, b in zip(times[MOUNTED], chain, strict=True)]
    synced_minus_volatile = [a - b for a, b in zip(synced, chain, strict=True)]
    print(table(["run", "p50 (ms)", "paired p50 over direct (ms)"], "lrr", rows))
    print(f"\nmounted by goexd - launch chain, paired p50: {statistics.median(mounted_minus_chain):+.1f} ms")
    print(f"synced - volatile (launch chain), paired p50: {statistics.median(synced_minus_volatile):+.1f} ms")
    print(f"({args.rounds} rounds, load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)")


if __name__ == "__main__":
    main()
