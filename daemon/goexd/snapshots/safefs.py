"""Workspace file access that never follows a symlink below the workspace root.

The daemon runs as root while agents can create symlinks in the workspace: resolving
"a/b/f" by path could read (capture) or write (restore) a file outside the workspace
if "a" were swapped for a symlink. Every access here walks directory fds with
O_NOFOLLOW instead. The fds of parent directories are cached for one batch of work
(trim() lets long loops drop them between steps).

Owners and modes are set on the inode that was opened (O_PATH, then /proc/self/fd/N):
a file's set-id bits are only ever set after its owner is right, since the daemon may
be root and a set-id file owned by the wrong user is a privilege handed out.

An unprivileged daemon meets entries an action left that its user may not read,
enter or write (`chmod 000 d`, `chmod 0 f`, Go's read-only module cache). Where it
owns one and an access is refused, it opens it up (u+rx on a directory to read it,
u+r on a file, u+rwx on a directory to write in it) for the batch, and close() gives
each its mode back, unless set_owner_and_mode set one, or someone changed it
meanwhile. Reads report the mode as found (lstat, open_file), so a capture records
what the action left, not what goexd made of it. Each opening is appended to a
journal file before the chmod: if goexd dies mid-batch, close_up_left() puts the
modes back at the next start. What goexd does not own is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from goexd import faults
from goexd.snapshots.layout import Owner, is_under, join, parent_of

T = TypeVar("T")
# Whether the entry an O_PATH fd is open on (its lstat given) is the one a plan expected there.
Check = Callable[[int, os.stat_result], bool]


class Absent:
    """put(): only where nothing is at the path."""


ABSENT = Absent()

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang; it is a no-op for regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TMPFILE_FLAGS = os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
# A file being written, beside the one it replaces (write_file), or what an entry displaced is kept as while it
# is checked (put, remove_if). Only goexd makes names with this prefix; recovery removes them (remove_temporaries).
TEMP_PREFIX = _TEMP_PREFIX = ".goex-write-"
# What goexd keeps of someone's write it found it could not put back (see _keep): never removed by goexd.
KEPT_INFIX = ".goex-kept-"
# Removed files a batch watches at most (one fd each, within the daemon's descriptor limit).
_KEEP_REMOVED = 256
_FAULT_TAG = "fs-versioned"  # the resource the fault points here serve (goexd/faults.py)
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_JOURNAL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
# chown refused: not permitted (not root, not the owner, or a group we are not in), or
# an id the daemon's user namespace does not map.
_CHOWN_REFUSED = (errno.EPERM, errno.EINVAL)
# What reading needs: a directory listed and entered, a file read.
DIR_READ = stat.S_IRUSR | stat.S_IXUSR
FILE_READ = stat.S_IRUSR
# Cached directory fds a trim() keeps (the daemon's soft RLIMIT_NOFILE may be 1024).
_KEEP_FDS = 64


class NotRegularFile(OSError):
    """open_file() found something else than a regular file."""


@dataclass(frozen=True)
class Opened:
    """An entry opened up for the batch."""

    perm: int  # its permission bits as found, which close() puts back
    granted: int  # its bits while opened up
    ino: int  # the inode that was opened up (close() leaves any other alone)
    dev: int = 0
    gid: int = -1  # its group then (its owner is goexd's user)


class SafeFS:
    """Relative-path operations on one workspace; "" is the root itself. `journal`: the
    file that records openings until close() (None: none is kept)."""

    def __init__(self, root: Path, journal: Path | None = None, *, open_up: bool = True) -> None:
        self.root = root
        self._fds: dict[str, int] = {}
        self.opened: dict[str, Opened] = {}  # by path: what close() gives back
        # The same by inode: what any name of it reads as (a hard link shares the mode).
        self.found: dict[tuple[int, int], Opened] = {}
        self.openings = 0  # how many times open_up() changed a mode
        self._journal = journal
        self._journal_fd: int | None = None
        self._frozen = not open_up  # open nothing up (also while giving modes back)
        self.given_back: dict[str, Opened] = {}  # by close(): the modes it put back
        # What write_file() and put() put at each path: (inode, mtime, size), to tell a later change by someone.
        self.written: dict[str, tuple[int, int, int]] = {}
        # Files put() or remove_if() displaced and removed: an O_PATH fd on each, its path, (mtime, size) when
        # checked; watched until the batch ends (watch_removed).
        self._removed: list[tuple[int, str, tuple[int, int]]] = []
        self.kept: list[str] = []  # paths beside which a write into a removed file was kept

    # -- directory fds -------------------------------------------------------------

    def dir_fd(self, rel: str) -> int:
        fd = self._fds.pop(rel, None)
        if fd is not None:
            self._fds[rel] = fd  # the most recently used last: trim() keeps those
            return fd
        # Down from the nearest directory open already, without recursion (any depth an action nests).
        below: list[str] = []
        while rel not in self._fds and rel:
            below.append(rel)
            rel = rel.rpartition("/")[0]
        if rel not in self._fds:
            root = self._retry("", lambda: os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), DIR_READ)
            self._fds[""] = root
        for path in reversed(below):
            parent, _, name = path.rpartition("/")
            pfd = self._fds[parent]
            fd = self._retry(path, functools.partial(os.open, name, _DIR_FLAGS, dir_fd=pfd), DIR_READ)
            self._fds[path] = fd
        return self._fds[below[0]] if below else self._fds[""]

    def at(self, rel: str) -> tuple[int, str]:
        """(fd of rel's parent directory, rel's last name), for the *at() calls."""
        parent, _, name = rel.rpartition("/")
        return self.dir_fd(parent), name

    def open_path(self, rel: str, *, open_up: bool = True) -> int:
        """An O_PATH fd on rel itself (a symlink is not followed); the caller closes it."""
        if not rel:  # the root is the resolved workspace path (its ancestors may be symlinks)
            return os.open(self.root, _ROOT_PATH_FLAGS)
        fd, name = self.at(rel)
        if not open_up:
            return os.open(name, _PATH_FLAGS, dir_fd=fd)
        return self._retry(rel, lambda: os.open(name, _PATH_FLAGS, dir_fd=fd), 0)

    def forget(self, rel: str) -> None:
        """Drop cached fds at or below rel (it was removed or replaced)."""
        for key in [k for k in self._fds if is_under(k, rel)]:
            os.close(self._fds.pop(key))

    def trim(self) -> None:
        """Close the cached fds when there are many: only between steps, when no caller
        holds one (a huge tree must not exhaust the daemon's descriptors)."""
        if len(self._fds) > _KEEP_FDS:
            # The least recently used go; the rest (a deep walk's nearest directories) spare reopening a path
            # level by level at each step, which made a tree thousands deep quadratic.
            for rel in list(self._fds)[: len(self._fds) - _KEEP_FDS // 2]:
                os.close(self._fds.pop(rel))

    def close(self) -> None:
        try:
            self.kept += self.watch_removed()
            if self.opened or self._journal_fd is not None:
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
        """rel's lstat, with its mode as found (before any opening up)."""
        if not rel:
            return self._as_found(os.stat(self.root))
        fd, name = self.at(rel)
        st = self._retry(rel, lambda: os.stat(name, dir_fd=fd, follow_symlinks=False), 0)
        return self._as_found(st)

    def readlink(self, rel: str) -> bytes:
        fd, name = self.at(rel)
        return self._retry(rel, lambda: os.readlink(os.fsencode(name), dir_fd=fd), 0)

    def open_file(self, rel: str) -> tuple[int, os.stat_result]:
        """Open a regular file for reading; its fstat has its mode as found. A symlink
        raises OSError(ELOOP), anything else NotRegularFile."""
        fd, name = self.at(rel)
        ffd = self._retry(rel, lambda: os.open(name, _READ_FLAGS, dir_fd=fd), FILE_READ)
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode):
            os.close(ffd)
            raise NotRegularFile(f"not a regular file: {rel}")
        return ffd, self._as_found(st)

    def found_perm(self, st: os.stat_result) -> int:
        """The permission bits of the entry `st` describes as found, before this batch
        opened its inode up (through any of its names)."""
        perm = stat.S_IMODE(st.st_mode)
        opened = self.found.get((st.st_dev, st.st_ino)) if self.found else None
        return opened.perm if opened is not None and opened.granted == perm else perm

    def _as_found(self, st: os.stat_result) -> os.stat_result:
        perm = self.found_perm(st)
        if perm == stat.S_IMODE(st.st_mode):
            return st
        reduced: Any = st.__reduce__()  # (stat_result, (the 10 fields, the named rest))
        fields, extra = reduced[1]
        return os.stat_result((stat.S_IFMT(st.st_mode) | perm, *fields[1:]), extra)

    # -- writing ---------------------------------------------------------------------

    def write_file(
        self,
        rel: str,
        chunks: Iterable[bytes | memoryview],
        perm: int,
        owner: Owner,
        expected: Check | Absent | None = None,
    ) -> bool:
        """Create rel, or replace the file or symlink there, with this content, owner and mode. Returns
        False when the owner could not be set: the file then keeps the daemon's and gets no set-id bits.
        `expected`: as for put(); when the file was not put there, raises Displaced.

        Written as an unnamed file in its directory (O_TMPFILE), then given a name and moved to rel (put()):
        rel is never seen half written nor absent, and a write that fails (a full disk) leaves rel as it was
        and nothing beside it. Where O_TMPFILE is not supported, a named temporary."""
        ffd, tmp = self._in(rel, _create_unnamed)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(ffd, view) :]
                owned = _chown(ffd, owner)
                os.fchmod(ffd, perm if owned else perm & ~_SETID)
                mark = _mark(os.fstat(ffd))
                if tmp is None:  # named now, for a moment: a rename needs a name
                    tmp = self._in(rel, lambda fd, _name: _link_unnamed(ffd, fd))
            finally:
                os.close(ffd)
            placed = self._place(rel, tmp, expected, mark)
        except BaseException:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    self._in(rel, lambda fd, _name: os.unlink(tmp, dir_fd=fd))
            raise
        if not placed:
            raise Displaced(rel)
        self.written[rel] = mark
        return owned

    def put(self, rel: str, make: Callable[[int, str], None], expected: Check | Absent | None) -> bool:
        """Make an entry at a temporary name beside rel (`make(dir fd, name)`) and move it to rel in one
        rename, so rel is never absent. `expected` None: whatever is at rel is replaced. ABSENT: only where
        rel is absent (renameat2 RENAME_NOREPLACE). A Check: compare-and-swap, for what someone may write at
        rel while goexd works: the new entry and rel's are exchanged (RENAME_EXCHANGE) and the one displaced
        is checked; not the one expected (written after the plan was made), it is exchanged back, left as it
        is. Whether the new entry is at rel (if not, it is gone)."""
        tmp = _temp_name()
        self._in(rel, lambda fd, _name: make(fd, tmp))
        try:
            mark = self._in(rel, lambda fd, _name: _mark(os.stat(tmp, dir_fd=fd, follow_symlinks=False)))
            placed = self._place(rel, tmp, expected, mark)
            if placed:
                self.written[rel] = mark
        except BaseException:
            with contextlib.suppress(OSError):
                self._in(rel, lambda fd, _name: os.unlink(tmp, dir_fd=fd))
            raise
        return placed

    def _place(self, rel: str, tmp: str, expected: Check | Absent | None, mark: tuple[int, int, int]) -> bool:
        """Move the entry at `tmp` (in rel's directory) to rel as put() says; False (tmp removed) if not."""
        fd, name = self.at(rel)
        faults.point("fs-write-named", _FAULT_TAG)
        if expected is None:
            try:
                self._in(rel, lambda fd, name: os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd))
            except (IsADirectoryError, OSError) as e:
                if e.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise
                self.remove(rel)  # a directory where a file goes (restoring a snapshot: replaced whatever it is)
                self._in(rel, lambda fd, name: os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd))
            return True
        if isinstance(expected, Absent):
            try:
                self._in(rel, lambda fd, name: _rename2(fd, tmp, fd, name, RENAME_NOREPLACE))
            except FileExistsError:
                os.unlink(tmp, dir_fd=fd)
                return False
            return True
        try:
            self._in(rel, lambda fd, name: _rename2(fd, tmp, fd, name, RENAME_EXCHANGE))
        except FileNotFoundError:  # removed since the plan: nobody's version to replace, nor to bring back
            os.unlink(tmp, dir_fd=fd)
            return False
        self.forget(rel)
        faults.point("fs-write-swapped", _FAULT_TAG)
        if self._settle(fd, tmp, rel, expected):
            return True
        # Someone's version: it goes back. What comes out is ours unless it was written in the moment between.
        self._in(rel, lambda fd, name: _rename2(fd, tmp, fd, name, RENAME_EXCHANGE))
        self._drop_ours(fd, tmp, name, mark)
        return False

    def remove_if(self, rel: str, expected: Check) -> bool:
        """Remove the file or symlink at rel if it is the one expected (compare-and-swap: it is renamed aside
        first, then checked; anything else is put back). Absent is fine. Whether rel is gone."""
        fd, name = self.at(rel)
        tmp = _temp_name()
        try:
            self._in(rel, lambda fd, name: os.rename(name, tmp, src_dir_fd=fd, dst_dir_fd=fd))
        except (FileNotFoundError, NotADirectoryError):
            return True
        if self._settle(fd, tmp, rel, expected):
            return True
        try:
            _rename2(fd, tmp, fd, name, RENAME_NOREPLACE)
        except FileExistsError:  # and something new is at rel already: both are someone's
            _keep(fd, tmp, name)
        return False

    def rmdir_if_empty(self, rel: str) -> bool:
        """Remove the directory rel if it holds nothing but directories (what was planned to go from it has gone;
        empty directories below it a plan may not list go with it, each by rmdir, deepest first); whether it did.
        A file or symlink someone put in it since keeps it: rmdir never removes content."""
        self.forget(rel)
        try:
            self._in(rel, lambda fd, name: os.rmdir(name, dir_fd=fd))
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not self._rmdir_tree(rel):
                return False
        for key in [k for k in self.opened if is_under(k, rel)]:
            self._forget_opened(key)
        return True

    def _rmdir_tree(self, top: str) -> bool:
        """rmdir every directory of the tree at top, deepest first; False (stopping) at anything else in it."""
        dirs: list[str] = []
        todo = [top]
        try:
            while todo:
                rel = todo.pop()
                dirs.append(rel)
                with os.scandir(self.dir_fd(rel)) as entries:
                    for e in entries:
                        if not e.is_dir(follow_symlinks=False):
                            return False
                        todo.append(join(rel, e.name))
            for rel in sorted(dirs, reverse=True):  # children sort after parents
                self.forget(rel)
                self._in(rel, lambda fd, name: os.rmdir(name, dir_fd=fd))
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False  # filled meanwhile
            raise
        return True

    def _settle(self, fd: int, tmp: str, rel: str, expected: Check) -> bool:
        """Check what was displaced to `tmp` (in rel's directory `fd`); if expected, remove it. The removed file
        is watched until the batch ends (watch_removed): a write through a descriptor someone held open on it
        is kept beside rel, not lost with it."""
        try:
            pfd = os.open(tmp, _PATH_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            return True
        watched = False
        try:
            before = os.fstat(pfd)
            if not self._check(pfd, before, expected):
                return False
            if stat.S_ISDIR(before.st_mode):
                try:
                    os.rmdir(tmp, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    return False  # filled since it was checked
                return True
            os.unlink(tmp, dir_fd=fd)
            if stat.S_ISREG(before.st_mode):
                self._removed.append((pfd, rel, (before.st_mtime_ns, before.st_size)))
                watched = True
                if len(self._removed) > _KEEP_REMOVED:
                    self.watch_removed(len(self._removed) // 2)
        finally:
            if not watched:
                os.close(pfd)
        return True

    def watch_removed(self, count: int | None = None) -> list[str]:
        """Look again at the files this batch displaced and removed (the oldest `count`, else all) and stop
        watching them: one written since (through a descriptor held open across the swap) is kept beside its
        path as `name.goex-kept-<hex>`. Returns the paths so kept."""
        done, self._removed = self._removed[: count or len(self._removed)], self._removed[count or len(self._removed) :]
        kept = []
        for pfd, rel, key in done:
            try:
                st = os.fstat(pfd)
                if (st.st_mtime_ns, st.st_size) != key:
                    with contextlib.suppress(OSError):
                        _copy_kept(pfd, self.dir_fd(parent_of(rel)), rel.rpartition("/")[2])
                        kept.append(rel)
            finally:
                os.close(pfd)
        return kept

    def _check(self, pfd: int, st: os.stat_result, expected: Check) -> bool:
        try:
            return expected(pfd, st)
        except PermissionError:
            # An entry goexd owns and may not read (mode 000): readable for the check, its mode given back.
            if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode) or self._frozen:
                return False
            proc = f"/proc/self/fd/{pfd}"
            os.chmod(proc, stat.S_IMODE(st.st_mode) | stat.S_IRUSR)
            try:
                return expected(pfd, st)
            finally:
                os.chmod(proc, stat.S_IMODE(st.st_mode))

    def _drop_ours(self, fd: int, tmp: str, name: str, mark: tuple[int, int, int]) -> None:
        """After exchanging back: remove what is at `tmp` if it is the entry goexd made, unchanged (`mark`); if
        someone renamed their file over rel or wrote into goexd's in the moment it was there, keep that."""
        try:
            st = os.stat(tmp, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if _mark(st) != mark:
            _keep(fd, tmp, name)
            return
        os.unlink(tmp, dir_fd=fd)

    def symlink(self, rel: str, target: bytes) -> None:
        self._in(rel, lambda fd, name: os.symlink(target, os.fsencode(name), dir_fd=fd))

    def mkdir(self, rel: str) -> None:
        self._in(rel, lambda fd, name: os.mkdir(name, 0o700, dir_fd=fd))

    def set_owner_and_mode(self, rel: str, owner: Owner, perm: int) -> bool:
        """Give rel this owner, then this mode, without following a final symlink (a
        symlink gets its owner only: its mode means nothing on Linux). Returns False when
        the owner could not be set: set-id bits are then left out of the mode."""
        pfd = self.open_path(rel)
        try:
            st = os.fstat(pfd)
            if stat.S_ISLNK(st.st_mode):
                return _chown_link(*self.at(rel), owner, st)
            self._forget_opened(rel)  # its mode is set here
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
            opened = self.open_up(parent_of(rel), stat.S_IRWXU)
            if not self._open_up_tree(rel) and not opened:
                raise
            self.forget(rel)
            shutil.rmtree(name, dir_fd=fd)
        for key in [k for k in self.opened if is_under(k, rel)]:
            self._forget_opened(key)

    # -- opening up what goexd owns ------------------------------------------------

    def open_up(self, rel: str, bits: int, pfd: int | None = None) -> bool:
        """Give goexd's user `bits` on the directory or regular file rel until close(),
        when it owns rel and lacks some of them; whether it did. `pfd`: an fd on rel
        (else one is opened here)."""
        if self._frozen:
            return False
        fd = self.open_path(rel) if pfd is None else pfd
        try:
            st = os.fstat(fd)
            perm = stat.S_IMODE(st.st_mode)
            if st.st_uid != os.geteuid() or perm & bits == bits:
                return False
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                return False
            opened = Opened(self.found_perm(st), perm | bits, st.st_ino, st.st_dev, st.st_gid)
            self._record(rel, opened)  # before the chmod: a crash after it still finds it
            self.openings += 1
            proc = f"/proc/self/fd/{fd}"
            os.chmod(proc, opened.granted)
            now = stat.S_IMODE(os.stat(proc).st_mode)
            if now != opened.granted:  # the kernel dropped S_ISGID (a group goexd is not in)
                self._record(rel, Opened(opened.perm, now, opened.ino, opened.dev, opened.gid))
            return True
        finally:
            if pfd is None:
                os.close(fd)

    def open_up_dir(self, rel: str) -> bool:
        """Let goexd's user list directory rel by path (read access to it, search access
        above it) where it owns what lacks them; whether anything was opened up."""
        before = self.openings
        with contextlib.suppress(OSError):  # the caller's own attempt says what is wrong
            self.open_up(rel, DIR_READ)
        self.trim()
        return self.openings > before

    def _retry(self, rel: str, op: Callable[[], T], bits: int) -> T:
        """op() on rel; refused, open up rel's directory (to enter it), then rel itself
        (`bits`), where goexd owns them and lacks those, trying again after each."""
        try:
            return op()
        except PermissionError:
            if self._frozen:
                raise
            if rel and self.open_up(parent_of(rel), DIR_READ):
                try:
                    return op()
                except PermissionError:
                    pass
            if not bits or not self.open_up(rel, bits):
                raise
        return op()

    def _in(self, rel: str, op: Callable[[int, str], T]) -> T:
        """op(fd of rel's parent, rel's name); refused for want of access to the parent,
        open the parent up and try once more."""
        fd, name = self.at(rel)
        try:
            return op(fd, name)
        except PermissionError:
            if not self.open_up(parent_of(rel), stat.S_IRWXU):
                raise
            return op(fd, name)

    def _open_up_tree(self, top: str) -> bool:
        """Open up every directory of the tree at top, to remove it; whether any was."""
        opened = False
        stack = [top]
        while stack:
            rel = stack.pop()
            opened = self.open_up(rel, stat.S_IRWXU) or opened
            with os.scandir(self.dir_fd(rel)) as entries:
                stack += [join(rel, e.name) for e in entries if e.is_dir(follow_symlinks=False)]
        return opened

    def _close_up(self) -> None:
        """Give what was opened up its mode back, deepest first (children sort after their
        parent), unless it changed meanwhile. Then the journal goes."""
        frozen, self._frozen = self._frozen, True
        try:
            for rel, opened in sorted(self.opened.items(), reverse=True):
                with contextlib.suppress(OSError):  # gone or moved: nothing left to give back
                    if _give_back(self.open_path(rel, open_up=False), opened):
                        self.given_back[rel] = opened
                self._trim_outside(rel)
            self.opened.clear()
            self.found.clear()
        finally:
            self._frozen = frozen
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
                assert self._journal is not None
                self._journal.unlink(missing_ok=True)

    def _trim_outside(self, rel: str) -> None:
        """Close cached fds of directories that are not above rel (a deepest-first walk
        over many paths needs only the current one's chain)."""
        if len(self._fds) > _KEEP_FDS:
            for key in [k for k in self._fds if not is_under(rel, k)]:
                os.close(self._fds.pop(key))

    def _record(self, rel: str, opened: Opened) -> None:
        self._note(rel, opened)
        self.opened[rel] = self.found[opened.dev, opened.ino] = opened

    def _forget_opened(self, rel: str) -> None:
        opened = self.opened.pop(rel, None)
        if opened is not None:
            self.found.pop((opened.dev, opened.ino), None)
            self._note(rel, None)

    def _note(self, rel: str, opened: Opened | None) -> None:
        """Append an opening (or, with None, that rel's mode is no longer ours to give back)."""
        if self._journal is None:
            return
        if self._journal_fd is None:
            self._journal_fd = os.open(self._journal, _JOURNAL_FLAGS, 0o600)
        o = opened or Opened(0, 0, 0)
        os.write(self._journal_fd, b"%d %o %o " % (o.ino, o.perm, o.granted) + os.fsencode(rel) + b"\0")

    def exists_as_dir(self, rel: str) -> bool:
        try:
            return stat.S_ISDIR(self.lstat(rel).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False


def _create_unnamed(dir_fd: int, _name: str) -> tuple[int, str | None]:
    """An unnamed file in the directory (None), or, where the filesystem has no O_TMPFILE, a named one."""
    try:
        return os.open(".", _TMPFILE_FLAGS, 0o600, dir_fd=dir_fd), None
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    while True:
        tmp = _temp_name()
        with contextlib.suppress(FileExistsError):
            return os.open(tmp, _NEW_FLAGS, 0o600, dir_fd=dir_fd), tmp


def _link_unnamed(ffd: int, dir_fd: int) -> str:
    """Give an O_TMPFILE file a temporary name in its directory (linkat through /proc: no privilege needed)."""
    while True:
        tmp = _temp_name()
        with contextlib.suppress(FileExistsError):
            os.link(f"/proc/self/fd/{ffd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
            return tmp


def _temp_name() -> str:
    return f"{_TEMP_PREFIX}{secrets.token_hex(8)}"


def close_up_left(root: Path, journal: Path) -> None:
    """Give back the modes a batch opened up and never gave back (goexd was killed)."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return
    fs = SafeFS(root)
    for record in data.split(b"\0"):
        try:
            ino, perm, granted, path = record.split(b" ", 3)
            opened = Opened(int(perm, 8), int(granted, 8), int(ino))
        except ValueError:
            continue  # the last record, cut short: its chmod never happened
        rel = os.fsdecode(path)
        if opened.ino:
            fs.opened[rel] = opened
        else:
            fs.opened.pop(rel, None)
    try:
        fs.close()
    finally:
        journal.unlink(missing_ok=True)


def _give_back(pfd: int, opened: Opened) -> bool:
    """Put the mode as found back on the inode open as pfd (closed here), if it is the one
    opened up and still has the mode given it; whether it did."""
    try:
        st = os.fstat(pfd)
        if st.st_ino != opened.ino or stat.S_IMODE(st.st_mode) != opened.granted:
            return False
        os.chmod(f"/proc/self/fd/{pfd}", opened.perm)
        return True
    finally:
        os.close(pfd)


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


class Displaced(OSError):
    """write_file() with a check found rel written by someone since the plan: left as it is."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.EEXIST, "changed by someone since it was planned; left as it is", rel)


_libc = ctypes.CDLL(None, use_errno=True)


def _mark(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


def _rename2(src_fd: int, src: str, dst_fd: int, dst: str, flags: int) -> None:
    """renameat2(2): RENAME_NOREPLACE or RENAME_EXCHANGE (Linux 3.15+; ext4, xfs, btrfs, tmpfs, overlayfs)."""
    if _libc.renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), ctypes.c_uint(flags)) == 0:
        return
    err = ctypes.get_errno()
    if err != errno.EINVAL:
        raise OSError(err, os.strerror(err), dst)
    # A filesystem without these flags: the same effect with a window (a link fails where rel exists; an
    # exchange becomes two renames through a third name).
    if flags == RENAME_NOREPLACE:
        os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
        os.unlink(src, dir_fd=src_fd)
        return
    middle = _temp_name()
    os.rename(dst, middle, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
    os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
    os.rename(middle, src, src_dir_fd=dst_fd, dst_dir_fd=src_fd)


def _keep(fd: int, tmp: str, name: str) -> None:
    """Give what is at `tmp` a name of its own beside `name` that nothing of goexd's removes."""
    while True:
        kept = f"{name}{KEPT_INFIX}{secrets.token_hex(4)}"
        try:
            _rename2(fd, tmp, fd, kept, RENAME_NOREPLACE)
            return
        except FileExistsError:
            continue


def _copy_kept(pfd: int, fd: int, name: str) -> None:
    """A removed file written through a descriptor held open on it while goexd checked it: its content is
    kept under a name of its own beside `name`."""
    src = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            kept = f"{name}{KEPT_INFIX}{secrets.token_hex(4)}"
            with contextlib.suppress(FileExistsError):
                dst = os.open(kept, _NEW_FLAGS, 0o600, dir_fd=fd)
                break
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def remove_temporaries(root: Path, dirs: Iterable[str], ours: Callable[[int], bool]) -> tuple[list[str], list[str]]:
    """Clear goexd's own temporaries (TEMP_PREFIX + 16 hex digits) a kill left in these workspace directories in
    the middle of a write: one whose content is goexd's (`ours(fd)`: the content it was writing, or a version a
    snapshot holds) is removed; any other (someone's version displaced for its check at that moment) is kept
    under a name of its own (`goex-kept-<hex>`), never removed. Returns (removed, kept). Never follows a symlink."""
    removed: list[str] = []
    kept: list[str] = []
    fs = SafeFS(root, open_up=False)
    try:
        for rel in sorted(set(dirs)):
            try:
                dfd = fs.dir_fd(rel)
                names = [e.name for e in os.scandir(dfd) if is_temporary(e.name)]
            except OSError:
                continue
            for n in names:
                try:
                    ffd = os.open(n, _READ_FLAGS, dir_fd=dfd)
                except OSError:  # a symlink (ELOOP), a directory or gone: not one of the files it writes
                    ffd = -1
                try:
                    mine = ffd >= 0 and stat.S_ISREG(os.fstat(ffd).st_mode) and ours(ffd)
                finally:
                    if ffd >= 0:
                        os.close(ffd)
                if mine:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(n, dir_fd=dfd)
                        removed.append(join(rel, n))
                    continue
                with contextlib.suppress(FileNotFoundError):
                    _keep(dfd, n, "goex")
                    kept.append(join(rel, n))
    finally:
        fs.close()
    return removed, kept


def is_temporary(name: str) -> bool:
    """Whether a file name is one of goexd's temporaries (exactly _temp_name()'s pattern)."""
    rest = name[len(_TEMP_PREFIX) :]
    return name.startswith(_TEMP_PREFIX) and len(rest) == 16 and all(c in "0123456789abcdef" for c in rest)
