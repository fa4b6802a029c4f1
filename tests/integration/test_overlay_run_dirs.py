"""What an overlay run costs and leaves: the overlay is mounted volatile (no sync of the state dir's
filesystem when the run's namespace goes), and an applied run's upper and work dirs go in the
background when small, before the action returns when large, and at the next start if a kill
came first. Real bwrap, real overlayfs, the real resource."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy
from goexd.domain.sandbox import Limits, SandboxSpec, WorkspaceOverlay
from goexd.resources.fs.versioned import APPLY_INTENT, BACKGROUND_DISCARD_BYTES, FsVersionedResource, drop_uppers
from goexd.sandbox import overlay
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore


def _resource(tmp: Path) -> tuple[FsVersionedResource, Path, Path]:
    ws = tmp / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    overlays = tmp / "state" / "overlays"
    overlays.mkdir(parents=True)
    store = GitWorkspaceStore(tmp / "state" / "ws.git", ws)
    res = Resource("ws", ResourceKind.FS, str(ws), UndoStrategy.VERSIONED)
    return FsVersionedResource(res, store, BwrapSandbox(), [], overlays_dir=overlays), ws, overlays


def _run(fs: FsVersionedResource, action_id: str, script: str) -> None:
    checkpoint = fs.checkpoint(action_id)
    spec = ActionSpec(kind=ActionKind.SHELL, argv=("sh", "-c", script))
    outcome = fs.execute(spec, Limits(timeout_s=30.0), checkpoint, None, None)
    assert outcome.exec.exit_code == 0 and outcome.changes is not None, outcome


def _discarding(overlays: Path) -> list[str]:
    trash = overlays.with_name(overlays.name + "-discarding")
    return sorted(p.name for p in trash.iterdir()) if trash.exists() else []


@pytest.mark.parametrize("by", ["goexd", "launch chain"])
def test_the_workspace_overlay_is_mounted_volatile_where_the_kernel_has_it(
    tmp_path: Path, sandbox: BwrapSandbox, by: str
) -> None:
    """By a root goexd itself (the suite's sandbox, as goexd sets it up) and by the launch chain."""
    ws, upper, work = tmp_path / "ws", tmp_path / "upper", tmp_path / "work"
    for d in (ws, upper, work):
        d.mkdir()
    ran = (sandbox if by == "goexd" else BwrapSandbox()).run(
        SandboxSpec(
            ["sh", "-c", "grep ' /workspace ' /proc/self/mountinfo"],
            ws,
            overlay=WorkspaceOverlay(upper, work),
            limits=Limits(timeout_s=30.0),
        )
    )
    assert ran.exit_code == 0, ran
    line = ran.stdout.decode()
    assert " - overlay goex-overlay " in line, line
    assert ("fsync=volatile" in line or ",volatile" in line) == overlay.VOLATILE, line
    assert overlay._has_volatile(os.uname().release) == overlay.VOLATILE


def test_volatile_is_asked_for_only_from_5_10() -> None:
    assert [overlay._has_volatile(r) for r in ("5.9.16", "5.10.0-23-amd64", "6.1.0", "4.19.0", "x")] == [
        False,
        True,
        True,
        False,
        False,
    ]


def test_a_small_upper_goes_in_the_background_a_large_one_before_the_action_returns(tmp_path: Path) -> None:
    fs, ws, overlays = _resource(tmp_path)
    try:
        _run(fs, "small", "echo agent > a.txt")
        assert [p.name for p in (overlays / "small").iterdir()] == [APPLY_INTENT]
        deadline = time.monotonic() + 30
        while _discarding(overlays) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _discarding(overlays) == []  # removed, by the background
        size = BACKGROUND_DISCARD_BYTES + 4096
        _run(fs, "large", f"head -c {size} /dev/zero > big")
        assert (ws / "big").stat().st_size == size
        assert [p.name for p in (overlays / "large").iterdir()] == [APPLY_INTENT]
        assert _discarding(overlays) == []  # nothing of it left to remove: its space is back already
    finally:
        fs.close()


def test_what_a_kill_left_being_removed_goes_at_the_next_start(tmp_path: Path) -> None:
    overlays = tmp_path / "overlays"
    trash = tmp_path / "overlays-discarding"
    (overlays / "act" / "upper").mkdir(parents=True)
    (overlays / "act" / APPLY_INTENT).write_text("{}")
    (trash / "0123" / "work").mkdir(parents=True)
    os.chmod(trash / "0123" / "work", 0)  # as overlayfs leaves its work dir
    drop_uppers(overlays)
    assert not trash.exists()
    assert [p.name for p in (overlays / "act").iterdir()] == [APPLY_INTENT]  # recovery's intent stays
