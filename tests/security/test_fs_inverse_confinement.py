"""The file inverse strategy's trials and undos run in the sandbox, confined as every action is
(goexd as root and as an unprivileged user): a trial never reaches the real workspace, even when
its commands try to unmount or cover the overlay it runs on; neither a trial nor an inverse run
for real reaches host files outside the workspace or the daemon's state dir (where the trials'
overlays live)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import fingerprint
from tests.security.conftest import action_spec, close_session, make_workspace
from tests.security.probes import tag


@pytest.fixture
def victim(sec_daemon: DaemonProcess) -> Iterator[Path]:
    """A host dir outside any workspace, owned by the daemon's user, holding `canary`."""
    d = Path("/var/lib") / tag()
    d.mkdir(mode=0o755)
    (d / "canary").write_text("canary\n")
    for p in (d, d / "canary"):
        os.chown(p, sec_daemon.uid, sec_daemon.gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def inverse_ws(sec_daemon: DaemonProcess) -> Iterator[tuple[Path, str]]:
    """A workspace owned by the daemon's user, in a session with the inverse strategy."""
    with make_workspace(sec_daemon.uid, sec_daemon.gid) as ws:
        spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)), strategy=pb.UNDO_STRATEGY_INVERSE)
        session = sec_daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60).session
        yield ws, session.id
        close_session(sec_daemon, session.id)


def _test(d: DaemonProcess, session: str, action: str, inverse: str) -> pb.Reversibility:
    req = apb.TestReversibilityRequest(session_id=session, spec=action_spec(action), inverse=action_spec(inverse))
    found: pb.Reversibility = d.actions.TestReversibility(req, timeout=120).reversibility
    return found


def test_a_trial_cannot_reach_the_real_workspace(sec_daemon: DaemonProcess, inverse_ws: tuple[Path, str]) -> None:
    ws, session = inverse_ws
    before = fingerprint(ws)
    # Take the overlay away (or cover it) to write the workspace underneath: all refused in the sandbox.
    escape = (
        "umount -l /workspace 2>/dev/null; umount /workspace 2>/dev/null; "
        "mount -t tmpfs none /workspace 2>/dev/null; mount --bind / /workspace 2>/dev/null; "
        "echo pwned > /workspace/README; echo x > /workspace/planted"
    )
    found = _test(sec_daemon, session, escape, "true")
    assert found.verdict == pb.VERDICT_FAILED, found.detail
    assert "README: contents differ" in found.detail and "planted: left behind" in found.detail, found.detail
    assert fingerprint(ws) == before
    overlays = sec_daemon.state_dir / "overlays"
    deadline = time.monotonic() + 10  # nothing of it is left (its dir is removed in the background)
    while [p for p in overlays.iterdir() if p.name.startswith("trial-")] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in overlays.iterdir() if p.name.startswith("trial-")]


def test_trials_and_inverses_do_not_reach_the_host_or_the_state_dir(
    sec_daemon: DaemonProcess, inverse_ws: tuple[Path, str], victim: Path
) -> None:
    ws, session = inverse_ws
    state = sec_daemon.state_dir
    assert {"overlays", "fs", "journal.sqlite3"} <= {p.name for p in state.iterdir()}  # what it must not see
    reach = (
        f"echo pwned > {victim}/canary 2>/dev/null; echo pwned > {victim}/new 2>/dev/null; "
        f"ls -a {state} {state}/overlays {state}/fs > seen 2>&1; true"
    )
    # The inverse fails (exit 7) if the listing shows anything of the state dir: the test would fail.
    names = "overlays|journal[.]sqlite3|fs|trial-.*|[0-9a-f]*[.]git"
    check = f"if grep -qxE '{names}' seen; then cat seen >&2; exit 7; fi; rm seen"
    # In a trial: the host writes fail, the state dir is not there to list.
    found = _test(sec_daemon, session, f"echo x > n; {reach}", f"rm n; {check}")
    assert found.verdict == pb.VERDICT_PASSED, found.detail
    assert (victim / "canary").read_text() == "canary\n" and not (victim / "new").exists()
    # For real: the inverse runs at undo, in the sandbox, and reaches neither.
    action = sec_daemon.actions.SubmitAction(
        apb.SubmitActionRequest(
            session_id=session, spec=action_spec("echo x > n"), inverse=action_spec(f"rm n; {reach}; {check}")
        ),
        timeout=120,
    ).action
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    assert action.reversibility.verdict == pb.VERDICT_PASSED, action.reversibility.detail
    (undone,) = sec_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=session), timeout=120).undone
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert (victim / "canary").read_text() == "canary\n" and not (victim / "new").exists()
    assert sorted(p.name for p in ws.iterdir()) == ["README"]
