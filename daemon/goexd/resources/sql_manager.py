"""What the six SQL managers share: sqlite/ and postgres/, each with a transaction, an inverse and a clone strategy.

Each kind parses and classifies a script its own way (`script`) and runs it on its own engine; what is the same
is the shape around that. A read resolved at once runs fenced and has nothing to undo (sql_reads.py), so
execute() and rollback() tell it apart here and hand the rest to the strategy's write() and undo(). Then one
base per strategy: OneTransaction (the pending actions in one open transaction, a savepoint each), and, for
the strategies whose actions commit at once, CommitsAtOnce and UndoesFromCopy (the clone strategies);
the inverse strategies' base is in sql_inverse.py.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import ActionSpec, Resource, Reversibility, SqlResult
from goexd.domain.resource import (
    Checkpoint,
    Outcome,
    OutputCallback,
    RollbackReport,
    SandboxNetwork,
    StepByStep,
    UndoesByItself,
)
from goexd.domain.sandbox import Limits
from goexd.resources.sql_reads import NOTHING_TO_ROLL_BACK, ReadsAtOnce, is_read, read_outcome
from goexd.sql.model import Classified


class StatementFailed(Exception):
    """A statement failed or was stopped; `why` is what the action's error says (raised by both kinds' run.py)."""

    def __init__(self, why: str, stopped: bool) -> None:
        super().__init__(why)
        self.why = why
        self.stopped = stopped


@dataclass(frozen=True)
class ScriptJob:
    """A script to run: its statements (parsed and classified once), their parameters, the action's limits and
    cancel, and how many result rows to keep (the rest are counted)."""

    statements: Sequence[Classified]
    params: Sequence[str]
    limits: Limits
    cancel: threading.Event | None
    row_limit: int

    @property
    def transactional(self) -> bool:
        """Whether every statement can run inside a transaction, and be taken back by its rollback."""
        return all(st.transactional for st in self.statements)


class SqlManager(ReadsAtOnce, abc.ABC):
    """A database manager: execute() and rollback() of a read resolved at once, the rest left to the strategy."""

    resource: Resource
    _row_limit: int

    @abc.abstractmethod
    def script(self, spec: ActionSpec, fld: str = "spec") -> list[Classified]:
        """The script's statements, parsed and classified, with what this strategy may not run refused (the
        field named from `fld`: "spec", "inverse"). Changes nothing."""

    @abc.abstractmethod
    def read(self, job: ScriptJob) -> SqlResult:
        """A read resolved at once: run so that it cannot write, and leaving what is pending as it was."""

    @abc.abstractmethod
    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        """Any other action, as the strategy runs it (ResourceManager.execute)."""

    @abc.abstractmethod
    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        """ResourceManager.rollback of an action that was not a read resolved at once."""

    def precheck(self, spec: ActionSpec) -> None:
        self.script(spec)

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        job = ScriptJob(self.script(spec), spec.params, limits, cancel, self._row_limit)
        if is_read(checkpoint):
            return read_outcome(self.read(job))
        return self.write(job, checkpoint)

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        if is_read(checkpoint):
            return NOTHING_TO_ROLL_BACK
        return self.undo(action_id, checkpoint)


def savepoint_name(action_id: str) -> str:
    return f"goex_{action_id}"


class OneTransaction(SqlManager, UndoesByItself):
    """The transaction strategy: the session's pending actions on the database run in one open transaction on
    the manager's connection, each under its own savepoint; undo rolls back to it, newest first; the
    transaction commits whole. How the transaction is held (and lost) is each engine's own."""

    undoes_by = "inside its transaction"
    undo_note = "undo rolls back to the action's savepoint in the session's open transaction"

    def recovers_by_rollback(self, checkpoint: Checkpoint) -> bool:
        """Its work went with goexd's connection: the database rolled the transaction back itself."""
        return False

    _lock: threading.Lock
    _live: list[str]  # actions with a live savepoint, oldest first
    _lost: list[str]  # pending actions the database discarded on its own (see take_lost)

    def take_lost(self) -> list[str]:
        """Pending actions whose effects the database discarded on its own since the last call."""
        with self._lock:
            lost, self._lost = self._lost, []
            return lost

    def _refuse_a_partial_commit(self, action_ids: Sequence[str]) -> None:
        """One transaction commits whole: refuse a commit that would leave later actions on it pending."""
        wanted = set(action_ids)
        left = [a for a in self._live if a not in wanted]
        if left:
            raise FailedPrecondition(
                f"database {self.resource.name!r} runs its actions in one transaction, which commits whole; "
                f"commit up to its newest pending action ({self._live[-1]}) or undo {', '.join(left)} first"
            )

    def _pop_savepoint(self, action_id: str, checkpoint: Checkpoint) -> str:
        """The savepoint of `action_id`, taken off the pending ones: refused unless it is the newest."""
        if action_id not in self._live:
            raise FailedPrecondition(f"action {action_id} has no savepoint in the open transaction")
        if self._live[-1] != action_id:
            raise FailedPrecondition(f"undo the newer actions on {self.resource.name!r} first: {self._live[-1]}")
        self._live.pop()
        return checkpoint["savepoint"]


class CommitsAtOnce(SqlManager, StepByStep):
    """For the strategies whose actions commit at once, each in its own transaction (inverse, clone): nothing is
    pending in a transaction between calls, so no commit is refused and nothing pending can be lost."""

    def commit_check(self, action_ids: Sequence[str]) -> None:
        return None

    def take_lost(self) -> list[str]:
        return []  # nothing is ever pending in a transaction between calls


class UndoesFromCopy(CommitsAtOnce):
    """The clone strategy: undo puts back a copy of the database taken before the action; no inverse, no test."""

    def recovers_by_rollback(self, checkpoint: Checkpoint) -> bool:
        """The copy (PostgreSQL's checkpoint has no "pre" until the action ends) puts the database back."""
        return bool(checkpoint.get("clone"))

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        if inverse is not None:
            raise InvalidArgument("inverse", f"{self.resource.name!r} undoes from a clone; client inverses go unused")

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility | None:
        return None
