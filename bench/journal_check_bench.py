"""What goexd's start-up check of its journal costs: PRAGMA quick_check against integrity_check.

A journal of N finished fs actions (each with its exec result, change set and four transitions, about
the sizes a real action writes) is built with the Journal API, then each check is run on a cold and a
warm page cache. Usage: python bench/journal_check_bench.py [N ...]  (default 10000 100000)
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from goexd.domain.models import (
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    Resource,
    ResourceKind,
    Session,
    SessionState,
    UndoStrategy,
)
from goexd.domain.sandbox import Limits
from goexd.engine.journal import Journal

SESSIONS = 50
TRAIL = ((ActionState.PREPARING, ""), (ActionState.RUNNING, ""), (ActionState.EXECUTED, "ran"))


def build(path: Path, actions: int) -> None:
    journal = Journal(path, sync="normal")
    now = time.time()
    changes = json.dumps([{"path": f"src/module_{i}.py", "kind": "modified", "size": 4096} for i in range(12)])
    exec_json = json.dumps({"termination": "exited", "exit_code": 0, "stdout": "x" * 600, "stderr": ""})
    with journal.batch():
        for s in range(SESSIONS):
            resources = (Resource("fs", ResourceKind.FS, f"/work/project-{s}", UndoStrategy.VERSIONED),)
            journal.insert_session(Session(f"s{s}", "", SessionState.OPEN, resources, Limits(), now))
        for a in range(actions):
            spec = ActionSpec(ActionKind.SHELL, argv=("sh", "-c", f"edit files {a}; make test"))
            action = Action(f"a{a}", f"s{a % SESSIONS}", 0, spec, ActionState.PROPOSED, "fs", now)
            journal.insert_action(action, trail=TRAIL, exec=exec_json, changes=changes, checkpoint='{"pre": "x"}')
    journal.close()


def timed(path: Path, pragma: str, cold: bool) -> float:
    if cold:
        os.posix_fadvise(os.open(path, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        t0 = time.perf_counter()
        rows = db.execute(f"PRAGMA {pragma}").fetchall()
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    assert rows == [("ok",)], rows
    return elapsed


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    checks = "quick_check warm | integrity_check warm | quick_check cold | integrity_check cold"
    print(f"| actions | journal size | {checks} |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            path = Path(tmp) / "journal.sqlite3"
            build(path, n)
            cells = []
            for cold in (False, True):
                for pragma in ("quick_check", "integrity_check"):
                    times = [timed(path, pragma, cold) for _ in range(5)]
                    cells.append(f"{statistics.median(times) * 1000:.1f} ms")
            size = path.stat().st_size / 2**20
            print(f"| {n} | {size:.1f} MiB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
