"""Directory trees thousands deep through a real goexd (issue 14 F12d): an action may nest directories
deeper than Python's stack (~1,000 frames) and the default fd limit (1,024); its apply, diff and undo work
and give the tree back exactly. The paths below are longer than PATH_MAX, so the test makes and reads them
by fd (openat), as goexd does."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from goexd.snapshots.remove_tree import remove_tree
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell, undo
from tests.fs_fingerprint import fingerprint

DEPTH = 2000


def _leaf(ws: Path, depth: int) -> bytes | None:
    """The content of d/d/.../f at `depth`, read by fd (None when the chain is not there)."""
    fd = os.open(ws, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            try:
                sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                return None
            os.close(fd)
            fd = sub
        f = os.open("f", os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(f, 100)
        finally:
            os.close(f)
    finally:
        os.close(fd)


@pytest.fixture
def deep_workspace(workspace: Path) -> Iterator[Path]:
    """`workspace`, with whatever deep tree a failed test leaves removed (pytest's rmtree of its temporary
    dirs recurses: one left 2,000 deep would break every later run's cleanup)."""
    yield workspace
    with contextlib.suppress(FileNotFoundError):
        remove_tree(workspace / "d", open_up=True)


def test_an_action_nesting_directories_2000_deep_applies_diffs_and_undoes(
    shared_daemon: DaemonProcess, deep_workspace: Path
) -> None:
    workspace = deep_workspace
    before = fingerprint(workspace)
    s = open_fs(shared_daemon, workspace)
    script = f"i=0; while [ $i -lt {DEPTH} ]; do mkdir d && cd d || exit 9; i=$((i+1)); done; echo leaf > f"
    action = shell(shared_daemon, s.id, script)
    assert action.state == pb.ACTION_STATE_EXECUTED and action.exec.exit_code == 0, action
    assert _leaf(workspace, DEPTH) == b"leaf\n"

    diff = shared_daemon.actions.GetDiff(apb.GetDiffRequest(action_id=action.id), timeout=120)
    leaf = "/".join(["d"] * DEPTH) + "/f"
    assert [f.path for f in diff.files] == [leaf] and b"+leaf\n" in diff.files[0].patch

    # DescribeSession walks the workspace too (it listed files through os.walk, which recurses).
    described = shared_daemon.sessions.DescribeSession(sepb.DescribeSessionRequest(session_id=s.id), timeout=60)
    [text] = [r.text for r in described.resources]
    assert "  b.txt\n" in text and "  sub/c.bin" in text, text

    [undone] = undo(shared_daemon, s.id)
    assert undone.state == pb.ACTION_STATE_UNDONE, undone
    assert undone.reversibility.verdict == pb.VERDICT_PASSED and "verified on disk" in undone.reversibility.detail
    assert not (workspace / "d").exists() and fingerprint(workspace) == before


def test_remove_tree_takes_any_depth_and_opens_up_modes(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for i in range(3 * DEPTH):  # deeper than the recursion limit and the default fd limit together
        os.mkdir("d", dir_fd=fd)
        if i % 500 == 0:
            os.symlink("/", "link", dir_fd=fd)  # never followed
            os.close(os.open("x", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
        sub = os.open("d", os.O_RDONLY, dir_fd=fd)
        if i == 1000:
            os.chmod(fd, 0o500)  # an action's own modes: listable, not writable
        os.close(fd)
        fd = sub
    os.close(fd)
    remove_tree(top, open_up=True)
    assert not top.exists() and tmp_path.exists()
