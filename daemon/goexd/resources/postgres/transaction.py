"""A PostgreSQL database with the `transaction` undo strategy (psycopg 3).

The session holds one connection (autocommit off) and one open transaction on it, begun
implicitly by the first action's SAVEPOINT; each action runs under its own SAVEPOINT; undo is
ROLLBACK TO that savepoint + RELEASE (newest first; the transaction ends with ROLLBACK when
nothing is left pending); committing the session's pending actions on the database COMMITs the
transaction whole. DDL is transactional in PostgreSQL, so it is undone the same way. Until the
commit, other connections see none of it, and the locks the actions took (an ALTER TABLE's
ACCESS EXCLUSIVE lock, the rows an UPDATE changed) stay held: that is the price of this strategy.
Connecting, checking scripts and running statements live in run.py, shared with the
inverse and clone strategies.

Decisions:
- Parameters use PostgreSQL's own placeholders, $1, $2... (psycopg's RawCursor): they are what
  the server and the SQL parser (pglast) understand, and a literal % (LIKE 'a%', 7 % 2) needs
  no escaping. The client's positional string parameters are sent untyped, so the server infers
  each one's type from where it is used ($1 compared with an integer column is an integer).
  Parameters need a script of exactly one statement.
- Rows come back as PostgreSQL's own text (the server's output functions: 't'/'f', bytea as
  \\x..., timestamps as the server writes them), read straight from the result, never converted
  into Python objects; NULL is None. At most `row_limit` rows are kept, with the total count.
  The whole result of a query is fetched into goexd's memory (the timeout bounds it in time).
- affected_rows sums the row counts of the statements whose command tag reports changed rows
  (INSERT, UPDATE, DELETE, MERGE, COPY); a data-modifying WITH reports under SELECT and is not
  counted, nor is CREATE TABLE AS.
- Timeout and cancel: a watcher thread calls conn.cancel_safe() when the engine's cancel Event
  is set or the action's wall-clock deadline passes (so a script of many short statements is
  stopped too), and statement_timeout is set to the action's timeout as the server's own
  backstop. It is set with set_config(..., is_local) inside the action's savepoint and put back
  to the value it had as soon as the statements end: a failed action's ROLLBACK TO undoes it by
  itself, and the checks, fingerprints and commits goexd runs between actions never inherit an
  action's (possibly short) timeout. A statement the watcher cancels only aborts the action's
  savepoint; nothing earlier is lost (unlike SQLite).
- A failed statement leaves PostgreSQL's transaction aborted until ROLLBACK TO: the engine's
  rollback of the failed action does exactly that, so the earlier savepoints, and the
  transaction, stay usable.
- Refused in precheck: privileged statements (PermissionDenied with the reason), transaction
  control (goexd owns the transaction), statements that cannot run inside a transaction or that
  a rollback does not undo (VACUUM, CREATE INDEX CONCURRENTLY, nextval()...: the clone strategy
  can run them), and COPY FROM STDIN / TO STDOUT (goexd has no data stream to give them).
- Before a commit, commit_check runs SET CONSTRAINTS ALL IMMEDIATE inside a savepoint it always
  rolls back, so a deferred constraint that would make COMMIT fail is reported while the
  actions are still pending (and undoable) rather than after the engine recorded the commit.
- Lost connection (server restart, pg_terminate_backend, idle_in_transaction_session_timeout):
  the server rolls back the open transaction. The call that finds out raises Unavailable naming
  the pending actions that went with it, and take_lost() reports them (the engine marks them
  INTERRUPTED); a running action fails. The next call that needs the database reconnects and
  starts a new transaction (when nothing pending was lost, transparently).
- The password is given to psycopg.connect separately, never put into the URI, and scrubbed
  from every message this module produces.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from goexd.dbinspect import postgres as inspect
from goexd.domain.errors import FailedPrecondition, GoexError, InvalidArgument, Unavailable
from goexd.domain.models import ActionSpec, Resource, SqlResult
from goexd.domain.resource import Checkpoint, Outcome, RollbackReport
from goexd.resources.postgres import reads, run
from goexd.resources.postgres.run import Conn, validate_postgres_url
from goexd.resources.sql_manager import OneTransaction, ScriptJob, StatementFailed, savepoint_name
from goexd.sql.model import SQL_FIELD, Classified

__all__ = ["PostgresTransactionResource", "savepoint_name", "validate_postgres_url"]

T = TypeVar("T")

_CHECK_SAVEPOINT = "goex_commit_check"
_NON_TRANSACTIONAL = (
    "the transaction strategy runs every action inside the session's open transaction, which cannot run this "
    "statement or undo it; the clone strategy can (--db-strategy clone)"
)


class PostgresTransactionResource(OneTransaction):
    dialect = "postgres"

    def __init__(
        self, resource: Resource, password: str | None, row_limit: int = 1000, connect_timeout_s: float = 5.0
    ) -> None:
        self.resource = resource
        self._pg = run.PgEndpoint(resource.uri, password, connect_timeout_s)
        self._row_limit = row_limit
        self._where = self._pg.where
        self._dbname = self._pg.dbname
        self._live: list[str] = []  # actions with a live savepoint, oldest first
        self._committing: list[str] = []  # actions released for the COMMIT that ends the transaction
        self._lost: list[str] = []  # pending actions the server discarded (see take_lost)
        self._gone: set[str] = set()  # every action ever lost: it can be undone (a no-op), never committed
        self._lock = threading.Lock()
        self._conn = self._connect()

    # ------------------------------------------------------------ connection

    def _connect(self) -> Conn:
        return self._pg.connect(autocommit=False)

    def _ready(self) -> Conn:
        """The connection; a new one (and so a new transaction) if the last one was lost."""
        if self._conn.closed:
            self._discard_live(running=None)  # normally accounted already, by the call that found it lost
            self._conn = self._connect()
        return self._conn

    def _broken(self) -> bool:
        """Whether the connection is gone, or was left in a state no statement can follow (then closed)."""
        return run.broken(self._conn)

    def _discard_live(self, running: str | None) -> list[str]:
        """The server rolled the session's transaction back: every pending action but `running` is lost."""
        lost = [a for a in self._live if a != running]
        self._live = [a for a in self._live if a == running]
        self._lost += lost
        self._gone.update(lost)
        return lost

    def _lost_connection(self, exc: psycopg.Error, during: str, running: str | None = None) -> Unavailable:
        lost = self._discard_live(running)
        why = f"lost the connection to PostgreSQL at {self._where} {during} ({self._reason(exc)})"
        if lost:
            why += f"; the server rolled back the session's transaction with the pending actions {', '.join(lost)}"
        return Unavailable(why + "; the next action reconnects")

    def _guarded(self, during: str, work: Callable[[Conn], T]) -> T:
        """Run `work` on the connection; reconnect and retry once when it was found lost with nothing pending."""
        for attempt in (1, 2):
            conn = self._ready()
            try:
                return work(conn)
            except psycopg.Error as exc:
                if not self._broken():
                    raise
                if self._live or attempt == 2:
                    raise self._lost_connection(exc, during) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ lifecycle

    def describe(self, samples: bool = False) -> str:
        with self._lock:
            head = (
                f"postgresql database (strategy transaction: pending actions are invisible to other connections "
                f"until committed, and the locks they took are held until then); {len(self._live)} pending action(s)"
            )
            try:
                body = self._guarded(
                    "while describing the database", lambda c: inspect.describe(c, 3 if samples else 0)
                )
            except psycopg.Error as exc:
                raise FailedPrecondition(f"cannot describe the database: {self._message(exc)}") from None
            return head + "\n" + body

    def script(self, spec: ActionSpec, fld: str = "spec") -> list[Classified]:
        return run.check_script(spec, fld, runs_in="its own savepoint", non_transactional=_NON_TRANSACTIONAL)

    def change_nothing(self, functions: frozenset[str]) -> bool:
        with self._lock:
            try:
                return self._guarded("looking up functions", lambda c: reads.none_volatile(c, functions))
            except (psycopg.Error, GoexError):  # then it runs as any action, and meets the problem there
                return False

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        name = savepoint_name(action_id)
        with self._lock:
            try:
                self._guarded(
                    "before the action ran", lambda c: c.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(name)))
                )
            except psycopg.Error as exc:
                raise FailedPrecondition(
                    f"cannot take a savepoint in the session's transaction: {self._message(exc)}"
                ) from None
            self._live.append(action_id)
            return {"savepoint": name}

    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        with self._lock:
            if self._conn.closed:
                raise FailedPrecondition("the action's savepoint went with the lost connection; nothing ran")
            running = self._live[-1] if self._live else None
            try:
                result = run.run_script(self._conn, job, self._message)
            except run.ConnectionLost as lost:
                raise self._lost_connection(lost.error, "while the action ran", running) from None
            except StatementFailed as exc:
                raise InvalidArgument(SQL_FIELD, exc.why) from None
        return Outcome(exec=None, changes=None, sql=result)

    def read(self, job: ScriptJob) -> SqlResult:
        """Inside the session's transaction (it sees the pending actions), fenced."""
        with self._lock:
            conn = self._ready() if not self._live else self._conn
            if conn.closed:
                raise FailedPrecondition("the session's transaction went with the lost connection; nothing ran")
            try:
                return reads.run_postgres_read(conn, job, self._message)
            except run.ConnectionLost as lost:
                raise self._lost_connection(lost.error, "while the read ran") from None
            except StatementFailed as exc:
                raise InvalidArgument(SQL_FIELD, exc.why) from None

    def commit_check(self, action_ids: Sequence[str]) -> None:
        """One transaction commits whole: refuse a commit that would leave later actions on it pending, of
        actions the server already discarded, or that a deferred constraint would make fail."""
        with self._lock:
            gone = [a for a in action_ids if a in self._gone]
            if gone:
                raise FailedPrecondition(
                    f"actions {', '.join(gone)} on {self.resource.name!r} were discarded by the server with the "
                    "lost connection's transaction; they cannot be committed"
                )
            self._refuse_a_partial_commit(action_ids)
            if not self._live:
                return
            try:
                self._check_deferred()
            except psycopg.Error as exc:
                if self._broken():
                    raise self._lost_connection(exc, "while checking the commit") from None
                raise FailedPrecondition(
                    f"committing {self.resource.name!r} would fail, so nothing was committed: "
                    f"postgres: {self._message(exc)}; undo the action that broke it"
                ) from None

    def _check_deferred(self) -> None:
        """Fire the deferred constraint checks now, inside a savepoint that is always rolled back."""
        sp = sql.Identifier(_CHECK_SAVEPOINT)
        try:
            self._conn.execute(sql.SQL("SAVEPOINT {}; SET CONSTRAINTS ALL IMMEDIATE").format(sp))
        finally:
            if not self._conn.closed:
                self._conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {0}; RELEASE SAVEPOINT {0}").format(sp))

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        with self._lock:
            if action_id in self._live:
                self._live.remove(action_id)
                self._committing.append(action_id)
            if self._live or not self._committing:
                return
            done, self._committing = self._committing, []
            not_committed = f"so actions {', '.join(done)} were NOT committed"
            if self._conn.closed or self._conn.info.transaction_status is TransactionStatus.INERROR:
                self._discard_live(running=None)
                raise Unavailable(f"the session's transaction on {self._where} is gone or aborted, {not_committed}")
            try:
                self._conn.commit()
            except psycopg.Error as exc:
                if not self._broken():
                    with contextlib.suppress(psycopg.Error):
                        self._conn.rollback()
                raise Unavailable(
                    f"COMMIT failed on PostgreSQL at {self._where} ({self._message(exc)}): the server rolled the "
                    f"transaction back, {not_committed}"
                ) from None

    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        with self._lock:
            if action_id in self._gone:
                return RollbackReport(
                    verified=True, detail="the server had already discarded it with the lost connection's transaction"
                )
            name = self._pop_savepoint(action_id, checkpoint)
            gone = "the connection was lost, and the server rolled back the whole transaction with it"
            if self._conn.closed:
                self._discard_live(running=None)
                return RollbackReport(verified=True, detail=gone)
            try:
                self._conn.execute(
                    sql.SQL("ROLLBACK TO SAVEPOINT {0}; RELEASE SAVEPOINT {0}").format(sql.Identifier(name))
                )
                if not self._live:
                    self._conn.rollback()  # nothing pending: end the transaction and free its locks
            except psycopg.Error as exc:
                if self._broken():
                    self._discard_live(running=None)
                    return RollbackReport(verified=True, detail=gone)
                self._live.append(action_id)
                raise FailedPrecondition(f"cannot roll back to savepoint {name}: {self._message(exc)}") from None
        return RollbackReport(verified=True, detail=f"rolled back to savepoint {name} inside the session's transaction")

    def fingerprint(self) -> str:
        with self._lock:
            try:
                return self._guarded("while fingerprinting the database", lambda c: inspect.fingerprint(c).digest)
            except psycopg.Error as exc:
                raise FailedPrecondition(f"cannot fingerprint the database: {self._message(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._live.clear()
            if self._conn.closed:
                return
            try:
                if self._conn.info.transaction_status is not TransactionStatus.IDLE:
                    self._conn.rollback()
            except psycopg.Error:
                pass
            finally:
                self._conn.close()

    # ------------------------------------------------------------ messages

    def _reason(self, exc: psycopg.Error) -> str:
        return self._pg.reason(exc)

    def _message(self, exc: psycopg.Error) -> str:
        return self._pg.message(exc)
