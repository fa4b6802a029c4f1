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
- the two installs a user may have: the dev venv's editable one (`make install`; its console script), and the
  wheel `make dist` builds, pip-installed into a fresh venv (its dependencies from the package index), as
  pipx or `pip install --user` would;
- the same commands at each BEFORE commit (default 3fa1b38, the client before issue 19's start-up work, and
  0283b99, before the RunAction stream and the lazier run path), its clients/python taken with `git archive`
  and put first on PYTHONPATH.

Byte code: an installed tool has its modules compiled (pip compiles a wheel's at install; an editable install
writes them on first import). Unless PYTHONDONTWRITEBYTECODE is set, as it is in this project's dev
environment: then every start compiles the client's ~25 modules again. So every variant runs with its byte code
cached (PYTHONPYCACHEPREFIX, filled by a warm-up run), except the wheel's (its own, from pip) and one row that
shows the editable install without any.

Prints a Markdown table and writes it to bench/cli_startup_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
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
CLIENT = REPO / "clients" / "python"
PY = sys.executable
GOEX = Path(PY).with_name("goex")  # the dev venv's console script (the editable install)
BASE_PYTHON = getattr(sys, "_base_executable", PY)  # what the dev venv was made from, for the wheel's venv
MAIN = "import sys; from goex.cli.main import main; sys.exit(main())"  # a client without the `run` entry
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


def _wheel_venv(into: Path) -> Path:
    """A fresh venv with the client's wheel (built as `make dist` builds it: from its sdist) pip-installed."""
    out = into / "dist"
    subprocess.run(
        [PY, "-m", "build", "--no-isolation", "--outdir", str(out), str(CLIENT)],
        capture_output=True,
        check=True,
    )
    (wheel,) = out.glob("goex_client-*.whl")
    venv = into / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], env=env, capture_output=True, check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], env=env, capture_output=True, check=True)
    return venv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--before",
        action="append",
        help="commit to compare with (its clients/python); repeatable (default: 3fa1b38 and 0283b99)",
    )
    args = parser.parse_args()
    args.before = args.before or ["3fa1b38", "0283b99"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="goex-cli-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        ws = root / "ws"
        ws.mkdir()
        for i in range(10):
            (ws / f"f{i}.txt").write_text(f"file {i}\n")
        progress("building the client's wheel and installing it into a fresh venv")
        venv = _wheel_venv(root / "wheel")
        daemon = DaemonProcess(root / "daemon", config_toml='journal_sync = "normal"\n')
        (root / "daemon").mkdir()
        daemon.start()
        try:
            with goex.Client(daemon.socket) as client:
                sid = client.create_session(fs=ws).id
                rows = _measure(args, root, venv, str(daemon.socket), sid)
                client.close_session(sid, "undo")
        finally:
            daemon.stop()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    text = (
        f"CLI start-up and round trip, {args.rounds} rounds, ms (HEAD {commit}, before = {', '.join(args.before)}; "
        f"load average at the end {load}):\n\n"
        + table(["command", "p50", "p90", "CLI overhead p50", "CLI overhead p90"], "lrrrr", rows)
        + "\n"
    )
    publish(text, Path(__file__).with_name("cli_startup_results.md"), started)


def _measure(args: argparse.Namespace, root: Path, venv: Path, socket: str, sid: str) -> list[list[str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOEX_") and k != "PYTHONPATH"}
    base |= {"GOEX_SOCKET": socket, "GOEX_CLI_STATE": str(root / "cli.json")}
    # Byte code as an installed tool has it: written once (the warm-up), read by every later start.
    cached = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    # The editable install where nothing is cached: the client's sources copied where no __pycache__ is.
    sources = root / "uncached"
    shutil.copytree(CLIENT / "goex", sources / "goex", ignore=shutil.ignore_patterns("__pycache__"))
    uncached = base | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(sources)}
    wheel = base | {"PATH": f"{venv / 'bin'}:{base.get('PATH', '')}"}
    befores = {c: cached | {"PYTHONPATH": str(_client_at(c, root / "before" / c))} for c in args.before}
    for env, where in [(uncached, sources), (wheel, venv), *((e, root) for e in befores.values())]:
        py = str(venv / "bin" / "python") if env is wheel else PY
        found = subprocess.run(
            [py, "-c", "import goex; print(goex.__file__)"], env=env, capture_output=True, text=True, check=True
        )
        if not found.stdout.startswith(str(where)):
            raise RuntimeError(f"not the client meant: {found.stdout}")
    run = ["--session", sid, "run", "--", "true"]
    wheel_goex = str(venv / "bin" / "goex")
    variants = [
        Variant("python -c pass", [PY, "-c", "pass"], cached),
        Variant("goex --version", [str(GOEX), "--version"], cached),
        Variant("goex --help", [str(GOEX), "--help"], cached),
        Variant("goex health", [str(GOEX), "health"], cached),
        Variant("goex run -- true", [str(GOEX), *run], cached),
        Variant("goex --json run -- true", [str(GOEX), "--json", *run], cached),
        Variant("direct client call (run_shell true)", [PY, "-c", DIRECT, socket, sid], cached),
        Variant("wheel: goex --version", [wheel_goex, "--version"], wheel),
        Variant("wheel: goex run -- true", [wheel_goex, *run], wheel),
        Variant("editable, no byte code cached: goex run -- true", [PY, "-c", _entry(sources), *run], uncached),
    ]
    for commit, env in befores.items():
        entry = _entry(env["PYTHONPATH"])
        variants += [
            Variant(f"before {commit}: goex --version", [PY, "-c", entry, "--version"], env),
            Variant(f"before {commit}: goex run -- true", [PY, "-c", entry, *run], env),
        ]
    for v in variants:  # warm the page cache, the byte code caches and the daemon
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


def _entry(client: Path | str) -> str:
    """What the `goex` console script of the client in `client` runs: `run` where it has one, else `main`."""
    source = (Path(client) / "goex" / "cli" / "main.py").read_text()
    return "import sys; from goex.cli.main import run; run()" if "\ndef run(" in source else MAIN


if __name__ == "__main__":
    main()
