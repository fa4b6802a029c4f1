"""goexd/diskspace.py: telling a full disk from other failures, naming it, and the state dir's reserve."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

import pygit2
import pytest

from goexd import config
from goexd.diskspace import BALLAST_NAME, OutOfSpace, StateSpace, is_out_of_space, mount_point, out_of_space
from goexd.domain.errors import FailedPrecondition, ResourceExhausted, SetupError
from goexd.domain.snapshots import SnapshotError

MiB = 1024 * 1024


def _raised_from(cause: BaseException) -> SnapshotError:
    try:
        try:
            raise cause
        except BaseException as e:
            raise SnapshotError("restore failed") from e
    except SnapshotError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        pygit2.GitError("failed to write object: No space left on device"),
        SnapshotError("git add failed in /w: fatal: unable to write loose object file: No space left on device"),
        _raised_from(OSError(errno.ENOSPC, "No space left on device")),
        OutOfSpace("out of disk space while x"),
    ],
    ids=["enospc", "edquot", "libgit2", "git-cli", "chained", "ours"],
)
def test_a_full_disk_is_told_however_it_travels(exc: BaseException) -> None:
    assert is_out_of_space(exc)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EACCES, "Permission denied"),
        SnapshotError("restore not verified"),
        # A domain error may quote anything (an action's own stderr): its words are not goexd's disk.
        FailedPrecondition("the command said: No space left on device"),
        None,
    ],
    ids=["eacces", "other", "quoted", "none"],
)
def test_other_failures_are_not_a_full_disk(exc: BaseException | None) -> None:
    assert not is_out_of_space(exc)


def test_sqlite_says_full_by_its_result_code(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "t.db")
    db.execute("CREATE TABLE t (x)")
    db.execute("PRAGMA max_page_count = 2")  # SQLite's own limit gives the same SQLITE_FULL as a full disk
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert is_out_of_space(caught.value)


def test_the_message_names_the_fullest_filesystem_and_what_to_do(tmp_path: Path) -> None:
    err = out_of_space("undoing action act_1", [tmp_path / "not-yet" / "there", Path("/proc")])
    assert isinstance(err, ResourceExhausted) and not err.partial
    text = str(err)
    assert text.startswith("out of disk space while undoing action act_1: the filesystem of ")
    assert "/proc (at /proc; 0 B free" in text  # procfs reports nothing free: the fuller one is named
    assert "goex gc" in text and "then retry" in text


def test_the_mount_point_is_the_top_of_the_filesystem(tmp_path: Path) -> None:
    assert mount_point(Path("/proc/self/status")) == Path("/proc")
    top = mount_point(tmp_path / "not-yet")
    assert tmp_path.resolve().is_relative_to(top)
    assert top == Path("/") or os.stat(top).st_dev != os.stat(top.parent).st_dev


def test_below_the_reserve_an_action_is_refused_naming_the_key(tmp_path: Path) -> None:
    space = StateSpace(tmp_path, reserve_bytes=shutil.disk_usage(tmp_path).free * 2)
    with pytest.raises(OutOfSpace) as caught:
        space.require("an action on resource 'ws'")
    assert "an action on resource 'ws' is refused" in str(caught.value)
    assert "state_reserve_bytes" in str(caught.value) and str(tmp_path) in str(caught.value)
    assert not (tmp_path / BALLAST_NAME).exists()  # nothing is held back where the reserve is not free


def test_the_held_back_space_is_given_up_once_and_made_again(tmp_path: Path) -> None:
    space = StateSpace(tmp_path, reserve_bytes=8 * MiB)
    space.require("an action")
    ballast = tmp_path / BALLAST_NAME
    assert ballast.stat().st_size == 1 * MiB and ballast.stat().st_blocks * 512 >= 1 * MiB  # real blocks
    assert os.stat(ballast).st_mode & 0o777 == 0o600
    assert space.release() is True
    assert not ballast.exists() and space.release() is False
    space.refill()
    assert ballast.stat().st_size == 1 * MiB


def test_a_zero_reserve_refuses_nothing_and_holds_nothing(tmp_path: Path) -> None:
    space = StateSpace(tmp_path, reserve_bytes=0)
    space.require("an action")
    space.refill()
    assert list(tmp_path.iterdir()) == []


def test_the_reserve_is_configured_in_bytes_or_with_a_unit(tmp_path: Path) -> None:
    assert config.Config().state_reserve_bytes == 64 * MiB
    f = tmp_path / "goexd.toml"
    f.write_text('state_reserve_bytes = "128M"\n')
    assert config.load(f, environ={}).state_reserve_bytes == 128 * MiB
    assert config.load(environ={"GOEXD_STATE_RESERVE_BYTES": "0"}).state_reserve_bytes == 0
    f.write_text("state_reserve_bytes = -1\n")
    with pytest.raises(SetupError, match="state_reserve_bytes"):
        config.load(f, environ={})
