"""Through a real goexd, as root and as an unprivileged user: the file inverse strategy's trial tells a hard link
from a copy (snapshot ids do not), verdict memory does not reuse a verdict across that difference, and removing a
FIFO (which goexd neither applies nor compares) is unknown, never passed (issue 15 trial 2: F1, F13)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.test_fs_inverse_confinement import _test, inverse_ws

__all__ = ["inverse_ws"]  # the fixture, used through linked_ws


@pytest.fixture
def linked_ws(sec_daemon: DaemonProcess, inverse_ws: tuple[Path, str]) -> tuple[Path, str]:
    """An inverse-strategy workspace of the daemon's user where h.txt is a hard link of a.txt."""
    ws, _ = inverse_ws
    (ws / "a.txt").write_text("alpha\n")
    os.chmod(ws / "a.txt", 0o644)
    os.chown(ws / "a.txt", sec_daemon.uid, sec_daemon.gid)
    os.link(ws / "a.txt", ws / "h.txt")
    return inverse_ws


def test_a_copy_where_a_hard_link_was_fails_and_is_not_reused_for_a_copy(
    sec_daemon: DaemonProcess, linked_ws: tuple[Path, str]
) -> None:
    ws, session = linked_ws
    linked = _test(sec_daemon, session, "rm h.txt", "cp a.txt h.txt")
    assert linked.verdict == pb.VERDICT_FAILED, linked.detail
    assert "h.txt: no longer a hard link of a.txt" in linked.detail, linked.detail
    assert os.stat(ws / "h.txt").st_ino == os.stat(ws / "a.txt").st_ino  # the workspace untouched
    # Same contents, modes and snapshot id, but h.txt a copy now: the pair is tried again, and passes there.
    os.unlink(ws / "h.txt")
    (ws / "h.txt").write_text("alpha\n")
    os.chmod(ws / "h.txt", 0o644)
    os.chown(ws / "h.txt", sec_daemon.uid, sec_daemon.gid)
    copied = _test(sec_daemon, session, "rm h.txt", "cp a.txt h.txt")
    assert copied.verdict == pb.VERDICT_PASSED, copied.detail
    assert "reused" not in copied.detail, copied.detail


def test_removing_a_fifo_is_unknown_not_passed(sec_daemon: DaemonProcess, linked_ws: tuple[Path, str]) -> None:
    ws, session = linked_ws
    os.mkfifo(ws / "p")
    os.chown(ws / "p", sec_daemon.uid, sec_daemon.gid)
    for inverse in ("true", "touch p"):
        found = _test(sec_daemon, session, "rm p", inverse)
        assert found.verdict == pb.VERDICT_UNKNOWN, found.detail
        assert "p (a FIFO)" in found.detail, found.detail
    assert (ws / "p").is_fifo()
