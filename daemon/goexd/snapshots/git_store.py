"""The `versioned` undo strategy's store: workspace snapshots in a private git dir.

A snapshot is a root tree {w: workspace tree, m: metadata tree} (see layout.py); its
id is that tree's id, so identical workspaces give identical ids. Two indexes stay in
memory between captures, one per subtree, so a capture re-hashes only what changed
and libgit2 rewrites only the trees above it:

- watch=True: inotify names the changed paths (watch.py); only those are re-read.
- a full scan (the first capture, after inotify lost track, or always with
  watch=False): `git add -A -f` with git's stat cache plus a walk for the metadata.

restore() diffs the current snapshot against the target (O(changed)), applies just
those differences and verifies by capturing again. The workspace's own top-level .git
is never read or written. Every other name git refuses (a nested repository's .git,
".GIT", "git~1") is held under an escaped name (layout.store_name()), staged by goexd
rather than `git add`, and read back unescaped wherever a path leaves the store
(treediff.py), so it is captured, restored and reverted like any other entry.

Owners are captured (layout.py) and restored where the daemon may set them (apply.py).

An unprivileged goexd opens up, for the length of one capture or restore, what it owns
and may not read, enter or write (safefs.py), and records modes as found. What it does
not own and may not read cannot be snapshotted: capture() refuses (UnreadableEntries,
naming it), and restore() leaves it, and the directories holding it, as they are and
says so in its report.

Not captured: the top-level .git, a symlinked .gitmodules, FIFOs, sockets and devices,
timestamps, xattrs (file capabilities included: a restore never recreates one) and
hard-link identity. restore() leaves such entries alone unless it removes a directory
that the target lacks, which takes them along. Renaming a directory re-reads its files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pygit2
from pygit2.enums import DeltaStatus, FileMode

from goexd import faults
from goexd.domain import code_paths
from goexd.domain.code_paths import runs_code_later
from goexd.domain.snapshots import (
    SETID,
    ChangeKind,
    ChangeSet,
    FileChange,
    KeepAs,
    PartlyWritten,
    Privileged,
    RestoreReport,
    RevertConflict,
    SetAside,
    Snapshot,
    SnapshotError,
    Unowned,
    Unreadable,
    UnreadableEntries,
)
from goexd.snapshots import set_aside
from goexd.snapshots.apply import apply_changes
from goexd.snapshots.gitrepo import VanishedDuringAdd, add_all, open_repo, remove_leftovers
from goexd.snapshots.layout import (
    META,
    SELF,
    WORK,
    Meta,
    Owner,
    decode_owner,
    dir_meta,
    encode_meta,
    encode_owner,
    entry_meta,
    escape,
    is_under,
    meta_dir_key,
    meta_file_key,
    parent_of,
    parse_meta_key,
    storable,
    store_path,
    workspace_path,
)
from goexd.snapshots.objects import BlobStore, FileShrank
from goexd.snapshots.overlay_upper import UpperChanges, read_upper
from goexd.snapshots.privileges import strip_privileges
from goexd.snapshots.replay import with_undos
from goexd.snapshots.room import check_room
from goexd.snapshots.safefs import NotRegularFile, Opened, SafeFS, close_up_left, remove_temporaries
from goexd.snapshots.scan import TreeScan, scan_tree, scan_workspace
from goexd.snapshots.threeway import RevertPlan, plan_revert
from goexd.snapshots.tree_edit import edit_snapshot
from goexd.snapshots.treediff import DIR, FILE, Change, Entry, MetaReader, SnapshotTrees, diff, has_files_below, load
from goexd.snapshots.watch import Dirty, DirtyTracker

PIN_PREFIX = "refs/goex/"
# The state found by the latest restore, kept reachable even if the caller forgot to
# pin it (outside PIN_PREFIX, so pinned() does not list it).
PRE_RESTORE_REF = "refs/goexd/pre-restore"
# The owner metadata entries leave out (layout.py), set once per store.
DEFAULT_OWNER_KEY = "goex.defaultOwner"
# In the git dir: the modes a capture or restore opened up, until it gives them back.
OPENED_JOURNAL = "goex-opened"
# In the git dir while a restore or revert writes: the workspace dirs it writes in, whose temporaries a kill
# leaves there (safefs.TEMP_PREFIX) are cleared when the store is next opened.
WRITING_JOURNAL = "goex-writing"

# The fault points here (goexd/faults.py) are tagged as the resource this store serves.
FAULT_TAG = "fs-versioned"

log = logging.getLogger(__name__)

_GONE = (FileNotFoundError, NotADirectoryError)
_READ_ATTEMPTS = 3
# A file read this soon after its last change is not remembered as read (see _remember): a change
# in the same tick of the kernel's coarse clock could leave its times as they were.
_RACY_NS = 100_000_000
_ADD_ATTEMPTS = 8


_FOLLOWED_PATHS = 10_000  # a capture that re-read more is not followed (touched_since): a walk is as cheap


def store_dir_for(snapshots_dir: Path, workspace: Path) -> Path:
    """One snapshot repository per workspace path, reused across sessions (its stat cache too)."""
    digest = hashlib.sha256(str(workspace).encode()).hexdigest()[:16]
    return snapshots_dir / f"{digest}.git"


class GitWorkspaceStore:
    def __init__(self, git_dir: Path, workspace: Path, *, watch: bool = True) -> None:
        self._git_dir = Path(git_dir)
        self._root = Path(workspace)
        if not self._root.is_dir():
            raise SnapshotError(f"workspace {self._root} is not a directory")
        self._repo = open_repo(self._git_dir)
        self._journal = self._git_dir / OPENED_JOURNAL
        try:
            close_up_left(self._root, self._journal)  # goexd was killed in the middle of one
        except OSError as e:
            raise SnapshotError(f"cannot give back the modes {self._journal} lists: {e}") from e
        self._writing_journal = self._git_dir / WRITING_JOURNAL
        self._clear_temporaries()  # what a kill in the middle of a write left
        self._owner = _default_owner(self._repo, self._root)
        self._blobs = BlobStore(self._repo, self._git_dir)
        self._metas = MetaReader(self._repo, self._owner)
        self._index = _open_index(self._git_dir / "index")
        self._index_dirty = False  # in-memory changes the git CLI has not seen
        self._meta = pygit2.Index()  # in memory only: a full scan rebuilds it
        self._meta_map: dict[str, Meta] | None = None  # mirror of _meta, after full scans
        self._meta_oids: dict[Meta, pygit2.Oid] = {}
        self._tracker = DirtyTracker(self._root) if watch else None
        self._last: tuple[pygit2.Oid, pygit2.Oid, Snapshot] | None = None
        # What the latest capture re-read (inotify's dirty set) and the snapshot it started
        # from; None after a full scan.
        self._touched: tuple[Snapshot, set[str]] | None = None
        # The latest captures' dirty sets, for what follows changes no snapshot holds (fs_xattrs): (capture number,
        # the snapshot it started from, the paths it re-read, the snapshot it made); None paths: a full scan.
        self._captures = 0
        self._recent: deque[tuple[int, Snapshot | None, frozenset[str] | None, Snapshot]] = deque(maxlen=32)
        # What the latest capture could not read (lenient captures only; see restore()).
        self._unreadable: tuple[Unreadable, ...] = ()
        self._capture_fs: SafeFS | None = None  # see _capture_batch()
        self._lock = threading.RLock()
        self._closed = False
        self._full_scans = 0
        self._linked = False  # the latest incremental capture re-read a file with more than one name
        # Files with more than one name (scan.TreeScan.linked): re-stated at every capture, since a write through
        # a name outside the workspace raises no event here (issue 14 F6).
        self._links: dict[str, tuple[int, int, int]] = {}
        # Files goexd stages itself (nested repositories, escaped names; git's stat cache does not cover
        # them): their stat when read and content id, this full scan's and the previous one's, so a full
        # scan re-reads only those that changed.
        self._own_stat: dict[str, tuple[_StatKey, pygit2.Oid]] = {}
        self._own_prev: dict[str, tuple[_StatKey, pygit2.Oid]] = {}

    @property
    def git_dir(self) -> Path:
        return self._git_dir

    @property
    def full_scans(self) -> int:
        """How many captures rescanned the whole workspace (for tests and benchmarks)."""
        return self._full_scans

    # -- protocol ------------------------------------------------------------------

    def capture(self, *, lenient: bool = False) -> Snapshot:
        """The workspace's snapshot. Entries goexd may not read and does not own raise
        UnreadableEntries, or with `lenient` are left out of it."""
        with self._session():
            return self._capture(lenient)

    def changes(self, old: Snapshot, new: Snapshot, limit: int = 1000) -> ChangeSet:
        with self._session():
            old_trees, new_trees = load(self._repo, old.id), load(self._repo, new.id)
            found: list[FileChange] = []
            for path, (o, n) in diff(self._repo, old_trees, new_trees, self._metas).items():
                change = _change(path, o, n)
                if change is None:
                    continue
                # A directory that gains or loses files is implied by those files.
                if change.kind == ChangeKind.ADDED and n is not None and n.kind == DIR:
                    implied = has_files_below(new_trees.work, path)
                elif change.kind == ChangeKind.DELETED and o is not None and o.kind == DIR:
                    implied = has_files_below(old_trees.work, path)
                else:
                    implied = False
                if not implied:
                    found.append(change)
        found.sort(key=lambda c: os.fsencode(c.path))  # by name bytes, as git orders them
        kinds = [c.kind for c in found]
        added = kinds.count(ChangeKind.ADDED)
        deleted = kinds.count(ChangeKind.DELETED)
        code = [c.path for c in found if c.runs_code]
        return ChangeSet(
            changes=tuple(found[: max(limit, 0)]),
            added=added,
            modified=len(found) - added - deleted,
            deleted=deleted,
            truncated=len(found) > limit,
            warnings=(code_paths.warning(code),) if code else (),
        )

    def touched_since(self, captures: int) -> tuple[int, list[tuple[Snapshot, frozenset[str], Snapshot]] | None]:
        """The number of captures so far, and what each capture after the `captures`-th re-read, in order: the
        snapshot it started from, the paths of inotify's dirty set, the snapshot it made. None when one of them was
        a full scan, failed, or is no longer kept. What changes no snapshot (an extended attribute) is among those
        paths too: resources/fs/xattrs.py follows them."""
        with self._session():
            steps = [r for r in self._recent if r[0] > captures]
            whole = len(steps) == self._captures - captures and all(r[1] is not None for r in steps)
            if not whole or any(r[2] is None for r in steps):
                return self._captures, None
            return self._captures, [(r[1], r[2], r[3]) for r in steps if r[1] is not None and r[2] is not None]

    def linked_paths(self) -> tuple[str, ...]:
        """The files with more than one name as of the latest capture (a new name makes a capture a full scan)."""
        with self._lock:
            return tuple(self._links)

    def changed_paths(self, old: Snapshot, new: Snapshot) -> set[str]:
        """Every path that differs between two snapshots, of any kind, the entries below a directory added or
        removed included: O(changed)."""
        with self._session():
            return set(diff(self._repo, load(self._repo, old.id), load(self._repo, new.id), self._metas))

    def with_undos(self, base: Snapshot, undos: Sequence[tuple[Snapshot, Snapshot]]) -> Snapshot:
        """`base` with the undos of other actions ((post, pre) each, in the order they ran) replayed on it,
        computed from snapshots alone (replay.py)."""
        with self._session():
            return Snapshot(with_undos(self._repo, self._metas, base.id, [(p.id, q.id) for p, q in undos]))

    def restore(self, snapshot: Snapshot) -> RestoreReport:
        """Make the workspace `snapshot` and verify it. What goexd may not read and does not
        own is left as it is, with the directories above it, and named in the report."""
        with self._session():
            target = load(self._repo, snapshot.id)
            current = self._capture(lenient=True)
            self._set_ref(PRE_RESTORE_REF, current)
            if current.id == snapshot.id:
                return RestoreReport(unreadable=self._unreadable)
            changes = diff(self._repo, load(self._repo, current.id), target, self._metas)
            left = _Left(self._unreadable)
            todo = left.drop(changes)
            check_room(self._root, self._blobs, todo)
            try:
                with self._writing(todo), self._batch() as fs:
                    unowned = apply_changes(fs, self._blobs, todo)
            except (OSError, pygit2.GitError, ValueError) as e:
                path = getattr(e, "filename", None)
                raise PartlyWritten(f"restore of {snapshot.id} failed at {path}: {e}") from e
            after = self._capture_written(snapshot)
            left = _Left(self._unreadable)
            if after.id != snapshot.id and not self._only_expected(after, target, unowned, left):
                raise SnapshotError(f"restore of {snapshot.id} not verified: the workspace captures as {after.id}")
            return RestoreReport(tuple(unowned), self._unreadable)

    def edit(self, base: Snapshot, upper: Path, *, privileged: bool) -> tuple[Snapshot, UpperChanges]:
        """`base` with an overlay run's upper dir applied, as a new snapshot; the workspace is
        not read or written (see overlay_upper.py)."""
        with self._session():
            changes = read_upper(upper, self._blobs, self._owner, privileged=privileged)
            return edit_snapshot(self._repo, load(self._repo, base.id), changes.edits, self._meta_oid), changes

    def revert(
        self,
        expected: Snapshot,
        target: Snapshot,
        *,
        paths: Sequence[str] | None = None,
        force: bool = False,
        keep_as: KeepAs | None = None,
        dry_run: bool = False,
    ) -> Reverted:
        """Take the workspace from `expected` to `target` by the three-way rule (threeway.py): only
        the paths that differ between the two (or those at or below `paths`), each only where
        the workspace still is as `expected` has it. A path changed since raises RevertConflict
        before anything is written, unless `force`, which overwrites it. What was there is in
        `Reverted.before`; with `keep_as` it is also recorded as a set-aside (`Reverted.kept`)
        before the first write, so a kill or failure during the writes loses nobody's version.
        Verified: every path written is compared with `target` in a fresh capture. `dry_run`:
        only the plan."""
        with self._session():
            exp_t, tgt_t = load(self._repo, expected.id), load(self._repo, target.id)
            wanted = diff(self._repo, exp_t, tgt_t, self._metas)
            if paths is not None:
                tops = list(paths)
                # With the directories above them that `target` has and `expected` lacks: made again to hold them.
                wanted = {
                    p: c
                    for p, c in wanted.items()
                    if any(is_under(p, t) or (c[0] is None and is_under(t, p)) for t in tops)
                }
            current = self._capture(lenient=True)
            since = diff(self._repo, exp_t, load(self._repo, current.id), self._metas)
            plan = plan_revert(wanted, since, force=force)
            if dry_run:  # the plan only (its conflicts); nothing is written
                return Reverted(current, current, plan, RestoreReport(unreadable=self._unreadable))
            if plan.conflicts and not force:
                raise RevertConflict(plan.conflicts, current)
            todo = _Left(self._unreadable).drop(plan.apply)
            if not todo:
                return Reverted(current, current, plan, RestoreReport(unreadable=self._unreadable))
            check_room(self._root, self._blobs, todo)  # before the first write: none, or (nearly always) all
            if current != expected:  # `expected` is the caller's to keep (pinned, or a set-aside's)
                self._set_ref(PRE_RESTORE_REF, current)
            kept = None
            if plan.conflicts and keep_as is not None:
                # Recorded before the first write, `after` = `target`: what is written at those paths (bar an
                # owner goexd may not set), so bringing them back is three-way from it, written or not.
                kept = self._same_set_aside(current, target, plan.conflicts, keep_as) or set_aside.record(
                    self._repo, current, target, plan.conflicts, keep_as.action_id, keep_as.reason
                )
                faults.point("fs-set-aside-kept", FAULT_TAG)
            left: list[str] = []  # found changed by someone since `current` was captured: left as they are
            written: dict[str, tuple[int, int, int]] = {}
            try:
                with self._writing(todo), self._batch() as fs:
                    unowned = apply_changes(fs, self._blobs, todo, left, written)
            except (OSError, pygit2.GitError, ValueError) as e:
                path = getattr(e, "filename", None)
                raise PartlyWritten(f"revert to {target.id} failed at {path}: {e}") from e
            faults.point("fs-revert-written", FAULT_TAG)
            after = self._capture_written(target)
            expected_owner = {u.path for u in unowned}
            for path, (got, want) in diff(self._repo, load(self._repo, after.id), tgt_t, self._metas).items():
                if path not in todo or any(is_under(path, p) for p in left):
                    continue  # not the revert's: changed by someone else, or left
                if path in expected_owner and _same_but_owner(got, want):
                    continue
                if self._changed_after_write(path, written):
                    left.append(path)  # the person's newer version: theirs, never "rolled back" over
                    continue
                raise SnapshotError(f"revert to {target.id} not verified: {path or '.'} is not as recorded")
            report = RestoreReport(tuple(unowned), self._unreadable)
            return Reverted(current, after, plan, report, kept, tuple(sorted(set(left))), tuple(fs.kept))

    def _changed_after_write(self, path: str, written: dict[str, tuple[int, int, int]]) -> bool:
        """Whether `path`, not as the revert wrote it, was changed by someone after goexd's write: it is not the
        entry goexd put there (another inode, or the same one with other times), or it is gone or a directory."""
        mark = written.get(path)
        if mark is None:  # removed, made a directory or given a mode: a failure there raised when it happened
            return True
        try:
            st = os.lstat(self._root / path)
        except OSError:
            return True
        return (st.st_ino, st.st_mtime_ns, st.st_size) != mark

    @contextmanager
    def _writing(self, todo: dict[str, Change]) -> Iterator[None]:
        """Note the dirs a restore or revert writes in (one small file, no fsync: a kill, not a power cut, is
        what leaves temporaries), so that the next start clears goexd's temporaries there (F8)."""
        dirs = {parent_of(p) for p in todo if p}
        self._writing_journal.write_bytes(b"\0".join(os.fsencode(d) for d in sorted(dirs)))
        try:
            yield
        except BaseException:
            self._clear_temporaries()
            raise
        self._writing_journal.unlink(missing_ok=True)

    def _clear_temporaries(self) -> None:
        """Clear the temporaries a write left in the dirs the writing journal lists (see safefs.remove_temporaries:
        what is not goexd's own content is kept under a name of its own); then the journal goes."""
        try:
            data = self._writing_journal.read_bytes()
        except FileNotFoundError:
            return
        dirs = [os.fsdecode(d) for d in data.split(b"\0")] if data else [""]
        removed, kept = remove_temporaries(self._root, dirs, self._holds)
        if removed or kept:
            log.warning("cleared %d temporaries a stopped write left in %s; kept %s", len(removed), self._root, kept)
        self._writing_journal.unlink(missing_ok=True)

    def _holds(self, fd: int) -> bool:
        """Whether the store holds this file's content (goexd wrote it, or a snapshot has it)."""
        size = os.fstat(fd).st_size
        h = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return pygit2.Oid(hex=h.hexdigest()) in self._repo.odb

    def _capture_written(self, target: Snapshot) -> Snapshot:
        """The capture that verifies a restore or revert: written already, a failure here is a partial one."""
        try:
            return self._capture(lenient=True)
        except UnreadableEntries:
            raise
        except (SnapshotError, OSError, pygit2.GitError) as e:
            raise PartlyWritten(f"written towards {target.id}, but the capture that verifies it failed: {e}") from e

    def set_aside(
        self, source: Snapshot, after: Snapshot, paths: Sequence[str], action_id: str, reason: str
    ) -> SetAside:
        """Keep what `source` has at `paths` (overwritten; `after` replaced it), listed until restored or expired."""
        with self._session():
            return set_aside.record(self._repo, source, after, paths, action_id, reason)

    def _same_set_aside(
        self, source: Snapshot, after: Snapshot, paths: Sequence[str], keep_as: KeepAs
    ) -> SetAside | None:
        """One that keeps the same versions of `paths` for the same reason: a retried revert (a kill or a failure
        stopped the first try after it set them aside) keeps one set-aside, not one per try."""
        for kept in set_aside.list_all(self._repo):
            if (kept.action_id, kept.reason, kept.after, kept.paths) != (
                keep_as.action_id,
                keep_as.reason,
                after,
                tuple(paths),
            ):
                continue
            changed = diff(self._repo, load(self._repo, kept.source.id), load(self._repo, source.id), self._metas)
            if not any(is_under(c, p) or is_under(p, c) for c in changed for p in paths):
                return kept
        return None

    def set_asides(self) -> list[SetAside]:
        with self._session():
            return set_aside.list_all(self._repo)

    def restore_set_aside(self, set_aside_id: str, *, force: bool = False, keep_as: KeepAs | None = None) -> Reverted:
        """Bring back what a set-aside holds, by the three-way rule from what replaced it; then forget it.
        `force`/`keep_as` as for revert(). It stays listed until the revert is verified, and it is not
        forgotten while any of its paths was left as it was (unreadable to goexd)."""
        with self._session():
            kept = set_aside.get(self._repo, set_aside_id)
            done = self.revert(kept.after, kept.source, paths=kept.paths, force=force, keep_as=keep_as)
            if not any(is_under(u.path, p) or is_under(p, u.path) for u in done.report.unreadable for p in kept.paths):
                set_aside.drop(self._repo, set_aside_id)
            return done

    def drop_set_asides(self, older_than: float) -> list[SetAside]:
        with self._session():
            return set_aside.drop_older(self._repo, older_than)

    def _only_expected(self, after: Snapshot, target: SnapshotTrees, unowned: list[Unowned], left: _Left) -> bool:
        """Whether `after` differs from `target` only as apply_changes said it would: in the
        owner of entries it could not chown, which then lack their set-id bits; and in
        what it left alone (unreadable entries, and the directories holding them)."""
        if not unowned and not left:
            return False
        expected = {u.path: u for u in unowned}
        for path, (got, want) in diff(self._repo, load(self._repo, after.id), target, self._metas).items():
            if left.covers(path, want):
                continue
            if path not in expected or got is None or want is None:
                return False
            if (got.kind, got.oid, got.perm) != (want.kind, want.oid, want.perm & ~SETID):
                return False
        return True

    def strip_privileges(self, old: Snapshot, new: Snapshot) -> tuple[Snapshot, tuple[Privileged, ...]]:
        """Take set-id bits and file capabilities away from every regular file that
        changed from `old` to `new` (the latest capture), or whose attributes changed
        (inotify's dirty set, when the latest capture used it: a capability written on
        an unchanged file changes no snapshot). Returns the snapshot of the result (a
        new capture when anything was taken away) and the files found."""
        with self._session():
            if self._last is None or self._last[2] != new:
                raise SnapshotError(f"{new.id} is not the latest capture")
            touched = self._touched
            if touched is not None and touched[0] == old:
                paths = touched[1]  # every change since `old` raised an event (the hot path: no diff)
            else:
                changed = diff(self._repo, load(self._repo, old.id), load(self._repo, new.id), self._metas)
                paths = {path for path, (_, n) in changed.items() if n is not None and n.kind == FILE}
                if touched is not None:
                    paths |= touched[1]
            with self._batch() as fs:
                found = strip_privileges(fs, sorted(paths))
            if not found:
                return new, ()
            if self._tracker is not None and any(f.links > 1 for f in found):
                # Other names of those inodes changed too, without an event: look again.
                self._tracker.invalidate()
            after = self._capture()
        return after, tuple(found)

    def pin(self, name: str, snapshot: Snapshot) -> None:
        with self._session():
            load(self._repo, snapshot.id)
            self._set_ref(_pin_ref(name), snapshot)

    def unpin(self, name: str) -> None:
        with self._session():
            ref = _pin_ref(name)
            if ref in self._repo.references:
                self._repo.references.delete(ref)

    def pinned(self) -> dict[str, Snapshot]:
        with self._session():
            out: dict[str, Snapshot] = {}
            for ref in self._repo.references:
                if ref.startswith(PIN_PREFIX):
                    target = self._repo.references[ref].target
                    out[ref[len(PIN_PREFIX) :]] = Snapshot(str(target))
            return out

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._tracker is not None:
                self._tracker.close()
            if self._index_dirty:
                self._write_index()  # with the tree cache, for the next process

    def __enter__(self) -> GitWorkspaceStore:
        return self

    def __exit__(self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- capture -------------------------------------------------------------------

    def full_scan(self) -> Snapshot:
        """Capture by rescanning everything (what capture() falls back to)."""
        with self._session(), self._batch() as fs:
            self._captures += 1  # kept out of _recent: who follows the dirty sets cannot follow this one
            return self._full_capture(fs, lenient=False)

    @contextmanager
    def root_opened_up(self) -> Iterator[None]:
        """The workspace root searchable and writable by goexd's user while the block runs, when it owns the
        root and an action took that away; given back after, and after a crash by the openings' journal."""
        with self._session(), self._batch() as fs:
            with contextlib.suppress(OSError):  # the caller's own attempt says what is wrong
                fs.open_up("", stat.S_IWUSR | stat.S_IXUSR)
            yield

    def _batch(self) -> contextlib.AbstractContextManager[SafeFS]:
        """One capture's or restore's file access: what it opens up, it gives back at the end."""
        return SafeFS(self._root, self._journal).batch()

    def _capture(self, lenient: bool = False) -> Snapshot:
        try:
            self._captures += 1
            snap = self._capture_in_batch(lenient)
            touched = self._touched
            kept = touched is not None and len(touched[1]) <= _FOLLOWED_PATHS
            started, paths = (touched[0], frozenset(touched[1])) if kept and touched is not None else (None, None)
            self._recent.append((self._captures, started, paths, snap))
            return snap
        finally:
            if self._capture_fs is not None:  # what it opened up is given back
                fs, self._capture_fs = self._capture_fs, None
                fs.close()
                if fs.given_back and self._tracker is not None:
                    self._settle(fs.given_back)

    def _settle(self, given_back: dict[str, Opened]) -> None:
        """Keep the modes a capture gave back from reading as changes at the next one: an
        attribute event on such a path is dropped while it still has the mode and owner
        recorded. One below a directory given back mode 0 cannot be looked at; it is
        dropped too, as nobody but root could have changed it meanwhile."""
        me = os.geteuid()
        with SafeFS(self._root, open_up=False).batch() as fs:

            def own(path: str) -> bool:
                opened = given_back.get(path)
                if opened is None:
                    return False
                try:
                    st = fs.lstat(path)
                except PermissionError:
                    return True
                except OSError:
                    return False
                return (st.st_ino, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (
                    opened.ino,
                    opened.perm,
                    me,
                    opened.gid,
                )

            assert self._tracker is not None
            self._tracker.settle(own)

    def _capture_batch(self) -> SafeFS:
        """The current capture's file access, made when first needed (an unchanged capture
        needs none: it costs nothing)."""
        if self._capture_fs is None:
            self._capture_fs = SafeFS(self._root, self._journal)
        return self._capture_fs

    def _open_up_dir(self, rel: str) -> bool:
        return self._capture_batch().open_up_dir(rel)

    def _capture_in_batch(self, lenient: bool) -> Snapshot:
        dirty = self._tracker.drain(self._open_up_dir) if self._tracker is not None else None
        self._touched = None
        if dirty is None or self._last is None:
            return self._full_capture(self._capture_batch(), lenient)
        self._touched = (self._last[2], dirty.paths)
        if self._links_changed():
            # Written through another name (maybe outside the workspace, unseen by inotify): the full scan's
            # stat cache finds every name of it (same inode, new times).
            self._touched = None
            return self._full_capture(self._capture_batch(), lenient)
        if not dirty:
            return self._last[2]
        fs = self._capture_batch()
        self._linked = False
        try:
            self._apply_dirty(dirty, fs)
            if self._linked:
                # A file with other names changed: inotify told of this name only. The full scan's
                # stat cache finds the others (same inode, new times).
                self._touched = None
                return self._full_capture(fs, lenient)
        except UnreadableEntries:
            # Not goexd's to open up: the full scan lists all such entries (or refuses).
            self._touched = None
            return self._full_capture(fs, lenient)
        except BaseException:
            # The dirty set is consumed: only a full scan can catch up now.
            if self._tracker is not None:
                self._tracker.invalidate()
            raise
        return self._write_snapshot()

    def _links_changed(self) -> bool:
        """Whether a file with more than one name changed since the full scan that listed it (one lstat each)."""
        root = os.fsencode(self._root) + b"/"
        lstat = os.lstat
        for path, key in self._links.items():
            try:
                st = lstat(root + os.fsencode(path))  # read only, compared; a symlinked parent makes it differ
            except PermissionError:
                continue  # below a directory goexd may not search (it opens those up only for a full scan)
            except OSError:
                return True
            if (st.st_ino, st.st_mtime_ns, st.st_size) != key:
                return True
        return False

    def _full_capture(self, fs: SafeFS, lenient: bool) -> Snapshot:
        self._full_scan(fs, lenient)
        snap = self._write_snapshot()
        # write_tree filled libgit2's tree cache; on disk it lets the next `git add`
        # keep unchanged subtrees valid, so the next write_tree is ~2 ms, not ~120.
        self._write_index()
        return snap

    def _write_index(self) -> None:
        try:
            self._index.write()
        except pygit2.GitError as e:
            raise SnapshotError(f"cannot write the store's index: {e}") from e
        self._index_dirty = False

    def _write_snapshot(self) -> Snapshot:
        try:
            work = self._index.write_tree(self._repo)
            meta = self._meta.write_tree(self._repo)
            if self._last is not None and self._last[:2] == (work, meta):
                return self._last[2]
            builder = self._repo.TreeBuilder()
            builder.insert(META, meta, FileMode.TREE)
            builder.insert(WORK, work, FileMode.TREE)
            snap = Snapshot(str(builder.write()))
        except pygit2.GitError as e:
            raise SnapshotError(f"cannot write snapshot trees: {e}") from e
        self._last = (work, meta, snap)
        return snap

    def _full_scan(self, fs: SafeFS, lenient: bool) -> None:
        self._full_scans += 1
        self._unreadable = ()
        self._own_prev, self._own_stat = self._own_stat, {}
        if self._tracker is not None:
            self._tracker.arm(fs.open_up_dir)  # before the walk: later changes become events
        try:
            prev_work = self._last[0] if self._last is not None else None
            scan = scan_workspace(self._root, self._owner, fs)
            self._links = scan.linked
            _check_readable(scan.unreadable, lenient)
            raced = self._git_add(scan)
            self._index.read(force=True)
            # git would record a nested repository as a bare gitlink, and cannot add a name
            # the store holds escaped (a nested .git among them): those are staged here.
            tops = _outermost(scan.nested + scan.escaped + raced)
            staged = self._stage_trees(tops, scan.meta, fs, scan.unreadable)
            _check_readable(scan.unreadable, lenient)
            for path in (u.path for u in scan.unreadable):
                self._drop_below(path)  # what an earlier capture saw there
                self._unstage(path)
            self._reconcile(prev_work, tops, staged, scan.meta, fs)
            self._rebuild_meta(scan.meta)
            self._unreadable = tuple(sorted(scan.unreadable, key=lambda u: u.path))
            if self._unreadable and self._tracker is not None:
                self._tracker.invalidate()  # only a full scan keeps the list of them right
        except BaseException:
            if self._tracker is not None:
                self._tracker.invalidate()
            raise

    def _git_add(self, scan: TreeScan) -> list[str]:
        """`git add -A -f`. git dies when a file vanishes under it: the directory it
        tripped over is then excluded and returned, for _stage_trees to take over."""
        raced: list[str] = []
        for _ in range(_ADD_ATTEMPTS):
            try:
                unreadable = [u.path for u in scan.unreadable]
                add_all(self._git_dir, self._root, scan.refused + scan.escaped + scan.nested + unreadable + raced)
                return raced
            except VanishedDuringAdd as e:
                top = parent_of(e.path)
                raced.append(e.path if not top or top in raced else top)
        raise SnapshotError(f"{self._root} keeps changing under git add")

    def _stage_trees(
        self, tops: list[str], meta: dict[str, Meta], fs: SafeFS, unreadable: list[Unreadable] | None = None
    ) -> list[str]:
        """Stage what is now at and below each of `tops` from here rather than git;
        returns the staged paths, refreshes their metadata in `meta` and adds what it
        may not read to `unreadable`."""
        staged: list[str] = []
        for top in tops:  # all first: one top's raw name may be where another's escaped one is staged
            self._drop_below(top)
            self._unstage(top)
            if store_path(top) != top:
                # Index entries under the name itself are not this path's: a stale one of the path
                # it would escape (staged again below if that exists), or of a store older than escaping.
                self._index.remove_directory(top)
                if top in self._index:
                    self._index.remove(top)
        for top in tops:
            try:
                top_fd = os.dup(fs.dir_fd(top))
            except OSError as e:
                if not isinstance(e, _GONE) and e.errno != errno.ELOOP:
                    raise SnapshotError(f"cannot open directory {top}: {e}") from e
                meta.pop(meta_dir_key(top), None)  # it is something else now
                meta.pop(meta_file_key(top), None)
                st = _lstat(fs, top)
                self._stage(top, st, fs, with_meta=False)
                found = entry_meta(st, self._owner) if st is not None and not stat.S_ISDIR(st.st_mode) else None
                if found is not None:
                    meta[meta_file_key(top)] = found
                staged.append(top)
                continue
            meta.pop(meta_file_key(top), None)
            sub = scan_tree(top_fd, top, self._owner, fs, collect=True)
            meta.update(sub.meta)
            if unreadable is not None:
                unreadable += sub.unreadable
            for path, st in sub.entries:
                known = self._own_prev.get(path) if stat.S_ISREG(st.st_mode) else None
                if known is not None and known[0] == _stat_key(st):  # as when last read
                    self._own_stat[path] = known
                    self._index.add(pygit2.IndexEntry(store_path(path), known[1], _file_mode(st)))
                else:
                    self._stage(path, st, fs, with_meta=False)
                staged.append(path)
                fs.trim()
        return staged

    def _reconcile(
        self, prev_work: pygit2.Oid | None, tops: list[str], staged: list[str], meta: dict[str, Meta], fs: SafeFS
    ) -> None:
        """Make the index and the walk's metadata describe one state.

        git ran after the walk, so a racing change can leave a file whose directory
        the walk never saw, a path recorded as both file and directory, or a gitlink
        for a repository created meanwhile. Only paths that changed since the last
        snapshot (a tree diff) and those staged here can be affected.
        """
        work = self._repo[self._index.write_tree(self._repo)]
        base = self._repo[prev_work] if prev_work is not None else self._repo[self._empty_tree()]
        assert isinstance(work, pygit2.Tree) and isinstance(base, pygit2.Tree)
        paths = list(staged)
        gitlinks: list[str] = []
        for d in base.diff_to_tree(work).deltas:
            if d.status == DeltaStatus.DELETED:
                continue
            path = workspace_path(os.fsdecode(d.new_file.raw_path))
            (gitlinks if d.new_file.mode == FileMode.COMMIT else paths).append(path)
        if gitlinks:
            paths += self._stage_trees(gitlinks, meta, fs)
            tops = tops + gitlinks
        known_dirs: set[str] = set()
        # Directories the walk missed while git still found files below them.
        old_keys = self._meta_map.keys() if self._meta_map is not None else {e.path for e in self._meta}
        for key in old_keys - meta.keys():
            rel, is_dir = parse_meta_key(key)
            if not is_dir or not isinstance(_lookup(work, store_path(rel)), pygit2.Tree):
                continue
            st = _lstat(fs, rel)
            if st is not None and stat.S_ISDIR(st.st_mode) and self._has_parents(rel, meta, fs, known_dirs):
                meta[key] = dir_meta(st, self._owner)
            else:
                self._drop_below(rel)
        for top in tops:  # walked after the main walk: their parents may be new
            if meta_dir_key(top) in meta and not self._has_parents(top, meta, fs, known_dirs):
                self._drop_below(top)
                _drop_meta_below(meta, top)
        for path in paths:
            if store_path(path) not in self._index:
                continue
            if meta_dir_key(path) in meta:  # both a file and a directory
                st = _lstat(fs, path)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    self._unstage(path)
                    continue
                _drop_meta_below(meta, path)
            if not self._has_parents(path, meta, fs, known_dirs):
                self._unstage(path)  # gone with its directory

    def _has_parents(self, path: str, meta: dict[str, Meta], fs: SafeFS, known: set[str]) -> bool:
        """Whether every directory above path is in `meta`, adding those that exist."""
        parent = parent_of(path)
        while parent and parent not in known:
            if meta_dir_key(parent) not in meta:
                st = _lstat(fs, parent)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    return False
                meta[meta_dir_key(parent)] = dir_meta(st, self._owner)
            known.add(parent)
            parent = parent_of(parent)
        return True

    def _empty_tree(self) -> pygit2.Oid:
        return self._repo.TreeBuilder().write()

    def _rebuild_meta(self, new: dict[str, Meta]) -> None:
        old = self._meta_map
        if old is None:
            self._meta = pygit2.Index()
            old = {}
        for key in old.keys() - new.keys():
            self._meta.remove(key)
        for key, meta in new.items():
            if old.get(key) != meta:
                self._meta.add(pygit2.IndexEntry(key, self._meta_oid(meta), FileMode.BLOB))
        self._meta_map = new

    def _apply_dirty(self, dirty: Dirty, fs: SafeFS) -> None:
        self._meta_map = None  # edited below without the mirror
        self._index_dirty = True
        for top in dirty.subtrees:
            self._drop_below(top)
            self._meta.remove_directory(escape(top))
        not_dirs: set[str] = set()
        # Sorted: a path's ancestors come first, so one that stopped being a
        # directory is known before anything below it is looked up.
        for path in sorted(dirty.paths):
            self._update(path, fs, not_dirs)
            fs.trim()

    def _update(self, path: str, fs: SafeFS, not_dirs: set[str]) -> None:
        st = None if _below_any(path, not_dirs) else _lstat(fs, path)
        if not path:
            if st is None:
                raise SnapshotError(f"workspace {self._root} vanished")
            self._meta_set(SELF, dir_meta(st, self._owner))
            return
        if st is not None and stat.S_ISDIR(st.st_mode):
            self._unstage(path)
            self._meta_set(meta_file_key(path), None)
            self._meta_set(meta_dir_key(path), dir_meta(st, self._owner))
            return
        not_dirs.add(path)
        self._drop_below(path)
        self._meta.remove_directory(escape(path))
        self._stage(path, st, fs, with_meta=True)

    def _stage(self, path: str, st: os.stat_result | None, fs: SafeFS, *, with_meta: bool) -> None:
        """Record the file or symlink at path (lstat result `st`), or its absence."""
        meta: Meta | None = None
        entry: pygit2.IndexEntry | None = None
        name = path.rpartition("/")[2]
        try:
            if st is None:
                pass
            elif stat.S_ISLNK(st.st_mode) and storable(name, is_link=True):
                oid = self._blobs.write_bytes(fs.readlink(path))
                entry = pygit2.IndexEntry(store_path(path), oid, FileMode.LINK)
                meta = entry_meta(st, self._owner)
            elif stat.S_ISREG(st.st_mode):
                oid, st = self._read_file(path, fs)
                self._linked |= st.st_nlink > 1
                self._remember(path, st, oid)
                entry = pygit2.IndexEntry(store_path(path), oid, _file_mode(st))
                meta = entry_meta(st, self._owner)
        except (*_GONE, _Replaced):
            pass  # changed while we looked: that change is queued as a new event
        except PermissionError as e:  # not goexd's, or it would have been opened up
            raise UnreadableEntries((Unreadable(path, False, str(e)),)) from e
        except OSError as e:
            if e.errno != errno.ELOOP:  # ELOOP: an ancestor became a symlink, as above
                raise SnapshotError(f"cannot read {self._root / path}: {e}") from e
        if entry is None:
            self._unstage(path)
            meta = None
        else:
            self._index.add(entry)
        if with_meta:
            self._meta_set(meta_file_key(path), meta)

    def _remember(self, path: str, st: os.stat_result, oid: pygit2.Oid) -> None:
        """Keep what was read at path for the next full scan, unless it changed too recently to tell
        a later change from it by its times."""
        if st.st_ctime_ns < time.time_ns() - _RACY_NS:
            self._own_stat[path] = (_stat_key(st), oid)
        else:
            self._own_stat.pop(path, None)

    def _read_file(self, path: str, fs: SafeFS) -> tuple[pygit2.Oid, os.stat_result]:
        """The file's content id and its fstat (the mode and owner of what was read)."""
        for _ in range(_READ_ATTEMPTS):
            try:
                fd, st = fs.open_file(path)
            except (*_GONE, NotRegularFile) as e:
                raise _Replaced from e
            except OSError as e:
                if e.errno == errno.ELOOP:  # now a symlink
                    raise _Replaced from e
                raise
            try:
                return self._blobs.write_fd(fd, st.st_size), st
            except FileShrank:
                continue
            finally:
                os.close(fd)
        raise SnapshotError(f"{self._root / path} keeps shrinking while being read")

    def _unstage(self, path: str) -> None:
        stored = store_path(path)
        if stored in self._index:
            self._index.remove(stored)

    def _drop_below(self, path: str) -> None:
        """Unstage everything below the directory at workspace path `path`."""
        self._index.remove_directory(store_path(path))

    def _meta_set(self, key: str, meta: Meta | None) -> None:
        present = key in self._meta
        if meta is None:
            if present:
                self._meta.remove(key)
            return
        oid = self._meta_oid(meta)
        if not present or self._meta[key].id != oid:
            self._meta.add(pygit2.IndexEntry(key, oid, FileMode.BLOB))

    def _meta_oid(self, meta: Meta) -> pygit2.Oid:
        oid = self._meta_oids.get(meta)
        if oid is None:
            oid = self._meta_oids[meta] = self._repo.create_blob(encode_meta(meta))
        return oid

    # -- helpers -------------------------------------------------------------------

    def _set_ref(self, ref: str, snapshot: Snapshot) -> None:
        self._repo.references.create(ref, pygit2.Oid(hex=snapshot.id), force=True)

    @contextmanager
    def _session(self) -> Iterator[None]:
        """One public call: serialized, on an open store, git errors reported as ours."""
        with self._lock:
            if self._closed:
                raise SnapshotError("snapshot store is closed")
            try:
                yield
            except BaseException as e:
                # What a write that died left (a full disk: git's temporary object can be most of it) is
                # removed now, under the lock: it would keep the disk full and the index locked.
                if not isinstance(e, RevertConflict | UnreadableEntries):  # refusals: nothing was written
                    with contextlib.suppress(OSError):
                        remove_leftovers(self._git_dir)
                if isinstance(e, pygit2.GitError):
                    raise SnapshotError(f"snapshot store {self._git_dir}: {e}") from e
                raise


@dataclass(frozen=True)
class Reverted:
    before: Snapshot  # the workspace just before (what a forced revert overwrote is here)
    after: Snapshot  # and after
    plan: RevertPlan
    report: RestoreReport
    kept: SetAside | None = None  # what a forced revert overwrote, set aside (with `keep_as`)
    # Paths someone changed while the revert wrote (after its capture): left as they are, theirs (issue 14 F2).
    left: tuple[str, ...] = ()
    # Paths beside which a write someone made into the file goexd replaced (through a descriptor held open across
    # the swap) was kept, as `name.goex-kept-<hex>` (safefs.watch_removed).
    beside: tuple[str, ...] = ()


def _same_but_owner(got: Entry | None, want: Entry | None) -> bool:
    """An entry restored as recorded but for the owner goexd may not set (and so without set-id bits)."""
    if got is None or want is None:
        return False
    return (got.kind, got.oid, got.perm) == (want.kind, want.oid, want.perm & ~SETID)


class _Replaced(Exception):
    """The path stopped being a regular file between lstat and open."""


class _Index(pygit2.Index):
    def __del__(self) -> None:
        # pygit2's __del__ fails noisily on an instance whose __init__ raised.
        if hasattr(self, "_index"):
            super().__del__()


def _open_index(path: Path) -> pygit2.Index:
    try:
        return _Index(str(path))
    except pygit2.GitError:
        # Only a cache of what the snapshots hold: start over, the first capture
        # re-hashes the workspace.
        path.unlink(missing_ok=True)
        return _Index(str(path))


def _default_owner(repo: pygit2.Repository, root: Path) -> Owner:
    """The store's default owner: the workspace root's owner when the store was made."""
    try:
        recorded = repo.config[DEFAULT_OWNER_KEY]
    except KeyError:
        recorded = None
    if recorded is not None:
        try:
            return decode_owner(recorded)
        except ValueError as e:
            raise SnapshotError(f"damaged {DEFAULT_OWNER_KEY} in the snapshot store: {recorded!r}") from e
    st = os.stat(root)
    owner = (st.st_uid, st.st_gid)
    repo.config[DEFAULT_OWNER_KEY] = encode_owner(owner)
    return owner


def _pin_ref(name: str) -> str:
    ref = PIN_PREFIX + name
    if not name or not pygit2.reference_is_valid_name(ref):
        raise ValueError(f"invalid pin name {name!r}")
    return ref


def _lstat(fs: SafeFS, path: str) -> os.stat_result | None:
    try:
        return fs.lstat(path)
    except _GONE:
        return None
    except PermissionError as e:  # not goexd's, or it would have been opened up
        raise UnreadableEntries((Unreadable(parent_of(path) or ".", True, str(e)),)) from e
    except OSError as e:
        if e.errno == errno.ELOOP:  # an ancestor is now a symlink
            return None
        raise SnapshotError(f"cannot stat {path}: {e}") from e


def _lookup(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    try:
        return tree[path]
    except KeyError:
        return None


def _check_readable(unreadable: list[Unreadable], lenient: bool) -> None:
    """Refuse a capture that would leave entries out, unless lenient; the root never can be."""
    if unreadable and (not lenient or any(u.path == "." for u in unreadable)):
        raise UnreadableEntries(tuple(sorted(unreadable, key=lambda u: u.path)))


class _Left:
    """What a restore leaves alone: unreadable entries, and the directories holding them."""

    def __init__(self, unreadable: tuple[Unreadable, ...]) -> None:
        self._tops = {u.path for u in unreadable}
        self._holders = {parent for path in self._tops for parent in _parents(path)}

    def __bool__(self) -> bool:
        return bool(self._tops)

    def covers(self, path: str, want: Entry | None) -> bool:
        """Whether a difference at path (`want` in the target) is one left alone."""
        if not self._tops:
            return False
        if path in self._holders:  # kept for what it holds, unless the target has it too
            return want is None or want.kind != DIR
        return path in self._tops or any(p in self._tops for p in _parents(path))

    def drop(self, changes: dict[str, Change]) -> dict[str, Change]:
        """`changes` without those at or below what is left, nor the removal of a holder."""
        if not self._tops:
            return changes
        return {path: change for path, change in changes.items() if not self.covers(path, change[1])}


def _parents(path: str) -> Iterator[str]:
    """The directories above path, nearest first; "" (the root) excluded."""
    parent = parent_of(path)
    while parent:
        yield parent
        parent = parent_of(parent)


def _drop_meta_below(meta: dict[str, Meta], path: str) -> None:
    """Forget the directory `path` and everything below it (rare: races only)."""
    below = escape(path) + "/"
    for key in [k for k in meta if k.startswith(below)]:
        del meta[key]


_StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> _StatKey:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode


def _file_mode(st: os.stat_result) -> FileMode:
    return FileMode.BLOB_EXECUTABLE if st.st_mode & stat.S_IXUSR else FileMode.BLOB


def _outermost(paths: list[str]) -> list[str]:
    """`paths` without duplicates and without those below another one."""
    unique = set(paths)
    return sorted((p for p in unique if not any(q in unique for q in _parents(p))), key=os.fsencode)


def _below_any(path: str, tops: set[str]) -> bool:
    parent = parent_of(path)
    while parent:
        if parent in tops:
            return True
        parent = parent_of(parent)
    return False


def _change(path: str, old: Entry | None, new: Entry | None) -> FileChange | None:
    if old == new:
        return None
    shown = new if new is not None else old
    assert shown is not None
    name = (path or ".") + "/" if shown.kind == DIR else path
    if old is None:
        kind = ChangeKind.ADDED
    elif new is None:
        kind = ChangeKind.DELETED
    elif old.kind != new.kind:
        kind = ChangeKind.TYPE_CHANGED
    elif old.oid != new.oid:
        kind = ChangeKind.MODIFIED
    else:
        kind = ChangeKind.MODE_CHANGED
    return FileChange(
        kind=kind,
        path=name,
        old_mode=old.st_mode if old is not None else 0,
        new_mode=new.st_mode if new is not None else 0,
        runs_code=runs_code_later(name),
    )
