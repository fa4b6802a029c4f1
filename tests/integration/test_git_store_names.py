"""The snapshot store with names that are bytes (tests/odd_names.py): capture, change set and
restore are exact for them, in both change-detection modes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from goexd.domain.snapshots import ChangeKind
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.rawtree import write_tree
from tests.odd_names import LONG, ODD_DIRS, ODD_FILES, ODD_LINK, build, listing


@pytest.fixture(params=[True, False], ids=["watch", "scan"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[GitWorkspaceStore, bytes]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "plain.txt").write_text("plain\n")
    s = GitWorkspaceStore(tmp_path / "state" / "ws.git", ws, watch=bool(request.param))
    yield s, os.fsencode(ws)
    s.close()


def test_odd_names_are_captured_listed_and_restored_exactly(store: tuple[GitWorkspaceStore, bytes]) -> None:
    s, ws = store
    before = s.capture()
    empty = listing(ws)
    build(ws)
    built = listing(ws)
    after = s.capture()

    changes = s.changes(before, after)
    listed = {os.fsencode(c.path): c for c in changes.changes}
    expected = {*ODD_FILES, ODD_LINK[0]}  # directories holding new files are implied by them
    assert set(listed) == expected
    assert all(c.kind is ChangeKind.ADDED for c in listed.values())
    assert listed[b"bad\xff"].new_mode == 0o100600 and listed[ODD_LINK[0]].new_mode & 0o170000 == 0o120000

    s.restore(before)
    assert listing(ws) == empty
    s.restore(after)
    assert listing(ws) == built  # names, contents, the symlink's target bytes and both odd modes


def test_edits_deletes_renames_and_type_changes_of_odd_names(store: tuple[GitWorkspaceStore, bytes]) -> None:
    s, ws = store
    build(ws)
    first, at_first = s.capture(), listing(ws)

    with open(os.path.join(ws, b"bad\xff"), "ab") as f:
        f.write(b"more\n")
    os.unlink(os.path.join(ws, b"nl\nname"))
    os.rename(os.path.join(ws, ODD_DIRS[0]), os.path.join(ws, b"moved\xfd"))
    os.unlink(os.path.join(ws, LONG))
    os.mkdir(os.path.join(ws, LONG))  # file -> directory under the same 255-byte name
    with open(os.path.join(ws, LONG, b"in\x80"), "wb") as f:
        f.write(b"x")
    os.chmod(os.path.join(ws, b"\xc3\x28"), 0o640)
    second, at_second = s.capture(), listing(ws)

    got = {(c.kind, os.fsencode(c.path)) for c in s.changes(first, second).changes}
    assert got == {
        (ChangeKind.MODIFIED, b"bad\xff"),
        (ChangeKind.DELETED, b"nl\nname"),
        (ChangeKind.MODE_CHANGED, b"\xc3\x28"),
        (ChangeKind.TYPE_CHANGED, LONG + b"/"),  # file -> directory, under a 255-byte name
        (ChangeKind.ADDED, LONG + b"/in\x80"),
        # the moved directory's files (the directories themselves are implied by them)
        (ChangeKind.DELETED, b"d\xfe/s\x80/f\xff"),
        (ChangeKind.DELETED, b"d\xfe/" + LONG),
        (ChangeKind.ADDED, b"moved\xfd/s\x80/f\xff"),
        (ChangeKind.ADDED, b"moved\xfd/" + LONG),
    }

    s.restore(first)
    assert listing(ws) == at_first
    s.restore(second)
    assert listing(ws) == at_second


def test_raw_tree_writer_matches_libgit2_for_odd_names(tmp_path: Path) -> None:
    """rawtree.write_tree (pygit2's TreeBuilder takes UTF-8 names only) writes the very tree
    libgit2's index writes for the same entries: same format, same order, same id."""
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    blob, other = repo.create_blob(b"x"), repo.create_blob(b"y")
    sub = _index_tree(repo, {"f": blob})
    base_entries = {os.fsdecode(n): blob for n in ODD_FILES if b"/" not in n} | {"a": blob, "a.b": blob}
    base = repo[_index_tree(repo, base_entries)]
    assert isinstance(base, pygit2.Tree)
    # put a file and a tree under odd names, replace one, remove two (one absent), keep the rest
    changes: dict[str, tuple[pygit2.Oid, int] | None] = {
        "new\udcff": (other, FileMode.BLOB),
        "a": (sub, FileMode.TREE),  # sorts as "a/", after "a.b"
        "bad\udcff": (other, FileMode.BLOB_EXECUTABLE),
        "nl\nname": None,
        "never\udcfe": None,
    }
    expected = dict(base_entries) | {"new\udcff": other, "bad\udcff": other}
    del expected["nl\nname"], expected["a"]
    index = pygit2.Index()
    for name, oid in expected.items():
        mode = FileMode.BLOB_EXECUTABLE if name == "bad\udcff" else FileMode.BLOB
        index.add(pygit2.IndexEntry(name, oid, mode))
    index.add(pygit2.IndexEntry("a/f", blob, FileMode.BLOB))
    assert write_tree(repo, base, changes) == index.write_tree(repo)
    assert write_tree(repo, None, {"only\udcff": None}) is None  # empty: git has no empty trees
    fsck = subprocess.run(["git", "--git-dir", str(tmp_path / "r.git"), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr


def _index_tree(repo: pygit2.Repository, entries: dict[str, pygit2.Oid]) -> pygit2.Oid:
    index = pygit2.Index()
    for name, oid in entries.items():
        index.add(pygit2.IndexEntry(name, oid, FileMode.BLOB))
    return index.write_tree(repo)


def test_change_set_is_sorted_by_name_bytes(store: tuple[GitWorkspaceStore, bytes]) -> None:
    s, ws = store
    before = s.capture()
    # As str (goexd's surrogate-escaped paths), U+20AC and U+1F600 sort around b"\x80" and b"\xff".
    names = [b"\x80x", "€".encode(), "😀".encode(), b"\xff", b"a.b", b"a/b"]
    os.mkdir(os.path.join(ws, b"a"))
    for n in names:
        with open(os.path.join(ws, n), "wb") as f:
            f.write(n)
    got = [os.fsencode(c.path) for c in s.changes(before, s.capture()).changes]
    assert got == [b"a.b", b"a/b", b"\x80x", "€".encode(), "😀".encode(), b"\xff"]
