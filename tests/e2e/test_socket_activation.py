"""goexd started the way systemd starts it (goexd.socket + goexd.service, Type=notify).

systemd binds and listens on the socket itself, starts goexd on the first connection with the socket
as fd 3, LISTEN_FDS=1 and LISTEN_PID=<goexd's pid> (sd_listen_fds(3)), and waits for READY=1 on
$NOTIFY_SOCKET (sd_notify(3)). Here the test is systemd: it makes the listening socket and the
datagram socket, and a tiny wrapper sets LISTEN_PID to its own pid and execs goexd (the pid stays),
under no_new_privs as the unit's NoNewPrivileges=yes runs it.
"""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.systemd_like import Systemd

GOEX = str(Path(sys.executable).with_name("goex"))


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    (tmp_path / "sd").mkdir()
    sd = Systemd(tmp_path / "sd")  # goexd's files: apart from the workspace
    yield sd
    sd.close()


def _health(path: Path, out: list[object]) -> None:
    """A client that connects before goexd runs: its connection waits in the socket's backlog."""
    with grpc.insecure_channel(f"unix:{path}") as ch:
        try:
            check = health_pb2_grpc.HealthStub(ch).Check
            resp = check(health_pb2.HealthCheckRequest(), timeout=90, wait_for_ready=True)
            out.append(resp.status)
        except grpc.RpcError as exc:
            out.append(exc)


def _goex(sd: Systemd, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GOEX, *args], env=sd.env(), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_socket_activation_serves_on_the_passed_socket_and_notifies(systemd: Systemd, tmp_path: Path) -> None:
    before = systemd.socket_path.stat()
    early: list[object] = []
    client = threading.Thread(target=_health, args=(systemd.socket_path, early))
    client.start()  # connects first, as the client whose connection makes systemd start goexd
    systemd.start()
    states = systemd.states()
    assert "READY=1" in states, (states, systemd.log.read_text())
    assert f"STATUS=serving on {systemd.socket_path}" in states
    client.join(90)
    assert early == [health_pb2.HealthCheckResponse.SERVING], systemd.log.read_text()

    # Clients use the socket systemd made: goex's default path, through $XDG_RUNTIME_DIR.
    ws = tmp_path / "projects" / "ws"
    ws.mkdir(parents=True)
    opened = _goex(systemd, "session", "open", "--fs", str(ws))
    assert opened.returncode == 0, opened.stderr
    env = _goex(systemd, "run", "--", "sh", "-c", "env | grep -c -E '^(LISTEN_|NOTIFY_SOCKET)' || true", cwd=ws)
    assert env.stdout == "0\n", env.stdout  # the sandbox inherits none of systemd's variables
    run = _goex(systemd, "run", "--", "sh", "-c", "echo made > made.txt; echo out; echo err >&2", cwd=ws)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "out\n" and "err\n" in run.stderr
    assert (ws / "made.txt").read_text() == "made\n"

    # goexd's own gRPC socket sits beside systemd's, 0600 in the 0700 dir; systemd's is the same inode.
    own = systemd.socket_path.with_name(".goexd.sock.grpc")
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert stat.S_IMODE(systemd.socket_path.parent.stat().st_mode) == 0o700
    assert systemd.socket_path.stat().st_ino == before.st_ino
    assert "socket activation" in systemd.log.read_text()

    assert systemd.stop() == 0, systemd.log.read_text()
    assert "STOPPING=1" in systemd.states()
    # systemd's socket is left bound and listening; goexd's own is gone.
    assert systemd.socket_path.stat().st_ino == before.st_ino and not own.exists()

    # The next client waits on the socket until goexd is started again (systemd would, on that
    # connection), and finds the session and its pending action.
    again: list[object] = []
    client = threading.Thread(target=_health, args=(systemd.socket_path, again))
    client.start()
    systemd.start()
    assert "READY=1" in systemd.states()
    client.join(90)
    assert again == [health_pb2.HealthCheckResponse.SERVING], systemd.log.read_text()
    log = _goex(systemd, "--json", "log", cwd=ws)
    assert log.returncode == 0, log.stderr
    assert "made.txt" in _goex(systemd, "diff", "last", cwd=ws).stdout
    assert _goex(systemd, "undo", cwd=ws).returncode == 0
    assert not (ws / "made.txt").exists()
    assert systemd.stop() == 0
    assert "Traceback" not in systemd.log.read_text(), systemd.log.read_text()


def test_listen_pid_of_another_process_is_not_taken(systemd: Systemd) -> None:
    """LISTEN_FDS passed down from a parent (LISTEN_PID is not ours): goexd binds its own socket."""
    systemd.listener.close()
    systemd.socket_path.unlink()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(systemd.root / "other.sock"))
    other.listen()
    try:
        systemd.start(listener=other, pid="1")
        assert "READY=1" in systemd.states(), systemd.log.read_text()
        assert stat.S_ISSOCK(systemd.socket_path.stat().st_mode)  # its own, at the default path
        health = _goex(systemd, "health")
        assert health.returncode == 0, health.stderr
        assert "names another process" in systemd.log.read_text()
        assert systemd.stop() == 0
        assert not systemd.socket_path.exists()  # its own socket, removed on the way out
    finally:
        other.close()


@pytest.mark.parametrize(
    ("kind", "fds", "message"),
    [
        ("two", "2", "LISTEN_FDS=2 sockets; goexd serves on exactly one"),
        ("datagram", "1", "not a listening Unix stream socket"),
        ("not listening", "1", "not a listening Unix stream socket"),
        ("tcp", "1", "not a listening Unix stream socket"),
    ],
)
def test_a_wrong_passed_socket_is_refused_saying_why(systemd: Systemd, kind: str, fds: str, message: str) -> None:
    if kind == "datagram":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(systemd.root / "d.sock"))
    elif kind == "not listening":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(systemd.root / "n.sock"))
    elif kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
    else:
        sock = systemd.listener
    try:
        systemd.start(fds=fds, listener=sock)
        assert systemd.proc is not None
        assert systemd.proc.wait(60) == 1
        assert message in systemd.log.read_text(), systemd.log.read_text()
        assert not (systemd.root / "state" / "journal.db").exists()  # refused before anything was set up
    finally:
        if sock is not systemd.listener:
            sock.close()
