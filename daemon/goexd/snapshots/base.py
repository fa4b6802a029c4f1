"""The workspace snapshotter seam (cf. containerd's Snapshotter).

Words: a *snapshot* is an immutable, content-addressed capture of a workspace tree
(every file byte, file mode, symlink target and directory, including empty ones and
ignored files; never the workspace's own top-level `.git`). Its id is stable: two
captures of identical trees have the same id. A *pin* is a named reference that keeps
a snapshot from garbage collection; an action pins its pre-action snapshot until it is
committed or undone.

Rules:
- `capture()` is cheap after the first call: it writes only what changed since the last
  capture (changes made by anyone, the user included), found without rehashing
  unchanged files.
- `restore(s)` makes the workspace exactly `s` and verifies it (raises if not).
- Nothing here touches the workspace's own `.git`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


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
    modified: int  # modified + type_changed + mode_changed
    deleted: int
    truncated: bool

    @property
    def total(self) -> int:
        return self.added + self.modified + self.deleted


@dataclass(frozen=True)
class Snapshot:
    id: str  # stable content id


class SnapshotError(Exception):
    """The store is damaged or a restore could not be verified."""


class WorkspaceSnapshotter(Protocol):
    def capture(self) -> Snapshot: ...

    def changes(self, old: Snapshot, new: Snapshot, limit: int = 1000) -> ChangeSet: ...

    def restore(self, snapshot: Snapshot) -> None: ...

    def pin(self, name: str, snapshot: Snapshot) -> None: ...

    def unpin(self, name: str) -> None: ...

    def pinned(self) -> dict[str, Snapshot]: ...

    def close(self) -> None: ...
