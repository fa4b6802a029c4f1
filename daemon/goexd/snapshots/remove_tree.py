"""Remove a directory tree of any depth: shutil.rmtree recurses (Python's stack: ~1,000 levels) and
keeps a directory fd open per level (the fd limit); an action can nest directories thousands deep.

One directory fd is open at a time; going back up opens ".." and checks it is the directory that
was left (device and inode), so a tree moved meanwhile stops the removal (OSError) rather than
removing something else. Nothing is followed: symlinks are unlinked, never entered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str], *, dir_fd: int | None = None, open_up: bool = False) -> None:
    """Remove `path` (relative to `dir_fd` if given) and all below it; FileNotFoundError if absent.
    `open_up`: a directory goexd's user may not list or write (an action's 000 dir, overlayfs' work dir) is
    given mode 0700 first (it is being removed: its mode does not matter)."""
    name = os.fspath(path)
    st = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    parent = os.open(os.path.dirname(name) or ".", _DIR_FLAGS, dir_fd=dir_fd)
    try:
        _remove_dir(parent, os.path.basename(name), open_up)
    finally:
        os.close(parent)


def _open_dir(parent: int, name: str, open_up: bool) -> int:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        if not open_up:
            raise
        os.chmod(name, 0o700, dir_fd=parent)  # O_NOFOLLOW above found a directory, not a symlink
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    if open_up and stat.S_IMODE(os.fstat(fd).st_mode) & 0o700 != 0o700:
        os.chmod(fd, 0o700)  # to unlink what it holds
    return fd


def _remove_dir(top_parent: int, top_name: str, open_up: bool) -> None:
    """Depth first; `stack` holds, for each directory entered, its name in its parent, the parent's
    (dev, ino) and the subdirectories still to remove (each directory is listed once)."""
    pst = os.fstat(top_parent)
    fd = _open_dir(top_parent, top_name, open_up)
    try:
        stack: list[tuple[str, tuple[int, int], list[str]]] = [(top_name, (pst.st_dev, pst.st_ino), _clear_files(fd))]
        while True:
            name, parent_id, subdirs = stack[-1]
            if subdirs:
                child = subdirs.pop()
                st = os.fstat(fd)
                sub = _open_dir(fd, child, open_up)
                os.close(fd)
                fd = sub
                stack.append((child, (st.st_dev, st.st_ino), _clear_files(fd)))
                continue
            stack.pop()
            if not stack:
                os.close(fd)
                fd = -1
                os.rmdir(name, dir_fd=top_parent)
                return
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != parent_id:
                raise OSError(errno.ESTALE, f"a directory moved while it was being removed: {name}")
            os.rmdir(name, dir_fd=fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-directory in `fd`; the names of its subdirectories."""
    subdirs = []
    with os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return subdirs
