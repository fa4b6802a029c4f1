"""PostgreSQL pieces shared by the postgres strategies (transaction, inverse, clone).

- `validate_postgres_url`: the URL a session names; never one that carries a password.
- `PgEndpoint`: where a resource's database is and how to log in (the password is given to
  psycopg.connect separately, never put into the URI) and the messages about it, with the
  password scrubbed from every one.
- `check_script`: parse (pglast) and classify a SQL action; refuse transaction control,
  COPY FROM STDIN / TO STDOUT, and, where the strategy says so, statements a transaction cannot
  run or take back. Privileged statements are the session policy's call (the engine asks it
  before an action is accepted).
- `run_script`: run the statements with $1 parameters (psycopg's RawCursor), rows as the
  server's text (capped, with the total), affected rows, a wall-clock deadline and cancel by a
  watcher thread (conn.cancel_safe), and statement_timeout as the server's backstop; a lost
  connection is told apart from the statement's own failure.
- `PgDatabase`: a database, its own connection opened on demand and able to step aside, and the
  server's maintenance database, from which it is copied (CREATE DATABASE ... TEMPLATE), dropped
  and swapped by renames: what the inverse strategy's clone tests and the clone strategy share.

The decisions behind statement running (placeholders, text rows, affected rows, timeout and
cancel) are described in transaction.py, whose behaviour this module keeps.
"""

from __future__ import annotations

import contextlib
import logging
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

from goexd.diskspace import OutOfSpace
from goexd.domain.errors import FailedPrecondition, InvalidArgument, Unavailable
from goexd.domain.models import ActionKind, ActionSpec, SqlResult
from goexd.resources.sql_manager import ScriptJob, StatementFailed
from goexd.sql.model import SQL_FIELD, Classified, StatementClass
from goexd.sql.postgres_parse import parse_postgres
from goexd.sql.postgres_rules import classify_postgres

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")

CANCEL_POLL_S = 0.02  # how often the watcher looks at the engine's cancel Event
CANCEL_REQUEST_TIMEOUT_S = 5.0
ADMIN_DATABASE = "postgres"  # where CREATE/ALTER/DROP DATABASE are sent from
# CREATE DATABASE ... STRATEGY (PostgreSQL 15+): wal_log (the default) writes the copy to the WAL;
# file_copy copies the files after a checkpoint (and another after it): faster for large
# databases where checkpoints are cheap, an I/O spike for the whole server where they are not.
COPY_STRATEGIES = frozenset({"wal_log", "file_copy"})
BACKEND_EXIT_WAIT_S = 2.0  # how long a closed connection's backend may take to leave the server
OTHERS_GRACE_S = 0.1  # how long another session's connection may take to leave before it counts as present
_COUNTED_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
_MAX_TIMEOUT_MS = 2_147_483_647  # statement_timeout is an int (milliseconds)
USABLE = (TransactionStatus.IDLE, TransactionStatus.INTRANS, TransactionStatus.INERROR)


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
        reason = one_line(str(exc)).replace(url, "<the URL>")
        raise InvalidArgument(fld, f"libpq cannot read the URL: {reason}") from None
    if info.get("password"):  # libpq found one the URL parser did not: refuse it all the same
        raise InvalidArgument(fld, "the URL must not carry a password: use a vault secret (--db-secret)")
    if not (info.get("host") or info.get("hostaddr")):
        raise InvalidArgument(fld, "the URL names no host (postgresql://USER@HOST[:PORT]/DATABASE)")
    if not info.get("dbname"):
        raise InvalidArgument(fld, "the URL names no database (postgresql://USER@HOST[:PORT]/DATABASE)")
    return url


# ---------------------------------------------------------------- connecting


class PgEndpoint:
    """A resource's server and database, and the password to log in with (kept out of every message)."""

    def __init__(self, uri: str, password: str | None, connect_timeout_s: float = 5.0) -> None:
        self.uri = uri
        self._password = password or None
        self._connect_timeout_s = connect_timeout_s
        try:
            info = conninfo_to_dict(uri)
        except psycopg.Error as exc:
            raise InvalidArgument("resource.uri", f"libpq cannot read the URL: {self.scrub(str(exc))}") from None
        host = str(info.get("host") or info.get("hostaddr") or "localhost")
        self.where = f"{host}:{info.get('port') or 5432}"
        self.dbname = str(info.get("dbname") or "")

    def connect(self, *, autocommit: bool, dbname: str | None = None) -> Conn:
        """A new connection to the resource's database (or to `dbname` on the same server, as the same role)."""
        kwargs: dict[str, Any] = {
            "autocommit": autocommit,
            "prepare_threshold": None,  # no server-side prepared statements: DDL in actions would stale them
            "connect_timeout": max(2, math.ceil(self._connect_timeout_s)),  # libpq counts whole seconds, >= 2
            "application_name": "goexd",
        }
        if dbname is not None:
            kwargs["dbname"] = dbname
        if self._password is not None:
            kwargs["password"] = self._password
        try:
            return psycopg.connect(self.uri, **kwargs)
        except psycopg.Error as exc:
            reason = self.reason(exc)
            if "no password supplied" in reason:
                reason += " (give the session a vault secret holding the password: --db-secret NAME)"
            raise Unavailable(
                f"cannot connect to PostgreSQL at {self.where} (database {dbname or self.dbname}): {reason}"
            ) from None

    def scrub(self, text: str) -> str:
        """The text without the password, in any of the forms it could appear in."""
        pw = self._password
        if pw:
            for form in {pw, quote(pw, safe=""), quote_plus(pw)}:
                text = text.replace(form, "***")
        return text

    def reason(self, exc: psycopg.Error) -> str:
        """A connection error, on one line: psycopg's text can span several, and can echo the conninfo."""
        return self.scrub(one_line(str(exc)).removeprefix("connection failed: ")) or type(exc).__name__

    def message(self, exc: psycopg.Error) -> str:
        """A statement error: PostgreSQL's message with its detail and hint."""
        diag = exc.diag
        parts = [diag.message_primary or one_line(str(exc)) or type(exc).__name__]
        if diag.message_detail:
            parts.append(f"DETAIL: {diag.message_detail}")
        if diag.message_hint:
            parts.append(f"HINT: {diag.message_hint}")
        return self.scrub("; ".join(one_line(p) for p in parts))


def broken(conn: Conn) -> bool:
    """Whether the connection is gone, or was left in a state no statement can follow (then closed)."""
    if conn.closed:
        return True
    if conn.info.transaction_status not in USABLE:
        conn.close()
        return True
    return False


# ---------------------------------------------------------------- checking


def check_script(
    spec: ActionSpec, fld: str = "spec", *, runs_in: str, non_transactional: str | None = None
) -> list[Classified]:
    """Parse and classify; refuse what no postgres strategy may run. Changes nothing.

    `runs_in` ends the refusal of transaction control ("its own savepoint"); `non_transactional`,
    when given, refuses statements a transaction cannot run or take back, with that explanation."""
    if spec.kind is not ActionKind.SQL:
        raise InvalidArgument(fld, f"{spec.kind.value} actions do not run on a database resource")
    sql_field = f"{fld}.sql.sql"
    try:
        parsed = parse_postgres(spec.sql)
    except InvalidArgument as exc:
        if exc.field == SQL_FIELD and sql_field != SQL_FIELD:
            raise InvalidArgument(sql_field, exc.problem) from None
        raise
    statements = [classify_postgres(p) for p in parsed]
    for i, (p, st) in enumerate(zip(parsed, statements, strict=True)):
        _refuse(sql_field, i + 1, p.node, st, runs_in, non_transactional)
    if spec.params and len(statements) != 1:
        raise InvalidArgument(f"{fld}.sql.params", f"parameters need exactly one statement, not {len(statements)}")
    return statements


def _refuse(
    sql_field: str, n: int, node: ast.Node, st: Classified, runs_in: str, non_transactional: str | None
) -> None:
    if st.cls is StatementClass.TRANSACTION:
        raise InvalidArgument(sql_field, f"statement {n} ({st.reason}): goexd runs each action in {runs_in}")
    if not st.transactional and non_transactional is not None:
        raise InvalidArgument(sql_field, f"statement {n} ({st.reason}): {non_transactional}")
    if isinstance(node, ast.CopyStmt):  # no form runs: the policy refuses the file and PROGRAM ones first
        instead = "INSERT" if node.is_from else "SELECT"
        if node.is_program or node.filename is not None:
            where = "a program" if node.is_program else "a file"
            raise InvalidArgument(
                sql_field,
                f"statement {n}: COPY {'FROM' if node.is_from else 'TO'} {where} on the database server is never "
                f"run by goexd, whatever the policy allows; use {instead} instead",
            )
        raise InvalidArgument(
            sql_field,
            f"statement {n}: COPY {'FROM STDIN' if node.is_from else 'TO STDOUT'} needs a data stream that SQL "
            f"actions do not have; use {instead} instead",
        )


# ---------------------------------------------------------------- running


class ConnectionLost(Exception):
    """The connection went (or was left unusable); `error` is what psycopg said, `started` whether any of the
    action's own statements had been sent (if not, nothing of it ran: a new connection may try again)."""

    def __init__(self, error: psycopg.Error, started: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.started = started


class CommitUnknown(ConnectionLost):
    """The connection went during COMMIT: whether the server committed is unknown (`result`: had it, the result)."""

    def __init__(self, error: psycopg.Error, result: SqlResult) -> None:
        super().__init__(error)
        self.result = result


def left_untouched(exc: Exception, statements: Sequence[Classified]) -> bool:
    """Whether an action that raised `exc` from PgDatabase.run_committed left the database as it was."""
    if isinstance(exc, CommitUnknown):
        return False
    if isinstance(exc, ConnectionLost) and not exc.started:
        return True
    return all(st.transactional for st in statements)  # its one transaction was rolled back


def run_script(conn: Conn, job: ScriptJob, message: Callable[[psycopg.Error], str]) -> SqlResult:
    """Run the statements; the last result's rows and the rows all statements changed.

    Inside an open transaction statement_timeout is set for it alone (set_config(..., true)) and
    put back when the statements end; outside one (autocommit, for statements that cannot run in
    a transaction) it is set for the session and put back afterwards, also after a failure.
    Raises StatementFailed (the connection is still usable) or ConnectionLost."""
    statements, limits = job.statements, job.limits
    in_transaction = conn.info.transaction_status is not TransactionStatus.IDLE
    local = "true" if in_transaction else "false"
    timeout_ms = str(min(math.ceil(limits.timeout_s * 1000), _MAX_TIMEOUT_MS)) if limits.timeout_s > 0 else "0"
    values = list(job.params) or None
    started = time.monotonic()
    result = SqlResult()
    affected = 0
    at = 0
    previous: str | None = None
    watch = Watch(conn, job.cancel, limits.timeout_s)
    try:
        with RawCursor(conn) as cur:
            cur.execute(
                f"SELECT current_setting('statement_timeout'), set_config('statement_timeout', $1, {local})",
                [timeout_ms],
            )
            row = cur.fetchone()
            previous = None if row is None else str(row[0])
            for st in statements:
                at += 1  # which statement failed, for the message
                cur.execute(st.sql, values)
                if cur.description is not None:
                    result = rows(cur, job.row_limit)
                if (cur.statusmessage or "").split(" ", 1)[0] in _COUNTED_TAGS and cur.rowcount > 0:
                    affected += cur.rowcount
            if watch.finish():  # the deadline passed (or cancel came) as the last statement ended
                raise StatementFailed(f"stopped: {watch.stopped}", True)
            if previous is not None:
                _restore_timeout(conn, previous, local)
                previous = None
    except psycopg.Error as exc:
        stopped = watch.finish()
        if broken(conn):
            raise ConnectionLost(exc, started=at > 0) from None
        if stopped:
            raise StatementFailed(f"stopped: {stopped}", True) from None
        if (
            isinstance(exc, pg_errors.QueryCanceled)
            and "statement timeout" in str(exc)
            and time.monotonic() - started >= limits.timeout_s > 0
        ):  # the server's backstop, not a statement_timeout the action set itself
            raise StatementFailed(f"stopped: wall-clock timeout of {limits.timeout_s:g} s", True) from None
        where = f" (statement {at} of {len(statements)})" if len(statements) > 1 and at else ""
        raise StatementFailed(f"postgres{where}: {message(exc)}", False) from None
    finally:
        watch.finish()
        if previous is not None and not in_transaction and not broken(conn):
            with contextlib.suppress(psycopg.Error):  # a session-wide timeout must not outlive the action
                _restore_timeout(conn, previous, local)
    return SqlResult(result.columns, result.rows, result.total_rows, result.truncated, affected)


def _restore_timeout(conn: Conn, previous: str, local: str) -> None:
    with RawCursor(conn) as cur:
        cur.execute(f"SELECT set_config('statement_timeout', $1, {local})", [previous])


def rows(cur: RawCursor[tuple[Any, ...]], row_limit: int) -> SqlResult:
    """The result as the server's text, straight from libpq's result: no conversion to Python objects."""
    res, desc = cur.pgresult, cur.description
    if res is None or desc is None:
        return SqlResult()
    encoding = cur.connection.info.encoding
    total = res.ntuples
    kept = min(total, row_limit)
    width = range(res.nfields)
    rows = tuple(
        tuple(None if (v := res.get_value(i, j)) is None else v.decode(encoding, "replace") for j in width)
        for i in range(kept)
    )
    return SqlResult(tuple(c.name for c in desc), rows, total, total > kept)


class Watch:
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


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- a database and its copies


class PgDatabase:
    """One resource's database: its own connection (autocommit, opened on demand), and the server's
    maintenance database (`postgres`), from which it is copied, dropped and renamed.

    PostgreSQL copies a database (CREATE DATABASE ... TEMPLATE), renames one or drops one only
    when no other session is connected to it, and when one is, it waits 5 s before it fails.
    This class looks first (pg_stat_activity, leaving out autovacuum workers, which the server
    stops itself) and refuses at once, naming how many connections are in the way; its own
    connection steps aside (closed, and its backend seen gone) before each such command."""

    def __init__(
        self, endpoint: PgEndpoint, admin_database: str = ADMIN_DATABASE, copy_strategy: str | None = None
    ) -> None:
        if copy_strategy is not None and copy_strategy not in COPY_STRATEGIES:
            raise ValueError(f"copy_strategy must be one of {sorted(COPY_STRATEGIES)} or None, not {copy_strategy!r}")
        self.pg = endpoint
        self.name = endpoint.dbname
        self.admin_database = admin_database
        self.copy_strategy = copy_strategy  # CREATE DATABASE's STRATEGY (PostgreSQL 15+); None: the server's default
        self._conn: Conn | None = None
        self._admin: Conn | None = None
        self._left: list[int] = []  # backends of our closed connections, maybe still on their way out

    # ------------------------------------------------------------ connections

    def conn(self) -> Conn:
        """The database's connection (autocommit: goexd issues BEGIN itself); a new one if it was lost."""
        if self._conn is None or self._conn.closed:
            self._conn = self.pg.connect(autocommit=True)
        return self._conn

    def reading(self, during: str, work: Callable[[Conn], T]) -> T:
        """Run `work` on the connection; reconnect and retry once when the connection was found lost.

        Only for work that changes nothing (fingerprints, describe): nothing is pending between
        actions in the strategies that use this, so a lost connection loses nothing."""
        return self._read_on(self.conn, work, f"cannot read the database {during}", f" {during}")

    def _read_on(self, connection: Callable[[], Conn], work: Callable[[Conn], T], failed: str, during: str) -> T:
        """`work` on connection(); once more on a new one when that was found lost. Changes nothing."""
        for attempt in (1, 2):
            conn = connection()
            try:
                return work(conn)
            except psycopg.Error as exc:
                if not broken(conn):
                    raise FailedPrecondition(f"{failed}: {self.pg.message(exc)}") from None
                if attempt == 2:
                    raise Unavailable(
                        f"lost the connection to PostgreSQL at {self.pg.where}{during} ({self.pg.reason(exc)})"
                    ) from None
        raise AssertionError("unreachable")

    def release(self) -> None:
        """Close the database's own connection (if open); a later conn() opens a new one."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            if conn.info.transaction_status is not TransactionStatus.IDLE:
                conn.rollback()
        self.leave(conn)

    def run_committed(self, job: ScriptJob, before_commit: Callable[[Conn], None] | None = None) -> SqlResult:
        """Run the statements and commit them: in one transaction, or one by one when one cannot run in any.

        `before_commit` runs last in the transaction (after the statements, outside one), for writes
        that must commit with them (outcome markers). A connection found lost before any of them was
        sent is replaced once (nothing was pending on it). Raises StatementFailed, ConnectionLost or
        CommitUnknown."""
        for attempt in (1, 2):
            conn = self.conn()
            try:
                return self._commit_once(conn, job, before_commit)
            except ConnectionLost as lost:
                if lost.started or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _commit_once(self, conn: Conn, job: ScriptJob, before_commit: Callable[[Conn], None] | None) -> SqlResult:
        if not job.transactional:
            result = run_script(conn, job, self.pg.message)
            self._last_write(conn, before_commit)
            return result
        try:
            conn.execute("BEGIN")
        except psycopg.Error as exc:
            if broken(conn):
                raise ConnectionLost(exc, started=False) from None
            raise StatementFailed(f"postgres: BEGIN failed: {self.pg.message(exc)}", False) from None
        try:
            result = run_script(conn, job, self.pg.message)
            self._last_write(conn, before_commit)
        except StatementFailed:
            if not broken(conn):
                conn.rollback()
            raise
        try:
            conn.commit()
        except psycopg.Error as exc:
            if broken(conn):
                raise CommitUnknown(exc, result) from None
            conn.rollback()
            raise StatementFailed(f"postgres: COMMIT failed: {self.pg.message(exc)}", False) from None
        return result

    def _last_write(self, conn: Conn, write: Callable[[Conn], None] | None) -> None:
        """`write` (run_committed's before_commit) as the last statement: its failure fails the statements."""
        if write is None:
            return
        try:
            write(conn)
        except psycopg.Error as exc:
            if broken(conn):
                raise ConnectionLost(exc) from None
            raise StatementFailed(
                f"postgres: writing goex's outcome marker failed: {self.pg.message(exc)}", False
            ) from None

    def lost(self, lost: ConnectionLost, what: str) -> Unavailable:
        """What to say when the connection went while `what` ran."""
        why = f"lost the connection to PostgreSQL at {self.pg.where} while {what} ran ({self.pg.reason(lost.error)})"
        if isinstance(lost, CommitUnknown):
            return Unavailable(f"{why}, during its COMMIT: whether the server committed it is unknown")
        return Unavailable(f"{why}; the server rolled back its transaction (statements run outside one stay)")

    def leave(self, conn: Conn) -> None:
        """Close a connection of ours to a copy (or anywhere) and remember its backend until it has left."""
        if conn.closed:  # lost: its backend is gone, or going on its own
            return
        pid = conn.info.backend_pid
        conn.close()
        self.left(pid)

    def left(self, pid: int) -> None:
        """Note the backend of a connection of ours that was closed (maybe by another thread) until it has left."""
        self._left.append(pid)

    def admin(self) -> Conn:
        """A connection to the maintenance database, as the same role; kept open."""
        if self.admin_database == self.name:
            raise FailedPrecondition(
                f"database {self.name} is the server's maintenance database, from which goexd copies databases; "
                "goexd cannot copy it: use the transaction strategy for it"
            )
        if self._admin is None or self._admin.closed:
            self._admin = self.pg.connect(autocommit=True, dbname=self.admin_database)
        return self._admin

    def ask(self, query: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """A read-only query on the maintenance connection; a connection found lost is replaced once."""
        catalog = "cannot read the server's catalog"
        return self._read_on(self.admin, lambda c: c.execute(query, params).fetchall(), catalog, "")

    def _command(self, stmt: sql.Composed, during: str, busy: str = "") -> None:
        """A CREATE/ALTER/DROP DATABASE on the maintenance connection; `busy` is the refusal when one is in use."""
        admin = self.admin()
        try:
            admin.execute(stmt)
        except pg_errors.ObjectInUse as exc:
            if busy:
                raise FailedPrecondition(f"{busy} ({self.pg.message(exc)})") from None
            raise FailedPrecondition(f"cannot {during}: {self.pg.message(exc)}") from None
        except pg_errors.DiskFull as exc:  # PostgreSQL removes a copy it could not finish
            raise OutOfSpace(
                f"out of disk space while trying to {during}: the PostgreSQL server at {self.pg.where} has no room "
                f"({self.pg.message(exc)}); free space where it keeps its data (commit or undo pending actions: "
                "each holds a copy of the database), then retry"
            ) from None
        except psycopg.Error as exc:
            if broken(admin):
                raise Unavailable(
                    f"lost the connection to PostgreSQL at {self.pg.where} while trying to {during} "
                    f"({self.pg.reason(exc)})"
                ) from None
            raise FailedPrecondition(f"cannot {during}: {self.pg.message(exc)}") from None

    def _settle(self) -> None:
        """Wait until the backends of the connections we closed have left the server.

        Closing sends a Terminate message without waiting; were the backend still there,
        CREATE/ALTER/DROP DATABASE would see it as another session and sleep in 100 ms steps."""
        deadline = time.monotonic() + BACKEND_EXIT_WAIT_S
        while self._left:
            rows = self.ask("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (self._left,))
            self._left = [int(r[0]) for r in rows]
            if not self._left or time.monotonic() > deadline:
                self._left = []
                return
            time.sleep(0.001)

    def others(self, dbname: str | None = None) -> int:
        """How many sessions besides ours are connected to the database (autovacuum workers left out).

        A session that has just closed its connection is still listed until its backend has
        exited (a few ms): the count is looked at again for up to OTHERS_GRACE_S before it stands."""
        self.admin()
        deadline = time.monotonic() + OTHERS_GRACE_S
        while True:
            mine = [c.info.backend_pid for c in (self._conn, self._admin) if c is not None and not c.closed]
            rows = self.ask(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND NOT (pid = ANY(%s)) AND usesysid IS NOT NULL",
                (dbname or self.name, mine + self._left),
            )
            n = int(rows[0][0]) if rows else 0
            if n == 0 or time.monotonic() > deadline:
                return n
            time.sleep(0.002)

    def exists(self, dbname: str) -> bool:
        return bool(self.ask("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)))

    # ------------------------------------------------------------ copies

    def copy_to(self, target: str, busy: Callable[[int], str]) -> float:
        """CREATE DATABASE target TEMPLATE <the database>; returns how long the copy took (seconds).

        Refuses at once (FailedPrecondition with `busy(n)`) when n other sessions are connected;
        the database's own connection steps aside for it."""
        n = self.others()
        if n:
            raise FailedPrecondition(busy(n))
        self.release()
        self._settle()
        t0 = time.monotonic()
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target), sql.Identifier(self.name))
        if self.copy_strategy is not None:
            stmt = sql.SQL("{} STRATEGY {}").format(stmt, sql.SQL(self.copy_strategy.upper()))
        self._command(stmt, f"copy database {self.name}", busy(1))
        return time.monotonic() - t0

    def stop_copying_to(self, target: str) -> int:
        """End this role's sessions still running CREATE DATABASE `target` (a killed goexd's: PostgreSQL does
        not notice a client gone during a copy, and would commit it after); returns how many there were."""
        rows = self.ask(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND usename = current_user AND query ILIKE 'CREATE DATABASE%%' AND position(%s in query) > 0",
            (target,),
        )
        pids = [int(r[0]) for r in rows]
        deadline = time.monotonic() + BACKEND_EXIT_WAIT_S
        while pids and time.monotonic() < deadline:  # until the copy's transaction is rolled back
            pids = [int(r[0]) for r in self.ask("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))]
            time.sleep(0.01)
        return len(rows)

    def drop(self, dbname: str, force: bool = False) -> None:
        """DROP DATABASE IF EXISTS (WITH (FORCE): end the sessions connected to it, for goexd's own copies)."""
        self._settle()
        stmt = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname))
        if force:
            stmt = sql.SQL("{} WITH (FORCE)").format(stmt)
        self._command(stmt, f"drop database {dbname}")

    def swap_in(self, copy: str, old: str, busy: Callable[[str, int], str]) -> list[str]:
        """Make `copy` the database: rename the database to `old` and `copy` to its name, in one transaction.

        Both need no other sessions on them: refused at once (FailedPrecondition with
        `busy(which, n)`) when there are; the database's own connection steps aside. Database-wide
        properties that a copy does not take along (owner, privileges, connection limit,
        settings, comment) are carried over to it first; returns those that could not be."""
        for which in (self.name, copy):
            n = self.others(which)
            if n:
                raise FailedPrecondition(busy(which, n))
        self.release()
        self._settle()
        missing = self._carry_over(copy)
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        # One query string of two statements: PostgreSQL runs it as one implicit transaction, so
        # the database has one of the two contents under its name at every moment.
        both = sql.SQL("{}; {}").format(
            rename.format(sql.Identifier(self.name), sql.Identifier(old)),
            rename.format(sql.Identifier(copy), sql.Identifier(self.name)),
        )
        self._command(both, f"swap database {copy} in for {self.name}", busy(self.name, 1))
        return missing

    def _carry_over(self, copy: str) -> list[str]:
        """Give `copy` the database's owner, privileges, connection limit, settings and comment."""
        found = self.ask(
            "SELECT d.datdba::regrole::text, d.datacl IS NOT NULL, d.datconnlimit, "
            "shobj_description(d.oid, 'pg_database'), c.datdba = d.datdba "
            "FROM pg_database d, pg_database c WHERE d.datname = %s AND c.datname = %s",
            (self.name, copy),
        )
        if not found:
            raise FailedPrecondition(f"database {self.name} or its copy {copy} no longer exists")
        owner, has_acl, connlimit, comment, same_owner = found[0]
        target = sql.Identifier(copy)
        steps: list[tuple[str, sql.Composed]] = []
        missing: list[str] = []
        if not same_owner:  # regrole's text is the role's name, quoted where it needs to be
            steps.append(("its owner", sql.SQL("ALTER DATABASE {} OWNER TO {}").format(target, sql.SQL(owner))))
        if has_acl:
            steps.append(("its privileges", sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target)))
            grants = self.ask(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, "
                "a.privilege_type, a.is_grantable "
                "FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s",
                (self.name,),
            )
            for grantee, privilege, grantable in grants:
                grant = sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), target, sql.SQL(grantee))
                if grantable:
                    grant = sql.SQL("{} WITH GRANT OPTION").format(grant)
                steps.append(("its privileges", grant))
        if connlimit != -1:
            limit = sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(target, sql.Literal(int(connlimit)))
            steps.append(("its connection limit", limit))
        if comment is not None:
            steps.append(("its comment", sql.SQL("COMMENT ON DATABASE {} IS {}").format(target, sql.Literal(comment))))
        settings = self.ask(
            "SELECT s.setrole <> 0, unnest(s.setconfig) FROM pg_db_role_setting s, pg_database d "
            "WHERE s.setdatabase = d.oid AND d.datname = %s",
            (self.name,),
        )
        for per_role, setting in settings:
            name, _, value = str(setting).partition("=")
            if per_role or "," in value or '"' in value:  # list values need the setting's own quoting rules
                missing.append(f"the setting {name}")
                continue
            name_sql = sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))
            stmt = sql.SQL("ALTER DATABASE {} SET {} = {}").format(target, name_sql, sql.Literal(value))
            steps.append((f"the setting {name}", stmt))
        for what, stmt in steps:
            try:
                self._command(stmt, f"carry {what} over to {copy}")
            except FailedPrecondition as exc:
                log.warning("%s", exc)
                missing.append(what)
        return sorted(set(missing))

    def close(self) -> None:
        for conn in (self._conn, self._admin):
            if conn is not None and not conn.closed:
                conn.close()
        self._conn = self._admin = None
