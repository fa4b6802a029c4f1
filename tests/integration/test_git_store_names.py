"""The snapshot store with names that are bytes (tests/odd_names.py): capture, change set and
restore are exact for them, in both change-detection modes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.snapshots.base import ChangeKind
from goexd.snapshots.git_store import GitWorkspaceStore
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
