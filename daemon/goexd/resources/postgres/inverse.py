"""A PostgreSQL database with the `inverse` undo strategy (psycopg 3).

Each action commits at once in its own transaction; its undo is an inverse SQL script (from the
client today, from the planner later). Before the action runs, the pair is tested: BEGIN
(REPEATABLE READ: one snapshot plus the test's own changes); note the state, action, inverse,
compare; ROLLBACK, always. Only if the database is as it was does the action run (the engine
blocks it otherwise, with dbinspect's table-level diff). Undo
runs the inverse in a transaction and compares the result with the pre-action fingerprint; if
the database changed in between (other writers), the undo still runs and says it could not
verify.

Decisions:
- Statements a transaction cannot run or take back (VACUUM, CREATE INDEX CONCURRENTLY,
  nextval()/setval()...: the classifier's `transactional=False`) are accepted; their pair is
  tested on a copy of the database instead (CREATE DATABASE goex_test_<random> TEMPLATE <db>,
  dropped afterwards), where they run outside a transaction, as they will for real. PostgreSQL
  copies a database only while no other session is connected to it: this resource's own
  connection steps aside for the copy (closed, then reopened at the next call), and when other
  sessions are connected the test fails at once with FailedPrecondition naming how many (rather
  than after the 5 s PostgreSQL waits). The copy needs the role to have CREATEDB and to own the
  database; without them such a test fails with PostgreSQL's reason. The test on a copy costs a
  copy (on the test cluster: ~70 ms for an empty database, ~100 ms at 100k rows, ~330 ms at 1M).
- Such an action, and such an inverse at undo, also run outside a transaction (autocommit,
  statement by statement): a failure part-way leaves the statements before it applied.
- The test compares what the pair could have changed, not every row (dbinspect/pg_changes.py):
  the schema whole; the tables the transaction's counters say were written, settled by capture
  triggers on the tables the scripts name (their net change in rows and digest sum) or else read
  on both sides (the side before the action through an exported snapshot, on a second
  connection, after the ROLLBACK). Its cost is the action, the inverse and ~10 ms; the tables it
  has to read, and a failing test's diff, cost what fingerprints cost (~175 ms a pass at 1M
  rows). The capture triggers hold a SHARE ROW EXCLUSIVE lock on the written tables until the
  ROLLBACK: other sessions' writes to them wait for the test.
- An action's round trip adds a whole fingerprint before it and one after it, its undo one
  before the inverse (to tell drift apart) and one after (bench/pg_strategy_micro.py).
- Session settings an action SETs stay on the connection for later actions, until it is
  replaced (a lost connection, or a test on a copy, which closes it).
- The resource keeps one connection (autocommit: goexd issues BEGIN/COMMIT itself). Nothing is
  ever pending on it between calls, so a lost connection loses nothing: reads retry once on a
  new connection, a running action fails (Unavailable), and take_lost() is always empty.
- checkpoint() stores the pre-action fingerprint digest ("pre"; the last few fingerprints stay
  in memory, so an undo that does not match names what differs) and the inverse
  ("inverse_sql", "inverse_params" as JSON); execute() adds the post-action digest ("post").
- A failed action has no "post". Its undo runs no inverse (the inverse takes back the whole
  action); it compares the database with "pre": equal means the action's transaction was rolled
  back and there is nothing to undo; different is reported unverified (statements outside a
  transaction had taken effect, or others changed the database).
- Fingerprints cover sequences' positions (dbinspect's Schema.states), so a pair that leaves a
  sequence moved fails. A ROLLBACK does not take a nextval back: a test in a transaction reads
  every sequence's position before its BEGIN and sets back (setval) each one it moved after its
  ROLLBACK, unless it moved again since (then it is left, with a warning in the log). Another
  client's nextval while the test runs is set back with the test's (docs/architecture.md).
- Outcomes in doubt are settled from the database (outcomes.py): the action's transaction and
  the inverse's each write a marker into goex_outcomes (postgres/outcomes.py), so a restart after
  a crash between a COMMIT and the journal's record, and a connection lost during a COMMIT, find
  out whether the server committed: an action it kept is EXECUTED and undoable, an inverse it
  committed is never run again. A database where the table cannot be kept is refused at open.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import psycopg

from goexd import faults
from goexd.dbinspect import pg_catalog, pg_changes
from goexd.dbinspect import postgres as inspect
from goexd.dbinspect.recent import RecentStates
from goexd.domain.errors import FailedPrecondition, GoexError, InvalidArgument, Unavailable
from goexd.domain.models import Reversibility, ReversibilityClass, SqlResult, Verdict
from goexd.domain.resource import Checkpoint, InDoubt, Outcome, RollbackReport
from goexd.resources import outcomes, sql_inverse
from goexd.resources.postgres import run
from goexd.resources.postgres.manager import PgDatabaseManager
from goexd.resources.postgres.outcomes import PgMarks
from goexd.resources.postgres.run import Conn
from goexd.resources.sql_inverse import Pair, UndoesByInverse
from goexd.resources.sql_manager import ScriptJob, StatementFailed
from goexd.sql.model import SQL_FIELD, Classified
from goexd.sql.postgres_targets import written_tables

log = logging.getLogger(__name__)

TAG = "postgres-inverse"  # its fault points' tag (faults.py)


class PostgresInverseResource(PgDatabaseManager, UndoesByInverse):
    def _opened(self) -> None:
        self._pre = RecentStates()  # so an undo that does not match can say what differs
        self._marks = PgMarks(self._db.name, self._pg.message)
        conn = self._db.conn()  # an unreachable server or a wrong password is refused now, at session open
        try:
            self._marks.ensure(conn)
        except psycopg.Error as exc:
            self._db.close()
            raise self._unusable(conn, exc, "while setting up its outcome markers") from None

    def describe(self, samples: bool = False) -> str:
        return self._described(
            "postgresql database (strategy inverse: each action commits at once; undo runs its tested inverse)",
            samples,
        )

    # ------------------------------------------------------------ the reversibility test

    def try_pair(self, pair: Pair) -> Reversibility:
        """In a transaction that is rolled back, or on a copy when one cannot hold the pair."""
        for i, st in enumerate(pair.action):  # what no inverse can revert is refused before anything runs
            if st.permanent:
                return Reversibility(
                    ReversibilityClass.IRREVERSIBLE,
                    Verdict.FAILED,
                    f"not reversible: statement {i + 1} cannot be taken back once it commits ({st.permanent}); "
                    "nothing was run",
                )
        with self._lock:
            tried = self._test_in_transaction(pair) if pair.transactional else self._test_on_copy(pair)
        return _escaping(pair.action, tried)

    def _test_in_transaction(self, pair: Pair) -> Reversibility:
        where = "in a rolled-back transaction"
        watch = _Changes([*written_tables(pair.spec.sql), *written_tables(pair.inverse.sql)], self._view)
        for attempt in (1, 2):
            conn = self._db.conn()
            try:
                positions = pg_catalog.sequence_positions(conn)
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            except psycopg.Error as exc:
                if attempt == 2 or not run.broken(conn):
                    raise self._unusable(conn, exc, "before the test") from None
                continue  # found lost between calls: nothing was pending, a new connection will do
            try:
                outcome = self._pair(conn, pair, where, watch)
            finally:
                if not run.broken(conn):
                    with contextlib.suppress(psycopg.Error):  # a failure here closes it: the next call reconnects
                        conn.rollback()
                self._restore_sequences(positions)
            # The state before the test is read (where it has to be) only now, with the test's locks gone.
            return outcome if isinstance(outcome, Reversibility) else self._verdict(outcome, where)
        raise AssertionError("unreachable")

    def _restore_sequences(self, before: pg_catalog.Positions) -> None:
        """Set back the sequences the test moved: the ROLLBACK does not (nextval is not transactional)."""
        try:
            conn = self._db.conn()
            kept = pg_catalog.restore_sequences(conn, before, pg_catalog.sequence_positions(conn))
        except (psycopg.Error, GoexError) as exc:
            log.warning("the sequences of %s the reversibility test moved were not set back: %s", self._db.name, exc)
            return
        if kept:
            log.warning("sequences of %s moved again during the test, left as they are: %s", self._db.name, kept)

    def _test_on_copy(self, pair: Pair) -> Reversibility:
        # A statement a transaction cannot take back: try the pair on a private copy instead.
        why = next(st.reason for st in [*pair.action, *pair.undo] if not st.transactional)
        name = f"goex_test_{uuid.uuid4().hex[:16]}"

        def busy(n: int) -> str:
            return (
                f"the reversibility test of a statement a transaction cannot take back ({why}) runs on a copy of "
                f"database {self._db.name}, and PostgreSQL copies a database only while no one else is connected "
                f"to it: it has {n} other connection(s); close them and test again"
            )

        self._db.copy_to(name, busy)
        try:
            copy = self._pg.connect(autocommit=True, dbname=name)
            where = "on a copy of the database"
            try:
                outcome = self._pair(copy, pair, where, _Whole())
                return outcome if isinstance(outcome, Reversibility) else self._verdict(outcome, where)
            finally:
                self._db.leave(copy)
        finally:
            try:
                self._db.drop(name, force=True)
            except GoexError as exc:  # the verdict stands; the copy is left for someone to drop
                log.warning("the reversibility test's copy %s of %s was not dropped: %s", name, self._db.name, exc)

    def _pair(self, conn: Conn, pair: Pair, where: str, watch: _Watch) -> Reversibility | _Compared:
        """Action then inverse between the watch's two looks; a verdict, or what is left to compare."""
        try:
            watch.start(conn)
        except psycopg.Error as exc:
            raise self._unusable(conn, exc, "while noting its state for the test") from None
        try:
            run.run_script(conn, pair.action_job(self._row_limit), self._pg.message)
        except StatementFailed as exc:
            raise sql_inverse.action_fails(where, exc.why) from None
        except run.ConnectionLost as lost:
            raise self._unusable(conn, lost.error, "during the reversibility test") from None
        try:
            run.run_script(conn, pair.undo_job(self._row_limit), self._pg.message)
        except StatementFailed as exc:
            if exc.stopped:  # not the inverse's fault: the test ran out of time, or was cancelled
                raise InvalidArgument(SQL_FIELD, f"the reversibility test was {exc.why} ({where})") from None
            return sql_inverse.inverse_fails(where, exc.why)
        except run.ConnectionLost as lost:
            raise self._unusable(conn, lost.error, "during the reversibility test") from None
        try:
            return watch.finish(conn)
        except psycopg.Error as exc:
            raise self._unusable(conn, exc, "while comparing it after the test") from None

    def _verdict(self, compared: _Compared, where: str) -> Reversibility:
        try:
            found = compared.result()
        except psycopg.Error as exc:
            raise FailedPrecondition(
                f"cannot test on the database: reading it as it was before the test failed: {self._pg.message(exc)}"
            ) from None
        return sql_inverse.restored(None if found is None else found.text, where)

    @contextlib.contextmanager
    def _view(self) -> Iterator[Conn]:
        """A second connection, for reading the database as the test's snapshot saw it."""
        conn = self._pg.connect(autocommit=True)
        try:
            yield conn
        finally:
            self._db.leave(conn)

    # ------------------------------------------------------------ the action and its undo

    def state(self, during: str) -> inspect.DbFingerprint:
        return self._db.reading(during, inspect.fingerprint)

    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        marker = checkpoint.get(outcomes.MARKER_KEY)
        with self._lock:
            try:
                mark = self._marking(marker, outcomes.ACTION, job.statements) if marker else None
                result = self._db.run_committed(job, mark)
            except StatementFailed as exc:
                raise InvalidArgument(SQL_FIELD, exc.why) from None
            except run.CommitUnknown as lost:
                result = self._committed_after_all(lost, marker, outcomes.ACTION, "the action")
            except run.ConnectionLost as lost:
                raise self._db.lost(lost, "the action") from None
            faults.point("action-after-commit", TAG)
            try:
                post = self._digest("after the action ran")
            except GoexError as exc:  # it committed: it stays undoable, its undo unverified for want of this
                log.warning("no fingerprint of %s after an action that committed: %s", self._db.name, exc)
                post = ""
        return Outcome(exec=None, changes=None, sql=result, checkpoint_extra={"post": post})

    def _marking(self, action_id: str, step: str, statements: Sequence[Classified]) -> Callable[[Conn], None]:
        """Mark `step` begun now when its statements run outside a transaction; returns what marks it done,
        to run last before its COMMIT (outcomes.py). Apart from SQLite's: the marker goes on the connection
        run_committed hands it, and a psycopg error here may mean the connection is gone."""
        if not all(st.transactional for st in statements):
            try:
                self._marks.write(self._db.conn(), action_id, outcomes.begun(step))
            except psycopg.Error as exc:
                raise self._unusable(self._db.conn(), exc, "while marking the start of statements") from None

        def done(conn: Conn) -> None:
            self._marks.write(conn, action_id, step)
            faults.point(f"{step}-before-commit", TAG)

        return done

    def _committed_after_all(self, lost: run.CommitUnknown, marker: str | None, step: str, what: str) -> SqlResult:
        """The connection went during the COMMIT of `what`: the marker, read on a new connection, tells
        whether the server committed. Its result when it did; Unavailable saying which when it did not."""
        if marker is None:
            raise self._db.lost(lost, what) from None
        try:
            steps = self._db.reading(f"after the COMMIT of {what}", lambda c: self._marks.steps(c, marker))
        except GoexError:
            raise self._db.lost(lost, what) from None
        if step in steps:
            log.warning("the connection went during the COMMIT of %s, which the server had committed", what)
            return lost.result
        raise Unavailable(
            f"lost the connection to PostgreSQL at {self._pg.where} during the COMMIT of {what}; the server did "
            "not commit it (no outcome marker): nothing changed"
        )

    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        with self._lock:
            if "post" not in checkpoint:  # the action failed (or goexd stopped while it ran)
                return self._after_failure(checkpoint)
            job = self.inverse_job(checkpoint)
            if job is None:
                return sql_inverse.NOTHING_WRITTEN
            before = self._digest("before the undo")
            steps = self._db.reading("before the undo", lambda c: self._marks.steps(c, action_id))
            earlier = outcomes.undone_already(checkpoint, outcomes.Look(steps, lambda: before))
            if earlier is not None:
                return earlier
            drifted = before != checkpoint["post"]
            try:
                self._db.run_committed(job, self._marking(action_id, outcomes.UNDO, job.statements))
            except run.CommitUnknown as lost:
                self._committed_after_all(lost, action_id, outcomes.UNDO, "the inverse")
            except StatementFailed as exc:
                partly = "" if job.transactional else " (statements before it stayed applied)"
                raise InvalidArgument(
                    "inverse.sql.sql", f"the inverse failed, nothing was changed{partly}: {exc.why}"
                ) from None
            except run.ConnectionLost as lost:
                raise self._db.lost(lost, "the inverse") from None
            faults.point("undo-after-commit", TAG)
            after = self._db.reading("after the undo", inspect.fingerprint)
        verified, detail = self._pre.undo_check(checkpoint["pre"], after, drifted)
        return RollbackReport(verified=verified, detail=detail)

    def _after_failure(self, checkpoint: Checkpoint) -> RollbackReport:
        # Apart from SQLite's (sqlite/inverse.py): here nextval() or CREATE INDEX CONCURRENTLY may have stayed.
        if self._digest("after the failed action") == checkpoint.get("pre"):
            return RollbackReport(verified=True, detail="the action's transaction was rolled back; nothing to undo")
        return RollbackReport(
            verified=False,
            detail=(
                "the action failed, and the database differs from its pre-action state: statements that run "
                "outside a transaction had taken effect, or others changed it; the inverse (for the whole "
                "action) was not run"
            ),
        )

    def _digest(self, during: str) -> str:
        return self._db.reading(during, lambda c: inspect.fingerprint(c).digest)

    def _unusable(self, conn: Conn, exc: psycopg.Error, during: str) -> GoexError:
        if run.broken(conn):
            return Unavailable(
                f"lost the connection to PostgreSQL at {self._pg.where} {during} ({self._pg.reason(exc)})"
            )
        return FailedPrecondition(f"cannot test on the database {during}: {self._pg.message(exc)}")

    def resolve_in_doubt(self, action_id: str, checkpoint: Checkpoint) -> InDoubt:
        during = "while settling an action goexd stopped in"
        marker = checkpoint.get(outcomes.MARKER_KEY, action_id)
        with self._lock:
            steps = self._db.reading(during, lambda c: self._marks.steps(c, marker))
            return outcomes.resolve_running(checkpoint, outcomes.Look(steps, lambda: self._digest(during)))

    def marked(self) -> list[str]:
        with self._lock:
            try:
                return self._db.reading("while listing its outcome markers", self._marks.marked)
            except GoexError as exc:
                log.warning("could not list the outcome markers in %s: %s", self._db.name, exc)
                return []

    def settle(self, action_ids: Sequence[str]) -> None:
        with self._lock:
            try:
                self._db.reading("while dropping outcome markers", lambda c: self._marks.drop(c, action_ids))
            except GoexError as exc:  # left for the next opening of a session to drop
                log.warning("could not drop the outcome markers of %s in %s: %s", action_ids, self._db.name, exc)

    def fingerprint(self) -> str:
        with self._lock:
            return self._digest("while fingerprinting it")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _escaping(action: Sequence[Classified], tried: Reversibility) -> Reversibility:
    """A pair that restores the database, of an action with an effect outside it (a notification): unknown, as an
    HTTP call that cannot be tried without its side effect; its undo restores the database only (best effort)."""
    escapes = next((st.escapes for st in action if st.escapes), "")
    if not escapes or tried.verdict is not Verdict.PASSED:
        return tried
    return Reversibility(
        ReversibilityClass.BEST_EFFORT,
        Verdict.UNKNOWN,
        f"not reversible: {escapes}; its undo can restore only the database: {tried.detail}",
    )


class _Compared(Protocol):
    def result(self) -> inspect.DbDiff | None:
        """None when the database is as it was before the action, else what differs."""


class _Watch(Protocol):
    """How the test looks at the database before the action and after the inverse."""

    def start(self, conn: Conn) -> None: ...

    def finish(self, conn: Conn) -> _Compared: ...


@dataclass(frozen=True)
class _Fingerprints:
    before: inspect.DbFingerprint
    after: inspect.DbFingerprint

    def result(self) -> inspect.DbDiff | None:
        return None if self.after.digest == self.before.digest else inspect.diff(self.before, self.after)


@dataclass
class _Whole:
    """Every row, before and after: on a copy, whose statements run outside a transaction."""

    before: inspect.DbFingerprint | None = None

    def start(self, conn: Conn) -> None:
        self.before = inspect.fingerprint(conn)

    def finish(self, conn: Conn) -> _Compared:
        assert self.before is not None
        return _Fingerprints(self.before, inspect.fingerprint(conn))


@dataclass
class _Changes:
    """What the transaction changed, in O(changed rows) where it can (dbinspect/pg_changes.py)."""

    written: list[tuple[str | None, str]]
    view: Callable[[], AbstractContextManager[Conn]]
    probe: pg_changes.Probe | None = None

    def start(self, conn: Conn) -> None:
        self.probe = pg_changes.Probe.start(conn, self.written)

    def finish(self, conn: Conn) -> _Compared:
        assert self.probe is not None
        return self.probe.finish(conn, self.view)
