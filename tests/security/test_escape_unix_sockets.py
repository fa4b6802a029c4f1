"""Class 1, Unix sockets: no socket of the host can be connected to from an action, however it
was made (by path, a second hard link, renamed after bind, bound in another network namespace,
bound after the action started, bound by a host process inside the workspace, abstract), and no
socket anywhere on the host can stop goexd or its actions. What actions need for themselves keeps
working: socketpairs (multiprocessing) and loopback TCP in their own network namespace.

Each host socket is world-connectable (0777) and a host process as the daemon's user connects to
it first (the control), so only the sandbox can be what keeps the action out."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import types_pb2 as pb
from tests.security.conftest import MODES, Shared, make_workspace, result_of, run, run_action, sec_session, start_daemon
from tests.security.probes import (
    Listener,
    connect_script,
    connected,
    connects_from_host,
    tag,
    unix_listener,
    wait_until,
)

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A searchable scratch dir on the host, outside the workspace, on the workspace's file system."""
    d = Path("/var/tmp") / tag()
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def control(s: Shared, listener: Listener, path: Path | str) -> None:
    """A host process as the daemon's user connects (and the listener counts it)."""
    assert connects_from_host(path, s.d.uid, s.d.gid), f"control: {path} does not accept from the host"
    assert wait_until(lambda: listener.accepted == 1, 5)


def assert_kept_out(s: Shared, listener: Listener, in_sandbox: str) -> None:
    r = run(s.d, s.session, connect_script([in_sandbox]), python=True)
    assert in_sandbox in r.out, f"the probe did not run:\n{r}"
    assert connected(r.out) == [], f"the sandbox connected to a host socket:\n{r.out}"
    time.sleep(0.1)  # the listener's accept loop polls
    assert listener.accepted == 1, "the host socket accepted a connection from the sandbox"


def test_a_host_socket_by_its_path(sec_shared: Shared, host_dir: Path) -> None:
    path = host_dir / "service.sock"
    with unix_listener(path) as listener:
        control(sec_shared, listener, path)
        assert_kept_out(sec_shared, listener, str(path))


def test_goexds_own_grpc_socket(sec_shared: Shared) -> None:
    """An action that reached the daemon's API could approve, commit or undo its own actions."""
    d = sec_shared.d
    assert connects_from_host(d.socket, d.uid, d.gid)
    r = run(d, sec_shared.session, connect_script([str(d.socket)]), python=True)
    assert str(d.socket) in r.out and connected(r.out) == [], r.out


@pytest.mark.parametrize("how", ["second-hard-link", "renamed-after-bind"])
def test_a_live_host_socket_moved_into_the_workspace(sec_shared: Shared, host_dir: Path, how: str) -> None:
    """Bound outside, then hard-linked or renamed into the workspace: its path there is not the
    one it was bound at (the one /proc/net/unix lists)."""
    name = tag()
    with unix_listener(host_dir / "service.sock") as listener:
        (os.link if how == "second-hard-link" else os.rename)(host_dir / "service.sock", sec_shared.ws / name)
        try:
            control(sec_shared, listener, sec_shared.ws / name)
            assert_kept_out(sec_shared, listener, f"/workspace/{name}")
        finally:
            (sec_shared.ws / name).unlink()


def test_a_socket_a_host_process_binds_inside_the_workspace(sec_shared: Shared) -> None:
    path = sec_shared.ws / tag()
    with unix_listener(path) as listener:
        control(sec_shared, listener, path)
        assert_kept_out(sec_shared, listener, f"/workspace/{path.name}")


# Its 20 s are a wait for the socket; what refuses the connect is the filter the other tests show loaded in a
# container too (the same program): bubblewrap alone.
@pytest.mark.backends("bwrap")
def test_a_socket_bound_after_the_action_started(sec_shared: Shared) -> None:
    """The action says it runs (its sandbox is set up), waits for the socket to appear, connects."""
    name = tag()
    path, ready = sec_shared.ws / name, sec_shared.ws / f"{name}.ready"
    script = f"open('/workspace/{name}.ready', 'w').close()\n" + connect_script(
        [f"/workspace/{name}"], wait_for=f"/workspace/{name}"
    )
    result: list[pb.Action] = []
    worker = threading.Thread(
        target=lambda: result.append(run_action(sec_shared.d, sec_shared.session, script, python=True))
    )
    worker.start()
    try:
        assert wait_until(ready.exists, 30), "the action never started"
        with unix_listener(path) as listener:
            worker.join(40)
            assert result, "the action did not finish"
            r = result_of(result[0])
            assert name in r.out and connected(r.out) == [], r.out
            assert listener.accepted == 0
    finally:
        worker.join(40)
        ready.unlink(missing_ok=True)


NETNS_SERVER = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.listen(8)
print("READY", flush=True)
while True:
    c, _ = s.accept()
    print("ACCEPT", flush=True)
    c.close()
"""


@contextlib.contextmanager
def socket_in_other_netns(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A socket bound by a host process in a network namespace of its own: it does not show in
    the host's /proc/net/unix, but its path connects like any other."""
    proc = subprocess.Popen(
        ["unshare", "-n", "/usr/bin/python3", "-c", NETNS_SERVER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        path.unlink(missing_ok=True)


def accepted_by(proc: subprocess.Popen[str]) -> int:
    proc.kill()
    assert proc.stdout is not None
    return proc.stdout.read().count("ACCEPT")


@pytest.mark.parametrize("where", ["workspace", "host"])
def test_a_socket_bound_in_another_network_namespace(sec_shared: Shared, host_dir: Path, where: str) -> None:
    name = tag()
    path, in_sandbox = (sec_shared.ws / name, f"/workspace/{name}") if where == "workspace" else (host_dir / name,) * 2
    with socket_in_other_netns(path) as server:
        assert name not in Path("/proc/net/unix").read_text()
        assert connects_from_host(path, sec_shared.d.uid, sec_shared.d.gid)
        r = run(sec_shared.d, sec_shared.session, connect_script([str(in_sandbox)]), python=True)
        assert name in r.out and connected(r.out) == [], r.out
        assert accepted_by(server) == 1  # the control's connection only


def test_an_abstract_socket_of_the_host(sec_shared: Shared) -> None:
    name = "@" + tag()
    with unix_listener(name) as listener:
        control(sec_shared, listener, name)
        assert_kept_out(sec_shared, listener, name)


# --- sockets the host has must not break goexd -------------------------------------------------


@contextlib.contextmanager
def unbindable_sockets() -> Iterator[list[Path]]:
    """Sockets only their owner's processes can reach: a user's socket in their own 0700 dir, and
    a root-bound socket in a 0700 dir owned by another user (like a PostgreSQL socket dir). Root
    lists and lstats them; a capability-less sandbox cannot even look inside their dirs."""
    nobody = pwd.getpwnam("nobody")
    base = Path("/var/tmp") / tag()
    base.mkdir(mode=0o755)
    procs: list[subprocess.Popen[str]] = []
    paths = []
    try:
        for owner_binds in (True, False):
            d = base / ("user-own" if owner_binds else "service")
            d.mkdir(mode=0o700)
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
            path = d / "s.sock"
            argv = ["/usr/bin/python3", "-c", NETNS_SERVER, str(path)]
            if owner_binds:
                argv = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *argv]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
            paths.append(path)
        assert all(str(p) in Path("/proc/net/unix").read_text() for p in paths)
        yield paths
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", MODES)
def test_sockets_nobody_can_bind_over_do_not_stop_goexd_or_its_actions(mode: str) -> None:
    with unbindable_sockets() as paths, start_daemon(mode) as d:
        owner = d.uid
        with make_workspace(owner, d.gid) as ws:
            session = sec_session(d, ws)
            r = run(d, session, "echo works > f; cat f")
            assert r.code == 0 and r.out == "works\n", r
            r = run(d, session, connect_script([str(p) for p in paths]), python=True)
            assert connected(r.out) == [], r.out


# --- what actions need for themselves keeps working ----------------------------------------------

SOCKETPAIRS = """
import multiprocessing as mp, socket

def echo(conn):
    conn.send(conn.recv() * 2)

def put(q):
    q.put("queued")

if __name__ == "__main__":
    a, b = socket.socketpair()
    a.sendall(b"ping"); print("socketpair", b.recv(4).decode())
    parent, child = mp.Pipe()
    p = mp.Process(target=echo, args=(child,)); p.start()
    parent.send(21); print("pipe", parent.recv()); p.join()
    q = mp.Queue()
    p = mp.Process(target=put, args=(q,)); p.start()
    print("queue", q.get(timeout=10)); p.join()
"""


def test_socketpairs_and_multiprocessing_keep_working(sec_shared: Shared) -> None:
    r = run(sec_shared.d, sec_shared.session, SOCKETPAIRS, python=True)
    assert r.out.split("\n")[:3] == ["socketpair ping", "pipe 42", "queue queued"], r


LOOPBACK_TCP = """
import socket, threading
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept(); c.sendall(c.recv(5).upper()); c.close()
threading.Thread(target=serve).start()
c = socket.create_connection(("127.0.0.1", port), timeout=5)
c.sendall(b"hello"); print("tcp", c.recv(5).decode())
"""


def test_loopback_tcp_inside_the_action_keeps_working(sec_shared: Shared) -> None:
    r = run(sec_shared.d, sec_shared.session, LOOPBACK_TCP, python=True)
    assert r.out == "tcp HELLO\n", r


def test_a_host_tcp_service_on_loopback_is_not_reachable(sec_shared: Shared) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        listener = Listener(srv)
        code = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED tcp')\n"
            "except OSError as e:\n    print('refused tcp', e)\n"
        )
        try:
            r = run(sec_shared.d, sec_shared.session, code, python=True)
            assert "refused tcp" in r.out, r
            assert listener.accepted == 0
        finally:
            listener.close()
