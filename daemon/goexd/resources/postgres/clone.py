"""A PostgreSQL database with the `clone` undo strategy (psycopg 3).

Before each action the database is copied on the server: CREATE DATABASE goex_clone_<action>
TEMPLATE <db> (on the test cluster: ~70 ms for an empty database, ~100 ms at 100k rows, ~330 ms
at 1M rows, ~270 ms with STRATEGY FILE_COPY; bench/pg_strategy_micro.py). The action then
commits at once. Undo makes the copy the database again, by two renames in one transaction
(ALTER DATABASE <db> RENAME TO goex_old_<action>; ALTER DATABASE goex_clone_<action> RENAME TO
<db>), then drops the replaced database and verifies the result against the pre-action
fingerprint. Committing drops the copy. It takes back what neither a transaction nor an inverse
can (VACUUM, CREATE INDEX CONCURRENTLY, sequences, whatever a statement did), at the cost of a
copy per action. The checkpoint is {"clone": name, "clone_s": the copy's time, "clone_oid": its
oid}, and "pre" (the copy's fingerprint) once it is known.

Decisions:
- PostgreSQL copies, renames or drops a database only while no other session is connected to
  it (and waits 5 s before saying so). The checkpoint and the undo look first
  (pg_stat_activity) and refuse at once with FailedPrecondition naming how many connections are
  in the way. So that two goexd sessions on one database do not block each other, this
  resource holds no connection to the database between calls: each call opens one (~6 ms with
  SCRAM) and closes it at its end; the maintenance database (`postgres`), from which the
  copies, renames and drops are sent, keeps one open connection.
- Rights, checked at construction (refused with FailedPrecondition otherwise): the role needs
  CREATEDB, and must own the database (or be a member of its owner role), as PostgreSQL requires
  for copying a database that is not a template, and for renaming and dropping one.
- The swap's window: the renames commit together, so the name always leads to one of the two
  contents; a connection that arrives while they run (a few ms) waits for them and then fails
  once with "database ... does not exist" (it was on its way to the renamed one); the next one
  reaches the restored database. The swapped-in copy is a new database (a new OID): properties
  a copy does not take along are carried over before the swap (owner, database privileges,
  connection limit, comment, database-wide settings); per-role settings in the database and
  list-valued settings are not, and the undo report names them. The statistics collector's
  counters for the database start from zero; logical replication slots on it would be lost.
- A failed action whose statements ran in one transaction (rolled back) left the database as
  it was: its undo only drops the copy. Any other failure (statements outside a transaction,
  or after a restart, when that is no longer known) is undone by the swap.
- Undo verifies the swapped-in database against the pre-action fingerprint ("pre"), leaving out
  the database's own privileges and settings (the copy gets them only at the swap; they are
  checked as said above). That is the fingerprint of the copy, which no one writes to: it is
  taken off the critical path, on a thread of its own with its own connection to the copy,
  started by checkpoint() (~175 ms at 1M rows, while the action runs), so the checkpoint costs
  the copy alone. execute() journals
  it when it is ready by then; otherwise undo waits for the thread, or, after a restart,
  fingerprints the copy itself before the swap. Commit cancels the thread. An undo that goexd
  stopped in after the swap, before any fingerprint was journaled, is told finished by the
  copy's oid ("clone_oid") but reported unverified.
- `copy_strategy` picks CREATE DATABASE's STRATEGY (PostgreSQL 15+): None keeps the server's
  default (wal_log: the copy goes through the WAL, no checkpoint); "file_copy" copies the files
  between two checkpoints: faster for large databases where checkpoints are cheap.
- Copies live in the cluster and so survive goexd restarts; a crash between the swap and the
  drop of the replaced database is finished by the next undo of that action. A crash inside
  checkpoint(), before the engine has journaled it, leaves goex_clone_<action> behind, or a
  server backend still copying it (PostgreSQL notices a vanished client only after the copy,
  and would commit it): recovery ends such a backend and drops the copy
  (drop_unjournaled_copy).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time

import psycopg

from goexd.dbinspect import postgres as inspect
from goexd.domain.errors import FailedPrecondition, GoexError, InvalidArgument
from goexd.domain.models import ActionSpec
from goexd.domain.resource import Checkpoint, Outcome, RollbackReport
from goexd.resources.postgres import run
from goexd.resources.postgres.manager import PgDatabaseManager
from goexd.resources.postgres.run import Conn
from goexd.resources.sql_manager import ScriptJob, StatementFailed, UndoesFromCopy
from goexd.sql.model import SQL_FIELD

log = logging.getLogger(__name__)


def clone_name(action_id: str) -> str:
    return "goex_clone_" + _safe(action_id)


def old_name(action_id: str) -> str:
    return "goex_old_" + _safe(action_id)


def _safe(action_id: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", action_id.lower())[:48]  # database names stop at 63 bytes


def _digest(conn: Conn) -> str:
    """The fingerprint a copy and the database it was made from share (not the database's own settings)."""
    return inspect.fingerprint(conn, database_facts=False).digest


class PostgresCloneResource(PgDatabaseManager, UndoesFromCopy):
    undo_note = "undo swaps in the copy of the database taken before the action and verifies it by fingerprint"
    releases = True  # it holds no connection to the database between calls (see the module's doc)

    def _opened(self) -> None:
        self._untouched: set[str] = set()  # copies of failed actions whose one transaction was rolled back
        self._pre: dict[str, _CopyFingerprint] = {}  # by copy: its fingerprint, being taken
        self._check_rights()

    def _check_rights(self) -> None:
        found = self._db.reading(
            "while checking the role's rights",
            lambda c: c.execute(
                "SELECT current_user, r.rolsuper, r.rolcreatedb, pg_has_role(d.datdba, 'USAGE'), "
                "d.datdba::regrole::text FROM pg_roles r, pg_database d "
                "WHERE r.rolname = current_user AND d.datname = current_database()"
            ).fetchone(),
        )
        self._db.release()
        if found is None:
            raise FailedPrecondition(f"cannot read the rights of the role on database {self._db.name}")
        user, superuser, createdb, owns, owner = found
        if not (superuser or createdb):
            raise FailedPrecondition(
                f"the clone strategy copies database {self._db.name} before each action (CREATE DATABASE ... "
                f"TEMPLATE), which needs the role {user} to have CREATEDB: grant it (as a superuser: ALTER ROLE "
                f"{user} CREATEDB), or use the transaction or inverse strategy"
            )
        if not (superuser or owns):
            raise FailedPrecondition(
                f"the clone strategy copies, renames and drops database {self._db.name}, which needs the role "
                f"{user} to own it (its owner is {owner}): make {user} its owner or a member of {owner}, or use "
                "the transaction or inverse strategy"
            )
        self._db.admin()  # the maintenance database must be reachable too (and not be this one)

    def _busy(self, n: int) -> str:
        return (
            f"database {self._db.name} has {n} other connection(s); the clone strategy needs it to itself to copy "
            "it before each action (PostgreSQL copies a database only while no one else is connected to it): "
            "close them, or use the transaction or inverse strategy"
        )

    def describe(self, samples: bool = False) -> str:
        head = (
            "postgresql database (strategy clone: each action commits at once; undo swaps in a copy of the "
            "database taken before it)"
        )
        return self._described(head, samples)

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        clone = clone_name(action_id)
        with self._lock:
            try:
                took = self._db.copy_to(clone, self._busy)
            finally:
                self._db.release()
            self._pre[clone] = _CopyFingerprint(self._pg, clone)
            # Tells, after a restart, whether an undo that goexd did not record had swapped the copy in.
            oid = self._db.ask("SELECT oid::text FROM pg_database WHERE datname = %s", (clone,))
        return {"clone": clone, "clone_s": f"{took:.3f}", "clone_oid": str(oid[0][0]) if oid else ""}

    def drop_unjournaled_copy(self, action_id: str) -> str:
        clone = clone_name(action_id)
        with self._lock:
            try:
                stopped = self._db.stop_copying_to(clone)
                if not self._db.exists(clone):
                    return f"its unfinished copy {clone} was rolled back" if stopped else ""
                self._db.drop(clone, force=True)
            finally:
                self._db.release()
        return f"dropped the copy {clone} taken before it"

    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        with self._lock:
            try:
                result = self._db.run_committed(job)
            except (StatementFailed, run.ConnectionLost) as exc:
                if run.left_untouched(exc, job.statements):
                    self._untouched.add(checkpoint["clone"])
                if isinstance(exc, run.ConnectionLost):
                    raise self._db.lost(exc, "the action") from None
                raise InvalidArgument(SQL_FIELD, exc.why) from None
            finally:
                self._db.release()
            taking = self._pre.get(checkpoint["clone"])
            pre = self._taken(checkpoint["clone"]) if taking is not None and taking.done() else None
        return Outcome(exec=None, changes=None, sql=result, checkpoint_extra={"pre": pre} if pre else {})

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        """The action is already in the database: drop its copy (a copy that cannot be dropped is logged)."""
        clone = checkpoint["clone"]
        with self._lock:
            self._untouched.discard(clone)
            self._stop_fingerprint(clone)
            try:
                self._db.drop(clone, force=True)
            except GoexError as exc:
                log.warning(
                    "the copy %s of %s taken before %s was not dropped: %s", clone, self._db.name, action_id, exc
                )

    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        clone, pre = checkpoint["clone"], checkpoint.get("pre")
        old = old_name(action_id)
        with self._lock:
            try:
                if clone in self._untouched:
                    self._untouched.discard(clone)
                    self._stop_fingerprint(clone)
                    self._db.drop(clone, force=True)
                    return RollbackReport(
                        verified=True, detail="the action's transaction was rolled back; nothing to undo"
                    )
                pre = self._taken(clone) or pre  # the thread is waited for (and its connection gone) either way
                if not self._db.exists(clone):
                    return self._finish_earlier_swap(action_id, clone, old, pre, checkpoint.get("clone_oid"))
                pre = pre or self._copy_fingerprint(clone)
                t0 = time.monotonic()
                missing = self._db.swap_in(clone, old, self._busy_swap)
                swapped_ms = (time.monotonic() - t0) * 1000
                detail = f"swapped in the copy taken before the action ({swapped_ms:.0f} ms)"
                detail += self._drop_old(old)
                after = self._db.reading("after the undo", _digest)
            finally:
                self._db.release()
        verified = after == pre
        detail += "; fingerprint matches" if verified else "; the fingerprint differs from the pre-action one"
        if missing:
            detail += f"; not carried over to it: {', '.join(missing)}"
        return RollbackReport(verified=verified, detail=detail)

    def _copy_fingerprint(self, clone: str) -> str:
        """The copy's fingerprint, taken now (after a restart, or when its thread failed)."""
        conn = self._pg.connect(autocommit=True, dbname=clone)
        try:
            return _digest(conn)
        except psycopg.Error as exc:
            raise FailedPrecondition(
                f"cannot read the copy {clone} of database {self._db.name} to verify the undo: {self._pg.message(exc)}"
            ) from None
        finally:
            self._db.leave(conn)

    def _taken(self, clone: str) -> str | None:
        """Wait for the copy's fingerprint thread, if there is one; its digest, or None if it failed."""
        taking = self._pre.pop(clone, None)
        if taking is None:
            return None
        taking.wait()
        if taking.pid is not None:
            self._db.left(taking.pid)  # its backend must be gone before the copy is renamed or dropped
        if taking.error:
            log.warning("fingerprinting the copy %s in the background failed: %s", clone, taking.error)
        return taking.digest

    def _stop_fingerprint(self, clone: str) -> None:
        taking = self._pre.get(clone)
        if taking is not None:
            taking.cancel()
            self._taken(clone)

    def _busy_swap(self, which: str, n: int) -> str:
        role = "the database" if which == self._db.name else "its copy"
        return (
            f"database {which} ({role}) has {n} other connection(s); undo swaps the copy taken before the action "
            f"in for database {self._db.name} by renaming both, which PostgreSQL does only while no one else is "
            "connected to them: close them and undo again"
        )

    def _drop_old(self, old: str) -> str:
        try:
            self._db.drop(old, force=True)
        except GoexError as exc:
            log.warning("the replaced database %s was not dropped: %s", old, exc)
            return f"; the replaced database {old} could not be dropped ({exc}): drop it yourself"
        return ""

    def _finish_earlier_swap(
        self, action_id: str, clone: str, old: str, pre: str | None, clone_oid: str | None
    ) -> RollbackReport:
        """No copy: an earlier undo swapped it in (and goexd stopped before it was recorded), or it is gone."""
        left_behind = self._db.exists(old)
        detail = self._drop_old(old) if left_behind else ""
        current = self._db.ask("SELECT oid::text FROM pg_database WHERE datname = %s", (self._db.name,))
        # The database under its name is the copy (the same oid), or an old one was left by the swap.
        swapped = left_behind or (clone_oid is not None and bool(current) and current[0][0] == clone_oid)
        if pre is None:
            if swapped:
                return RollbackReport(
                    verified=False,
                    detail="the copy had already been swapped in; its fingerprint had not been recorded, so the "
                    "result cannot be verified" + detail,
                    compared=False,  # nothing to compare against: unverified, not "not verified"
                )
        elif self._db.reading("after the undo", _digest) == pre:
            return RollbackReport(
                verified=True, detail="the copy had already been swapped in; fingerprint matches" + detail
            )
        elif swapped:
            return RollbackReport(
                verified=False,
                detail="the copy had already been swapped in, but the fingerprint differs from the pre-action one"
                + detail,
            )
        raise FailedPrecondition(
            f"the copy {clone} of database {self._db.name} taken before {action_id} is gone; it cannot be undone"
        )

    def fingerprint(self) -> str:
        with self._lock:
            try:
                return self._db.reading("while fingerprinting it", _digest)
            finally:
                self._db.release()

    def close(self) -> None:
        with self._lock:
            for clone in list(self._pre):
                self._stop_fingerprint(clone)
            self._db.close()


class _CopyFingerprint:
    """A copy's fingerprint, taken on a thread with a connection of its own (the copy is quiescent).

    The thread closes its connection when it ends; `pid` names the backend, which the owner
    hands to PgDatabase.left() so that renames and drops of the copy wait until it is gone."""

    def __init__(self, pg: run.PgEndpoint, dbname: str) -> None:
        self.digest: str | None = None
        self.error = ""
        self.pid: int | None = None
        self._pg = pg
        self._dbname = dbname
        self._conn: Conn | None = None
        self._done = threading.Event()
        self._cancelled = False
        self._lock = threading.Lock()  # _conn and _cancelled, between the thread and cancel()
        threading.Thread(target=self._run, name="goexd-pg-copy-fingerprint", daemon=True).start()

    def _run(self) -> None:
        try:
            conn = self._pg.connect(autocommit=True, dbname=self._dbname)
            with self._lock:
                self._conn, self.pid = conn, conn.info.backend_pid
                if self._cancelled:
                    return
            self.digest = _digest(conn)
        except (GoexError, psycopg.Error) as exc:
            self.error = str(exc) if isinstance(exc, GoexError) else self._pg.message(exc)
        finally:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self) -> None:
        self._done.wait()

    def cancel(self) -> None:
        """Stop the fingerprint's query (the thread then ends with an error); returns at once."""
        with self._lock:
            self._cancelled = True
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.cancel_safe(timeout=run.CANCEL_REQUEST_TIMEOUT_S)
