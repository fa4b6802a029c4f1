"""Extended attributes and POSIX ACLs under the file inverse strategy (issue 15, trial 15b F29).

Snapshots do not hold extended attributes: a file's access ACL (system.posix_acl_access) removed with the file and
not put back by the inverse was "passed", its undo "verified", and a verdict from a state without the ACL was reused
on a state with it. Now the trial calls such a pair unknown, the undo compares the involved paths' attributes with
those recorded before the action (NOT verified, named), and verdict memory's fingerprint covers them (fs_xattrs.py).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pytest import MonkeyPatch

from goexd.domain.models import Reversibility, UndoStrategy, Verdict
from goexd.engine.journal import Journal
from goexd.engine.verdict_memory import VerdictMemory, remembered
from goexd.resources.fs import xattrs as fs_xattrs
from goexd.resources.fs.inverse import FsInverseResource
from tests.integration.test_fs_inverse import LIMITS, _open, _run, sh

ACL = "system.posix_acl_access"


def _acl() -> bytes:
    """user::rw-, user:65534:r--, group::r--, mask::r--, other::r-- (what `setfacl -m u:65534:r` gives)."""
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, 65534), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF)]
    entries.append((0x20, 4, 0xFFFFFFFF))
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


def _with_acl(tmp: Path, *, overlays: bool = True) -> tuple[FsInverseResource, Path]:
    manager, ws = _open(tmp, UndoStrategy.INVERSE, overlays=overlays)
    assert isinstance(manager, FsInverseResource)
    os.setxattr(ws / "a.txt", ACL, _acl())
    return manager, ws


def test_removing_a_file_with_an_acl_is_unknown_in_the_trial(tmp_path: Path) -> None:
    manager, ws = _with_acl(tmp_path)
    try:
        for inverse in ("printf 'alpha\\n' > a.txt; chmod 644 a.txt", "true"):
            got = manager.test(sh("rm a.txt"), sh(inverse), LIMITS, None)
            assert got.verdict is Verdict.UNKNOWN, got.detail
            assert "a.txt (extended attributes, removed with it)" in got.detail, got.detail
        # Below a removed directory too.
        os.mkdir(ws / "x")
        (ws / "x" / "f").write_text("x")
        os.setxattr(ws / "x" / "f", "user.tag", b"1")
        deep = manager.test(sh("rm -r x"), sh("mkdir x; echo x > x/f"), LIMITS, None)
        assert deep.verdict is Verdict.UNKNOWN and "x (extended attributes, removed with it)" in deep.detail, deep
        # goexd applies new content as a new file: the ACL would be lost. chmod rewrites an ACL's mask entry.
        written = manager.test(sh("printf x >> a.txt"), sh("truncate -s 6 a.txt"), LIMITS, None)
        assert written.verdict is Verdict.UNKNOWN and "a.txt (extended attributes, lost when" in written.detail
        kept = manager.test(sh("printf x >> b.txt"), sh("truncate -s 5 b.txt"), LIMITS, None)  # other files: as before
        assert kept.verdict is Verdict.PASSED, kept.detail
        masked = manager.test(sh("chmod 600 a.txt"), sh("chmod 644 a.txt"), LIMITS, None)
        assert masked.verdict is Verdict.UNKNOWN and "a.txt (extended attributes)" in masked.detail, masked.detail
        assert ACL in os.listxattr(ws / "a.txt")  # the workspace untouched
    finally:
        manager.close()


def test_an_undo_that_loses_an_acl_is_not_verified(tmp_path: Path) -> None:
    manager, ws = _with_acl(tmp_path, overlays=False)
    try:
        cp = _run(manager, "act_acl", sh("rm a.txt"), sh("printf 'alpha\\n' > a.txt; chmod 644 a.txt"))
        report = manager.rollback("act_acl", cp)
        assert (ws / "a.txt").read_text() == "alpha\n" and ACL not in os.listxattr(ws / "a.txt")
        assert not report.verified and report.compared, report.detail
        assert "a.txt: extended attributes differ (had some, now none)" in report.detail, report.detail
        assert "cannot restore them" in report.detail, report.detail
    finally:
        manager.close()


def test_an_undo_that_keeps_acls_is_verified(tmp_path: Path) -> None:
    manager, ws = _with_acl(tmp_path, overlays=False)
    try:
        report = manager.rollback("act_ok", _run(manager, "act_ok", sh("printf x >> a.txt"), sh("truncate -s 6 a.txt")))
        assert report.verified and "extended attributes" in report.detail, report.detail
        assert os.getxattr(ws / "a.txt", ACL) == _acl()
    finally:
        manager.close()


def test_verdict_memory_does_not_reuse_a_verdict_across_an_acl(tmp_path: Path) -> None:
    """The trial's F29: the pair passed on the workspace without the ACL; with it (same snapshot id) it is tried
    again, and is unknown there."""
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE)
    memory = VerdictMemory(Journal(tmp_path / "journal.sqlite3", sync="normal"))
    spec, inverse = sh("rm a.txt"), sh("printf 'alpha\\n' > a.txt; chmod 644 a.txt")

    def now() -> Reversibility:
        return manager.test(spec, inverse, LIMITS, None)

    try:
        first = remembered(memory, manager.resource, manager, spec, inverse, "t", now)
        assert first is not None and first.verdict is Verdict.PASSED, first
        again = remembered(memory, manager.resource, manager, spec, inverse, "t", now)
        assert again is not None and again.detail.startswith("reused: passed"), again
        snapshot = manager.state_fingerprint()
        os.setxattr(ws / "a.txt", ACL, _acl())
        assert manager.state_fingerprint() == snapshot  # the snapshot id alone does not see it
        with_acl = remembered(memory, manager.resource, manager, spec, inverse, "t", now)
        assert with_acl is not None and "reused" not in with_acl.detail, with_acl
        assert with_acl.verdict is Verdict.UNKNOWN, with_acl.detail
    finally:
        manager.close()


def test_the_workspace_walk_finds_acls_and_user_attributes(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "d" / ".git").mkdir(parents=True)
    (ws / ".git").mkdir()
    for f in ("d/f", "g", ".git/x", "d/.git/y"):
        (ws / f).write_text("x")
        os.setxattr(ws / f, "user.tag", b"1")
    os.setxattr(ws / "d", "user.tag", b"2")
    found = fs_xattrs.of_workspace(ws)
    assert sorted(found) == ["d", "d/.git/y", "d/f", "g"]  # the workspace's own top-level .git left out
    assert found["d/f"] == found["g"] != found["d"]
    assert fs_xattrs.differences(found, {**found, "g": "0"}) == ["g: extended attributes differ (had some, now some)"]


def test_new_content_applied_over_a_file_with_an_acl_is_named_and_its_undo_not_verified(tmp_path: Path) -> None:
    """Over an overlay goexd applies a file's new content as a new file, without its ACL: the apply says so, and the
    undo (which cannot bring the ACL back) says NOT verified."""
    manager, _ = _with_acl(tmp_path)
    try:
        cp = manager.checkpoint("act_w", sh("truncate -s 6 a.txt"))
        out = manager.execute(sh("printf x >> a.txt"), LIMITS, cp, None, None)
        assert out.changes is not None
        assert any("a.txt (extended attributes, lost when" in w for w in out.changes.warnings), out.changes.warnings
        report = manager.rollback("act_w", {**cp, **out.checkpoint_extra})
        assert not report.verified and "a.txt: extended attributes differ" in report.detail, report.detail
    finally:
        manager.close()


def test_a_modification_time_only_change_is_said_not_applied(tmp_path: Path) -> None:
    """Trial 15b F18: `touch -d` over an overlay changed nothing a snapshot holds, and goexd applied nothing
    without a word. goexd does not apply timestamps: the run's warnings say so."""
    manager, ws = _open(tmp_path, UndoStrategy.VERSIONED)
    try:
        mtime = os.stat(ws / "a.txt").st_mtime_ns
        cp = manager.checkpoint("act_t", None)
        out = manager.execute(sh("touch -d 2001-01-01 a.txt"), LIMITS, cp, None, None)
        assert out.exec is not None and out.exec.exit_code == 0 and out.changes is not None
        assert out.changes.changes == ()
        assert any("not applied" in w and "a.txt (modification time only)" in w for w in out.changes.warnings), out
        assert os.stat(ws / "a.txt").st_mtime_ns == mtime
        # A content change moves the mtime too: said as the change it is, not as a time.
        cp = manager.checkpoint("act_c", None)
        out = manager.execute(sh("echo more >> a.txt"), LIMITS, cp, None, None)
        assert out.changes is not None and not any("modification time" in w for w in out.changes.warnings), out
    finally:
        manager.close()


def test_the_attributes_are_followed_through_the_stores_dirty_sets(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    """xattrs_now walks the workspace once, then follows each capture's dirty set (an attribute change moves no
    snapshot id but is in it; the store keeps the latest captures' sets, whoever captured), and walks again only
    after a capture it cannot follow (a full scan)."""
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE)
    walks: list[Path] = []
    walk = fs_xattrs.of_workspace

    def counted(workspace: Path) -> dict[str, str]:
        walks.append(workspace)
        return walk(workspace)

    monkeypatch.setattr(fs_xattrs, "of_workspace", counted)
    try:
        assert manager.xattrs_now() == {} and len(walks) == 1
        assert manager.xattrs_now() == {} and len(walks) == 1  # nothing changed: no walk
        os.setxattr(ws / "a.txt", ACL, _acl())
        (ws / "x").mkdir()
        (ws / "x" / "f").write_text("f")
        os.setxattr(ws / "x" / "f", "user.tag", b"1")
        found = manager.xattrs_now()
        assert sorted(found) == ["a.txt", "x/f"] and len(walks) == 1, found
        os.removexattr(ws / "a.txt", ACL)
        os.rename(ws / "x", ws / "y")
        assert sorted(manager.xattrs_now()) == ["y/f"] and len(walks) == 1
        manager.fingerprint()  # a capture of another caller: followed through the store's log of dirty sets
        os.setxattr(ws / "b.txt", "user.tag", b"2")
        assert sorted(manager.xattrs_now()) == ["b.txt", "y/f"] and len(walks) == 1
        manager._store.full_scan()  # a capture with no dirty set: xattrs_now walks again, and finds the same
        assert sorted(manager.xattrs_now()) == ["b.txt", "y/f"] and len(walks) == 2
    finally:
        manager.close()
