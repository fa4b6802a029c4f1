"""A SQLite database with the `clone` undo strategy.

Before each action the whole database is copied with SQLite's online backup API into the
daemon's state dir (`db/<action>.sqlite`, 0600); the action then commits at once; undo copies
the clone back the same way and verifies the result against the clone's fingerprint. It costs
a copy per action, but it takes back what neither a transaction nor an inverse can (VACUUM,
PRAGMAs that rewrite the file, whatever a statement did). Committing deletes the clone.

The clone's fingerprint is the database's as this connection last knew it (run.Tracked): read
whole only when another connection has committed since; each action is committed with the
fingerprint after it, from what its statements changed (dbinspect/sqlite_changes.py). So a
checkpoint costs the copy alone, and an undo the copy back and one whole fingerprint (to verify).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from goexd.diskspace import is_out_of_space, out_of_space
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionSpec, Resource
from goexd.domain.resource import Checkpoint, Outcome, RollbackReport
from goexd.resources.sql_manager import ScriptJob, StatementFailed, UndoesFromCopy
from goexd.resources.sqlite import run
from goexd.resources.sqlite.manager import SqliteManager


class SqliteCloneResource(SqliteManager, UndoesFromCopy):
    undo_note = "undo copies back the clone taken before the action and verifies it by fingerprint"

    def __init__(
        self, resource: Resource, clones_dir: Path, row_limit: int = 1000, busy_timeout_s: float = 5.0
    ) -> None:
        clones_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().__init__(resource, row_limit, busy_timeout_s)
        self._clones = clones_dir
        self._state = run.Tracked(self._db)

    def describe(self, samples: bool = False) -> str:
        return self._described(
            "sqlite database (strategy clone: each action commits at once; undo copies back a clone)", samples
        )

    def _clone_path(self, action_id: str) -> Path:
        return self._clones / f"{action_id}.sqlite"

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        target = self._clone_path(action_id)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            clone = sqlite3.connect(target)
            try:
                with self._lock:
                    self._db.backup(clone)  # a consistent copy even while others read the file
                    pre = self._state.current().digest  # known without reading every row, unless others wrote
            finally:
                clone.close()
        except Exception as e:
            for suffix in ("", "-journal", "-wal", "-shm"):  # a partial clone undoes nothing, and holds the space
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            if is_out_of_space(e):
                raise out_of_space(f"cloning {self.path} before the action", [self._clones]) from e
            raise
        return {"clone": str(target), "pre": pre}

    def drop_unjournaled_copy(self, action_id: str) -> str:
        target = self._clone_path(action_id)
        found = False
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{target}{suffix}").unlink()
                found = True
        return f"dropped the copy {target.name} taken before it" if found else ""

    def write(self, job: ScriptJob, checkpoint: Checkpoint) -> Outcome:
        with self._lock:
            try:  # committed with the fingerprint after it, so the next checkpoint need not read every row
                result, before, after = self._state.commit(job)
            except StatementFailed as exc:
                raise InvalidArgument("spec.sql.sql", exc.why) from None
        return Outcome(exec=None, changes=None, sql=result, checkpoint_extra=run.changed_tables(before, after))

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        Path(checkpoint["clone"]).unlink(missing_ok=True)

    def undo(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        clone_path = Path(checkpoint["clone"])
        if not clone_path.exists():
            # An earlier undo copied it back and removed it, and goexd stopped before journaling UNDONE: its
            # restart finishes that undo here. Done already if the database is as before the action.
            if self.fingerprint() == checkpoint["pre"]:
                return RollbackReport(
                    verified=True,
                    detail="the clone had already been copied back by an earlier undo; fingerprint matches",
                )
            raise InvalidArgument("action_id", f"the clone of {action_id} is gone; it cannot be undone")
        clone = sqlite3.connect(clone_path)
        try:
            with self._lock:
                self._state.forget()  # this connection writes now, outside what Tracked follows
                try:
                    clone.backup(self._db)  # writes the clone's pages into the live database, in one transaction
                except sqlite3.Error as e:  # that transaction rolled back: the database is as it was, the clone kept
                    if is_out_of_space(e):
                        raise out_of_space(f"copying the clone back into {self.path}", [self.path]) from e
                    raise
                after = self._state.current().digest
        finally:
            clone.close()
        clone_path.unlink(missing_ok=True)
        verified = after == checkpoint["pre"]
        detail = "copied back the clone taken before the action" + (
            "; fingerprint matches" if verified else "; the fingerprint differs from the pre-action one"
        )
        return RollbackReport(verified=verified, detail=detail)

    def fingerprint(self) -> str:
        with self._lock:
            return self._state.current().digest

    def close(self) -> None:
        with self._lock:
            self._db.close()
