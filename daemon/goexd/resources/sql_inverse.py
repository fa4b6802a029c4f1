"""The inverse strategy, as both SQL kinds share it (sqlite/inverse.py and postgres/inverse.py say the rest).

Each action commits at once in its own transaction; its undo runs an inverse script, tested with it before the
action ran. Shared here: that a write needs an inverse and a read needs none; the pair (each script parsed
once) the reversibility test runs back to back, and its verdicts; and the checkpoint: the pre-action
fingerprint's digest (the last few fingerprints stay in memory, so an undo that does not match can say what
differs), the inverse for the undo, and the key its outcome markers are kept under (outcomes.py). How the
pair is tried, the state read and the markers written is each engine's own.
"""

from __future__ import annotations

import abc
import json
import threading
from dataclasses import dataclass

from goexd.dbinspect.fingerprint import DbFingerprint
from goexd.dbinspect.recent import RecentStates
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, Reversibility, ReversibilityClass, Verdict
from goexd.domain.resource import Checkpoint, RollbackReport, SettlesInDoubt
from goexd.domain.sandbox import Limits
from goexd.resources import outcomes
from goexd.resources.sql_manager import CommitsAtOnce, ScriptJob
from goexd.sql.model import SQL_FIELD, Classified, StatementClass

INVERSE_SQL = "inverse_sql"  # checkpoint keys: the inverse to run at undo (absent: the action only read)
INVERSE_PARAMS = "inverse_params"  # its parameters, as JSON
UNDO_TIMEOUT_S = 600.0  # an inverse run at undo: the engine gives no limits, and nothing cancels it
NOTHING_WRITTEN = RollbackReport(verified=True, detail="the action only read; nothing to undo")


@dataclass(frozen=True)
class Pair:
    """An action and its inverse, each parsed once, run back to back by the reversibility test."""

    spec: ActionSpec
    action: list[Classified]
    inverse: ActionSpec
    undo: list[Classified]
    limits: Limits
    cancel: threading.Event | None

    @property
    def transactional(self) -> bool:
        """Whether a transaction can hold both scripts (else the pair is tried on a copy)."""
        return all(st.transactional for st in (*self.action, *self.undo))

    def action_job(self, row_limit: int) -> ScriptJob:
        return ScriptJob(self.action, self.spec.params, self.limits, self.cancel, row_limit)

    def undo_job(self, row_limit: int) -> ScriptJob:
        return ScriptJob(self.undo, self.inverse.params, self.limits, self.cancel, row_limit)


def action_fails(where: str, why: str) -> InvalidArgument:
    """The action itself failed in the test: not a verdict on the inverse, an error of the action."""
    return InvalidArgument(SQL_FIELD, f"the action fails ({where}): {why}")


def inverse_fails(where: str, why: str) -> Reversibility:
    return Reversibility(
        ReversibilityClass.IRREVERSIBLE, Verdict.FAILED, f"the inverse fails after the action ({where}): {why}"
    )


def restored(found: str | None, where: str) -> Reversibility:
    """The verdict on a pair that ran: `found` is what differs afterwards in words, None when nothing does."""
    if found is None:
        return Reversibility(
            ReversibilityClass.REVERSIBLE, Verdict.PASSED, f"action then inverse left the database unchanged ({where})"
        )
    return Reversibility(
        ReversibilityClass.IRREVERSIBLE,
        Verdict.FAILED,
        f"action then inverse did not restore the database ({where}): {found}",
    )


class UndoesByInverse(CommitsAtOnce, SettlesInDoubt):
    """The inverse strategy's manager: an action runs only after its pair passed the test; undo runs the inverse."""

    def recovers_by_rollback(self, checkpoint: Checkpoint) -> bool:
        """The fingerprint before and the outcome markers settle it (resolve_in_doubt), then the inverse."""
        return bool(checkpoint.get("pre"))

    undo_note = "undo runs the inverse SQL, tested before the action ran, and compares with the pre-action state"
    _lock: threading.Lock
    _pre: RecentStates

    @abc.abstractmethod
    def try_pair(self, pair: Pair) -> Reversibility:
        """Action then inverse where nothing of them stays (a transaction rolled back, or a copy); the verdict."""

    @abc.abstractmethod
    def state(self, during: str) -> DbFingerprint:
        """The database's fingerprint now (called under the lock)."""

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        """A write needs an inverse; a read needs none."""
        self.scripts(spec, inverse)

    def scripts(self, spec: ActionSpec, inverse: ActionSpec | None) -> tuple[list[Classified], list[Classified]]:
        """The action's statements and the inverse's (none without one), each script parsed once."""
        statements = self.script(spec)
        if inverse is not None:
            return statements, self.script(inverse, "inverse")
        if any(st.cls is not StatementClass.READ for st in statements):
            raise InvalidArgument(
                "inverse", "the inverse strategy needs an inverse for an action that writes (goex sql --inverse ...)"
            )
        return statements, []

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility:
        """Action then inverse, where nothing of them stays; changes nothing."""
        action, undo = self.scripts(spec, inverse)
        if inverse is None:
            return Reversibility(ReversibilityClass.READ_ONLY, Verdict.PASSED, "the action only reads")
        return self.try_pair(Pair(spec, action, inverse, undo, limits, cancel))

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        with self._lock:
            pre = self.state("before the action ran")
            self._pre.keep(pre)
        cp = {"pre": pre.digest}
        if inverse is not None:
            cp[INVERSE_SQL] = inverse.sql
            cp[INVERSE_PARAMS] = json.dumps(list(inverse.params))
            cp[outcomes.MARKER_KEY] = action_id  # what it writes needs an undo: its outcome is marked
        return cp

    def inverse_job(self, checkpoint: Checkpoint) -> ScriptJob | None:
        """The inverse checkpoint() kept, parsed again, as the undo runs it; None when the action only read."""
        if INVERSE_SQL not in checkpoint:
            return None
        inverse = ActionSpec(
            ActionKind.SQL,
            sql=checkpoint[INVERSE_SQL],
            params=tuple(json.loads(checkpoint.get(INVERSE_PARAMS, "[]"))),
        )
        limits = Limits(timeout_s=UNDO_TIMEOUT_S)
        return ScriptJob(self.script(inverse, "inverse"), inverse.params, limits, None, self._row_limit)

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        return None  # already committed in the database; the inverse is simply no longer offered
