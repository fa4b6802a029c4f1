"""safefs compare-and-swap on a real filesystem (issue 14 F2/F4/F8): what someone wrote after goexd planned a
write is put back, never overwritten; a write through a descriptor held open across the swap is kept beside the
path; a directory that gained content is kept; leftover temporaries are removed only where goexd holds them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from goexd.snapshots.safefs import ABSENT, Check, Displaced, SafeFS, remove_temporaries

OWNER = (os.geteuid(), os.getegid())


def holds(content: bytes) -> Check:
    """A check: the entry is a regular file with this content."""

    def check(pfd: int, st: os.stat_result) -> bool:
        fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY)
        try:
            return os.read(fd, 1 << 20) == content
        finally:
            os.close(fd)

    return check


def test_a_file_changed_since_the_plan_is_put_back_and_the_write_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"planned\n")
    (tmp_path / "f").write_bytes(b"the person's\n")  # after the plan's capture
    with SafeFS(tmp_path).batch() as fs:
        try:
            fs.write_file("f", [b"goexd's\n"], 0o644, OWNER, holds(b"planned\n"))
            raise AssertionError("written over the person's version")
        except Displaced:
            pass
    assert (tmp_path / "f").read_bytes() == b"the person's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing left beside it


def test_a_file_as_planned_is_replaced_in_one_rename(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"planned\n")
    with SafeFS(tmp_path).batch() as fs:
        fs.write_file("f", [b"goexd's\n"], 0o600, OWNER, holds(b"planned\n"))
        assert fs.written["f"][0] == os.lstat(tmp_path / "f").st_ino
    assert (tmp_path / "f").read_bytes() == b"goexd's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_path_someone_created_is_not_overwritten_where_the_plan_had_nothing(tmp_path: Path) -> None:
    (tmp_path / "new").write_bytes(b"mine\n")
    with SafeFS(tmp_path).batch() as fs:
        try:
            fs.write_file("new", [b"goexd's\n"], 0o644, OWNER, ABSENT)
            raise AssertionError("written over it")
        except Displaced:
            pass
    assert (tmp_path / "new").read_bytes() == b"mine\n"


def test_a_write_through_a_descriptor_held_open_across_the_swap_is_kept_beside(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"planned\n")
    held = os.open(tmp_path / "f", os.O_WRONLY)  # an editor's descriptor on the old file
    try:
        with SafeFS(tmp_path).batch() as fs:
            fs.write_file("f", [b"goexd's\n"], 0o644, OWNER, holds(b"planned\n"))
            os.ftruncate(held, 0)
            os.write(held, b"saved through the old descriptor\n")
        assert fs.kept == ["f"]
    finally:
        os.close(held)
    assert (tmp_path / "f").read_bytes() == b"goexd's\n"
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("f.goex-kept-")]
    assert kept.read_bytes() == b"saved through the old descriptor\n"


def test_a_removal_puts_back_what_changed_and_a_directory_that_gained_a_file_stays(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "f").write_bytes(b"the person's\n")
    (tmp_path / "gone").write_bytes(b"planned\n")
    with SafeFS(tmp_path).batch() as fs:
        assert not fs.remove_if("d/f", holds(b"planned\n"))
        assert fs.remove_if("gone", holds(b"planned\n"))
        assert not fs.rmdir_if_empty("d")
    assert (tmp_path / "d" / "f").read_bytes() == b"the person's\n" and not (tmp_path / "gone").exists()
    os.unlink(tmp_path / "d" / "f")
    with SafeFS(tmp_path).batch() as fs:
        assert fs.rmdir_if_empty("d")  # only directories left in it: they go
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_leftover_temporaries_go_only_where_goexd_holds_their_content(tmp_path: Path) -> None:
    (tmp_path / ".goex-write-0123456789abcdef").write_bytes(b"goexd's content\n")
    (tmp_path / ".goex-write-fedcba9876543210").write_bytes(b"someone's version\n")
    (tmp_path / ".goex-write-notours").write_bytes(b"not the pattern\n")
    known = hashlib.sha256(b"goexd's content\n").hexdigest()

    def ours(fd: int) -> bool:
        return hashlib.sha256(os.read(fd, 1 << 20)).hexdigest() == known

    removed, kept = remove_temporaries(tmp_path, [""], ours)
    assert removed == [".goex-write-0123456789abcdef"] and kept == [".goex-write-fedcba9876543210"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert ".goex-write-notours" in names and not any(n == ".goex-write-0123456789abcdef" for n in names)
    [k] = [p for p in tmp_path.iterdir() if ".goex-kept-" in p.name]
    assert k.read_bytes() == b"someone's version\n"
