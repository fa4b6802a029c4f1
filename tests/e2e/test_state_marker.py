"""What marks a goexd state dir (issue 14 F11): a marker file names the directory it marks (device and
inode), so a `.goexd-state` an action plants in a workspace, or a copy of a real one, marks nothing and the
workspace stays usable; a real state dir is still refused (tests/security/test_refused_workspaces.py does
that with a second live goexd)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import grpc
import pytest

from goex.v1 import sessions_pb2 as sepb
from goexd.resources.host_paths import STATE_MARKER, STATE_MARKER_TEXT, is_state_dir, mark_state_dir
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import commit, open_fs, shell, status_of


def close(d: DaemonProcess, session_id: str) -> None:
    d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=session_id), timeout=60)


def test_a_marker_an_action_plants_does_not_get_the_workspace_refused(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    s = open_fs(shared_daemon, workspace)
    text = STATE_MARKER_TEXT.replace("'", "")  # the real marker's words, as an action could copy them
    shell(shared_daemon, s.id, f"mkdir -p src/deep && : > src/deep/{STATE_MARKER} && printf '{text}' > {STATE_MARKER}")
    commit(shared_daemon, s.id)
    close(shared_daemon, s.id)
    assert (workspace / "src" / "deep" / STATE_MARKER).exists() and (workspace / STATE_MARKER).exists()
    again = open_fs(shared_daemon, workspace)  # was: "contains the state directory ... of a goexd"
    close(shared_daemon, again.id)


def test_a_copied_state_dir_marks_nothing_the_real_one_is_refused(
    shared_daemon: DaemonProcess, workspace: Path, tmp_path: Path
) -> None:
    real = workspace / "inner" / "state"
    real.mkdir(parents=True)
    mark_state_dir(real)
    assert is_state_dir(real)
    code, msg = status_of(lambda: open_fs(shared_daemon, workspace))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "contains the state directory" in msg, msg
    # A copy elsewhere names the original directory, not itself: not a state dir.
    copy = tmp_path / "elsewhere" / "state"
    shutil.copytree(real, copy)
    shutil.rmtree(workspace / "inner")
    (workspace / "copied").mkdir()
    shutil.copy(copy / STATE_MARKER, workspace / "copied" / STATE_MARKER)
    assert not is_state_dir(copy) and not is_state_dir(workspace / "copied")
    s = open_fs(shared_daemon, workspace)
    close(shared_daemon, s.id)
    # goexd marks a state dir again when it names another (copied, moved, or an older goexd's marker).
    mark_state_dir(copy)
    assert is_state_dir(copy)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "large"])
def test_only_a_small_regular_file_is_a_marker(tmp_path: Path, kind: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    mark_state_dir(d)
    real = (d / STATE_MARKER).read_bytes()
    (d / STATE_MARKER).unlink()
    if kind == "symlink":
        (tmp_path / "target").write_bytes(real)
        os.symlink(tmp_path / "target", d / STATE_MARKER)
    elif kind == "fifo":
        os.mkfifo(d / STATE_MARKER)
    else:
        (d / STATE_MARKER).write_bytes(real + b" " * 5000)
    assert not is_state_dir(d)
