"""A root goexd's own overlay mounts (sandbox/overlay_mounts.py), with real overlayfs and bubblewrap.

- A run's overlay is mounted in the mount dir, never on the workspace's path, in a run dir only the
  workspace's owner (and root) can pass through (they can neither list nor write it), and unmounted when
  the run ends.
- The mount dir is private: a run's mount reaches no other mount namespace, even where the mount dir's
  parent is shared (as systemd makes /); a control mount beside it does.
- What a holder killed inside a run leaves mounted, the next open of the same owner unmounts; the
  workspace is untouched and was never a mount point; nothing is deleted through a mount.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from goexd.domain.sandbox import Limits, SandboxSpec, Stream, Termination, WorkspaceOverlay
from goexd.sandbox import overlay_mounts as module
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.overlay_mounts import MOUNT_POINT, OverlayMounts, mount_points
from tests.security.conftest import _scratch_dir
from tests.users import ensure_system_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a root goexd's mounts: the suite runs as root")

USER = "goex-sec"


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = _scratch_dir("goex-mounts-", 0, 0)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def user_workspace(scratch: Path) -> tuple[Path, WorkspaceOverlay, tuple[int, int]]:
    """A workspace of the unprivileged user and a fresh overlay for it (the upper as goexd makes it)."""
    user = ensure_system_user(USER)
    ids = (user.pw_uid, user.pw_gid)
    ws = scratch / "ws"
    ws.mkdir(mode=0o755)
    (ws / "a.txt").write_text("a\n")
    run = scratch / "run"
    (run / "upper").mkdir(parents=True)
    (run / "work").mkdir()
    os.chmod(run / "upper", 0o755)
    for p in (ws, ws / "a.txt", run / "upper"):
        os.chown(p, *ids)
    return ws, WorkspaceOverlay(run / "upper", run / "work"), ids


def under(base: Path) -> list[bytes]:
    raw = os.fsencode(base)
    return [p for p in mount_points() if p.startswith(raw + b"/")]


def run_and_look(
    sandbox: BwrapSandbox, ws: Path, spec_overlay: WorkspaceOverlay, look: Callable[[], None]
) -> tuple[int | None, bytes]:
    """Run a command over the overlay that writes, says "ready" and waits; `look` runs while it waits."""
    seen = threading.Event()

    def on_output(stream: Stream, chunk: bytes) -> None:
        if stream is Stream.STDOUT and b"ready" in chunk and not seen.is_set():
            seen.set()
            look()

    script = "echo x >> a.txt && echo new > new.txt && echo ready && sleep 0.3 && cat a.txt"
    spec = SandboxSpec(["sh", "-c", script], ws, overlay=spec_overlay, limits=Limits(timeout_s=30))
    result = sandbox.run(spec, on_output)
    assert seen.is_set(), result
    assert result.termination is Termination.EXITED, result
    return result.exit_code, result.stdout


def test_a_run_is_mounted_in_the_mount_dir_for_the_owner_alone_and_unmounted_after(
    overlay_mounts: OverlayMounts, scratch: Path
) -> None:
    ws, spec_overlay, (uid, gid) = user_workspace(scratch)
    sandbox = BwrapSandbox(overlay_mounts=overlay_mounts)
    looked: dict[str, object] = {}

    def look() -> None:
        mine = under(overlay_mounts.base)
        looked["mounts"] = mine
        looked["on_workspace"] = os.fsencode(ws) in mount_points()
        if mine:
            point = Path(os.fsdecode(mine[0]))
            st = point.parent.stat()
            looked["run_dir"] = (st.st_uid, st.st_gid)
            looked["base_mode"] = stat.S_IMODE(overlay_mounts.base.stat().st_mode)
            looked["as_owner"] = _as(uid, gid, "ls", str(point))
            looked["as_nobody"] = _as(65534, 65534, "ls", str(point))
            looked["owner_lists_run_dir"] = _as(uid, gid, "ls", str(point.parent))
            looked["owner_writes_run_dir"] = _as(uid, gid, "touch", str(point.parent / "filler"))

    code, out = run_and_look(sandbox, ws, spec_overlay, look)
    assert code == 0 and out.endswith(b"a\nx\n")
    mine = looked["mounts"]
    assert isinstance(mine, list) and len(mine) == 1 and mine[0].endswith(b"/" + MOUNT_POINT.encode()), mine
    assert looked["on_workspace"] is False  # the workspace's own path is never a mount point
    assert looked["run_dir"] == (0, 0)  # the run's dir is root's; its owner may only search it (an ACL entry)
    assert looked["base_mode"] == 0o711  # the mount dir: reachable, not listable
    assert looked["as_owner"] == "a.txt\nnew.txt\n" and looked["as_nobody"] is None  # the overlay: theirs alone
    assert looked["owner_lists_run_dir"] is None and looked["owner_writes_run_dir"] is None
    # The writes are in the upper; the workspace is as it was; nothing stays mounted or behind.
    assert (spec_overlay.upper / "new.txt").read_text() == "new\n"
    assert (ws / "a.txt").read_text() == "a\n" and not (ws / "new.txt").exists()
    assert under(overlay_mounts.base) == [] and list(overlay_mounts.base.iterdir()) == []


def _as(uid: int, gid: int, *argv: str) -> str | None:
    """What `argv` prints as uid:gid; None when it fails."""
    r = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout if r.returncode == 0 else None


@contextlib.contextmanager
def shared_tmpfs(scratch: Path) -> Iterator[tuple[Path, int]]:
    """A tmpfs with shared propagation (as systemd makes /) and a peer mount namespace cloned from ours
    (its pid): a mount under it propagates there unless made private."""
    top = scratch / "shared"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "goex-test", str(top)], check=True)
    peer = None
    try:
        subprocess.run(["mount", "--make-shared", str(top)], check=True)
        peer = subprocess.Popen(["unshare", "--mount", "--propagation", "unchanged", "--", "sleep", "120"])
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{peer.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            assert time.monotonic() < deadline, "the peer never got its own mount namespace"
            time.sleep(0.01)
        yield top, peer.pid
    finally:
        if peer is not None:
            peer.kill()
            peer.wait()
        subprocess.run(["umount", "--recursive", "--lazy", str(top)], check=False)


def peer_mounts(pid: int, top: Path) -> list[str]:
    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return [line for line in lines if str(top) in line.split(" - ")[0] and line.split()[4] != str(top)]


def test_a_runs_mount_reaches_no_other_namespace_and_the_mount_dir_goes_everywhere(scratch: Path) -> None:
    ws, spec_overlay, _ = user_workspace(scratch)
    with shared_tmpfs(scratch) as (top, peer):
        control = top / "control"
        control.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "goex-control", str(control)], check=True)
        assert any("goex-control" in line for line in peer_mounts(peer, top)), "control: propagation reaches the peer"
        subprocess.run(["umount", str(control)], check=True)
        mounts = OverlayMounts.open(f"test{secrets.token_hex(6)}", top)
        try:
            seen: list[list[str]] = []
            code, _ = run_and_look(
                BwrapSandbox(overlay_mounts=mounts), ws, spec_overlay, lambda: seen.append(peer_mounts(peer, top))
            )
            assert code == 0
            assert under(mounts.base) == [], "the run's overlay was unmounted"
            assert seen and not any("overlay" in line for line in seen[0]), seen  # never reached the peer
        finally:
            mounts.close()
        # The mount dir's own tmpfs reached the peer as it was made (before it turned private); removing the
        # dir took that copy away too: nothing of goexd's is left mounted anywhere.
        assert peer_mounts(peer, top) == []
        assert not mounts.base.exists()


HOLDER = """
import os, signal, sys
from pathlib import Path
from goexd.domain.sandbox import WorkspaceOverlay
from goexd.sandbox.identity import RunAs
from goexd.sandbox.overlay_mounts import OverlayMounts
owner, tmp, ws, upper, work, uid, gid = sys.argv[1:8]
mounts = OverlayMounts.open(owner, Path(tmp))
with mounts.mounted(Path(ws), WorkspaceOverlay(Path(upper), Path(work)), RunAs(int(uid), int(gid))) as point:
    Path(point, "from-the-run.txt").write_text("run\\n")  # a write through the overlay, into the upper
    print(point, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 of goexd while a run is under way
"""


def test_what_a_killed_goexd_left_mounted_the_next_open_unmounts(scratch: Path) -> None:
    ws, spec_overlay, (uid, gid) = user_workspace(scratch)
    owner = f"test{secrets.token_hex(6)}"
    tmp = scratch / "tmp"
    tmp.mkdir()
    args = [owner, tmp, ws, spec_overlay.upper, spec_overlay.work, uid, gid]
    held = subprocess.run([sys.executable, "-c", HOLDER, *map(str, args)], capture_output=True, text=True, check=False)
    assert held.returncode == -signal.SIGKILL, held.stderr
    point = Path(held.stdout.strip())
    left = [p for p in mount_points() if owner.encode() in p]
    assert os.fsencode(point) in left, f"control: the kill left the run's overlay mounted ({left})"
    dead_base = point.parent.parent
    mounts = OverlayMounts.open(owner, tmp)
    try:
        assert [p for p in mount_points() if owner.encode() in p] == [os.fsencode(mounts.base)]  # only the new dir
        assert not dead_base.exists()
        assert sorted(os.listdir(tmp)) == [mounts.base.name]
        # The workspace was never a mount point and is as it was; the run's write stayed in its upper.
        assert os.fsencode(ws) not in mount_points()
        assert sorted(os.listdir(ws)) == ["a.txt"] and (ws / "a.txt").read_text() == "a\n"
        assert (spec_overlay.upper / "from-the-run.txt").read_text() == "run\n"
    finally:
        mounts.close()
    assert [p for p in mount_points() if owner.encode() in p] == [] and os.listdir(tmp) == []


def test_a_dir_still_holding_a_mount_is_never_deleted_through_it(scratch: Path) -> None:
    """If a mount could not be taken away, its dir stays, and what is below the mount (here a stand-in for a
    workspace) is not deleted."""
    base = scratch / f"{module.PREFIX}x-held"
    (base / "run" / "ws").mkdir(parents=True)
    precious = scratch / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep\n")
    subprocess.run(["mount", "--bind", str(precious), str(base / "run" / "ws")], check=True)
    try:
        module._remove(base)
        assert (base / "run" / "ws" / "keep.txt").read_text() == "keep\n"
    finally:
        subprocess.run(["umount", str(base / "run" / "ws")], check=True)
    assert (precious / "keep.txt").read_text() == "keep\n"
    module._remove(base)
    assert not base.exists()
