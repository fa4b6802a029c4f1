"""A SQLite database with the `transaction` undo strategy.

The session holds one open transaction on the file (BEGIN IMMEDIATE at its first action, so a
competing writer is noticed at once rather than at commit); each action runs under its own
SAVEPOINT; undo is ROLLBACK TO that savepoint (newest first); committing the session's pending
actions on the database releases them and COMMITs. DDL is transactional in SQLite, so it is
undone the same way. Until the commit, other connections see none of it (WAL readers keep
reading the last committed state, writers wait): that is the price of this strategy.

Statements are split with a SQL parser and classified first: privileged ones (ATTACH,
load_extension, PRAGMAs that change the file's safety...) are refused, and so are transaction
statements, because goexd owns the transaction.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

from goexd.dbinspect import sqlite as inspect
from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import ActionSpec, Resource, SqlResult
from goexd.domain.resource import Checkpoint, Outcome, RollbackReport
from goexd.domain.textcap import shown
from goexd.resources.host_paths import (
    OwnPaths,
    checked_syntax,
    file_type,
    refuse_inside_state_dir,
    refuse_own,
    refuse_system,
    resolved,
)
from goexd.resources.sql_manager import OneTransaction, ScriptJob, StatementFailed, savepoint_name
from goexd.resources.sqlite import reads, run
from goexd.resources.sqlite.manager import SqliteManager

SQLITE_HEADER = b"SQLite format 3\x00"


def validate_sqlite_url(url: str, fld: str, own: OwnPaths) -> Path:
    """sqlite:///abs/path.db -> the file's resolved path; the file may not exist yet, its directory must.

    An existing file must be a regular file that is a SQLite database: goexd opens it itself, so a
    FIFO would hang it, a device or a /proc file would be written to, any other file overwritten."""
    if not url.startswith("sqlite:///"):
        raise InvalidArgument(fld, f"{shown(url)} is not a sqlite:///ABSOLUTE/PATH URL")
    raw = url.removeprefix("sqlite://")
    if "?" in raw or "#" in raw:
        raise InvalidArgument(fld, "the path must not contain '?' or '#'")
    given = checked_syntax(raw, fld, "a database")
    if given.name in ("", ".", "..") or raw.endswith("/"):
        raise InvalidArgument(fld, f"{shown(raw)} is not an absolute file path")
    path = resolved(given.parent, fld) / given.name
    if os.path.lexists(path):  # a link is followed to what it names, and that is what is checked
        path = resolved(path, fld)
    refuse_system(path, fld, container=False)
    refuse_own(path, fld, own, container=False)
    refuse_inside_state_dir(path.parent, fld)
    if not path.parent.is_dir():
        raise InvalidArgument(fld, f"{path.parent} is not a directory")
    _check_database_file(path, fld)
    return path


def _check_database_file(path: Path, fld: str) -> None:
    """Nothing there yet, an empty file, or a regular file that starts with SQLite's header."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise InvalidArgument(fld, f"{path} is a directory") from None
        raise InvalidArgument(fld, f"{path} cannot be opened: {os.strerror(exc.errno or errno.EIO)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(fld, f"{path} is {file_type(st.st_mode)}, not a database file")
        head = os.read(fd, len(SQLITE_HEADER)) if st.st_size else b""
    finally:
        os.close(fd)
    if head and head != SQLITE_HEADER:
        raise InvalidArgument(fld, f"{path} is not a SQLite database (it does not start with SQLite's header)")


class SqliteTransactionResource(SqliteManager, OneTransaction):
    def __init__(self, resource: Resource, row_limit: int = 1000, busy_timeout_s: float = 5.0) -> None:
        super().__init__(resource, row_limit, busy_timeout_s)
        self._live: list[str] = []  # actions with a live savepoint, oldest first
        self._lost: list[str] = []  # pending actions SQLite rolled back on its own (see take_lost)

    # ------------------------------------------------------------ lifecycle

    def describe(self, samples: bool = False) -> str:
        head = (
            f"sqlite database (strategy transaction: pending actions are invisible to other connections "
            f"until committed); {len(self._live)} pending action(s)"
        )
        return head + "\n" + inspect.describe(self._db, sample_rows=3 if samples else 0)

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        with self._lock:
            if not self._db.in_transaction:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise FailedPrecondition(f"cannot start the session's transaction on {self.path}: {exc}") from None
            name = savepoint_name(action_id)
            self._db.execute(f'SAVEPOINT "{name}"')
            self._live.append(action_id)
            return {"savepoint": name}

    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        with self._lock:
            try:
                result = run.run_script(self._db, job)
            except StatementFailed as exc:
                lost = self._notice_lost_transaction()
                why = exc.why
                if lost:
                    why += f"; SQLite rolled back the whole transaction, with the pending actions {', '.join(lost)}"
                raise InvalidArgument("spec.sql.sql", why) from None
        return Outcome(exec=None, changes=None, sql=result)

    def read(self, job: ScriptJob) -> SqlResult:
        """Inside the open transaction (it sees the pending actions), with no savepoint."""
        with self._lock:
            try:
                return reads.run_sqlite_read(self._db, job)
            except StatementFailed as exc:
                why = exc.why
                if self._live and not self._db.in_transaction:  # never seen for a read; said if it ever is
                    lost, self._live = self._live, []
                    self._lost += lost
                    why += f"; SQLite rolled back the whole transaction, with the pending actions {', '.join(lost)}"
                raise InvalidArgument("spec.sql.sql", why) from None

    def _notice_lost_transaction(self) -> list[str]:
        """An interrupted write (timeout, cancel) makes SQLite roll back the whole transaction, not just the
        statement: every earlier pending action on the database is gone with it. Record which."""
        if self._live and not self._db.in_transaction:
            lost, self._live = self._live[:-1], self._live[-1:]
            self._lost += lost
            return lost
        return []

    def commit_check(self, action_ids: Sequence[str]) -> None:
        self._refuse_a_partial_commit(action_ids)

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        with self._lock:
            if action_id in self._live:
                self._live.remove(action_id)
            if not self._live and self._db.in_transaction:
                self._db.execute("COMMIT")

    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        with self._lock:
            name = self._pop_savepoint(action_id, checkpoint)
            if not self._db.in_transaction:  # SQLite already rolled the whole transaction back
                return RollbackReport(verified=True, detail="the database had already rolled back the transaction")
            self._db.execute(f'ROLLBACK TO "{name}"')
            self._db.execute(f'RELEASE "{name}"')
            if not self._live:
                self._db.execute("ROLLBACK")  # nothing pending: end the transaction and free the write lock
        return RollbackReport(verified=True, detail=f"rolled back to savepoint {name} inside the session's transaction")

    def fingerprint(self) -> str:
        with self._lock:
            return inspect.fingerprint(self._db).digest

    def close(self) -> None:
        with self._lock:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._live.clear()
            self._db.close()
