"""A root goexd mounts its runs' overlays itself: mount(2), no fork, in a private dir of its own.

The launch prefix (overlay.launch_prefix: `unshare`, a shell, a forked util-linux `mount`) costs
~3.5 ms a run; a mount(2) from the daemon ~0.5 ms and its umount ~0.1. So a root goexd mounts each
run's overlay in its own mount namespace, on a fresh directory below its mount dir, and bwrap binds
that directory at /workspace and at the workspace's real path, as it binds the workspace itself
under direct isolation. Nothing is ever mounted on the workspace's own path: a person's workspace is
never shadowed, whenever goexd dies.

The mount dir is `$TMPDIR/goexd-mounts-<owner>-XXXXXXXX` (`owner`: the state dir's key,
sandbox/reaper.py), not inside the 0700 state dir: bwrap resolves a bind's source as the command's
identity (the workspace's owner), who must be able to reach it. The mount dir is 0711 (reachable,
not listable), each run's dir in it a random name that the mount table shows anyone, so it is
root's, 0700, with an ACL entry that lets the workspace's owner search it and do nothing else: only
they and root reach the overlay, as they reach the workspace (and they cannot fill the mount dir).
The mount dir is a small tmpfs of its own (its dirs cost no disk journal, ~1 ms a run on a busy
disk) with private propagation, so no run's mount propagates to another mount namespace (systemd
makes / shared: every namespace cloned from it would get a copy, and keep it when the umount here
does not reach it).

Nothing outlives the daemon for long: a run's overlay is unmounted (MNT_DETACH) as soon as bwrap
exits, and the next start of the same state dir (`clear_left`, before recovery and the overlay
probe) unmounts whatever a killed goexd left, found in the mount table by the mount dir's name
wherever $TMPDIR was, and removes the dirs. A mount left after a kill until then holds only goexd's
own upper and the workspace as its lower; removing directories never crosses a mount point.

The detached mounts of the new mount API (fsopen/fsmount: held by a descriptor, gone with the last
one, so nothing to clean) do not work with bubblewrap: it resolves a bind's source with realpath(3),
and /proc/self/fd/N of a detached mount resolves to "/", so `--bind-fd` stops ("Race condition
binding dirfd") and `--bind /proc/self/fd/N` binds the host's root instead (bubblewrap 0.8 and its
current source; tried on 6.18).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from goexd import faults
from goexd.domain.sandbox import WorkspaceOverlay
from goexd.sandbox import overlay
from goexd.sandbox.identity import RunAs

log = logging.getLogger(__name__)

PREFIX = "goexd-mounts-"
MOUNT_POINT = "ws"  # in each run's dir; the run's dir itself is what keeps others out
FAULT_TAG = "fs-versioned"  # the resource the fault point serves (goexd/faults.py); trials' runs reach it too

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x40000
# The mount dir holds empty dirs only (2 a run): a tmpfs, so making and removing them costs no disk journal.
TMPFS_OPTIONS = b"mode=0711,size=64k,nr_inodes=65536"
_MNT_DETACH, _UMOUNT_NOFOLLOW = 0x2, 0x8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    if _libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(target))


def _umount(target: bytes) -> None:
    if _libc.umount2(target, _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(target))


class OverlayMounts:
    """The mount dir of one root goexd (see the module doc). `open` it at start, `close` it at stop."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def open(cls, owner: str, tmp: Path | None = None) -> OverlayMounts:
        """Clear what an earlier start of `owner` left (`clear_left`), then make a fresh private mount dir."""
        clear_left(owner, tmp)
        base = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner}-", dir=tmp))
        try:
            raw = os.fsencode(base)
            _mount(b"goex-mounts", raw, b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, TMPFS_OPTIONS)
            _mount(None, raw, None, _MS_PRIVATE, None)
        except OSError:
            _remove(base)
            raise
        return cls(base)

    @contextlib.contextmanager
    def mounted(self, lower: Path, spec: WorkspaceOverlay, run_as: RunAs) -> Iterator[Path]:
        """The overlay of `lower` with `spec`'s layers, mounted while the block runs; yields where."""
        options = overlay.mount_options(lower, spec, privileged=True).encode()
        run = self.base / secrets.token_hex(8)
        run.mkdir(mode=0o700)
        try:
            if run_as.uid != 0:
                _let_cross(run, run_as)
            point = run / MOUNT_POINT
            point.mkdir(mode=0o700)
            # Flags on the mount itself, whatever bwrap adds: nothing set-id or a device through this path.
            try:
                _mount(b"goex-overlay", os.fsencode(point), b"overlay", _MS_NOSUID | _MS_NODEV, options)
            except OSError as e:
                raise OSError(e.errno, f"{overlay.MOUNT_FAILED} ({e.strerror})") from None
            try:
                faults.point("fs-overlay-mounted", FAULT_TAG)
                yield point
            finally:
                try:
                    _umount(os.fsencode(point))
                except OSError as e:  # the run's result stands; close() or the next start tries again
                    log.error("cannot unmount the overlay at %s: %s", point, e.strerror)
        finally:
            _remove(run, anyones=True)

    def close(self) -> None:
        """Unmount every run's overlay still here and the mount dir itself, and remove it (at stop)."""
        _unmount_under(os.fsencode(self.base))
        _remove(self.base)


def _let_cross(run: Path, who: RunAs) -> None:
    """Let the workspace's owner (bwrap, as them) through the run's dir, and nobody else but root: a POSIX ACL
    entry granting them search alone (they cannot list it, nor make anything in it that would fill the mount
    dir). Where the mount dir's tmpfs has no ACLs, the dir is given to them instead (they could then fill it)."""
    try:
        os.setxattr(run, "system.posix_acl_access", _search_acl(who.uid))
    except OSError as e:
        log.debug("no ACL on %s (%s): the run's dir is given to uid %d", run, e.strerror, who.uid)
        os.chown(run, who.uid, who.gid)


def _search_acl(uid: int) -> bytes:
    """The kernel's binary form of the ACL u::rwx,u:UID:--x,g::---,m::--x,o::--- (linux/posix_acl_xattr.h)."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x02, 1, uid), (0x04, 0, undefined), (0x10, 1, undefined), (0x20, 0, undefined)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, who) for tag, perm, who in entries)


def clear_left(owner: str, tmp: Path | None = None, prefix: str = PREFIX) -> list[str]:
    """Unmount what earlier starts of `owner` left mounted (found in the mount table by the mount dir's
    name, wherever it was) and remove their mount dirs (those in `tmp`, $TMPDIR by default, and those the
    mount table named); returns the mount points unmounted. Only one goexd holds a state dir: none of
    these is in use. `prefix`: whose mount dirs (the container backend's slots have their own)."""
    name = f"{prefix}{owner}-".encode()
    bases: set[bytes] = set()
    for point in mount_points():
        head, sep, tail = point.partition(b"/" + name)
        if sep:
            bases.add(head + sep + tail.split(b"/", 1)[0])
    unmounted: list[str] = []
    for base in sorted(bases):
        unmounted += [os.fsdecode(p) for p in _unmount_under(base)]
    for where in unmounted:
        log.warning("unmounted %s, left mounted by an earlier goexd run", where)
    here = Path(tmp) if tmp is not None else Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        bases.update(os.fsencode(e.path) for e in os.scandir(here) if e.name.encode().startswith(name))
    for base in sorted(bases):
        _remove(Path(os.fsdecode(base)))
    return unmounted


def mount_points() -> list[bytes]:
    """Every mount point of this mount namespace, as the kernel spells it (octal escapes undone)."""
    with open("/proc/self/mountinfo", "rb") as f:
        return [_unescape(line.split(b" ")[4]) for line in f]


def _unmount_under(base: bytes) -> list[bytes]:
    """Unmount everything at or below `base`, deepest first; the mount points unmounted."""
    inside = [p for p in mount_points() if p == base or p.startswith(base + b"/")]
    done: list[bytes] = []
    for point in sorted(set(inside), key=len, reverse=True):
        try:
            _umount(point)
            done.append(point)
        except OSError as e:
            log.error("cannot unmount %s: %s", os.fsdecode(point), e.strerror)
    return done


def _remove(path: Path, anyones: bool = False) -> None:
    """rm -r a mount dir, or a run's dir (`anyones`: it may have been given to the workspace's owner),
    unless something is still mounted in it (it is then left, and said): never delete through a mount,
    whose files are the workspace's."""
    raw = os.fsencode(path)
    if any(p == raw or p.startswith(raw + b"/") for p in mount_points()):
        log.error("%s still holds a mount: left in place", path)
        return
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode) or (st.st_uid != os.geteuid() and not anyones):
        return  # not one of ours ($TMPDIR is anyone's)
    shutil.rmtree(path, ignore_errors=True)


def _unescape(field: bytes) -> bytes:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if b"\\" not in field:
        return field
    out, i = bytearray(), 0
    while i < len(field):
        if field[i] == 0x5C and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)
