"""Seeded kill -9 over fs + SQLite + PostgreSQL sequences with every strategy (the issue's fault suite).

One seed is one session over a workspace and six databases (SQLite and PostgreSQL, each with the
transaction, inverse and clone strategies: tests/faults/model.py), driven by a random.Random(seed)
(tests/faults/plan.py): shell actions writing, appending to and deleting files; SQL actions with their
exact inverses; undo by id or of the newest, cascade, forced; undo-to; commit of all or up to an
action; the person's own edits to the workspace between steps and while goexd is down. goexd is
killed `GOEX_FAULT_KILLS_PER_SEED` times per seed, each time either at a fault point armed with a random N
(POINT[:TAG]@N, goexd/faults.py: inside actions, applies, undos, commits, inverses' commits, and
recovery-action inside recovery) or by SIGKILL from outside at a random delay during a burst of
operations or during a start; every restart may be killed again inside recovery. After each restart
tests/faults/reconcile.py checks every resource against what the journal says (its docstring lists
the exact answers accepted where an outcome is in doubt), and that no sandbox process, egress run
dir or overlay outlived the kill; while goexd lives, every answer is checked against the model.

`make test` runs the fast slice below; `make faults` the long run (GOEX_FAULT_SEEDS=FIRST-LAST,
GOEX_FAULT_KILLS_PER_SEED per seed; at least 500 kills), which prints its seed range and totals. A failure
names its seed, with the trace of the run's last steps; `GOEX_FAULT_SEEDS=N GOEX_FAULT_KILLS_PER_SEED=K make
faults` runs it again (the same operations and kill plans; where an outside kill lands in time
depends on the machine's speed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.runner import RESULTS, Run
from tests.services.postgres import PgCluster

# make test: three seeds whose first kills land inside a workspace apply, an inverse's undo and an action's
# COMMIT, and inside recovery (about 40 s here).
FAST_SEEDS = "4,12,18"
FAST_KILLS = 2


def _seeds(spec: str) -> list[int]:
    """ "7", "1-20" or "3,9,12"."""
    out: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        out += list(range(int(first), int(last or first) + 1))
    return out


SEEDS = _seeds(os.environ.get("GOEX_FAULT_SEEDS", FAST_SEEDS))
KILLS = int(os.environ.get("GOEX_FAULT_KILLS_PER_SEED", FAST_KILLS))


@pytest.mark.timeout(120 + 60 * KILLS)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
@pytest.mark.usefixtures("app_may_create_databases")
def test_seeded_kills(seed: int, tmp_path: Path, pg_cluster: PgCluster) -> None:
    run = Run(seed, KILLS, tmp_path, pg_cluster)
    try:
        run.run()
    finally:
        RESULTS.append((seed, run.stats, run.passed))
    assert run.stats.kills >= KILLS
