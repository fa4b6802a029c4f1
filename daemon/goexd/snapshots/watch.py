"""Which workspace paths changed since the last look, from inotify.

No thread: the kernel queues events while nobody reads, and a write's event is queued
before the writing syscall returns, so draining the fd at capture time sees every
change made so far. inotify is not recursive, so every directory gets a watch; a
directory that appears (created or moved in) is watched and then listed, and all of
its content reported, since files may have been created in it before the watch.
Whenever the tracker cannot be sure (queue overflow, the root itself moved or
deleted, out of watches, a directory it may not read) it answers "unknown" and the
caller rescans everything.

Nested repositories' .git directories are watched like any other (a `git status` there
rewrites its index: one file re-read); the workspace's own top-level .git is not.

Watching and listing a directory needs read access to it and search access above it:
where that is refused, the caller's `open_up(rel)` may grant it (SafeFS.open_up_dir,
for a directory goexd owns) and the tracker tries once more.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inotify_simple import INotify
from inotify_simple import flags as F

from goexd.snapshots.layout import TOP_GIT, is_under, join

_EVENTS = (
    F.CREATE | F.DELETE | F.MODIFY | F.CLOSE_WRITE | F.ATTRIB | F.MOVED_FROM | F.MOVED_TO | F.DELETE_SELF | F.MOVE_SELF
)
_MASK = _EVENTS | F.ONLYDIR | F.DONT_FOLLOW
# A writer that never pauses must not keep capture() draining forever; what is left
# stays queued for the next capture.
_MAX_READS = 256

# Gives goexd's user read access to directory rel (and search access above it) where it
# may; whether it changed anything.
OpenUp = Callable[[str], bool]


@dataclass
class Dirty:
    """Paths that may differ from the last capture ("" is the root directory).

    `subtrees` are directories that appeared whole: whatever was recorded under them
    before is stale, and everything now under them is also in `paths`.
    """

    paths: set[str] = field(default_factory=set)
    subtrees: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.paths or self.subtrees)


class DirtyTracker:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._ino: INotify | None = None
        self._paths: dict[int, str] = {}  # watch descriptor -> relative dir path
        self._sure = False
        self._broken = False  # out of watches: stay in "unknown" until closed
        self._pending: Dirty | None = None  # read by settle(), for the next drain()

    @property
    def usable(self) -> bool:
        return not self._broken

    def arm(self, open_up: OpenUp) -> None:
        """(Re)start watching every directory. Changes made after this returns are
        reported by drain(); the caller rescans the tree for anything before."""
        self._close_fd()
        if self._broken:
            return
        self._ino = INotify(nonblocking=True)
        self._sure = self._watch_tree("", set(), open_up)
        if not self._sure:
            self._close_fd()

    def invalidate(self) -> None:
        """Make the next drain() answer "unknown" (the caller lost track)."""
        self._sure = False

    def drain(self, open_up: OpenUp) -> Dirty | None:
        """Changes since the previous drain or arm, or None for "unknown"."""
        dirty, self._pending = self._pending or Dirty(), None
        if self._ino is None or not self._sure or not self._read(dirty, open_up):
            return None
        return dirty

    def settle(self, own: Callable[[str], bool]) -> None:
        """Read what is queued now for the next drain(), leaving out attribute-only events
        on paths `own` vouches for: the modes a capture just gave back (safefs.py), which
        would make every later capture read those entries again."""
        if self._ino is None or not self._sure:
            return
        self._pending = self._pending or Dirty()
        if not self._read(self._pending, _no_open_up, own):
            self._pending = None

    def _read(self, dirty: Dirty, open_up: OpenUp, own: Callable[[str], bool] | None = None) -> bool:
        """Queued events into `dirty`; False when the tracker lost track."""
        assert self._ino is not None
        moved_out: list[int] = []
        for _ in range(_MAX_READS):
            events = self._ino.read(timeout=0)
            if not events:
                break
            for ev in events:
                if own is not None and ev.mask & ~F.ISDIR == F.ATTRIB and self._vouched(ev.wd, ev.name, own):
                    continue
                if not self._handle(ev.wd, ev.mask, ev.name, dirty, moved_out, open_up):
                    self._sure = False
                    return False
        # Watches of directories that left the workspace (a move without a matching
        # move-in, re-watched above) would keep reporting outside paths.
        for wd in moved_out:
            if wd not in self._paths:
                with contextlib.suppress(OSError):  # already gone with its directory
                    self._ino.rm_watch(wd)
        return True

    def _vouched(self, wd: int, name: str, own: Callable[[str], bool]) -> bool:
        base = self._paths.get(wd)
        return base is not None and own(join(base, name) if name else base)

    def close(self) -> None:
        self._close_fd()

    # -- internals -----------------------------------------------------------------

    def _handle(self, wd: int, mask: int, name: str, dirty: Dirty, moved_out: list[int], open_up: OpenUp) -> bool:
        if mask & F.Q_OVERFLOW:
            return False
        if mask & F.IGNORED:
            self._paths.pop(wd, None)
            return True
        base = self._paths.get(wd)
        if base is None:
            return True  # a watch we dropped: its directory moved out or was removed
        if mask & (F.DELETE_SELF | F.MOVE_SELF | F.UNMOUNT):
            # For a subdirectory the parent's event already names the path.
            return base != ""
        if not name:
            dirty.paths.add(base)  # e.g. chmod of a watched directory
            return True
        if not base and name == TOP_GIT:
            return True  # the workspace's own: never snapshotted
        rel = join(base, name)
        dirty.paths.add(rel)
        if mask & F.ISDIR:
            if mask & F.MOVED_FROM:
                moved_out.extend(self._drop_watches(rel))
            elif mask & (F.CREATE | F.MOVED_TO):
                dirty.subtrees.add(rel)
                # A move inside the workspace keeps the inodes' watches: add_watch
                # returns the same descriptors, now filed under the new path.
                return self._watch_tree(rel, dirty.paths, open_up)
        return True

    def _drop_watches(self, top: str) -> list[int]:
        wds = [wd for wd, rel in self._paths.items() if is_under(rel, top)]
        for wd in wds:
            del self._paths[wd]
        return wds

    def _watch_tree(self, top: str, found: set[str], open_up: OpenUp) -> bool:
        """Watch top and every directory below it, then list it into `found`."""
        assert self._ino is not None
        ino = self._ino
        stack = [top]
        while stack:
            rel = stack.pop()
            path = os.path.join(self._root, rel) if rel else str(self._root)
            # The root may itself be a symlink (e.g. /home -> /data/home).
            mask = _MASK if rel else _EVENTS | F.ONLYDIR
            try:
                try:
                    wd = ino.add_watch(path, mask)
                except PermissionError:
                    if not open_up(rel):
                        raise
                    wd = ino.add_watch(path, mask)
            except OSError as e:
                if rel and e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # gone or replaced meanwhile: the parent's events say so
                if e.errno == errno.ENOSPC:
                    self._broken = True  # fs.inotify.max_user_watches reached
                return False
            self._paths[wd] = rel
            found.add(rel)
            try:
                try:
                    entries = os.scandir(path)
                except PermissionError:
                    if not open_up(rel):
                        return False  # not goexd's: the full scan names it
                    entries = os.scandir(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    if not rel and entry.name == TOP_GIT:
                        continue
                    child = join(rel, entry.name)
                    found.add(child)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(child)
        return True

    def _close_fd(self) -> None:
        if self._ino is not None:
            self._ino.close()
            self._ino = None
        self._paths.clear()
        self._sure = False
        self._pending = None


def _no_open_up(rel: str) -> bool:
    return False
