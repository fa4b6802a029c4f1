"""Workspace file access that never follows a symlink below the workspace root.

The daemon runs as root while agents can create symlinks in the workspace: resolving
"a/b/f" by path could read (capture) or write (restore) a file outside the workspace
if "a" were swapped for a symlink. Every access here walks directory fds with
O_NOFOLLOW instead. The fds of parent directories are cached for one batch of work.

Owners and modes are set on the inode that was opened (O_PATH, then /proc/self/fd/N):
a file's set-id bits are only ever set after its owner is right, since the daemon may
be root and a set-id file owned by the wrong user is a privilege handed out.

An unprivileged daemon meets read-only directories an action left (`chmod 555 d`, Go's
module cache): where it owns one, a write refused there opens it up (u+rwx) for the
batch, and close() gives it its mode back unless set_owner_and_mode set one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from goexd.snapshots.layout import Owner, is_under, join, parent_of

T = TypeVar("T")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang; it is a no-op for regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
# chown refused: not permitted (not root, not the owner, or a group we are not in), or
# an id the daemon's user namespace does not map.
_CHOWN_REFUSED = (errno.EPERM, errno.EINVAL)


class NotRegularFile(OSError):
    """open_file() found something else than a regular file."""


class SafeFS:
    """Relative-path operations on one workspace; "" is the root itself."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fds: dict[str, int] = {}
        self._opened: dict[str, int] = {}  # directories opened up for writing -> their mode

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

    def at(self, rel: str) -> tuple[int, str]:
        """(fd of rel's parent directory, rel's last name), for the *at() calls."""
        parent, _, name = rel.rpartition("/")
        return self.dir_fd(parent), name

    def forget(self, rel: str) -> None:
        """Drop cached fds at or below rel (it was removed or replaced)."""
        for key in [k for k in self._fds if is_under(k, rel)]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        try:
            self._close_up()
        finally:
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
        fd, name = self.at(rel)
        return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def readlink(self, rel: str) -> bytes:
        fd, name = self.at(rel)
        return os.readlink(os.fsencode(name), dir_fd=fd)

    def open_file(self, rel: str) -> tuple[int, os.stat_result]:
        """Open a regular file for reading. A symlink raises OSError(ELOOP), anything
        else NotRegularFile."""
        fd, name = self.at(rel)
        ffd = os.open(name, _READ_FLAGS, dir_fd=fd)
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode):
            os.close(ffd)
            raise NotRegularFile(f"not a regular file: {rel}")
        return ffd, st

    # -- writing ---------------------------------------------------------------------

    def write_file(self, rel: str, chunks: Iterable[bytes | memoryview], perm: int, owner: Owner) -> bool:
        """Create rel with this content, owner and mode. Returns False when the owner could
        not be set: the file then keeps the daemon's and gets no set-id bits."""
        ffd = self._in(rel, lambda fd, name: os.open(name, _WRITE_FLAGS, 0o600, dir_fd=fd))
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(ffd, view) :]
            owned = _chown(ffd, owner)
            os.fchmod(ffd, perm if owned else perm & ~_SETID)
        finally:
            os.close(ffd)
        return owned

    def symlink(self, rel: str, target: bytes) -> None:
        self._in(rel, lambda fd, name: os.symlink(target, os.fsencode(name), dir_fd=fd))

    def mkdir(self, rel: str) -> None:
        self._in(rel, lambda fd, name: os.mkdir(name, 0o700, dir_fd=fd))

    def set_owner_and_mode(self, rel: str, owner: Owner, perm: int) -> bool:
        """Give rel this owner, then this mode, without following a final symlink (a
        symlink gets its owner only: its mode means nothing on Linux). Returns False when
        the owner could not be set: set-id bits are then left out of the mode."""
        fd, name = self.at(rel) if rel else (-1, "")
        # The root is the resolved workspace path (its ancestors may be symlinks).
        pfd = os.open(name, _PATH_FLAGS, dir_fd=fd) if rel else os.open(self.root, _ROOT_PATH_FLAGS)
        try:
            st = os.fstat(pfd)
            if stat.S_ISLNK(st.st_mode):
                return _chown_link(fd, name, owner, st)
            self._opened.pop(rel, None)  # its mode is set here
            proc = f"/proc/self/fd/{pfd}"
            owned = (st.st_uid, st.st_gid) == owner or _chown(proc, owner)
            # After chown, which clears a file's set-id bits.
            os.chmod(proc, perm if owned else perm & ~_SETID)
        finally:
            os.close(pfd)
        return owned

    def remove(self, rel: str) -> None:
        """Remove whatever is at rel (a whole directory tree included); absent is fine."""
        try:
            st = self.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return
        if not stat.S_ISDIR(st.st_mode):
            self._in(rel, lambda fd, name: os.unlink(name, dir_fd=fd))
            return
        fd, name = self.at(rel)
        self.forget(rel)
        try:
            shutil.rmtree(name, dir_fd=fd)
        except PermissionError:
            opened = self._open_up(parent_of(rel))
            if not self._open_up_tree(rel) and not opened:
                raise
            self.forget(rel)
            shutil.rmtree(name, dir_fd=fd)
        for key in [k for k in self._opened if is_under(k, rel)]:
            del self._opened[key]

    # -- read-only directories ------------------------------------------------------

    def _in(self, rel: str, op: Callable[[int, str], T]) -> T:
        """op(fd of rel's parent, rel's name); refused for want of access to the parent,
        open the parent up and try once more."""
        fd, name = self.at(rel)
        try:
            return op(fd, name)
        except PermissionError:
            if not self._open_up(parent_of(rel)):
                raise
            return op(fd, name)

    def _open_up(self, rel: str) -> bool:
        """Give the daemon's user rwx on directory rel, when it owns it and lacks some."""
        if rel in self._opened:
            return False
        fd = self.dir_fd(rel)
        st = os.fstat(fd)
        perm = stat.S_IMODE(st.st_mode)
        if st.st_uid != os.geteuid() or perm & stat.S_IRWXU == stat.S_IRWXU:
            return False
        self._opened[rel] = perm
        os.fchmod(fd, perm | stat.S_IRWXU)
        return True

    def _open_up_tree(self, top: str) -> bool:
        """Open up every directory of the tree at top, to remove it; whether any was."""
        opened = False
        stack = [top]
        while stack:
            rel = stack.pop()
            opened = self._open_up(rel) or opened
            with os.scandir(self.dir_fd(rel)) as entries:
                stack += [join(rel, e.name) for e in entries if e.is_dir(follow_symlinks=False)]
        return opened

    def _close_up(self) -> None:
        """Give the directories opened up their modes back, deepest first."""
        for rel, perm in sorted(self._opened.items(), reverse=True):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.fchmod(self.dir_fd(rel), perm)
        self._opened.clear()

    def exists_as_dir(self, rel: str) -> bool:
        try:
            return stat.S_ISDIR(self.lstat(rel).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False


def _chown(target: int | str, owner: Owner) -> bool:
    """chown an fd or a /proc/self/fd path; False when refused and not already so."""
    try:
        os.chown(target, *owner)
    except OSError as e:
        if e.errno not in _CHOWN_REFUSED:
            raise
        st = os.stat(target)
        return (st.st_uid, st.st_gid) == owner
    return True


def _chown_link(dir_fd: int, name: str, owner: Owner, st: os.stat_result) -> bool:
    if (st.st_uid, st.st_gid) == owner:
        return True
    try:
        os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        if e.errno not in _CHOWN_REFUSED:
            raise
        return False
    return True
