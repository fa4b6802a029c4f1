"""How an undo's own check and its http calls' combine into one verdict: verified only when both compared equal;
not verified as soon as one compared and differed; otherwise unverified when one had nothing to compare."""

from __future__ import annotations

import pytest

from goexd.domain.models import Verdict
from goexd.domain.resource import RollbackReport

VERIFIED = RollbackReport(True, "v")
NOT_VERIFIED = RollbackReport(False, "n")
UNVERIFIED = RollbackReport(False, "u", compared=False)


@pytest.mark.parametrize(
    ("own", "calls", "verdict"),
    [
        (VERIFIED, VERIFIED, Verdict.PASSED),
        (VERIFIED, UNVERIFIED, Verdict.UNKNOWN),
        (UNVERIFIED, VERIFIED, Verdict.UNKNOWN),
        (UNVERIFIED, UNVERIFIED, Verdict.UNKNOWN),
        (VERIFIED, NOT_VERIFIED, Verdict.FAILED),
        (NOT_VERIFIED, VERIFIED, Verdict.FAILED),
        (UNVERIFIED, NOT_VERIFIED, Verdict.FAILED),  # a check that failed outweighs one that could not run
        (NOT_VERIFIED, UNVERIFIED, Verdict.FAILED),
    ],
)
def test_an_undo_and_its_calls_combine(own: RollbackReport, calls: RollbackReport, verdict: Verdict) -> None:
    both = own.with_calls(calls)
    assert both.verdict is verdict
    assert both.detail == f"{own.detail}; its calls: {calls.detail}"


def test_alone() -> None:
    assert [r.verdict for r in (VERIFIED, NOT_VERIFIED, UNVERIFIED)] == [
        Verdict.PASSED,
        Verdict.FAILED,
        Verdict.UNKNOWN,
    ]
