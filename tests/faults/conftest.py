"""Fixtures of the fault tests, and the kill suite's totals at the end of a run (test_seeded_kills.py; `make faults`
reports them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.runner import RESULTS, Stats
from tests.services.postgres import PgCluster


@pytest.fixture
def app_may_create_databases(pg_cluster: PgCluster) -> Iterator[None]:
    """The clone strategy copies its database (CREATEDB); the cluster is shared, so the grant is taken back."""
    with pg_cluster.app_may_create_databases():
        yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    total = Stats()
    for _, stats, _ in RESULTS:
        total.add(stats)
    seeds = sorted(seed for seed, _, _ in RESULTS)
    failed = sorted(seed for seed, _, passed in RESULTS if not passed)
    terminalreporter.section("seeded kill suite")
    for seed, stats, passed in sorted(RESULTS):
        terminalreporter.write_line(f"seed {seed}{'' if passed else ' FAILED'}: {stats.line()}")
    span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    terminalreporter.write_line(
        f"seeds {span} ({len(seeds) - len(failed)} passed, failed: {failed or 'none'}): {total.line()}"
    )
    terminalreporter.write_line(f"fault points hit: {dict(sorted(total.points.items()))}")
    if failed:
        terminalreporter.write_line(f"run a failed seed again: GOEX_FAULT_SEEDS={failed[0]} make faults")
