"""A PostgreSQL database with the `transaction` undo strategy (psycopg 3).

The session holds one connection (autocommit off) and one open transaction on it, begun
implicitly by the first action's SAVEPOINT; each action runs under its own SAVEPOINT; undo is
ROLLBACK TO that savepoint + RELEASE (newest first; the transaction ends with ROLLBACK when
nothing is left pending); committing the session's pending actions on the database COMMITs the
transaction whole. DDL is transactional in PostgreSQL, so it is undone the same way. Until the
commit, other connections see none of it, and the locks the actions took (an ALTER TABLE's
ACCESS EXCLUSIVE lock, the rows an UPDATE changed) stay held: that is the price of this strategy.

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
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import psycopg
from pglast import ast
from psycopg import RawCursor, sql
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from goexd.dbinspect import postgres as inspect
from goexd.engine.models import ActionKind, ActionSpec, Resource, Reversibility, SqlResult
from goexd.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from goexd.resources.base import Checkpoint, Outcome, OutputCallback, RollbackReport, SandboxNetwork
from goexd.sandbox.base import Limits
from goexd.sql.model import SQL_FIELD, Classified, StatementClass
from goexd.sql.postgres_parse import parse_postgres
from goexd.sql.postgres_rules import classify_postgres

Conn = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")

CANCEL_POLL_S = 0.02  # how often the watcher looks at the engine's cancel Event
CANCEL_REQUEST_TIMEOUT_S = 5.0
_COUNTED_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
_CHECK_SAVEPOINT = "goex_commit_check"
_MAX_TIMEOUT_MS = 2_147_483_647  # statement_timeout is an int (milliseconds)
_USABLE = (TransactionStatus.IDLE, TransactionStatus.INTRANS, TransactionStatus.INERROR)


def savepoint_name(action_id: str) -> str:
    return f"goex_{action_id}"


def validate_postgres_url(url: str, fld: str) -> str:
    """postgresql://USER@HOST[:PORT]/DATABASE[?options] -> the URL; never one that carries a password.

    Messages never repeat the URL (it might hold a password the check is about to refuse)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise InvalidArgument(fld, "a PostgreSQL database is a postgresql://USER@HOST[:PORT]/DATABASE URL")
    if any(c in url for c in "\x00\r\n"):
        raise InvalidArgument(fld, "the URL must not contain NUL or line breaks")
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        _ = parts.port
    except ValueError as exc:
        raise InvalidArgument(fld, f"not a valid URL ({exc})") from None
    if parts.password is not None or any(k.lower() == "password" for k, _v in query):
        raise InvalidArgument(
            fld,
            "the URL must not carry a password: store it in the vault "
            "(goex secret put NAME --dsn-password --host HOST) and name that secret for the database "
            "(goex session open --db URL --db-secret NAME)",
        )
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = _one_line(str(exc)).replace(url, "<the URL>")
        raise InvalidArgument(fld, f"libpq cannot read the URL: {reason}") from None
    if info.get("password"):  # libpq found one the URL parser did not: refuse it all the same
        raise InvalidArgument(fld, "the URL must not carry a password: use a vault secret (--db-secret)")
    if not (info.get("host") or info.get("hostaddr")):
        raise InvalidArgument(fld, "the URL names no host (postgresql://USER@HOST[:PORT]/DATABASE)")
    if not info.get("dbname"):
        raise InvalidArgument(fld, "the URL names no database (postgresql://USER@HOST[:PORT]/DATABASE)")
    return url


class PostgresTransactionResource:
    undo_note = "undo rolls back to the action's savepoint in the session's open transaction"

    def __init__(
        self, resource: Resource, password: str | None, row_limit: int = 1000, connect_timeout_s: float = 5.0
    ) -> None:
        self.resource = resource
        self._password = password or None
        self._row_limit = row_limit
        self._connect_timeout_s = connect_timeout_s
        try:
            info = conninfo_to_dict(resource.uri)
        except psycopg.Error as exc:
            raise InvalidArgument("resource.uri", f"libpq cannot read the URL: {self._scrub(str(exc))}") from None
        host = str(info.get("host") or info.get("hostaddr") or "localhost")
        self._where = f"{host}:{info.get('port') or 5432}"
        self._dbname = str(info.get("dbname") or "")
        self._live: list[str] = []  # actions with a live savepoint, oldest first
        self._committing: list[str] = []  # actions released for the COMMIT that ends the transaction
        self._lost: list[str] = []  # pending actions the server discarded (see take_lost)
        self._gone: set[str] = set()  # every action ever lost: it can be undone (a no-op), never committed
        self._lock = threading.Lock()
        self._conn = self._connect()

    # ------------------------------------------------------------ connection

    def _connect(self) -> Conn:
        kwargs: dict[str, Any] = {
            "autocommit": False,
            "prepare_threshold": None,  # no server-side prepared statements: DDL in actions would stale them
            "connect_timeout": max(2, math.ceil(self._connect_timeout_s)),  # libpq counts whole seconds, >= 2
            "application_name": "goexd",
        }
        if self._password is not None:
            kwargs["password"] = self._password
        try:
            return psycopg.connect(self.resource.uri, **kwargs)
        except psycopg.Error as exc:
            reason = self._reason(exc)
            if "no password supplied" in reason:
                reason += " (give the session a vault secret holding the password: --db-secret NAME)"
            raise Unavailable(
                f"cannot connect to PostgreSQL at {self._where} (database {self._dbname}): {reason}"
            ) from None

    def _ready(self) -> Conn:
        """The connection; a new one (and so a new transaction) if the last one was lost."""
        if self._conn.closed:
            self._discard_live(running=None)  # normally accounted already, by the call that found it lost
            self._conn = self._connect()
        return self._conn

    def _broken(self) -> bool:
        """Whether the connection is gone, or was left in a state no statement can follow (then closed)."""
        if self._conn.closed:
            return True
        if self._conn.info.transaction_status not in _USABLE:
            self._conn.close()
            return True
        return False

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

    def precheck(self, spec: ActionSpec) -> None:
        self._checked(spec)

    def _checked(self, spec: ActionSpec) -> list[Classified]:
        if spec.kind is not ActionKind.SQL:
            raise InvalidArgument("spec", f"{spec.kind.value} actions do not run on a database resource")
        parsed = parse_postgres(spec.sql)
        statements = [classify_postgres(p) for p in parsed]
        for i, (p, st) in enumerate(zip(parsed, statements, strict=True)):
            _refuse(i, p.node, st)
        if spec.params and len(statements) != 1:
            raise InvalidArgument("spec.sql.params", f"parameters need exactly one statement, not {len(statements)}")
        return statements

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        if inverse is not None:
            raise InvalidArgument(
                "inverse",
                f"{self.resource.name!r} undoes inside its transaction; client inverses are for the inverse strategy",
            )

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility | None:
        return None

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

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        statements = self._checked(spec)
        with self._lock:
            if self._conn.closed:
                raise FailedPrecondition("the action's savepoint went with the lost connection; nothing ran")
            conn = self._conn
            running = self._live[-1] if self._live else None
            params = list(spec.params) or None
            timeout_ms = str(min(math.ceil(limits.timeout_s * 1000), _MAX_TIMEOUT_MS)) if limits.timeout_s > 0 else "0"
            started = time.monotonic()
            result = SqlResult()
            affected = 0
            at = 0
            watch = _Watch(conn, cancel, limits.timeout_s)
            try:
                with RawCursor(conn) as cur:
                    cur.execute(
                        "SELECT current_setting('statement_timeout'), set_config('statement_timeout', $1, true)",
                        [timeout_ms],
                    )
                    previous = cur.fetchone()
                    for st in statements:
                        at += 1  # which statement failed, for the message
                        cur.execute(st.sql, params)
                        if cur.description is not None:
                            result = self._rows(cur)
                        if (cur.statusmessage or "").split(" ", 1)[0] in _COUNTED_TAGS and cur.rowcount > 0:
                            affected += cur.rowcount
                    if watch.finish():  # the deadline passed (or cancel came) as the last statement ended
                        raise InvalidArgument(SQL_FIELD, f"stopped: {watch.stopped}")
                    if previous is not None:
                        cur.execute("SELECT set_config('statement_timeout', $1, true)", [str(previous[0])])
            except psycopg.Error as exc:
                stopped = watch.finish()
                if self._broken():
                    raise self._lost_connection(exc, "while the action ran", running) from None
                if stopped:
                    raise InvalidArgument(SQL_FIELD, f"stopped: {stopped}") from None
                if (
                    isinstance(exc, pg_errors.QueryCanceled)
                    and "statement timeout" in str(exc)
                    and time.monotonic() - started >= limits.timeout_s > 0
                ):  # the server's backstop, not a statement_timeout the action set itself
                    raise InvalidArgument(SQL_FIELD, f"stopped: wall-clock timeout of {limits.timeout_s:g} s") from None
                where = f" (statement {at} of {len(statements)})" if len(statements) > 1 and at else ""
                raise InvalidArgument(SQL_FIELD, f"postgres{where}: {self._message(exc)}") from None
            finally:
                watch.finish()
        return Outcome(
            exec=None,
            changes=None,
            sql=SqlResult(result.columns, result.rows, result.total_rows, result.truncated, affected),
        )

    def _rows(self, cur: RawCursor[tuple[Any, ...]]) -> SqlResult:
        """The result as the server's text, straight from libpq's result: no conversion to Python objects."""
        res, desc = cur.pgresult, cur.description
        if res is None or desc is None:
            return SqlResult()
        encoding = cur.connection.info.encoding
        total = res.ntuples
        kept = min(total, self._row_limit)
        width = range(res.nfields)
        rows = tuple(
            tuple(None if (v := res.get_value(i, j)) is None else v.decode(encoding, "replace") for j in width)
            for i in range(kept)
        )
        return SqlResult(tuple(c.name for c in desc), rows, total, total > kept)

    def take_lost(self) -> list[str]:
        """Pending actions whose effects the database discarded on its own since the last call."""
        with self._lock:
            lost, self._lost = self._lost, []
            return lost

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
            wanted = set(action_ids)
            left = [a for a in self._live if a not in wanted]
            if left:
                raise FailedPrecondition(
                    f"database {self.resource.name!r} runs its actions in one transaction, which commits whole; "
                    f"commit up to its newest pending action ({self._live[-1]}) or undo {', '.join(left)} first"
                )
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

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        with self._lock:
            if action_id in self._gone:
                return RollbackReport(
                    verified=True, detail="the server had already discarded it with the lost connection's transaction"
                )
            if action_id not in self._live:
                raise FailedPrecondition(f"action {action_id} has no savepoint in the open transaction")
            if self._live[-1] != action_id:
                raise FailedPrecondition(f"undo the newer actions on {self.resource.name!r} first: {self._live[-1]}")
            name = checkpoint["savepoint"]
            self._live.pop()
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

    def _scrub(self, text: str) -> str:
        """The text without the password, in any of the forms it could appear in."""
        pw = self._password
        if pw:
            for form in {pw, quote(pw, safe=""), quote_plus(pw)}:
                text = text.replace(form, "***")
        return text

    def _reason(self, exc: psycopg.Error) -> str:
        """A connection error, on one line: psycopg's text can span several, and can echo the conninfo."""
        return self._scrub(_one_line(str(exc)).removeprefix("connection failed: ")) or type(exc).__name__

    def _message(self, exc: psycopg.Error) -> str:
        """A statement error: PostgreSQL's message with its detail and hint."""
        diag = exc.diag
        parts = [diag.message_primary or _one_line(str(exc)) or type(exc).__name__]
        if diag.message_detail:
            parts.append(f"DETAIL: {diag.message_detail}")
        if diag.message_hint:
            parts.append(f"HINT: {diag.message_hint}")
        return self._scrub("; ".join(_one_line(p) for p in parts))


class _Watch:
    """Stops the running statement (conn.cancel_safe) when the engine cancels or the deadline passes.

    The cancel request is sent under a lock that finish() takes too: once finish() has returned,
    no cancel can reach a later statement (a cancel that arrives while the backend is idle is
    ignored by the server)."""

    def __init__(self, conn: Conn, cancel: threading.Event | None, timeout_s: float) -> None:
        self.stopped = ""
        self._conn = conn
        self._cancel = cancel
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s if timeout_s > 0 else math.inf
        self._done = threading.Event()
        self._lock = threading.Lock()
        if cancel is not None or timeout_s > 0:
            threading.Thread(target=self._run, name="goexd-pg-watch", daemon=True).start()

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            if self._cancel is not None and self._cancel.is_set():
                why = "cancelled"
            elif now >= self._deadline:
                why = f"wall-clock timeout of {self._timeout_s:g} s"
            else:
                wait = self._deadline - now
                if self._cancel is not None:
                    wait = min(wait, CANCEL_POLL_S)
                if self._done.wait(None if math.isinf(wait) else wait):
                    return
                continue
            with self._lock:
                if self._done.is_set():
                    return
                self.stopped = why
                with contextlib.suppress(psycopg.Error):  # the statement's error (or the lost connection) tells
                    self._conn.cancel_safe(timeout=CANCEL_REQUEST_TIMEOUT_S)
            return

    def finish(self) -> str:
        """No more cancelling; what stopped the action, if anything did."""
        with self._lock:
            self._done.set()
        return self.stopped


def _refuse(i: int, node: ast.Node, st: Classified) -> None:
    n = i + 1
    if st.cls is StatementClass.PRIVILEGED:
        raise PermissionDenied(
            f"spec.sql.sql: statement {n} is privileged ({st.reason}); the session's policy does not allow it"
        )
    if st.cls is StatementClass.TRANSACTION:
        raise InvalidArgument(SQL_FIELD, f"statement {n} ({st.reason}): goexd runs each action in its own savepoint")
    if not st.transactional:
        raise InvalidArgument(
            SQL_FIELD,
            f"statement {n} ({st.reason}): the transaction strategy runs every action inside the session's open "
            "transaction, which cannot run this statement or undo it; the clone strategy can (--db-strategy clone)",
        )
    if isinstance(node, ast.CopyStmt):  # FROM STDIN / TO STDOUT: the file and PROGRAM forms are privileged
        raise InvalidArgument(
            SQL_FIELD,
            f"statement {n}: COPY {'FROM STDIN' if node.is_from else 'TO STDOUT'} needs a data stream that SQL "
            f"actions do not have; use {'INSERT' if node.is_from else 'SELECT'} instead",
        )


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
