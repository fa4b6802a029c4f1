"""The daemon process: start-up checks, config, health, reflection, shutdown and crash recovery."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, shell, upper_of
from tests.fs_fingerprint import fingerprint


def test_health_reflection_and_admin(shared_daemon: DaemonProcess) -> None:
    ch = shared_daemon.connect()
    status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="goex.v1.Actions"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"goex.v1.Sessions", "goex.v1.Actions", "goex.v1.Secrets", "goex.v1.Admin"} <= names
    health = shared_daemon.admin.GetHealth(adpb.GetHealthRequest())
    assert health.ok and {c.name for c in health.components} >= {"journal", "sandbox", "snapshots"}
    gc = shared_daemon.admin.RunGc(adpb.RunGcRequest(dry_run=True))
    assert gc.snapshots_removed == 0


def test_check_config_prints_the_effective_config(tmp_path: Path) -> None:
    cfg = tmp_path / "goexd.toml"
    cfg.write_text('log_level = "debug"\n[sandbox]\ntimeout_s = 5\n')
    out = subprocess.run(
        [sys.executable, "-m", "goexd.main", "--config", str(cfg), "--memory", "256M", "--check-config"],
        capture_output=True,
        text=True,
        env={**os.environ, "GOEXD_SANDBOX__MAX_PROCESSES": "99"},
        check=True,
    ).stdout
    assert 'log_level = "debug"' in out and "timeout_s = 5.0" in out
    assert "memory_bytes = 268435456" in out and "max_processes = 99" in out

    cfg.write_text("[sandbox]\ntimeout = 5\n")
    bad = subprocess.run(
        [sys.executable, "-m", "goexd.main", "--config", str(cfg), "--check-config"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown config key [sandbox] 'timeout'" in bad.stderr


def test_missing_bwrap_is_a_clear_start_up_error(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("git", "sh"):  # a PATH with everything goexd needs except bwrap
        (bindir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    proc = subprocess.run(
        [sys.executable, "-m", "goexd.main", "--socket", str(tmp_path / "s.sock"), "--state-dir", str(tmp_path / "st")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(bindir)},
        timeout=30,
    )
    assert proc.returncode == 1
    assert "bubblewrap" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.sock").exists()


def test_second_daemon_on_the_same_socket_refuses(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    other = subprocess.run(
        [
            sys.executable,
            "-m",
            "goexd.main",
            "--socket",
            str(shared_daemon.socket),
            "--state-dir",
            str(tmp_path / "st2"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other.returncode == 1 and "already serving" in other.stderr
    assert shared_daemon.admin.GetHealth(adpb.GetHealthRequest()).ok


def _tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    if libc.syscall(sys_tgkill, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


def test_sigterm_delivered_to_any_thread_stops_the_daemon(daemon: DaemonProcess) -> None:
    """The kernel may hand a process signal to any thread; goexd must stop whichever one gets it."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert others, "goexd runs gRPC's threads"
    _tgkill(pid, others[-1], signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert "received SIGTERM; shutting down" in daemon.log() and "goexd stopped" in daemon.log()


def _wait_running(d: DaemonProcess, action_id: str, marker: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if get(d, action_id).state == pb.ACTION_STATE_RUNNING and marker.exists():
            return
        time.sleep(0.05)
    raise AssertionError("action never reached RUNNING")


def _sandbox_pids(tag: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_sigkill_mid_action_is_rolled_back_at_restart(tmp_path: Path, workspace: Path) -> None:
    root = tmp_path / "daemon"
    root.mkdir()
    d = DaemonProcess(root).start()
    before = fingerprint(workspace)
    session = open_fs(d, workspace)
    tag = f"sleep 300.{os.getpid()}"  # a unique command line to look for after the crash
    action = shell(d, session.id, f"rm b.txt; echo half > started.txt; {tag}", detach=True)
    _wait_running(d, action.id, upper_of(d, action.id) / "started.txt")
    d.kill()
    deadline = time.monotonic() + 10  # the sandbox dies with the daemon
    while _sandbox_pids(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_pids(tag) == []
    # Its half-done writes sit in its overlay: the workspace never saw them.
    assert (upper_of(d, action.id) / "started.txt").exists() and fingerprint(workspace) == before

    d2 = DaemonProcess(root).start()
    try:
        after = get(d2, action.id)
        assert after.state == pb.ACTION_STATE_INTERRUPTED
        assert "rolled back" in after.error
        assert fingerprint(workspace) == before
        assert not upper_of(d2, action.id).parent.exists()  # recovery threw the overlay away
        # The session survives the crash and keeps working.
        assert shell(d2, session.id, "echo again > again.txt").state == pb.ACTION_STATE_EXECUTED
    finally:
        assert d2.stop() == 0
    assert "recovered action" in d2.log()


def test_sigterm_interrupts_a_long_action_and_exits_cleanly(tmp_path: Path, workspace: Path) -> None:
    root = tmp_path / "daemon"
    root.mkdir()
    d = DaemonProcess(root).start()
    before = fingerprint(workspace)
    session = open_fs(d, workspace)
    action = shell(d, session.id, "echo x > started.txt; sleep 300", detach=True)
    _wait_running(d, action.id, upper_of(d, action.id) / "started.txt")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 15
    assert not d.socket.exists()
    assert fingerprint(workspace) == before
    d2 = DaemonProcess(root).start()
    try:
        assert get(d2, action.id).state == pb.ACTION_STATE_INTERRUPTED
    finally:
        d2.stop()


def test_watch_ends_when_the_client_cancels(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "sleep 2", detach=True)
    call = shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id=action.id))
    first = next(call)
    assert first.state == pb.ACTION_STATE_PROPOSED
    call.cancel()
    deadline = time.monotonic() + 30
    while get(shared_daemon, action.id).state != pb.ACTION_STATE_EXECUTED and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get(shared_daemon, action.id).state == pb.ACTION_STATE_EXECUTED
