"""A SQLite database with the `inverse` undo strategy.

Each action commits at once in its own transaction; its undo is an inverse SQL script (from
the client today, from the planner later). Before the action runs, the pair is tested: inside a
transaction that is always rolled back, fingerprint, action, inverse, fingerprint. Only if the
two fingerprints match does the action run (the engine blocks it otherwise, with the diff).
Statements a transaction cannot roll back (VACUUM, some PRAGMAs) are tested on a clone made
with SQLite's online backup API instead. Undo runs the inverse in a transaction and compares
the result with the pre-action fingerprint; if the database changed in between (other writers),
the undo still runs and says it could not verify.

None of this reads every row when the statements write few (dbinspect/sqlite_changes.py): the
test compares the schema and the tables the statements could write (compiled beforehand under
an authorizer: their triggers, foreign-key actions and views included), settled by TEMP capture
triggers, else read on both sides (the side before through a read-only connection: WAL); the
fingerprints around an action and its undo come from the last known one and what the statements
changed (run.Tracked), read whole only when another connection has committed meanwhile. A write
to most rows of a large table costs about what reading it whole did, or up to twice that.

A crash between the action's (or the inverse's) COMMIT and the journal's record is settled from
the database: both transactions write an outcome marker into `goex_outcomes` (outcomes.py), so a
restart finds an action the database kept EXECUTED and undoable, and an inverse that committed is
never run a second time.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from goexd import faults
from goexd.dbinspect import sqlite as inspect
from goexd.dbinspect import sqlite_changes
from goexd.dbinspect.recent import RecentStates
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, Resource, Reversibility, ReversibilityClass, Verdict
from goexd.domain.resource import (
    Checkpoint,
    InDoubt,
    Outcome,
    OutputCallback,
    RollbackReport,
    SandboxNetwork,
    SettlesInDoubt,
    StepByStep,
)
from goexd.domain.sandbox import Limits
from goexd.resources import outcomes, sql_reads
from goexd.resources.sqlite import reads, run
from goexd.resources.sqlite.outcomes import SqliteMarks
from goexd.sql.classify import Classified, StatementClass

log = logging.getLogger(__name__)

TAG = "sqlite-inverse"  # its fault points' tag (faults.py)


class SqliteInverseResource(sql_reads.ReadsAtOnce, StepByStep, SettlesInDoubt):
    dialect = "sqlite"
    undo_note = "undo runs the inverse SQL, tested before the action ran, and compares with the pre-action state"

    def __init__(self, resource: Resource, row_limit: int = 1000, busy_timeout_s: float = 5.0) -> None:
        self.resource = resource
        self.path = Path(resource.uri)
        self._row_limit = row_limit
        self._busy_timeout_s = busy_timeout_s
        self._db = run.connect(self.path, busy_timeout_s)
        self._state = run.Tracked(self._db)
        self._pre = RecentStates()  # so an undo that does not match can say what differs
        self._lock = threading.Lock()
        self._marks = SqliteMarks(self._db, self.path)
        try:
            self._marks.ensure()
        except Exception:
            self._db.close()
            raise

    def describe(self, samples: bool = False) -> str:
        head = "sqlite database (strategy inverse: each action commits at once; undo runs its tested inverse)"
        with self._lock:
            return head + "\n" + inspect.describe(self._db, sample_rows=3 if samples else 0)

    def precheck(self, spec: ActionSpec) -> None:
        run.check_script(spec)

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        """A write needs an inverse; a read needs none."""
        statements = run.check_script(spec)
        if inverse is not None:
            run.check_script(inverse, "inverse")
        elif any(st.cls is not StatementClass.READ for st in statements):
            raise InvalidArgument(
                "inverse", "the inverse strategy needs an inverse for an action that writes (goex sql --inverse ...)"
            )

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility:
        """Action then inverse, on a transaction that is rolled back (or on a clone); changes nothing."""
        self.check_inverse(spec, inverse)
        if inverse is None:
            return Reversibility(ReversibilityClass.READ_ONLY, Verdict.PASSED, "the action only reads")
        pair = _Pair(spec, run.check_script(spec), inverse, run.check_script(inverse, "inverse"), limits, cancel)
        with self._lock:
            if all(st.transactional for st in (*pair.action, *pair.undo)):
                return self._test_in_transaction(pair)
            return self._test_on_clone(pair)

    def _test_in_transaction(self, pair: _Pair) -> Reversibility:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            return pair.run(self._db, self._row_limit, "in a rolled-back transaction", str(self.path))
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _test_on_clone(self, pair: _Pair) -> Reversibility:
        # A statement a transaction cannot take back: try the pair on a private copy instead.
        with tempfile.TemporaryDirectory(prefix="goexd-clone-") as tmp:
            clone = sqlite3.connect(Path(tmp) / "clone.db", isolation_level=None, check_same_thread=False)
            try:
                self._db.backup(clone)
                return pair.run(clone, self._row_limit, "on a clone of the database", None)
            finally:
                clone.close()

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        with self._lock:
            pre = self._state.current()
            self._pre.keep(pre)
            cp = {"pre": pre.digest}
        if inverse is not None:
            cp["inverse_sql"] = inverse.sql
            cp["inverse_params"] = json.dumps(list(inverse.params))
            cp[outcomes.MARKER_KEY] = action_id  # what it writes needs an undo: its outcome is marked
        return cp

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        statements = run.check_script(spec)
        if sql_reads.is_read(checkpoint):
            return reads.sqlite_read(self._db, self._lock, statements, spec, limits, cancel, self._row_limit)
        marker = checkpoint.get(outcomes.MARKER_KEY)
        with self._lock:
            try:
                mark = self._marking(marker, outcomes.ACTION, statements) if marker else None
                result, before, after = self._state.commit(
                    statements, spec.params, limits, cancel, self._row_limit, mark
                )
            except run.StatementFailed as exc:
                raise InvalidArgument("spec.sql.sql", exc.why) from None
            faults.point("action-after-commit", TAG)
        extra = {"post": after.digest, **run.changed_tables(before, after)}
        return Outcome(exec=None, changes=None, sql=result, checkpoint_extra=extra)

    def _marking(self, action_id: str, step: str, statements: Sequence[Classified]) -> Callable[[], None]:
        """Mark `step` begun now when its statements run outside a transaction; returns what marks it done,
        to run last before its COMMIT (outcomes.py)."""
        if not all(st.transactional for st in statements):
            self._marks.write(action_id, outcomes.begun(step))

        def done() -> None:
            self._marks.write(action_id, step)
            faults.point(f"{step}-before-commit", TAG)

        return done

    def commit_check(self, action_ids: Sequence[str]) -> None:
        return None

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        return None  # already committed in the database; the inverse is simply no longer offered

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        if sql_reads.is_read(checkpoint):
            return sql_reads.NOTHING_TO_ROLL_BACK
        if "post" not in checkpoint:  # the action failed: its own transaction was rolled back
            return RollbackReport(verified=True, detail="the action's transaction was rolled back; nothing to undo")
        if "inverse_sql" not in checkpoint:
            return RollbackReport(verified=True, detail="the action only read; nothing to undo")
        inverse = ActionSpec(
            ActionKind.SQL,
            sql=checkpoint["inverse_sql"],
            params=tuple(json.loads(checkpoint.get("inverse_params", "[]"))),
        )
        statements = run.check_script(inverse, "inverse")
        with self._lock:
            look = outcomes.Look(self._marks.steps(action_id), lambda: self._state.current().digest)
            earlier = outcomes.undone_already(checkpoint, look)
            if earlier is not None:
                return earlier
            try:
                _, before, after = self._state.commit(
                    statements,
                    inverse.params,
                    Limits(timeout_s=600),
                    None,
                    self._row_limit,
                    self._marking(action_id, outcomes.UNDO, statements),
                )
            except run.StatementFailed as exc:
                raise InvalidArgument(
                    "inverse.sql.sql", f"the inverse failed, nothing was changed: {exc.why}"
                ) from None
            faults.point("undo-after-commit", TAG)
            drifted = before.digest != checkpoint["post"]
        verified, detail = self._pre.undo_check(checkpoint["pre"], after, drifted)
        return RollbackReport(verified=verified, detail=detail)

    def take_lost(self) -> list[str]:
        return []

    def resolve_in_doubt(self, action_id: str, checkpoint: Checkpoint) -> InDoubt:
        with self._lock:
            marker = checkpoint.get(outcomes.MARKER_KEY, action_id)
            look = outcomes.Look(self._marks.steps(marker), lambda: self._state.current().digest)
            return outcomes.resolve_running(checkpoint, look)

    def marked(self) -> list[str]:
        with self._lock:
            return self._marks.marked()

    def settle(self, action_ids: Sequence[str]) -> None:
        with self._lock:
            try:
                self._marks.drop(action_ids)
            except sqlite3.Error as exc:  # left for the next opening of a session to drop
                log.warning("could not drop the outcome markers of %s in %s: %s", action_ids, self.path, exc)

    def fingerprint(self) -> str:
        with self._lock:
            return self._state.current().digest

    def verdict_fingerprint(self) -> tuple[str, str]:
        """FingerprintsForVerdicts: the whole database's."""
        return self.fingerprint(), "the whole database's fingerprint"

    def refined_verdict_fingerprint(self, cheap: str) -> str:
        return cheap

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class _Pair:
    """An action and its inverse, each parsed once, run back to back by the reversibility test."""

    spec: ActionSpec
    action: list[Classified]
    inverse: ActionSpec
    undo: list[Classified]
    limits: Limits
    cancel: threading.Event | None

    def run(self, db: sqlite3.Connection, row_limit: int, where: str, path: str | None) -> Reversibility:
        """On `db`, in its open transaction when `path` (its file, for reading the state before) is given."""
        if path is not None:
            statements = [(st.sql, self.spec.params) for st in self.action]
            statements += [(st.sql, self.inverse.params) for st in self.undo]
            probe = sqlite_changes.Probe.start(db, sqlite_changes.written_tables(db, statements))
        else:  # outside a transaction (on a clone): whole fingerprints
            before = inspect.fingerprint(db)
        try:
            run.run_script(db, self.action, self.spec.params, self.limits, self.cancel, row_limit)
        except run.StatementFailed as exc:
            raise InvalidArgument("spec.sql.sql", f"the action fails ({where}): {exc.why}") from None
        try:
            run.run_script(db, self.undo, self.inverse.params, self.limits, self.cancel, row_limit)
        except run.StatementFailed as exc:
            return Reversibility(
                ReversibilityClass.IRREVERSIBLE,
                Verdict.FAILED,
                f"the inverse fails after the action ({where}): {exc.why}",
            )
        if path is not None:
            found = probe.compare(lambda: sqlite_changes.read_only(path))
        else:
            after = inspect.fingerprint(db)
            found = None if after.digest == before.digest else inspect.diff(before, after)
        if found is None:
            return Reversibility(
                ReversibilityClass.REVERSIBLE,
                Verdict.PASSED,
                f"action then inverse left the database unchanged ({where})",
            )
        return Reversibility(
            ReversibilityClass.IRREVERSIBLE,
            Verdict.FAILED,
            f"action then inverse did not restore the database ({where}): {found.text}",
        )
