"""goexd never runs on a damaged journal.

The journal is the basis of crash recovery: a record that is wrong (a page of zeros, an index
that no longer matches its table) would make recovery act on the wrong action or miss one,
and the audit trail would have a hole nobody sees. So the journal is checked whole at every
start, before anything reads it, with SQLite's `PRAGMA integrity_check`: it also verifies
that every index matches its table, which quick_check skips, and recovery finds its
actions through an index. Measured by bench/journal_check_bench.py: about 0.1 s for 10k
actions (22 MiB) with a warm page cache, 1 s for 100k; a cold cache makes both checks
disk-bound alike.

A damaged journal stops the start with `JournalDamaged`: a message that names the file,
what SQLite found, and what to do (keep a copy; restore a backup, or `goexd --repair-journal`,
journal_repair.py). The check itself changes nothing: it reads the file through a read-only
connection, so a damaged WAL is not checkpointed into it either.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from goexd.domain.errors import SetupError
from goexd.engine.journal import Journal

HEADER = b"SQLite format 3\x00"
SHOWN_PROBLEMS = 5  # integrity_check's lines shown in the message; the rest are counted
CHECKED_PROBLEMS = 100  # integrity_check stops after this many


class JournalDamaged(SetupError):
    """The journal failed its check; the message says what was found and what to do."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(damaged_message(path, problems))


def damaged_message(path: Path, problems: list[str]) -> str:
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    if len(problems) > SHOWN_PROBLEMS:
        shown += f"; and {len(problems) - SHOWN_PROBLEMS} more"
    state = path.parent
    return (
        f"the journal {path} is damaged: {shown}.\n"
        "goexd does not run on a damaged journal: crash recovery would act on records that may be wrong.\n"
        "Nothing was changed. To go on:\n"
        f"  1. keep a copy of the state dir first: cp -a {state} {state}.copy\n"
        f"  2. either put back a backup of {path.name} of yours (and remove {path.name}-wal and {path.name}-shm),\n"
        f"     or rebuild it from what can still be read: goexd --state-dir {state} --repair-journal\n"
        "     (the same --config as the daemon's; it keeps the damaged files beside the new journal)"
    )


def wal_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def is_fresh(path: Path) -> bool:
    """No journal yet (SQLite starts an empty file as a new database): nothing to check."""
    wal, _ = wal_paths(path)
    try:
        empty = path.stat().st_size == 0
    except FileNotFoundError:
        return True
    return empty and (not wal.exists() or wal.stat().st_size == 0)


def problems_of(path: Path) -> list[str]:
    """What is wrong with the journal at `path` ([] when it is sound or does not exist yet)."""
    if is_fresh(path):
        return []
    try:
        with path.open("rb") as f:
            header = f.read(len(HEADER))
    except OSError as e:
        return [f"cannot read it: {e.strerror}"]
    if header != HEADER:
        return ["its header is not an SQLite database's (the first 16 bytes are wrong)"]
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        return [str(e)]
    try:
        rows = db.execute(f"PRAGMA integrity_check({CHECKED_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as e:
        return [str(e)]
    finally:
        db.close()
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found


def check_journal(path: Path) -> None:
    """Raise JournalDamaged unless the journal at `path` is sound (or new)."""
    problems = problems_of(path)
    if problems:
        raise JournalDamaged(path, problems)


def open_journal(path: Path, sync: str) -> Journal:
    """The journal at `path`, checked whole first. A damaged one raises JournalDamaged, never
    sqlite3's own error (its traceback would say nothing about what to do)."""
    check_journal(path)
    try:
        return Journal(path, sync=sync)
    except sqlite3.DatabaseError as e:  # damage the check could not see (a page written meanwhile)
        raise JournalDamaged(path, [str(e)]) from None
