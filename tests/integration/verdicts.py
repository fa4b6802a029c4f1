"""The verdict of an inverse strategy's reversibility test, for the SQLite and PostgreSQL suites."""

from __future__ import annotations

import threading
from typing import Protocol

from goexd.domain.models import ActionKind, ActionSpec, Reversibility, Verdict
from goexd.domain.sandbox import Limits

LIMITS = Limits(timeout_s=10)


class Tested(Protocol):
    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility: ...


def verdict(res: Tested, action: str, inverse: str) -> Reversibility:
    return res.test(ActionSpec(ActionKind.SQL, sql=action), ActionSpec(ActionKind.SQL, sql=inverse), LIMITS, None)


def failed(res: Tested, action: str, inverse: str) -> str:
    """The detail of a test that must fail."""
    found = verdict(res, action, inverse)
    assert found.verdict is Verdict.FAILED, found.detail
    return found.detail


def passed(res: Tested, action: str, inverse: str) -> None:
    found = verdict(res, action, inverse)
    assert found.verdict is Verdict.PASSED, found.detail
