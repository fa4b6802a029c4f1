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
  unchanged files.
- `restore(s)` makes the workspace exactly `s` and verifies it (raises if not), owners
  included where the daemon may set them; where it may not (it is not root), the entry
  keeps the daemon's owner, gets no set-id bits, and is named in the report.
- `strip_privileges(old, new)` takes set-id bits and file capabilities away from the
  regular files that changed between two snapshots (see privileges.py).
- Nothing here touches the workspace's own `.git`.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from goexd.snapshots.privileges import Privileged


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
class RestoreReport:
    unowned: tuple[Unowned, ...] = ()

    def describe(self, limit: int = 10) -> str:
        """ "" when everything was restored as recorded."""
        if not self.unowned:
            return ""
        shown = ", ".join(
            f"{u.path or '.'} (recorded {u.owner[0]}:{u.owner[1]} mode {u.perm:04o})" for u in self.unowned[:limit]
        )
        more = f" and {len(self.unowned) - limit} more" if len(self.unowned) > limit else ""
        count = f"{len(self.unowned)} entr{'y' if len(self.unowned) == 1 else 'ies'}"
        return (
            f"could not restore the owner of {count} (goexd runs as uid {os.geteuid()}): "
            f"{shown}{more}; they are owned by goexd's user, without set-id bits"
        )


class SnapshotError(Exception):
    """The store is damaged or a restore could not be verified."""


class WorkspaceSnapshotter(Protocol):
    def capture(self) -> Snapshot: ...

    def changes(self, old: Snapshot, new: Snapshot, limit: int = 1000) -> ChangeSet: ...

    def restore(self, snapshot: Snapshot) -> RestoreReport: ...

    def strip_privileges(self, old: Snapshot, new: Snapshot) -> tuple[Snapshot, tuple[Privileged, ...]]: ...

    def pin(self, name: str, snapshot: Snapshot) -> None: ...

    def unpin(self, name: str) -> None: ...

    def pinned(self) -> dict[str, Snapshot]: ...

    def close(self) -> None: ...
