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

import logging
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from goexd import faults
from goexd.dbinspect import sqlite as inspect
from goexd.dbinspect import sqlite_changes
from goexd.dbinspect.fingerprint import DbFingerprint
from goexd.dbinspect.recent import RecentStates
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import Resource, Reversibility
from goexd.domain.resource import Checkpoint, InDoubt, Outcome, RollbackReport
from goexd.resources import outcomes, sql_inverse
from goexd.resources.sql_inverse import Pair, UndoesByInverse
from goexd.resources.sql_manager import ScriptJob, StatementFailed
from goexd.resources.sqlite import run
from goexd.resources.sqlite.manager import SqliteManager
from goexd.resources.sqlite.outcomes import SqliteMarks
from goexd.sql.classify import Classified

log = logging.getLogger(__name__)

TAG = "sqlite-inverse"  # its fault points' tag (faults.py)


class SqliteInverseResource(SqliteManager, UndoesByInverse):
    def __init__(self, resource: Resource, row_limit: int = 1000, busy_timeout_s: float = 5.0) -> None:
        super().__init__(resource, row_limit, busy_timeout_s)
        self._state = run.Tracked(self._db)
        self._pre = RecentStates()  # so an undo that does not match can say what differs
        self._marks = SqliteMarks(self._db, self.path)
        try:
            self._marks.ensure()
        except Exception:
            self._db.close()
            raise

    def describe(self, samples: bool = False) -> str:
        return self._described(
            "sqlite database (strategy inverse: each action commits at once; undo runs its tested inverse)", samples
        )

    def try_pair(self, pair: Pair) -> Reversibility:
        """On a transaction that is rolled back, or on a clone when one cannot hold the pair."""
        with self._lock:
            if pair.transactional:
                return self._test_in_transaction(pair)
            return self._test_on_clone(pair)

    def _test_in_transaction(self, pair: Pair) -> Reversibility:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            return _tried(pair, self._db, self._row_limit, "in a rolled-back transaction", str(self.path))
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _test_on_clone(self, pair: Pair) -> Reversibility:
        # A statement a transaction cannot take back: try the pair on a private copy instead.
        with tempfile.TemporaryDirectory(prefix="goexd-clone-") as tmp:
            clone = sqlite3.connect(Path(tmp) / "clone.db", isolation_level=None, check_same_thread=False)
            try:
                self._db.backup(clone)
                return _tried(pair, clone, self._row_limit, "on a clone of the database", None)
            finally:
                clone.close()

    def state(self, during: str) -> DbFingerprint:
        return self._state.current()

    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        marker = checkpoint.get(outcomes.MARKER_KEY)
        with self._lock:
            try:
                mark = self._marking(marker, outcomes.ACTION, job.statements) if marker else None
                result, before, after = self._state.commit(job, mark)
            except StatementFailed as exc:
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

    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        if "post" not in checkpoint:  # the action failed: its own transaction was rolled back
            return RollbackReport(verified=True, detail="the action's transaction was rolled back; nothing to undo")
        job = self.inverse_job(checkpoint)
        if job is None:
            return sql_inverse.NOTHING_WRITTEN
        with self._lock:
            look = outcomes.Look(self._marks.steps(action_id), lambda: self._state.current().digest)
            earlier = outcomes.undone_already(checkpoint, look)
            if earlier is not None:
                return earlier
            try:
                _, before, after = self._state.commit(job, self._marking(action_id, outcomes.UNDO, job.statements))
            except StatementFailed as exc:
                raise InvalidArgument(
                    "inverse.sql.sql", f"the inverse failed, nothing was changed: {exc.why}"
                ) from None
            faults.point("undo-after-commit", TAG)
            drifted = before.digest != checkpoint["post"]
        verified, detail = self._pre.undo_check(checkpoint["pre"], after, drifted)
        return RollbackReport(verified=verified, detail=detail)

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


def _tried(pair: Pair, db: sqlite3.Connection, row_limit: int, where: str, path: str | None) -> Reversibility:
    """The pair on `db`, in its open transaction when `path` (its file, for reading the state before) is given."""
    if path is not None:
        statements = [(st.sql, pair.spec.params) for st in pair.action]
        statements += [(st.sql, pair.inverse.params) for st in pair.undo]
        probe = sqlite_changes.Probe.start(db, sqlite_changes.written_tables(db, statements))
    else:  # outside a transaction (on a clone): whole fingerprints
        before = inspect.fingerprint(db)
    try:
        run.run_script(db, pair.action_job(row_limit))
    except StatementFailed as exc:
        raise sql_inverse.action_fails(where, exc.why) from None
    try:
        run.run_script(db, pair.undo_job(row_limit))
    except StatementFailed as exc:
        return sql_inverse.inverse_fails(where, exc.why)
    if path is not None:
        found = probe.compare(lambda: sqlite_changes.read_only(path))
    else:
        after = inspect.fingerprint(db)
        found = None if after.digest == before.digest else inspect.diff(before, after)
    return sql_inverse.restored(None if found is None else found.text, where)
