"""Hard links, FIFOs and actions with nothing compared, for the file inverse strategy (issue 15 trial 2: F1, F13).

Snapshot ids do not encode which names share an inode: the trial, the undo's verification and verdict memory's
fingerprint compare the link groups beside them (fs_links.py). A removal goexd does not apply (a FIFO's) makes the
trial unknown, and an undo that compared nothing is unverified, never verified."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from goexd.domain.models import ActionKind, ActionSpec, UndoStrategy, Verdict
from goexd.resources.fs.inverse import FsInverseResource
from tests.integration.test_fs_inverse import LIMITS, _open, _run, sh


def _linked(tmp: Path, *, overlays: bool) -> tuple[FsInverseResource, Path]:
    manager, ws = _open(tmp, UndoStrategy.INVERSE, overlays=overlays)
    assert isinstance(manager, FsInverseResource)
    os.link(ws / "a.txt", ws / "h.txt")
    manager.fingerprint()  # a capture that lists the new name
    return manager, ws


def test_the_trial_fails_a_pair_that_leaves_a_copy_where_a_hard_link_was(tmp_path: Path) -> None:
    manager, ws = _linked(tmp_path, overlays=True)
    try:
        copy = manager.test(sh("rm h.txt"), sh("cp a.txt h.txt"), LIMITS, None)
        assert copy.verdict is Verdict.FAILED, copy.detail
        assert "h.txt: no longer a hard link of a.txt" in copy.detail, copy.detail
        # goexd applies a run's result by content: even `ln` comes back as a copy, so the trial says so.
        relinked = manager.test(sh("rm h.txt"), sh("ln a.txt h.txt"), LIMITS, None)
        assert relinked.verdict is Verdict.FAILED and "no longer a hard link" in relinked.detail, relinked.detail
        mode = manager.test(sh("chmod 600 h.txt"), sh("chmod 644 h.txt"), LIMITS, None)  # applied in place
        assert mode.verdict is Verdict.PASSED, mode.detail
        assert os.stat(ws / "h.txt").st_ino == os.stat(ws / "a.txt").st_ino  # the workspace untouched
    finally:
        manager.close()


def test_undo_verifies_hard_links_by_inode(tmp_path: Path) -> None:
    manager, ws = _linked(tmp_path, overlays=False)  # direct: the inverse's own `ln` reaches the workspace
    try:
        right = manager.rollback("act_l1", _run(manager, "act_l1", sh("rm h.txt"), sh("ln a.txt h.txt")))
        assert right.verified, right.detail
        assert os.stat(ws / "h.txt").st_ino == os.stat(ws / "a.txt").st_ino
        wrong = manager.rollback("act_l2", _run(manager, "act_l2", sh("rm h.txt"), sh("cp a.txt h.txt")))
        assert not wrong.verified and wrong.compared, wrong.detail
        assert "h.txt: no longer a hard link of a.txt" in wrong.detail, wrong.detail
        assert os.stat(ws / "a.txt").st_nlink == 1
    finally:
        manager.close()


def test_verdict_memory_tells_a_hard_link_from_a_copy(tmp_path: Path) -> None:
    manager, ws = _linked(tmp_path, overlays=True)
    try:
        linked = manager.state_fingerprint()
        os.unlink(ws / "h.txt")
        (ws / "h.txt").write_bytes((ws / "a.txt").read_bytes())
        os.chmod(ws / "h.txt", 0o644)
        assert manager.fingerprint() == manager.fingerprint()
        copied = manager.state_fingerprint()
        assert copied != linked
        assert copied.split("+")[0] == linked.split("+")[0]  # the snapshot ids alone are equal
    finally:
        manager.close()


def test_removing_a_fifo_is_unknown_in_the_trial(tmp_path: Path) -> None:
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE)
    try:
        os.mkfifo(ws / "p")
        for inverse in ("true", "touch p"):
            got = manager.test(sh("rm p"), sh(inverse), LIMITS, None)
            assert got.verdict is Verdict.UNKNOWN, got.detail
            assert "p (a FIFO)" in got.detail, got.detail
        assert (ws / "p").is_fifo()
    finally:
        manager.close()


def test_an_undo_that_compared_nothing_is_unverified(tmp_path: Path) -> None:
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE, overlays=False)
    assert isinstance(manager, FsInverseResource)
    try:
        os.mkfifo(ws / "p")
        report = manager.rollback("act_f", _run(manager, "act_f", sh("rm p"), sh("true")))
        assert not report.verified and not report.compared, report.detail
        assert report.verdict is Verdict.UNKNOWN and "unverified" in report.detail, report.detail
    finally:
        manager.close()


def test_an_xattr_change_is_unknown_in_the_trial_and_named_when_applied(tmp_path: Path) -> None:
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE)
    assert isinstance(manager, FsInverseResource)
    setx = "import os; os.setxattr('a.txt', 'user.tag', b'1')"
    try:
        got = manager.test(ActionSpec(ActionKind.PYTHON, code=setx), sh("true"), LIMITS, None)
        assert got.verdict is Verdict.UNKNOWN and "a.txt (extended attributes)" in got.detail, got.detail
        cp = manager.checkpoint("act_x", sh("true"))
        out = manager.execute(ActionSpec(ActionKind.PYTHON, code=setx), LIMITS, cp, None, threading.Event())
        assert out.changes is not None
        assert any("not applied" in w and "a.txt (extended attributes)" in w for w in out.changes.warnings), out
        assert "user.tag" not in os.listxattr(ws / "a.txt")
    finally:
        manager.close()
