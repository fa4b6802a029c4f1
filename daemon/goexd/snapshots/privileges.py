"""The post-action check: no action leaves a set-id file or a file capability behind.

A file grants privileges in two ways: the set-user-ID / set-group-ID bits of a regular
file (S_ISUID, S_ISGID) and file capabilities (the `security.capability` extended
attribute). An action that could leave either in the workspace would hand its uid (uid 0
for a root goexd over a root-owned workspace) to every local user who can run the file.
So after each action the daemon checks the paths the action changed and takes both away,
inode-wide (every hard link to the inode loses them too).

Directories keep their bits: Linux ignores S_ISUID on a directory, and S_ISGID there only
makes new entries inherit the directory's group; a process can set it only on a
directory whose group it is in, so it grants nothing, while group-shared projects rely on
it (and mkdir below such a directory inherits it).

Each path is opened O_PATH|O_NOFOLLOW below the workspace (SafeFS: no symlink followed
on the way either), checked with fstat, and fixed through /proc/self/fd/N, so the inode
that was checked is the one changed. chown(-1, -1) makes the kernel drop a file
capability (its "killpriv" on a change of owner) even for an unprivileged owner, where
removexattr needs CAP_SETFCAP; chmod then clears the set-id bits chown left. The result
is checked again: what stays is reported, never hidden.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence

from goexd.domain.snapshots import CAPABILITY_XATTR, SETID, Privileged
from goexd.snapshots.safefs import SafeFS

MAX_LISTED = 20  # findings an action's result lists one by one
_GONE = (FileNotFoundError, NotADirectoryError)


def listed(found: Sequence[Privileged]) -> tuple[str, ...]:
    """Findings in words, for the action's result (capped)."""
    lines = [f.describe() for f in found[:MAX_LISTED]]
    if len(found) > MAX_LISTED:
        lines.append(f"... and {len(found) - MAX_LISTED} more files")
    return tuple(lines)


def strip_privileges(fs: SafeFS, paths: Iterable[str]) -> list[Privileged]:
    """Take set-id bits and file capabilities away from the regular files at `paths`."""
    found: list[Privileged] = []
    for path in paths:
        if not path:
            continue  # the workspace root: a directory
        try:
            pfd = fs.open_path(path)  # opens up a directory goexd owns and may not enter
        except _GONE:
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:  # an ancestor is a symlink now: not a workspace file
                continue
            raise
        try:
            hit = _check(pfd, path)
        finally:
            os.close(pfd)
        if hit is not None:
            found.append(hit)
        fs.trim()
    return found


def _check(pfd: int, path: str) -> Privileged | None:
    st = os.fstat(pfd)
    if not stat.S_ISREG(st.st_mode):
        return None
    proc = f"/proc/self/fd/{pfd}"
    perm = stat.S_IMODE(st.st_mode)
    capability = _has_capability(proc)
    if not perm & SETID and not capability:
        return None
    try:
        if capability:
            os.chown(proc, -1, -1)
        if stat.S_IMODE(os.stat(proc).st_mode) & SETID:
            os.chmod(proc, perm & ~SETID)
    except OSError as e:
        return Privileged(path, perm, capability, st.st_nlink, left=f"{e.strerror} (goexd runs as uid {os.geteuid()})")
    after = os.stat(proc)
    left = []
    if stat.S_IMODE(after.st_mode) & SETID:
        left.append(f"mode is still {stat.S_IMODE(after.st_mode):04o}")
    if _has_capability(proc):
        left.append("the capability is still there")
    return Privileged(path, perm, capability, st.st_nlink, left="; ".join(left))


def _has_capability(proc_path: str) -> bool:
    try:
        os.getxattr(proc_path, CAPABILITY_XATTR)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise
    return True
