"""SQL actions that only read, resolved at once as http reads are (issue 19): shared by the six database managers.

A manager that `ReadsAtOnce` answers Journaling.AFTER_RUN for a read-only script (sql/read_only.py,
and on PostgreSQL no volatile function called but the few that change nothing): the engine then takes
no checkpoint and no reversibility test (it hands execute() READ_CHECKPOINT), journals the action whole
once it has answered and resolves it at once, COMMITTED, so `undo` takes back the last change and never
a SELECT. The read runs where the strategy's writes run (inside the transaction strategy's open
transaction, so it sees the pending work) but fenced, and the fence is taken down after it: SQLite's
PRAGMA query_only; on PostgreSQL a savepoint set read-only inside an open transaction, or a READ ONLY
transaction of its own, rolled back either way. Nothing pending is committed or rolled back by it, and
a write that slipped past the parse (a view over a function that writes) fails instead of happening.
"""

from __future__ import annotations

from goexd.domain.models import ActionKind, ActionSpec, Reversibility, ReversibilityClass, SqlResult, Verdict
from goexd.domain.resource import READ_ONLY_KEY, Checkpoint, Journaling, Outcome, RollbackReport
from goexd.sql.model import Dialect
from goexd.sql.read_only import reads_only

NOTHING_TO_ROLL_BACK = RollbackReport(verified=True, detail="it only read; nothing to roll back")
# Volatile in pg_proc, but they change nothing: reading them in a read-only transaction is fine.
HARMLESS_VOLATILE = frozenset({"random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid"})


def is_read(checkpoint: Checkpoint) -> bool:
    """Whether the engine handed execute()/rollback() the checkpoint of a read resolved at once."""
    return READ_ONLY_KEY in checkpoint


def read_outcome(result: SqlResult) -> Outcome:
    return Outcome(
        exec=None,
        changes=None,
        sql=result,
        reversibility=Reversibility(ReversibilityClass.READ_ONLY, Verdict.PASSED, "read-only: nothing to undo"),
    )


class ReadsAtOnce:
    """Mixed into a database manager (before StepByStep/UndoesByItself): reads are journaled after they run."""

    dialect: Dialect

    def reads_only(self, spec: ActionSpec) -> bool:
        """Whether `spec` only reads: the parse's word, and then the resource's on the functions it calls."""
        found = reads_only(spec.sql, self.dialect) if spec.kind is ActionKind.SQL else None
        return found is not None and self.change_nothing(frozenset(found.functions - HARMLESS_VOLATILE))

    def change_nothing(self, functions: frozenset[str]) -> bool:
        """Whether calling these functions changes nothing (PostgreSQL asks its catalog; SQLite has none that do)."""
        return True

    def journaling(self, spec: ActionSpec) -> Journaling:
        return Journaling.AFTER_RUN if self.reads_only(spec) else Journaling.EACH_STEP
