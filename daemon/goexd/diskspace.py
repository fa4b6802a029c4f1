"""Running out of disk space: telling it from other failures, saying where, and keeping a reserve.

Everything goexd keeps lives in its state dir: the journal, the snapshot stores, the overlay
upper dirs fs actions write into, and SQLite clones. When that filesystem fills up, the
operation that hit it fails alone and cleanly (OutOfSpace: RESOURCE_EXHAUSTED, naming the
filesystem and what to free) and the daemon keeps serving; nothing needs a restart once space
is back. Two things keep that possible (StateSpace):

- an action that needs a snapshot or a clone is refused before it starts while the state
  dir's filesystem has less than `state_reserve_bytes` free;
- a small part of that reserve is held as a file (`space-reserve`, reserve/8), given up the
  first time goexd runs out of space, so that rolling the failed operation back and
  journaling its end have room even if something else filled the disk. It is made again
  once the reserve is free again.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from goexd.domain.errors import GoexError, ResourceExhausted

log = logging.getLogger("goexd.space")

BALLAST_NAME = "space-reserve"
_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLite's primary result code for "database or disk is full"
_PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full
# How libgit2, the git CLI and SQLite say it when no errno travels with the error.
_WORDS = ("no space left on device", "disk quota exceeded", "database or disk is full")
FREE_HINT = (
    "free space there (commit or undo pending actions, then `goex gc` drops snapshots past their "
    "retention; or remove other files), then retry"
)


class OutOfSpace(ResourceExhausted):
    """An operation stopped because a filesystem was full. `partial`: it had already written some
    of its changes, which stay (the message says how they are finished)."""

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial


def is_out_of_space(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, is a full filesystem or quota."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OutOfSpace):
            return True
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return True
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or getattr(exc, "sqlstate", None) == _PG_DISK_FULL:
            return True
        # Words only from below goexd's own errors: a domain error may quote anything (an action's output).
        if not isinstance(exc, GoexError) and any(w in str(exc).lower() for w in _WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def out_of_space(what: str, paths: Iterable[Path], *, partial: bool = False, hint: str = FREE_HINT) -> OutOfSpace:
    """The error for `what` failing for want of space on the fullest filesystem of `paths`."""
    return OutOfSpace(f"out of disk space while {what}: {where(paths)}; {hint}", partial=partial)


def where(paths: Iterable[Path]) -> str:
    """The filesystem of `paths` with the least space free (the full one), in words."""
    found: list[tuple[int, str]] = []
    for path in paths:
        try:
            usage = shutil.disk_usage(_existing(path))
        except OSError:
            continue
        shown = f"{size(usage.free)} free of {size(usage.total)}"
        found.append((usage.free, f"the filesystem of {path} (at {mount_point(path)}; {shown})"))
    return min(found)[1] if found else "a filesystem goexd cannot inspect"


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path` (the highest directory on the same device)."""
    current = _existing(path).resolve()
    dev = os.stat(current).st_dev
    while current.parent != current:
        try:
            if os.stat(current.parent).st_dev != dev:
                break
        except OSError:
            break
        current = current.parent
    return current


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing ancestor (a file being made need not exist yet)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


class StateSpace:
    """The state dir's reserve: the check before actions that keep copies, and the file held back for rollbacks."""

    def __init__(self, state_dir: Path, reserve_bytes: int) -> None:
        self.state_dir = state_dir
        self.reserve = reserve_bytes
        self.ballast = state_dir / BALLAST_NAME
        self.ballast_bytes = reserve_bytes // 8
        self._lock = threading.Lock()

    def free(self) -> int:
        return shutil.disk_usage(_existing(self.state_dir)).free

    def require(self, what: str) -> None:
        """ResourceExhausted (before anything is done) when the state dir's filesystem is below the reserve."""
        if self.reserve <= 0:
            return
        free = self.free()
        if free < self.reserve:
            raise OutOfSpace(
                f"{what} is refused: {where([self.state_dir])} is below goexd's reserve of {size(self.reserve)} "
                f"(state_reserve_bytes), which keeps room to snapshot, roll back and journal; {FREE_HINT}"
            )
        self.refill(free)

    def refill(self, free: int | None = None) -> None:
        """Make the held-back file again where the reserve is free (after it was given up)."""
        if self.ballast_bytes <= 0:
            return
        with self._lock:
            if self.ballast.exists():
                return
            if (self.free() if free is None else free) < self.reserve + self.ballast_bytes:
                return
            try:
                fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.ballast_bytes)  # real blocks: a sparse file holds nothing back
                finally:
                    os.close(fd)
            except OSError as e:
                self.ballast.unlink(missing_ok=True)
                if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS):  # no fallocate here: zeros might take no room
                    log.warning(
                        "cannot hold back space in %s (%s): rollbacks on a full disk have only what they free",
                        self.state_dir,
                        e,
                    )
                    self.ballast_bytes = 0
                elif e.errno not in _ERRNOS:  # a race with another writer is tried again at the next check
                    log.warning("cannot hold back %s of space in %s: %s", size(self.ballast_bytes), self.ballast, e)

    def release(self) -> bool:
        """Give up the held-back file (goexd ran out of space): what follows has that much room."""
        with self._lock:
            try:
                self.ballast.unlink()
            except FileNotFoundError:
                return False
            except OSError as e:
                log.warning("cannot give up %s: %s", self.ballast, e)
                return False
        log.warning("out of disk space: gave up the %s held back in %s", size(self.ballast_bytes), self.ballast)
        return True
