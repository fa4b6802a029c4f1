"""`make bench`, CLI part (issue 19): what a `goex` command costs before and after it reaches goexd.

Each variant is a fresh process, the way a script or an agent loop shells out; every variant runs once per
round, in a fresh random order per round (this 2-core machine is shared), and the table gives each one's
p50 / p90 wall time:

- `python -c pass`: the interpreter's own start, the floor;
- `goex --version`, `goex --help`: what the CLI costs before it needs goexd;
- `goex health`: one small RPC;
- `goex run -- true` (output to a pipe, as in a script) and `goex --json run -- true`: an action's round trip.
  "CLI overhead" is the wall time minus the action's own total (goexd's timings.total, reported by the
  command): what the CLI and the client add around the action;
- a direct client call: `python -c "import goex; goex.Client().run_shell(...)"`, the same action without the CLI;
- the same commands at BEFORE (default 3fa1b38, the client before issue 19's start-up work), its
  clients/python taken with `git archive` and put first on PYTHONPATH.

Prints a Markdown table and writes it to bench/cli_startup_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from measure import pct, progress, publish, table

import goex
from goexd.launcher import DaemonProcess

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CLI = "import sys; from goex.cli.main import main; sys.exit(main())"  # what the `goex` console script runs
DIRECT = "import sys, goex; a = goex.Client(sys.argv[1]).run_shell(sys.argv[2], ['true']); print(a.timings.total)"
TOTAL_MS = re.compile(r"action act_[0-9a-f]+: \w+, exit 0, (\d+(?:\.\d+)?) ms")


@dataclass
class Variant:
    name: str
    argv: list[str]
    env: dict[str, str]
    walls: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)

    def run(self) -> None:
        t0 = time.perf_counter()
        p = subprocess.run(
            self.argv, env=self.env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
        wall = (time.perf_counter() - t0) * 1000
        if p.returncode != 0:
            raise RuntimeError(f"{self.name}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        self.walls.append(wall)
        action_ms = _action_ms(p.stdout, p.stderr)
        if action_ms is not None:
            self.overheads.append(wall - action_ms)


def _action_ms(stdout: str, stderr: str) -> float | None:
    """The action's own total from what the command printed: the headline (on stderr now, on stdout
    before), the --json document, or the direct call's seconds."""
    found = TOTAL_MS.search(stderr) or TOTAL_MS.search(stdout)
    if found:
        return float(found.group(1))
    text = stdout.strip()
    if text.startswith("{"):
        return float(json.loads(text)["action"]["timings"]["total_ms"])
    try:
        return float(text) * 1000
    except ValueError:
        return None


def _client_at(commit: str, into: Path) -> Path:
    """clients/python as it was at `commit`."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "clients/python"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "clients" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--before", default="3fa1b38", help="commit to compare with (its clients/python)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="goex-cli-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        ws = root / "ws"
        ws.mkdir()
        for i in range(10):
            (ws / f"f{i}.txt").write_text(f"file {i}\n")
        daemon = DaemonProcess(root / "daemon", config_toml='journal_sync = "normal"\n')
        (root / "daemon").mkdir()
        daemon.start()
        try:
            with goex.Client(daemon.socket) as client:
                sid = client.create_session(fs=ws).id
                rows = _measure(args, root, str(daemon.socket), sid)
                client.close_session(sid, "undo")
        finally:
            daemon.stop()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    text = (
        f"CLI start-up and round trip, {args.rounds} rounds, ms (HEAD {commit}, before = {args.before}):\n\n"
        + table(["command", "p50", "p90", "CLI overhead p50", "CLI overhead p90"], "lrrrr", rows)
        + "\n"
    )
    publish(text, Path(__file__).with_name("cli_startup_results.md"), started)


def _measure(args: argparse.Namespace, root: Path, socket: str, sid: str) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOEX_")}
    env |= {"GOEX_SOCKET": socket, "GOEX_CLI_STATE": str(root / "cli.json")}
    before_env = env | {"PYTHONPATH": str(_client_at(args.before, root / "before"))}
    check = subprocess.run(
        [PY, "-c", "import goex; print(goex.__file__)"], env=before_env, capture_output=True, text=True, check=True
    )
    if not check.stdout.startswith(str(root)):
        raise RuntimeError(f"the BEFORE client is not the one imported: {check.stdout}")
    run = ["--session", sid, "run", "--", "true"]
    variants = [
        Variant("python -c pass", [PY, "-c", "pass"], env),
        Variant("goex --version", [PY, "-c", CLI, "--version"], env),
        Variant("goex --help", [PY, "-c", CLI, "--help"], env),
        Variant("goex health", [PY, "-c", CLI, "health"], env),
        Variant("goex run -- true", [PY, "-c", CLI, *run], env),
        Variant("goex --json run -- true", [PY, "-c", CLI, "--json", *run], env),
        Variant("direct client call (run_shell true)", [PY, "-c", DIRECT, socket, sid], env),
        Variant("before: goex --version", [PY, "-c", CLI, "--version"], before_env),
        Variant("before: goex health", [PY, "-c", CLI, "health"], before_env),
        Variant("before: goex run -- true", [PY, "-c", CLI, *run], before_env),
    ]
    for v in variants:  # warm the page cache and the daemon
        v.run()
        v.walls.clear()
        v.overheads.clear()
    for i in range(args.rounds):
        for v in random.sample(variants, len(variants)):
            v.run()
        if (i + 1) % 10 == 0:
            progress(f"round {i + 1}/{args.rounds}")
    rows = []
    for v in variants:
        over = [f"{pct(v.overheads, 0.5):.0f}", f"{pct(v.overheads, 0.9):.0f}"] if v.overheads else ["-", "-"]
        rows.append([v.name, f"{pct(v.walls, 0.5):.0f}", f"{pct(v.walls, 0.9):.0f}", *over])
    return rows


if __name__ == "__main__":
    main()
