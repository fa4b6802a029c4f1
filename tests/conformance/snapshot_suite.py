"""What every workspace snapshot store (snapshots/base.py, WorkspaceSnapshotter) must do, stated once.

A store plugs in by subclassing `SnapshotStoreContract` in a `test_snapshot_*.py` file with an `open_store`
fixture: a callable (git_dir, workspace) -> a store over that workspace (the suite closes what it opens).

The suite states, on real trees, checked against tests/fs_fingerprint.py (an independent reading):

- content addressing: the same tree gives the same id (twice in a row, in another workspace built the
  same way, after a change and its reversal); any difference of content, mode, type, symlink target,
  empty directory or owner gives another;
- capture sees what anyone changed since the last capture (no rescan asked for);
- changes(old, new): exactly the paths that differ, each with its kind and modes, sorted by name bytes,
  counted, capped by `limit` (truncated says so);
- restore(s): makes the workspace exactly s (bytes, modes, types, targets, empty dirs, owners as root),
  then captures as s; a restore to the current state writes nothing; an unknown id raises SnapshotError
  and changes nothing;
- names are bytes: names that are not UTF-8 (or hold newlines, backslashes, escapes) are captured,
  listed and restored as they are;
- hard links: ids do not encode link identity (a hard link and a copy capture alike), and a restore
  gives every name its content;
- pin/unpin: idempotent, re-pinning moves a pin, pinned() lists them, unpin of an unknown name is
  fine, pinning an unknown snapshot raises; pins and snapshots survive closing and reopening;
- the workspace's own top-level .git is never captured, and never touched by a restore.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from goexd.domain.snapshots import ChangeKind, Snapshot, SnapshotError, WorkspaceSnapshotter
from tests import odd_names
from tests.fs_fingerprint import describe_diff, fingerprint

OpenStore = Callable[[Path, Path], WorkspaceSnapshotter]


def build(ws: Path) -> None:
    """A small tree with one of each kind the store promises to keep."""
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "empty" / "nested-empty").mkdir(parents=True)
    (ws / "a.txt").write_bytes(b"alpha\n")
    (ws / "src" / "pkg" / "m.py").write_bytes(b"print('m')\n")
    (ws / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (ws / "run.sh").chmod(0o755)
    (ws / "private").write_bytes(b"p")
    (ws / "private").chmod(0o600)
    (ws / "empty").chmod(0o700)
    (ws / "link").symlink_to("a.txt")
    (ws / "dangling").symlink_to("does/not/exist")
    (ws / "abs").symlink_to("/etc/hostname")
    (ws / ".git").mkdir()  # the workspace's own repository: never captured
    (ws / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")


def owned_by(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)


class SnapshotStoreContract:
    """Subclass with an `open_store` fixture (see the module's docstring)."""

    @pytest.fixture
    def opened(self, open_store: OpenStore) -> Iterator[Callable[[Path, Path], WorkspaceSnapshotter]]:
        stores: list[WorkspaceSnapshotter] = []

        def opener(git_dir: Path, ws: Path) -> WorkspaceSnapshotter:
            s = open_store(git_dir, ws)
            stores.append(s)
            return s

        yield opener
        for s in stores:
            s.close()

    @pytest.fixture
    def ws(self, tmp_path: Path) -> Path:
        ws = tmp_path / "ws"
        ws.mkdir()
        build(ws)
        return ws

    @pytest.fixture
    def store(self, opened: OpenStore, tmp_path: Path, ws: Path) -> WorkspaceSnapshotter:
        return opened(tmp_path / "store.git", ws)

    # ------------------------------------------------------------ content addressing

    def test_the_same_tree_has_the_same_id(
        self, opened: OpenStore, store: WorkspaceSnapshotter, ws: Path, tmp_path: Path
    ) -> None:
        s1 = store.capture()
        assert store.capture() == s1
        twin = tmp_path / "twin"
        twin.mkdir()
        build(twin)
        shutil.rmtree(twin / ".git")  # its own .git, or none, makes no difference
        os.utime(twin / "a.txt", (1, 1))  # nor do times
        assert opened(tmp_path / "twin.git", twin).capture() == s1
        (ws / "a.txt").write_bytes(b"changed\n")
        s2 = store.capture()
        assert s2 != s1
        (ws / "a.txt").write_bytes(b"alpha\n")
        assert store.capture() == s1

    @pytest.mark.parametrize(
        "change",
        ["content", "mode", "type", "target", "empty dir", "owner"],
    )
    def test_any_difference_gives_another_id(self, store: WorkspaceSnapshotter, ws: Path, change: str) -> None:
        s1 = store.capture()
        if change == "content":
            (ws / "src" / "pkg" / "m.py").write_bytes(b"print('M')\n")
        elif change == "mode":
            (ws / "private").chmod(0o640)
        elif change == "type":
            (ws / "link").unlink()
            (ws / "link").write_bytes(b"a.txt")
        elif change == "target":
            (ws / "link").unlink()
            (ws / "link").symlink_to("run.sh")
        elif change == "empty dir":
            (ws / "empty" / "another").mkdir()
        else:
            owned_by(ws / "a.txt", 4321, 4321)
        assert store.capture() != s1
        store.restore(s1)
        assert store.capture() == s1

    # ------------------------------------------------------------ changes

    def test_changes_are_exact(self, store: WorkspaceSnapshotter, ws: Path) -> None:
        s1 = store.capture()
        (ws / "a.txt").write_bytes(b"alpha 2\n")  # modified
        (ws / "new.txt").write_bytes(b"new\n")  # added
        (ws / "src" / "pkg" / "m.py").unlink()  # deleted (its dir stays, now empty)
        (ws / "private").chmod(0o644)  # mode
        (ws / "link").unlink()
        (ws / "link").write_bytes(b"now a file")  # type
        (ws / "newdir").mkdir()  # an empty dir added
        (ws / ".git" / "HEAD").write_bytes(b"not seen")  # the workspace's own .git: not a change
        s2 = store.capture()
        got = store.changes(s1, s2)
        kinds = {c.path: c.kind for c in got.changes}
        assert kinds == {
            "a.txt": ChangeKind.MODIFIED,
            "link": ChangeKind.TYPE_CHANGED,
            "new.txt": ChangeKind.ADDED,
            "newdir/": ChangeKind.ADDED,
            "private": ChangeKind.MODE_CHANGED,
            "src/pkg/m.py": ChangeKind.DELETED,
        }, kinds
        assert [c.path for c in got.changes] == sorted(kinds, key=os.fsencode)
        private = next(c for c in got.changes if c.path == "private")
        assert (stat.S_IMODE(private.old_mode), stat.S_IMODE(private.new_mode)) == (0o600, 0o644)
        assert (got.added, got.modified, got.deleted, got.total, got.truncated) == (2, 3, 1, 6, False)
        capped = store.changes(s1, s2, limit=2)
        assert (len(capped.changes), capped.total, capped.truncated) == (2, 6, True)
        assert store.changes(s2, s2).total == 0
        back = {c.path: c.kind for c in store.changes(s2, s1).changes}
        assert back["new.txt"] is ChangeKind.DELETED and back["src/pkg/m.py"] is ChangeKind.ADDED

    def test_capture_sees_changes_made_by_anyone(self, store: WorkspaceSnapshotter, ws: Path) -> None:
        s1 = store.capture()
        for i in range(3):  # each capture finds the change made just before it, without a rescan asked for
            (ws / "src" / f"f{i}").write_bytes(b"x" * i)
            s = store.capture()
            assert [c.path for c in store.changes(s1, s).changes][-1] == f"src/f{i}"
            s1 = s

    # ------------------------------------------------------------ restore

    def test_restore_is_exact_and_verified(self, store: WorkspaceSnapshotter, ws: Path) -> None:
        owned_by(ws / "private", 4321, 4322)
        s1, f1 = store.capture(), fingerprint(ws)
        git_before = fingerprint(ws / ".git", exclude_top=())
        (ws / "a.txt").write_bytes(b"other\n")
        (ws / "run.sh").chmod(0o644)
        shutil.rmtree(ws / "empty")
        (ws / "dangling").unlink()
        (ws / "src").rename(ws / "moved")
        (ws / "link").unlink()
        (ws / "link").mkdir()
        (ws / "link" / "inside").write_bytes(b"i")
        owned_by(ws / "private", 0, 0)
        (ws / ".git" / "HEAD").write_bytes(b"the person's own repository changed\n")
        git_after = fingerprint(ws / ".git", exclude_top=())
        store.capture()
        report = store.restore(s1)
        assert fingerprint(ws) == f1, describe_diff(f1, fingerprint(ws))
        assert (os.lstat(ws / "private").st_uid, os.lstat(ws / "private").st_gid) == (4321, 4322)
        assert report.describe() == ""
        assert store.capture() == s1
        assert fingerprint(ws / ".git", exclude_top=()) == git_after != git_before  # never touched

    def test_restore_of_the_current_state_or_an_unknown_id(self, store: WorkspaceSnapshotter, ws: Path) -> None:
        s1, f1 = store.capture(), fingerprint(ws)
        inode = os.lstat(ws / "a.txt").st_ino
        store.restore(s1)
        assert os.lstat(ws / "a.txt").st_ino == inode  # nothing rewritten
        with pytest.raises(SnapshotError):
            store.restore(Snapshot("0" * 40))
        with pytest.raises(SnapshotError):
            store.restore(Snapshot("not-a-snapshot"))
        assert fingerprint(ws) == f1

    def test_names_are_bytes(self, store: WorkspaceSnapshotter, ws: Path) -> None:
        s0 = store.capture()
        odd_names.build(str(ws))
        s1, f1, names = store.capture(), fingerprint(ws), odd_names.listing(str(ws))
        listed = {os.fsencode(c.path) for c in store.changes(s0, s1).changes}
        assert set(odd_names.ODD_FILES) <= listed, set(odd_names.ODD_FILES) - listed
        assert odd_names.ODD_LINK[0] in listed
        for d in odd_names.ODD_DIRS[::-1]:
            shutil.rmtree(os.path.join(os.fsencode(ws), d), ignore_errors=True)
        for name in odd_names.ODD_FILES:
            if os.path.lexists(path := os.path.join(os.fsencode(ws), name)):
                os.unlink(path)
        store.capture()
        store.restore(s1)
        assert fingerprint(ws) == f1, describe_diff(f1, fingerprint(ws))
        assert odd_names.listing(str(ws)) == names  # by bytes
        assert store.capture() == s1

    def test_hard_links_capture_as_copies_and_restore_each_name(
        self, opened: OpenStore, store: WorkspaceSnapshotter, ws: Path, tmp_path: Path
    ) -> None:
        os.link(ws / "a.txt", ws / "hard.txt")
        linked = store.capture()
        twin = tmp_path / "twin"
        shutil.copytree(ws, twin, symlinks=True)  # hard.txt a copy there
        assert os.lstat(twin / "hard.txt").st_ino != os.lstat(twin / "a.txt").st_ino
        assert opened(tmp_path / "twin.git", twin).capture() == linked
        f1 = fingerprint(ws)
        (ws / "hard.txt").unlink()
        (ws / "a.txt").write_bytes(b"changed through one name\n")
        store.capture()
        store.restore(linked)
        assert fingerprint(ws) == f1

    # ------------------------------------------------------------ pins

    def test_pins_are_idempotent_and_survive_reopening(
        self, opened: OpenStore, store: WorkspaceSnapshotter, ws: Path, tmp_path: Path
    ) -> None:
        s1 = store.capture()
        (ws / "a.txt").write_bytes(b"2\n")
        s2 = store.capture()
        store.pin("actions/1/pre", s1)
        store.pin("actions/1/pre", s1)
        store.pin("actions/2/pre", s2)
        store.pin("actions/2/pre", s1)  # re-pinning moves it
        assert store.pinned() == {"actions/1/pre": s1, "actions/2/pre": s1}
        store.unpin("actions/1/pre")
        store.unpin("actions/1/pre")
        store.unpin("never-pinned")
        assert store.pinned() == {"actions/2/pre": s1}
        with pytest.raises(SnapshotError):
            store.pin("x", Snapshot("0" * 40))
        assert store.pinned() == {"actions/2/pre": s1}
        store.close()
        again = opened(tmp_path / "store.git", ws)
        assert again.pinned() == {"actions/2/pre": s1}
        assert again.capture() == s2
        again.restore(s1)
        assert (ws / "a.txt").read_bytes() == b"alpha\n"
