"""Seeded kill -9 over fs + SQLite + PostgreSQL sequences with every strategy (the issue's fault suite).

One seed is one session over a workspace and six databases (SQLite and PostgreSQL, each with the
transaction, inverse and clone strategies: tests/faults/model.py), driven by a random.Random(seed)
(tests/faults/plan.py): shell actions writing, appending to and deleting files; SQL actions with their
exact inverses; undo by id or of the newest, cascade, forced; undo-to; commit of all or up to an
action; the person's own edits to the workspace between steps and while goexd is down. goexd is
killed `GOEX_FAULT_KILLS_PER_SEED` times per seed, each time either at a fault point armed with a
random N (POINT[:TAG]@N, goexd/faults.py: inside actions, applies, undos, commits, inverses' commits,
and recovery-action inside recovery) or by SIGKILL from outside at a random delay during a burst of
operations or during a start; every restart may be killed again inside recovery (recovery-action@1
is armed often when the last kill left something in doubt). After each restart
tests/faults/reconcile.py checks every resource against what the journal says (its docstring lists
the exact answers accepted where an outcome is in doubt), and that no sandbox process (by goexd's
mark), egress run dir, overlay or clone copy outlived the kill; while goexd lives, every answer
(states, undone and committed actions in order, refusals, change sets) and the workspace are
checked against the model after each operation (tests/faults/runner.py).

Decisions:
- The model predicts, it does not replay: before each call it says what the engine's rules make of it
  (model.Timeline: which actions an undo takes, where a three-way conflict or a later pending action on
  a database refuses it, what commit_check refuses), and a different answer fails the run. What a kill
  leaves in doubt is settled by the journal, and the resources must then agree with that answer;
  "anything goes" is never accepted (the transaction strategy's unknown commit outcome is all of the
  commit or none of it, per database).
- Contents are unique tokens, so no two versions of a file or row are alike and an undo that took back
  the wrong thing cannot pass by coincidence. The workspace has regular files only, in the root and in
  a directory that always exists (directory removal is the property test's ground, not this suite's).
- The person edits between calls and while goexd is down, never during a call (edits during an action
  are the property test's: tests/e2e/test_undo_property.py).
- Set-asides are read from goexd's snapshot store with pygit2 (read-only), to check the version kept is
  the one overwritten, not only that a path was listed.
- Reproducible from the seed: the operations and kill plans are drawn in a fixed order; where an
  outside kill lands in time depends on the machine's speed, so such a failure may need its seed run a
  few times (GOEX_FAULT_TRACE=1 with pytest -s prints the trace as it goes).
- Not covered: HTTP resources, the fs direct mode, a PostgreSQL server that dies (only goexd is killed),
  power loss (a killed process's writes are in the page cache; fsync is not exercised).

`make test` runs the fast slice below; `make faults` the long run (GOEX_FAULT_SEEDS=FIRST-LAST,
GOEX_FAULT_KILLS_PER_SEED per seed; at least 500 kills), which prints its seed range and totals. A
failure names its seed, with the trace of the run's last steps; `GOEX_FAULT_SEEDS=N make faults` runs
it again.
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
