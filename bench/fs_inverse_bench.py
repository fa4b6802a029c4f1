"""`make bench`, file inverse part (issue 15): trying an action and its inverse on a throwaway copy
of a workspace, copy-on-write (an overlay) beside a plain `cp -a` copy, at 1k / 10k / 100k files.

Per round, in a fresh random order (so that drift of this shared 2-core machine hits all alike):

- action: the action alone, one sandbox run over a scratch copy of the workspace (its own time;
  the copy is put back by running the inverse after, untimed);
- trial: goexd's reversibility test, `fs_trial.try_pair`: the workspace's snapshot (incremental,
  inotify, as goexd's default), an overlay over it, the action then the inverse in the sandbox over
  the same upper, the fingerprint after (snapshot + upper) compared with the one before by id, the
  upper removed;
- action over an overlay: the action alone as goexd runs it (over a fresh overlay, nothing read);
- 2 runs over an overlay: the same two sandbox runs over a fresh overlay, nothing read or
  compared (what the fingerprints cost is the difference);
- cp -a: `cp -a` of the workspace, the action and the inverse run on the copy (the copy's removal
  is timed apart: "rm -rf").

Targets: trial <= 2x action + 20 ms at 10k files; trial >= 10x faster than cp -a at 100k.
Needs bwrap and overlayfs (root, or a user namespace). Prints Markdown and writes
bench/fs_inverse_results.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import ms_since, pct, progress, publish, table
from run import make_workspace

from goexd.domain.models import ActionKind, ActionSpec, Verdict
from goexd.domain.sandbox import Limits, SandboxSpec, WorkspaceOverlay
from goexd.resources.fs.trial import TrialSite, try_pair
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore

ACTION = "echo x >> d0/f0.txt && echo new > added.txt && chmod 600 d1/f100.txt"
INVERSE = "sed -i '$ d' d0/f0.txt && rm added.txt && chmod 644 d1/f100.txt"
LIMITS = Limits(timeout_s=120)
OUT = Path(__file__).with_name("fs_inverse_results.md")


def sh(script: str) -> ActionSpec:
    return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", script))


def _fresh_overlay(root: Path) -> WorkspaceOverlay:
    shutil.rmtree(root, ignore_errors=True)
    (root / "upper").mkdir(parents=True)
    (root / "work").mkdir()
    return WorkspaceOverlay(root / "upper", root / "work")


def _discard(root: Path) -> None:
    subprocess.run(["chmod", "-R", "u+rwx", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def bench_size(base: Path, n: int, rounds: int) -> dict[str, list[float]]:
    progress(f"{n} files: making the workspace and its first snapshot")
    ws = make_workspace(base, n)
    for d in (ws / "d0", ws / "d1"):
        d.chmod(0o755)
    (ws / "d1" / "f100.txt").chmod(0o644)
    scratch = base / f"scratch{n}"
    subprocess.run(["cp", "-a", str(ws), str(scratch)], check=True)
    store = GitWorkspaceStore(base / f"store{n}.git", ws)
    store.capture()
    sandbox = BwrapSandbox()
    overlays = base / f"overlays{n}"
    overlays.mkdir()
    site = TrialSite(ws, store, sandbox, (base / f"store{n}.git",), overlays)
    copy = base / f"copy{n}"

    def run(script: str, where: Path, overlay: WorkspaceOverlay | None = None) -> None:
        done = sandbox.run(SandboxSpec(["sh", "-c", script], where, limits=LIMITS, overlay=overlay))
        assert done.exit_code == 0, done

    def action() -> float:
        t0 = time.perf_counter()
        run(ACTION, scratch)
        ms = ms_since(t0)
        run(INVERSE, scratch)
        return ms

    def trial() -> float:
        t0 = time.perf_counter()
        got = try_pair(site, sh(ACTION), sh(INVERSE), LIMITS, None, without_inverse="failed")
        ms = ms_since(t0)
        assert got.reversibility.verdict is Verdict.PASSED, got.reversibility.detail
        return ms

    def action_over_overlay() -> float:
        overlay = _fresh_overlay(base / "plain-overlay")
        t0 = time.perf_counter()
        run(ACTION, ws, overlay)
        ms = ms_since(t0)
        _discard(base / "plain-overlay")
        return ms

    def runs_over_overlay() -> float:
        overlay = _fresh_overlay(base / "plain-overlay")
        t0 = time.perf_counter()
        run(ACTION, ws, overlay)
        _discard(overlay.work)  # as the trial does: a volatile mount's marker refuses a second mount
        overlay.work.mkdir()
        run(INVERSE, ws, overlay)
        ms = ms_since(t0)
        _discard(base / "plain-overlay")
        return ms

    removal: list[float] = []

    def cp_a() -> float:
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", str(ws), str(copy)], check=True)
        run(ACTION, copy)
        run(INVERSE, copy)
        ms = ms_since(t0)
        t1 = time.perf_counter()
        shutil.rmtree(copy)
        removal.append(ms_since(t1))
        return ms

    variants: dict[str, Callable[[], float]] = {
        "action": action,
        "action over an overlay": action_over_overlay,
        "trial": trial,
        "2 runs over an overlay": runs_over_overlay,
        "cp -a + 2 runs": cp_a,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    trial()  # warm: the store's indexes, the page cache
    for i in range(rounds):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            times[name].append(variants[name]())
        progress(f"{n} files: round {i + 1}/{rounds}")
    times["rm -rf of the copy"] = removal
    store.close()
    for p in (ws, scratch, overlays):
        _discard(p)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", default="30,20,5", help="rounds per size")
    args = parser.parse_args()
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    rounds = [int(r) for r in args.rounds.split(",")]
    load = os.getloadavg()[0]
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="goex-fsinv-bench-", dir="/var/tmp") as tmp:
        for n, r in zip(sizes, rounds, strict=True):
            times = bench_size(Path(tmp), n, r)
            p50 = {k: pct(v, 0.5) for k, v in times.items()}
            for name, xs in times.items():
                rows.append([f"{n:,}", name, str(len(xs)), f"{pct(xs, 0.5):.1f}", f"{pct(xs, 0.9):.1f}"])
            budget = 2 * p50["action"] + 20
            budget_overlay = 2 * p50["action over an overlay"] + 20
            speedup = p50["cp -a + 2 runs"] / p50["trial"]
            verdicts.append(
                [
                    f"{n:,}",
                    f"{p50['trial']:.1f}",
                    f"{budget:.1f}",
                    "met" if p50["trial"] <= budget else "NOT met",
                    f"{budget_overlay:.1f}",
                    "met" if p50["trial"] <= budget_overlay else "NOT met",
                    f"{speedup:.1f}x",
                ]
            )
    text = "\n\n".join(
        [
            "# File inverse test: overlay trial vs cp -a (bench/fs_inverse_bench.py)",
            f"One run on this shared 2-core machine (1-minute load average {load:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end). Action: `{ACTION}`; inverse: `{INVERSE}`. "
            "Workspaces of 100-file directories, 8 lines per file. Times in ms; every variant once per round, "
            "in a random order per round.",
            table(["files", "variant", "rounds", "p50", "p90"], "rrrrr", rows),
            "Targets: trial p50 <= 2 x action p50 + 20 ms at 10k files; trial >= 10x faster than "
            "cp -a + the same two runs at 100k.",
            "The action's own time, two ways: run directly on a copy, and as goexd runs it (over an overlay).",
            table(
                [
                    "files",
                    "trial p50",
                    "2 x action + 20",
                    "vs direct action",
                    "2 x action over an overlay + 20",
                    "vs action as goexd runs it",
                    "cp -a / trial",
                ],
                "rrrrrrr",
                verdicts,
            ),
        ]
    )
    publish(text + "\n", OUT, started)


if __name__ == "__main__":
    main()
