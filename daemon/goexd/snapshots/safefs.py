"""Workspace file access that never follows a symlink below the workspace root.

The daemon runs as root while agents can create symlinks in the workspace: resolving
"a/b/f" by path could read (capture) or write (restore) a file outside the workspace
if "a" were swapped for a symlink. Every access here walks directory fds with
O_NOFOLLOW instead. The fds of parent directories are cached for one batch of work.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from goexd.snapshots.layout import is_under

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang; it is a no-op for regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegularFile(OSError):
    """open_file() found something else than a regular file."""


class SafeFS:
    """Relative-path operations on one workspace; "" is the root itself."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fds: dict[str, int] = {}

    # -- directory fds -------------------------------------------------------------

    def dir_fd(self, rel: str) -> int:
        fd = self._fds.get(rel)
        if fd is None:
            if rel:
                parent, _, name = rel.rpartition("/")
                fd = os.open(name, _DIR_FLAGS, dir_fd=self.dir_fd(parent))
            else:
                fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._fds[rel] = fd
        return fd

    def _at(self, rel: str) -> tuple[int, str]:
        parent, _, name = rel.rpartition("/")
        return self.dir_fd(parent), name

    def forget(self, rel: str) -> None:
        """Drop cached fds at or below rel (it was removed or replaced)."""
        for key in [k for k in self._fds if is_under(k, rel)]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    @contextmanager
    def batch(self) -> Iterator[SafeFS]:
        try:
            yield self
        finally:
            self.close()

    # -- reading ---------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result:
        if not rel:
            return os.stat(self.root)
        fd, name = self._at(rel)
        return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def readlink(self, rel: str) -> bytes:
        fd, name = self._at(rel)
        return os.readlink(os.fsencode(name), dir_fd=fd)

    def open_file(self, rel: str) -> tuple[int, os.stat_result]:
        """Open a regular file for reading. A symlink raises OSError(ELOOP), anything
        else NotRegularFile."""
        fd, name = self._at(rel)
        ffd = os.open(name, _READ_FLAGS, dir_fd=fd)
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode):
            os.close(ffd)
            raise NotRegularFile(f"not a regular file: {rel}")
        return ffd, st

    # -- writing ---------------------------------------------------------------------

    def write_file(self, rel: str, chunks: Iterable[bytes | memoryview], perm: int) -> None:
        fd, name = self._at(rel)
        ffd = os.open(name, _WRITE_FLAGS, 0o600, dir_fd=fd)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(ffd, view) :]
            os.fchmod(ffd, perm)
        finally:
            os.close(ffd)

    def symlink(self, rel: str, target: bytes) -> None:
        fd, name = self._at(rel)
        os.symlink(target, os.fsencode(name), dir_fd=fd)

    def mkdir(self, rel: str) -> None:
        fd, name = self._at(rel)
        os.mkdir(name, 0o700, dir_fd=fd)

    def chmod(self, rel: str, perm: int) -> None:
        """chmod without following a final symlink (Linux has no lchmod)."""
        if not rel:
            os.chmod(self.root, perm)
            return
        fd, name = self._at(rel)
        tfd = os.open(name, _READ_FLAGS, dir_fd=fd)
        try:
            os.fchmod(tfd, perm)
        finally:
            os.close(tfd)

    def remove(self, rel: str) -> None:
        """Remove whatever is at rel (a whole directory tree included); absent is fine."""
        try:
            st = self.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return
        fd, name = self._at(rel)
        if stat.S_ISDIR(st.st_mode):
            self.forget(rel)
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)

    def exists_as_dir(self, rel: str) -> bool:
        try:
            return stat.S_ISDIR(self.lstat(rel).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
