"""`make bench`: goexd action round trip and undo latency vs a GoEx-style baseline, in one run.

For each workspace size (1k, 10k, 100k files) it measures, p50/p99:
- goexd: a small shell action submitted over gRPC until its result (sandboxed run over an
  overlay of the workspace, snapshot, the upper applied), and the undo of that action
  (three-way: conflict check, the action's paths put back, verification);
- goexd with fs.isolation = "direct" (snapshot before, run on the workspace itself, snapshot
  after): the difference is what exact attribution (the overlay) costs;
- baseline (the GoEx prototype's way): per action a fresh `git init && git add -A && git commit`
  of the workspace plus a fresh bwrap sandbox; undo = `git reset --hard && git clean -fdx`.
Prints a Markdown table (copy it into the README) and writes it to bench/results.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import pct

from goex.v1 import actions_pb2 as apb
from goex.v1 import actions_pb2_grpc, sessions_pb2_grpc
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.launcher import DaemonProcess

ACTION = "echo $$ > changed.txt && echo x >> d0/f0.txt"
BWRAP = [
    "bwrap",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    "--unshare-all",
    "--die-with-parent",
]


def make_workspace(root: Path, n: int) -> Path:
    ws = root / f"ws{n}"
    for i in range(n):
        d = ws / f"d{i // 100}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"f{i}.txt").write_text(f"file {i}\n" * 8)
    return ws


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def bench_goexd(d: DaemonProcess, ws: Path, reps: int) -> tuple[list[float], list[float]]:
    ch = d.connect()
    sessions = sessions_pb2_grpc.SessionsStub(ch)
    actions = actions_pb2_grpc.ActionsStub(ch)
    session = sessions.CreateSession(
        spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))]), timeout=600
    ).session
    req = apb.SubmitActionRequest(
        session_id=session.id, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", ACTION]))
    )
    run_ms, undo_ms = [], []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        action = actions.SubmitAction(req, timeout=120).action
        t1 = time.perf_counter()
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        undone = actions.UndoAction(apb.UndoActionRequest(session_id=session.id), timeout=120).undone
        t2 = time.perf_counter()
        assert undone[0].state == pb.ACTION_STATE_UNDONE
        if i >= 2:  # the first rounds warm caches on both sides
            run_ms.append((t1 - t0) * 1000)
            undo_ms.append((t2 - t1) * 1000)
    sessions.CloseSession(spb.CloseSessionRequest(session_id=session.id, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60)
    return run_ms, undo_ms


def bench_baseline(ws: Path, reps: int, scratch: Path) -> tuple[list[float], list[float]]:
    run_ms, undo_ms = [], []
    git_dir = scratch / "baseline.git"
    env = {
        **os.environ,
        "GIT_DIR": str(git_dir),
        "GIT_WORK_TREE": str(ws),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], env=env, check=True, capture_output=True)

    for i in range(reps + 1):

        def action() -> None:
            shutil.rmtree(git_dir, ignore_errors=True)
            git("init", "-q")
            git("add", "-A")
            git("commit", "-q", "-m", "pre-action")
            subprocess.run(
                [*BWRAP, "--bind", str(ws), str(ws), "--chdir", str(ws), "sh", "-c", ACTION],
                check=True,
                capture_output=True,
            )

        def undo() -> None:
            git("reset", "-q", "--hard")
            git("clean", "-qfdx")

        a, u = timed(action), timed(undo)
        if i >= 1:
            run_ms.append(a)
            undo_ms.append(u)
    shutil.rmtree(git_dir, ignore_errors=True)
    return run_ms, undo_ms


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="goex-bench-") as tmp:
        root = Path(tmp)
        daemon = DaemonProcess(root / "daemon", config_toml='journal_sync = "full"\n')
        direct = DaemonProcess(root / "direct", config_toml='journal_sync = "full"\n[fs]\nisolation = "direct"\n')
        (root / "daemon").mkdir()
        (root / "direct").mkdir()
        daemon.start()
        direct.start()
        try:
            for n in sizes:
                print(f"workspace of {n} files ...", file=sys.stderr, flush=True)
                ws = make_workspace(root, n)
                reps = args.reps if n <= 10000 else max(5, args.reps // 3)
                g_run, g_undo = bench_goexd(daemon, ws, reps)
                d_run, d_undo = bench_goexd(direct, ws, reps)
                b_reps = reps if n <= 1000 else max(3, reps // (3 if n <= 10000 else 10))
                b_run, b_undo = bench_baseline(ws, b_reps, root)
                rows.append((n, g_run, g_undo, d_run, d_undo, b_run, b_undo))
                shutil.rmtree(ws)
        finally:
            daemon.stop()
            direct.stop()
    lines = [
        "| files | goexd action p50 / p99 (ms) | goexd undo p50 / p99 (ms) | direct action / undo p50 (ms) "
        "| overlay cost p50 (ms) | baseline action p50 (ms) | baseline undo p50 (ms) | action speed-up "
        "| undo speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, g_run, g_undo, d_run, d_undo, b_run, b_undo in rows:
        run50, undo50 = pct(g_run, 0.5), pct(g_undo, 0.5)
        base_run, base_undo = statistics.median(b_run), statistics.median(b_undo)
        cells = [
            f"{n:,}",
            f"{run50:.1f} / {pct(g_run, 0.99):.1f}",
            f"{undo50:.1f} / {pct(g_undo, 0.99):.1f}",
            f"{pct(d_run, 0.5):.1f} / {pct(d_undo, 0.5):.1f}",
            f"{run50 - pct(d_run, 0.5):+.1f}",
            f"{base_run:.0f}",
            f"{base_undo:.0f}",
            f"{base_run / run50:.0f}x",
            f"{base_undo / undo50:.1f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    header = (
        f"Action: `sh -c '{ACTION}'` (one file added, one modified), 2 cores; "
        "goexd journal_sync=full, change detection inotify; fs.isolation overlay (the default) and direct.\n\n"
    )
    print(table)
    args.out.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
