"""A kill -9 of goexd while an action runs over the overlay leaves no mount once goexd starts again, and the
person's workspace is never shadowed (sandbox/overlay_mounts.py; the launch chain's for an unprivileged goexd).

goexd as root (it mounts each run's overlay itself, in its mount dir) and as the unprivileged user goex-sec
(the run's overlay lives in a user namespace of the run's own), each over a workspace of that user:
- killed while an action sleeps over its overlay: at the next start no overlay over the state dir's uppers
  is mounted in any process's mount namespace, nothing is left in goexd's mount dirs but the new one, the
  workspace is not a mount point and holds exactly what it held (the action was rolled back: INTERRUPTED);
  the control shows the root goexd's mount still there between the kill and the restart;
- root only: killed at the fault point right after the mount (`fs-overlay-mounted`, the start's overlay
  probe reaching it first), the same after the restart;
- at a clean stop the mount dir is unmounted and removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import types_pb2 as pb
from goexd.faults import ARM_ENV, POINT_ENV
from goexd.sandbox.reaper import owner_key
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, shell
from tests.faults.leftovers import goexd_mount_points, mounted_on, overlay_mounts, settle
from tests.security.conftest import SEC_USER, _scratch_dir, make_workspace
from tests.users import ensure_system_user

MODES = ("root", "user")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def daemon_and_workspace(mode: str, env: dict[str, str] | None = None) -> Iterator[tuple[DaemonProcess, Path]]:
    """A goexd (not started) in `mode` and a workspace of its user (root's workspace is goex-sec's: a root goexd
    switches to the workspace's owner, the common case)."""
    user = ensure_system_user(SEC_USER)
    ids = (user.pw_uid, user.pw_gid)
    root = _scratch_dir("goex-mountkill-", *(ids if mode == "user" else (0, 0)))
    d = DaemonProcess(root, user=SEC_USER if mode == "user" else None, env=env)
    try:
        with make_workspace(*ids) as ws:
            yield d, ws
    finally:
        d.kill()
        shutil.rmtree(root, ignore_errors=True)


def listing(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file()}


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_nothing_left(d: DaemonProcess, ws: Path, before: dict[str, bytes], action_id: str) -> None:
    owner = owner_key(d.state_dir)
    assert settle(owner) == {}, "a sandbox process of the killed goexd outlived the restart"
    assert overlay_mounts(d.state_dir) == [], "an overlay of the killed goexd is still mounted somewhere"
    mine = goexd_mount_points(owner)
    if d.user is None:  # the live goexd's own mount dir (a private tmpfs), nothing below it
        assert len(mine) == 1 and not any(p.startswith(mine[0] + "/") for p in mine), mine
    else:
        assert mine == [], mine  # an unprivileged goexd mounts nothing where the host sees it
    assert not mounted_on(ws)
    assert listing(ws) == before  # the run's write never reached it
    assert get(d, action_id).state == pb.ACTION_STATE_INTERRUPTED


def test_a_kill_during_a_run_over_the_overlay_leaves_no_mount_after_the_restart(mode: str) -> None:
    with daemon_and_workspace(mode) as (d, ws):
        d.start()
        before = listing(ws)
        session = open_fs(d, ws).id
        action = shell(d, session, "echo run > written.txt; sleep 60", detach=True)
        wait_for("the run's overlay", lambda: overlay_mounts(d.state_dir))
        wait_for("the run's write", (upper(d, action.id) / "written.txt").exists)
        assert not mounted_on(ws) and listing(ws) == before  # shadowed by nothing while it runs, untouched
        d.kill()
        if mode == "root":
            left = [p for p in goexd_mount_points(owner_key(d.state_dir)) if p.endswith("/ws")]
            assert len(left) == 1, f"control: the kill left the run's overlay mounted ({left})"
        d.start()
        assert_nothing_left(d, ws, before, action.id)
        assert d.stop() == 0
        assert goexd_mount_points(owner_key(d.state_dir)) == []  # the mount dir goes at a clean stop
        assert not [n for n in os.listdir("/tmp") if n.startswith(f"goexd-mounts-{owner_key(d.state_dir)}-")]


def test_a_kill_right_after_the_mount_leaves_no_mount_after_the_restart() -> None:
    with daemon_and_workspace("root", env={ARM_ENV: "1", POINT_ENV: "fs-overlay-mounted@2"}) as (d, ws):
        d.start()  # the overlay probe at start is the point's first hit
        before = listing(ws)
        session = open_fs(d, ws).id
        with pytest.raises(grpc.RpcError):
            shell(d, session, "echo run > written.txt")
        assert d.proc is not None and d.proc.wait(30) == -9
        assert "fault point fs-overlay-mounted:fs-versioned hit" in d.log()
        left = [p for p in goexd_mount_points(owner_key(d.state_dir)) if p.endswith("/ws")]
        assert len(left) == 1, f"control: the kill left the run's overlay mounted ({left})"
        running = [a for a in os.listdir(d.state_dir / "overlays") if not a.startswith(".")]
        d.kill()
        d.env.pop(POINT_ENV)
        d.start()
        assert len(running) == 1
        assert_nothing_left(d, ws, before, running[0])
        assert d.stop() == 0


def upper(d: DaemonProcess, action_id: str) -> Path:
    return d.state_dir / "overlays" / action_id / "upper"
