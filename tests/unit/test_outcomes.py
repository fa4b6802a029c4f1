"""How an inverse-strategy outcome in doubt is settled from its markers (resources/outcomes.py)."""

from __future__ import annotations

import pytest

from goexd.domain.errors import FailedPrecondition
from goexd.domain.resource import Resolution
from goexd.resources import outcomes
from goexd.resources.outcomes import ACTION, MARKER_KEY, UNDO, Look, begun, resolve_running, undone_already

RUNNING = {"pre": "P", MARKER_KEY: "act_1", "inverse_sql": "..."}
EXECUTED = {**RUNNING, "post": "Q"}


def look(*steps: str, now: str = "never read") -> Look:
    def digest() -> str:
        assert now != "never read", "the fingerprint was read where the markers settle it"
        return now

    return Look(frozenset(steps), digest)


def test_an_action_the_database_committed_is_executed_with_the_state_after_it() -> None:
    found = resolve_running(RUNNING, look(ACTION, now="Q"))
    assert found.resolution is Resolution.EXECUTED and found.checkpoint_extra == {"post": "Q"}


def test_an_action_without_its_marker_was_rolled_back_whatever_the_database_looks_like() -> None:
    assert resolve_running(RUNNING, look()).resolution is Resolution.ROLL_BACK  # not even read: others may write


def test_an_action_that_writes_nothing_or_predates_markers_is_left_to_its_checkpoint() -> None:
    assert resolve_running({"pre": "P"}, look(ACTION)).resolution is Resolution.ROLL_BACK


def test_statements_outside_a_transaction_begun_and_unfinished() -> None:
    assert resolve_running(RUNNING, look(begun(ACTION), now="P")).resolution is Resolution.ROLL_BACK
    unknown = resolve_running(RUNNING, look(begun(ACTION), now="X"))
    assert unknown.resolution is Resolution.UNKNOWN and "check the data" in unknown.detail
    assert resolve_running(RUNNING, look(begun(ACTION), ACTION, now="Q")).resolution is Resolution.EXECUTED


def test_an_inverse_that_committed_is_not_run_again() -> None:
    report = undone_already(EXECUTED, look(ACTION, UNDO, now="P"))
    assert report is not None and report.verified and "not run again" in report.detail
    drifted = undone_already(EXECUTED, look(UNDO, now="X"))  # others wrote since: still not run again
    assert drifted is not None and not drifted.verified


def test_an_inverse_without_its_marker_runs() -> None:
    assert undone_already(EXECUTED, look(ACTION)) is None
    assert undone_already(EXECUTED, look(ACTION, begun(UNDO), now="Q")) is None  # begun, nothing took effect


def test_an_inverse_outside_a_transaction_begun_and_unfinished() -> None:
    done = undone_already(EXECUTED, look(begun(UNDO), now="P"))
    assert done is not None and done.verified
    with pytest.raises(FailedPrecondition, match="not run again"):
        undone_already(EXECUTED, look(begun(UNDO), now="X"))


def test_the_table_is_named_as_dbinspect_hides_it() -> None:
    from goexd.dbinspect.hidden import OUTCOMES_TABLE

    assert outcomes.TABLE == OUTCOMES_TABLE == "goex_outcomes"
