"""The workspace snapshotter seam (cf. containerd's Snapshotter).

Words: a *snapshot* is an immutable, content-addressed capture of a workspace tree
(every file byte, full permission bits, owner, symlink target and directory, including
empty ones and ignored files; never the workspace's own top-level `.git`). Its id is stable: two
captures of identical trees have the same id. A *pin* is a named reference that keeps
a snapshot from garbage collection; an action pins its pre-action snapshot until it is
committed or undone.

Rules:
- `capture()` is cheap after the first call: it writes only what changed since the last
  capture (changes made by anyone, the user included), found without rehashing
  unchanged files. Whatever modes the daemon's user left on what it owns, it is read (and
  every mode given back as found); what that user may not read and does not own raises
  UnreadableEntries naming it, or is left out with `lenient`.
- `restore(s)` makes the workspace exactly `s` and verifies it (raises if not), owners
  included where the daemon may set them; where it may not (it is not root), the entry
  keeps the daemon's owner, gets no set-id bits, and is named in the report. What the
  daemon's user may not read and does not own stays as it is (with the directories
  holding it) and is named in the report too.
- `strip_privileges(old, new)` takes set-id bits and file capabilities away from the
  regular files that changed between two snapshots (see privileges.py).
- Nothing here touches the workspace's own `.git`.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from goexd.domain.names import display_path


class ChangeKind(enum.StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    TYPE_CHANGED = "type_changed"
    MODE_CHANGED = "mode_changed"


@dataclass(frozen=True)
class FileChange:
    kind: ChangeKind
    path: str  # relative; directories end with "/"
    old_mode: int = 0  # full st_mode, 0 when absent
    new_mode: int = 0
    runs_code: bool = False  # a path tools may execute or obey later (code_paths.py)


@dataclass(frozen=True)
class ChangeSet:
    changes: tuple[FileChange, ...]  # capped; sorted by path
    added: int
    modified: int  # modified + type_changed + mode_changed (permission bits or owner)
    deleted: int
    truncated: bool
    # What the daemon itself changed after the action (set-id bits and file capabilities
    # it took away), in words; capped.
    warnings: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.added + self.modified + self.deleted


@dataclass(frozen=True)
class Snapshot:
    id: str  # stable content id


@dataclass(frozen=True)
class Unowned:
    """An entry restored without its recorded owner, which the daemon may not set."""

    path: str
    owner: tuple[int, int]  # uid, gid as recorded
    perm: int  # as recorded; restored without its set-id bits


@dataclass(frozen=True)
class Unreadable:
    """An entry goexd's user may not read (or enter) and cannot open up (it is not its
    own): it cannot be snapshotted, and a restore leaves it as it is."""

    path: str  # relative, never "" (the root)
    is_dir: bool
    detail: str  # its owner and mode, or the error

    def describe(self) -> str:
        return f"{display_path(self.path)}{'/' if self.is_dir else ''} ({self.detail})"


@dataclass(frozen=True)
class RestoreReport:
    unowned: tuple[Unowned, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()  # left as they were

    def describe(self, limit: int = 10) -> str:
        """ "" when everything was restored as recorded."""
        parts = []
        if self.unowned:
            shown = ", ".join(
                f"{display_path(u.path) or '.'} (recorded {u.owner[0]}:{u.owner[1]} mode {u.perm:04o})"
                for u in self.unowned[:limit]
            )
            parts.append(
                f"could not restore the owner of {_entries(len(self.unowned))} (goexd runs as uid {os.geteuid()}): "
                f"{shown}{_more(len(self.unowned), limit)}; they are owned by goexd's user, without set-id bits"
            )
        if self.unreadable:
            n = len(self.unreadable)
            parts.append(
                f"left {_entries(n)} as {'it was' if n == 1 else 'they were'}, which goexd's user "
                f"(uid {os.geteuid()}) may not read and cannot open up: {_shown(self.unreadable, limit)}"
            )
        return "; ".join(parts)


class SnapshotError(Exception):
    """The store is damaged or a restore could not be verified."""


class PartlyWritten(SnapshotError):
    """A restore or revert failed after it began writing the workspace: some paths are written, others not."""


class NoRoom(SnapshotError):
    """A restore or revert would not fit on the workspace's filesystem: refused before anything was written."""

    def __init__(self, root: Path, needed: int, free: int) -> None:
        self.root = root
        self.needed = needed
        self.free = free
        super().__init__(f"writing it needs about {needed} bytes on the filesystem of {root}, which has {free} free")


class RevertConflict(SnapshotError):
    """Paths changed since the state a revert expected: nothing was written."""

    def __init__(self, paths: tuple[str, ...], current: Snapshot) -> None:
        self.paths = paths
        self.current = current
        shown = ", ".join(p or "." for p in paths[:20]) + _more(len(paths), 20)
        super().__init__(f"changed since: {shown}")


class UnreadableEntries(SnapshotError):
    """The workspace holds entries goexd's user may not read and cannot open up."""

    def __init__(self, entries: tuple[Unreadable, ...]) -> None:
        self.entries = entries
        them = "it" if len(entries) == 1 else "them"
        super().__init__(
            f"goexd's user (uid {os.geteuid()}) may not read {_entries(len(entries))} and cannot open {them} up, "
            f"so goexd cannot snapshot {them}: {_shown(entries, 10)}"
        )


def _shown(entries: tuple[Unreadable, ...], limit: int) -> str:
    return ", ".join(e.describe() for e in entries[:limit]) + _more(len(entries), limit)


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _more(count: int, limit: int) -> str:
    return f" and {count - limit} more" if count > limit else ""


class WorkspaceSnapshotter(Protocol):
    """A workspace's snapshot store.

    Words: a *snapshot* is content-addressed: its id is a function of the tree (names as bytes, content, type,
    mode, symlink target, empty directories, owner), so the same tree always gives the same id and any
    difference another; a *pin* is a name that keeps a snapshot from garbage collection.

    Rules (tests/conformance/snapshot_suite.py, for each change detection): capture() sees anyone's changes;
    changes() is exact, sorted, counted and capped; restore() writes back exactly the snapshot and verifies it by
    content id (restoring the current state writes nothing; an unknown id is refused); pin() and unpin() are
    idempotent and survive reopening the store; the workspace's own top-level .git is never captured or touched.
    """

    def capture(self, *, lenient: bool = False) -> Snapshot: ...

    def changes(self, old: Snapshot, new: Snapshot, limit: int = 1000) -> ChangeSet: ...

    def restore(self, snapshot: Snapshot) -> RestoreReport: ...

    def strip_privileges(self, old: Snapshot, new: Snapshot) -> tuple[Snapshot, tuple[Privileged, ...]]: ...

    def pin(self, name: str, snapshot: Snapshot) -> None: ...

    def unpin(self, name: str) -> None: ...

    def pinned(self) -> dict[str, Snapshot]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class KeepAs:
    """Whose and why, for a set-aside a forced revert records before it overwrites anything."""

    action_id: str  # "" when no action did it (bringing back a set-aside)
    reason: str


@dataclass(frozen=True)
class SetAside:
    id: str
    action_id: str
    created: float  # unix time
    reason: str
    paths: tuple[str, ...]
    source: Snapshot  # holds the kept versions
    after: Snapshot  # what replaced them


CAPABILITY_XATTR = "security.capability"
SETID = stat.S_ISUID | stat.S_ISGID
_SETID_NAMES = ((stat.S_ISUID, "set-user-ID"), (stat.S_ISGID, "set-group-ID"))


@dataclass(frozen=True)
class Privileged:
    """A regular file found with set-id bits or a file capability, and what was done."""

    path: str
    perm: int  # its permission bits as found
    capability: bool  # it had a security.capability attribute
    links: int  # its hard-link count
    left: str = ""  # what could not be taken away, and why ("" when all was)

    def describe(self) -> str:
        bits = [name for bit, name in _SETID_NAMES if self.perm & bit]
        what = [f"{' and '.join(bits)} bit"] if bits else []
        if self.capability:
            what.append(f"file capability ({CAPABILITY_XATTR})")
        subject = f"the {' and the '.join(what)} of {display_path(self.path)}"
        if self.left:
            return f"FAILED to remove {subject}: {self.left}"
        text = f"removed {subject}"
        if bits:
            text += f" (mode {self.perm:04o} -> {self.perm & ~SETID:04o})"
        if self.links > 1:
            text += f"; the file has {self.links} hard links, which all lost them"
        return text
