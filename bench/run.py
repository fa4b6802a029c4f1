"""`make bench`: goexd action round trip and undo latency vs a GoEx-style baseline, in one run.

For each workspace size (1k, 10k, 100k files) it measures, p50/p99:
- goexd: a small shell action submitted over gRPC until its result (sandboxed run over an
  overlay of the workspace, snapshot, the upper applied), and the undo of that action
  (three-way: conflict check, the action's paths put back, verification);
- goexd with fs.isolation = "direct" (snapshot before, run on the workspace itself, snapshot
  after): the difference is what exact attribution (the overlay) costs;
- baseline (the GoEx prototype's way): per action a fresh `git init && git add -A && git commit`
  of the workspace plus a fresh bwrap sandbox; undo = `git reset --hard && git clean -fdx`.
The goexds' rounds are interleaved (each over its own copy of the workspace), so the machine's drift falls
on all alike. `--against REV` adds a goexd running the code of commit REV (over the overlay) to the same
rounds: a paired comparison of this tree with it, e.g. `--against HEAD` for uncommitted changes.
Prints Markdown tables (copy them into the README) and writes them to bench/results.md.
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

from measure import pct, progress, table

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


class GoexdLoop:
    """One goexd's session over its own copy of the workspace: per round, the action and its undo."""

    def __init__(self, d: DaemonProcess, ws: Path) -> None:
        ch = d.connect()
        self.sessions = sessions_pb2_grpc.SessionsStub(ch)
        self.actions = actions_pb2_grpc.ActionsStub(ch)
        spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))
        self.session = self.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=600).session.id
        shell = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", ACTION]))
        self.submit = apb.SubmitActionRequest(session_id=self.session, spec=shell)

    def round(self) -> tuple[float, float]:
        """(action ms, undo ms)"""
        t0 = time.perf_counter()
        action = self.actions.SubmitAction(self.submit, timeout=120).action
        t1 = time.perf_counter()
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        undone = self.actions.UndoAction(apb.UndoActionRequest(session_id=self.session), timeout=120).undone
        t2 = time.perf_counter()
        assert undone[0].state == pb.ACTION_STATE_UNDONE
        return (t1 - t0) * 1000, (t2 - t1) * 1000

    def close(self) -> None:
        req = spb.CloseSessionRequest(session_id=self.session, mode=spb.CLOSE_MODE_COMMIT_ALL)
        self.sessions.CloseSession(req, timeout=60)


def bench_goexds(loops: dict[str, GoexdLoop], reps: int) -> dict[str, tuple[list[float], list[float]]]:
    """Rounds of every goexd interleaved, in an order that rotates each round, so that the machine's drift
    falls on all of them alike (round i of each is a pair); the first 2 rounds warm caches and are dropped."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in loops}
    names = list(loops)
    for i in range(reps + 2):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            run, undo = loops[name].round()
            if i >= 2:
                out[name][0].append(run)
                out[name][1].append(undo)
    for loop in loops.values():
        loop.close()
    return out


def exported(rev: str, dest: Path) -> Path:
    """The tree of commit `rev` (of the repository holding this file), written to `dest`."""
    repo = Path(__file__).resolve().parents[1]
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def daemon_of_tree(root: Path, tree: Path, config_toml: str) -> DaemonProcess:
    """A goexd that runs the code of `tree` (its daemon and client packages first on the path)."""
    path = f"{tree / 'daemon'}:{tree / 'clients' / 'python'}"
    where = subprocess.run(
        [sys.executable, "-c", "import goexd; print(goexd.__file__)"],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"the goexd of {tree} would be imported from {where}")
    return DaemonProcess(root, config_toml=config_toml, env={"PYTHONPATH": path})


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


OVERLAY = 'journal_sync = "full"\n'
DIRECT = 'journal_sync = "full"\n[fs]\nisolation = "direct"\n'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    p.add_argument(
        "--against",
        metavar="REV",
        help="also run the goexd of commit REV (over the overlay), its rounds interleaved with this tree's: "
        "a paired comparison in the same run",
    )
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    paired = []
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="goex-bench-") as tmp:
        root = Path(tmp)
        daemons = {"overlay": DaemonProcess(root / "daemon", config_toml=OVERLAY)}
        daemons["direct"] = DaemonProcess(root / "direct", config_toml=DIRECT)
        if args.against:
            tree = exported(args.against, root / "tree")
            daemons["against"] = daemon_of_tree(root / "against", tree, OVERLAY)
        for d in daemons.values():
            d.root.mkdir()
            d.start()
        try:
            for n in sizes:
                progress(f"workspaces of {n} files ...")
                spaces = {name: make_workspace(root / f"ws-{name}", n) for name in daemons}
                reps = args.reps if n <= 10000 else max(5, args.reps // 3)
                loops = {name: GoexdLoop(d, spaces[name]) for name, d in daemons.items()}
                got = bench_goexds(loops, reps)
                (g_run, g_undo), (d_run, d_undo) = got["overlay"], got["direct"]
                b_reps = reps if n <= 1000 else max(3, reps // (3 if n <= 10000 else 10))
                b_run, b_undo = bench_baseline(spaces["overlay"], b_reps, root)
                rows.append((n, g_run, g_undo, d_run, d_undo, b_run, b_undo))
                if "against" in got:
                    paired.append((n, got["overlay"], got["against"]))
                for ws in spaces.values():
                    shutil.rmtree(ws)
        finally:
            for d in daemons.values():
                d.stop()
    load_at_end = os.getloadavg()[0]
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
    text = (
        f"Action: `sh -c '{ACTION}'` (one file added, one modified), {os.cpu_count()} cores; "
        "goexd journal_sync=full, change detection inotify; fs.isolation overlay (the default) and direct, "
        f"their rounds interleaved; load average {load_at_start:.2f} at the start, {load_at_end:.2f} at the end.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    if paired:
        rev = args.against
        rows_p = []
        for n, (new_run, new_undo), (old_run, old_undo) in paired:
            d_run = [a - b for a, b in zip(new_run, old_run, strict=True)]
            d_undo = [a - b for a, b in zip(new_undo, old_undo, strict=True)]
            rows_p.append(
                [
                    f"{n:,}",
                    f"{pct(new_run, 0.5):.1f} / {pct(old_run, 0.5):.1f}",
                    f"{statistics.median(d_run):+.1f}",
                    f"{pct(new_undo, 0.5):.1f} / {pct(old_undo, 0.5):.1f}",
                    f"{statistics.median(d_undo):+.1f}",
                ]
            )
        header = [
            "files",
            f"action p50, this tree / {rev} (ms)",
            "paired Δ p50 (ms)",
            f"undo p50, this tree / {rev} (ms)",
            "paired Δ p50 (ms)",
        ]
        intro = f"\nThis tree against {rev} (over the overlay, rounds interleaved):\n\n"
        text += intro + table(header, "lrrrr", rows_p) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
