"""gc of the journal killed part way (kill -9 at its fault points, and from outside while VACUUM runs): the
journal opens at the next start, the action keeps its record (trimmed or whole, never half), and the next
gc finishes the job."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import sessions_pb2 as sepb
from goexd.faults import ARM_ENV, POINT_ENV
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get
from tests.e2e.test_output_retention import KEEP, OUTPUT, RETENTION, check_trimmed, journal_bytes, print_a_lot
from tests.faults.crash import crash, restart, stop_cleanly
from tests.faults.test_fs_crash import _workspace


@pytest.mark.parametrize("point", ["gc-trimmed:journal-gc", "gc-vacuumed:journal-gc"])
def test_gc_killed_at_its_fault_points(tmp_path: Path, point: str) -> None:
    workspace = _workspace(tmp_path)
    root = tmp_path / "d"
    root.mkdir()
    d = DaemonProcess(root, env={ARM_ENV: "1", POINT_ENV: point}, config_toml=RETENTION).start()
    session, action = print_a_lot(d, workspace)
    d.actions.CommitActions(apb.CommitActionsRequest(session_id=session))
    crash(d, point, lambda: d.admin.RunGc(adpb.RunGcRequest()))
    restart(d)
    check_trimmed(d, action)  # the trim was journaled before the kill
    done = d.admin.RunGc(adpb.RunGcRequest())
    assert done.outputs_trimmed == 0 and journal_bytes(d) < 1_000_000, (done, journal_bytes(d))
    check_trimmed(d, action)
    stop_cleanly(d)


def test_gc_killed_from_outside_while_it_runs(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    root = tmp_path / "d"
    root.mkdir()
    d = DaemonProcess(root, config_toml=RETENTION).start()
    ids = []
    for _ in range(3):
        session, action = print_a_lot(d, workspace)
        d.actions.CommitActions(apb.CommitActionsRequest(session_id=session))
        d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=session))
        ids.append(action)
    assert d.proc is not None
    proc = d.proc
    killer = threading.Timer(0.15, proc.kill)  # in the middle of trimming or vacuuming (a 12 MB journal)
    killer.start()
    try:
        d.admin.RunGc(adpb.RunGcRequest(), timeout=60)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE
    killer.join()
    proc.wait(10)
    d.kill()
    restart(d)
    for action in ids:  # each record whole or trimmed, never half: it loads, and says which
        out = get(d, action).exec
        assert out.stdout_total_bytes == OUTPUT
        assert (out.trimmed and out.stdout == b"x" * KEEP) or (not out.trimmed and len(out.stdout) == OUTPUT)
    d.admin.RunGc(adpb.RunGcRequest())
    for action in ids:
        check_trimmed(d, action)
    assert journal_bytes(d) < 1_000_000
    stop_cleanly(d)
