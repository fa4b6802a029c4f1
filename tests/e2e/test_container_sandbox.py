"""End to end: goexd with the container sandbox (a real engine: Podman's Docker-compatible service, goexd's own
offline-built image), driven over gRPC.

- a daemon whose backend is `container` runs an action in a warm container, over an overlay its root mounts on
  the container's slot, and undoes it; its pools show in health and stats; a stop leaves nothing of its on the
  engine, and a kill -9 leaves containers the next start removes;
- a daemon whose backend is bwrap runs a session that names `container` (and an image) in a container, and
  another session in bwrap; an image the engine does not have, or a backend it does not know, is refused at
  session open naming the field (an image without python3 for goexd's runner too), and nothing is opened;
- 16 clients at once, each in its own session: every action has a container of its own;
- a container killed from outside mid-action: the action ends `signaled` saying so, the session goes on;
- a remote engine (here Podman's service on tcp:// loopback): a session over a workspace is refused at open,
  saying that engine cannot see it;
- the engine stopped mid-session: the next action fails saying the engine cannot be reached, a bwrap session
  of the same daemon is unaffected, and once the engine is back actions run again.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import admin_pb2 as adpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.sandbox.container_engine import LABEL_OWNER
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import change_lines, get, shell, status_of, undo
from tests.fs_fingerprint import fingerprint
from tests.services.container_engine import CONTAINERS_CONF, Engine, shell_only_image, start_service
from tests.services.http_service import stop_process

GOEX = Path(sys.executable).with_name("goex")  # the console script installed in the venv
# Where a command runs: a container's pid 1 is goexd's runner (python3 ... the runner's source); bwrap's is bwrap.
WHERE = "head -c 16 /proc/1/cmdline | tr '\\0' ' '; echo; grep -o 'libpod-[0-9a-f]*' /proc/self/cgroup | head -1"


def container_config(engine: Engine, backend: str = "container", pool_size: int = 1) -> str:
    return (
        f'[sandbox]\nbackend = "{backend}"\n'
        f'[container]\nendpoint = "{engine.endpoint}"\nimage = "{engine.image}"\npool_size = {pool_size}\n'
    )


def open_ws(d: DaemonProcess, path: Path, sandbox: str = "", image: str = "") -> pb.Session:
    fs = pb.FsResourceSpec(path=str(path), sandbox=sandbox, image=image)
    req = spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=fs)])
    return d.sessions.CreateSession(req, timeout=120).session


def labelled(engine: Engine) -> list[str]:
    """Every container on the engine labelled as a goexd's: "ID OWNER" lines."""
    out = engine.cli("ps", "-a", "--filter", f"label={LABEL_OWNER}", "--format", "{{.ID}} {{.Labels}}")
    found = []
    for line in out.stdout.splitlines():
        ident, _, labels = line.partition(" ")
        owner = labels.split(f"{LABEL_OWNER}:", 1)[1].split(" ", 1)[0].rstrip("]") if LABEL_OWNER in labels else ""
        found.append(f"{ident} {owner}")
    return found


def daemon(root: Path, config: str) -> DaemonProcess:
    root.mkdir()
    return DaemonProcess(root, config_toml=config).start(timeout=120)


def workspace(root: Path, name: str) -> Path:
    ws = root / name
    ws.mkdir(parents=True)
    (ws / "keep.txt").write_text("keep\n")
    return ws


@pytest.fixture(scope="module")
def container_daemon(
    container_engine_service: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("goexd-container")
    d = DaemonProcess(root, config_toml=container_config(container_engine_service)).start(timeout=120)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def test_an_action_runs_in_a_warm_container_and_is_undone(container_daemon: DaemonProcess, tmp_path: Path) -> None:
    ws = workspace(tmp_path, "ws")
    before = fingerprint(ws)
    session = open_ws(container_daemon, ws)
    assert session.resources[0].sandbox == "container" and session.resources[0].image
    first = shell(container_daemon, session.id, f"{WHERE}; echo hi > a.txt; rm keep.txt")
    assert first.state == pb.ACTION_STATE_EXECUTED, first.error
    assert first.exec.stdout.startswith(b"python3 -I -S -c\n"), first.exec.stdout
    assert change_lines(first) == ["A a.txt", "D keep.txt"]
    time.sleep(1.0)  # the pool refills behind the first lease
    second = shell(container_daemon, session.id, WHERE)
    assert second.exec.stdout.split(b"\n")[1] != first.exec.stdout.split(b"\n")[1], (first.exec, second.exec)
    assert [a.id for a in undo(container_daemon, session.id)] == [second.id]
    assert [a.id for a in undo(container_daemon, session.id)] == [first.id]
    assert fingerprint(ws) == before

    health = container_daemon.admin.GetHealth(adpb.GetHealthRequest(), timeout=60)
    pools = [c for c in health.components if c.name == "container pool"]
    assert pools and "leases" in pools[0].detail, health
    stats = container_daemon.admin.GetStats(adpb.GetStatsRequest(), timeout=30)
    pool = next(p for p in stats.sandbox_pools if p.image == session.resources[0].image)
    assert pool.leases >= 2 and pool.misses >= 1 and pool.made >= 2, pool
    assert "over the workspace itself" not in container_daemon.log(), "a root goexd runs them over an overlay"


def test_a_session_names_its_sandbox_and_image_and_bad_choices_are_refused_at_open(
    container_engine_service: Engine, tmp_path: Path
) -> None:
    config = container_config(container_engine_service, backend="bwrap")
    d = daemon(tmp_path / "d", config)
    try:
        in_container = open_ws(d, workspace(tmp_path, "a"), sandbox="container", image=container_engine_service.image)
        in_bwrap = open_ws(d, workspace(tmp_path, "b"))
        assert (in_bwrap.resources[0].sandbox, in_bwrap.resources[0].image) == ("bwrap", "")
        assert shell(d, in_container.id, WHERE).exec.stdout.startswith(b"python3 -I -S -c\n")
        assert shell(d, in_bwrap.id, WHERE).exec.stdout.startswith(b"/usr/bin/bwrap")

        listed = len(d.sessions.ListSessions(spb.ListSessionsRequest(), timeout=10).sessions)
        ws = workspace(tmp_path, "c")
        shell_only = shell_only_image(container_engine_service.api())  # no python3 for goexd's runner
        for sandbox, image, code, words in (
            ("container", "localhost/no-such-image:1", grpc.StatusCode.FAILED_PRECONDITION, "no-such-image"),
            ("", "localhost/no-such-image:2", grpc.StatusCode.INVALID_ARGUMENT, "fs.image"),
            ("chroot", "", grpc.StatusCode.INVALID_ARGUMENT, "fs.sandbox"),
            ("container", shell_only, grpc.StatusCode.FAILED_PRECONDITION, "python3"),
        ):
            got, msg = status_of(lambda s=sandbox, i=image: open_ws(d, ws, sandbox=s, image=i))
            assert got == code and words in msg and "resources[0]" in msg, (sandbox, image, got, msg)
        assert len(d.sessions.ListSessions(spb.ListSessionsRequest(), timeout=10).sessions) == listed
        assert open_ws(d, ws).resources[0].sandbox == "bwrap"  # the refusals held nothing
        reuse = spb.CreateSessionRequest(
            resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws), sandbox="container"))], reuse=True
        )
        got, msg = status_of(lambda: d.sessions.CreateSession(reuse, timeout=60))
        assert got == grpc.StatusCode.FAILED_PRECONDITION and "runs" in msg and "bwrap" in msg, msg

        # The same through the CLI: goex session open --sandbox/--image, goex run, goex stats.
        env = {**os.environ, "GOEX_SOCKET": str(d.socket), "GOEX_CLI_STATE": str(tmp_path / "cli-state.json")}
        cli_ws = workspace(tmp_path, "cli")

        def goex(*argv: str) -> str:
            done = subprocess.run([str(GOEX), *argv], capture_output=True, text=True, env=env, cwd=cli_ws, check=False)
            assert done.returncode == 0, done
            return done.stdout

        image = container_engine_service.image
        goex("session", "open", "--fs", str(cli_ws), "--sandbox", "container", "--image", image)
        assert goex("run", "--", "sh", "-c", WHERE).startswith("python3 -I -S -c\n")
        assert f"container pool {image}" in goex("stats")
    finally:
        assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def test_sixteen_clients_at_once_each_get_a_container_of_their_own(
    container_daemon: DaemonProcess, tmp_path: Path
) -> None:
    sessions = [open_ws(container_daemon, workspace(tmp_path, f"w{i}")) for i in range(16)]
    start = threading.Barrier(16)

    def act(session: pb.Session) -> pb.Action:
        start.wait()
        return shell(container_daemon, session.id, f"{WHERE}; echo {session.id} > mine.txt")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        actions = list(pool.map(act, sessions))
    assert all(a.state == pb.ACTION_STATE_EXECUTED and a.exec.exit_code == 0 for a in actions), actions
    containers = {a.exec.stdout.split(b"\n")[1] for a in actions}
    assert len(containers) == 16 and all(c.startswith(b"libpod-") for c in containers)
    for i, s in enumerate(sessions):
        assert (tmp_path / f"w{i}" / "mine.txt").read_text() == f"{s.id}\n"


def _container_running(tag: str, timeout: float = 30) -> str:
    """The id of the container a host process whose command line holds `tag` runs in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and tag.encode() in (entry / "cmdline").read_bytes():
                    cgroup = (entry / "cgroup").read_text()
                    return cgroup.split("libpod-", 1)[1].split("\n", 1)[0].removesuffix(".scope")
            except (OSError, IndexError):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no container runs {tag}")


def test_a_container_killed_from_outside_ends_its_action_and_the_session_goes_on(
    container_daemon: DaemonProcess, container_engine_service: Engine, tmp_path: Path
) -> None:
    session = open_ws(container_daemon, workspace(tmp_path, "ws"))
    tag = f"6{os.getpid()}.25"
    result: list[pb.Action] = []
    runner = threading.Thread(target=lambda: result.append(shell(container_daemon, session.id, f"sleep {tag}")))
    runner.start()
    killed = container_engine_service.cli("kill", _container_running(f"sleep\0{tag}"))
    assert killed.returncode == 0, killed.stderr
    runner.join(60)
    (action,) = result
    assert action.exec.termination == pb.TERMINATION_SIGNALED, action.exec
    assert "stopped from outside" in action.exec.detail, action.exec
    after = shell(container_daemon, session.id, "echo again")
    assert (after.exec.termination, after.exec.stdout) == (pb.TERMINATION_EXITED, b"again\n")


@pytest.fixture
def own_engine(container_engine_service: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An engine of this test's own (on the same storage: the image is there), to stop and start again."""
    scratch = tmp_path / "engine"
    scratch.mkdir()
    scratch.chmod(0o755)
    conf = scratch / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    proc, sock = start_service(scratch, conf)
    engine = Engine(f"unix://{sock}", sock, container_engine_service.image, conf, proc)
    yield engine
    stop_process(engine.process)


def test_the_engine_stopped_mid_session_fails_its_actions_clearly_and_they_recover_when_it_is_back(
    own_engine: Engine, tmp_path: Path
) -> None:
    d = daemon(tmp_path / "d", container_config(own_engine, backend="bwrap"))
    try:
        boxed = open_ws(d, workspace(tmp_path, "boxed"), sandbox="container")
        plain = open_ws(d, workspace(tmp_path, "plain"))
        assert shell(d, boxed.id, "echo up").exec.stdout == b"up\n"
        stop_process(own_engine.process)
        failed = shell(d, boxed.id, "echo down")
        assert failed.exec.termination == pb.TERMINATION_SPAWN_FAILED, failed
        assert own_engine.endpoint in failed.exec.detail and "cannot connect" in failed.exec.detail, failed.exec
        assert shell(d, plain.id, "echo fine").exec.stdout == b"fine\n"  # the bwrap session is not touched

        proc, _ = start_service(own_engine.socket.parent, own_engine.conf)
        own_engine = Engine(own_engine.endpoint, own_engine.socket, own_engine.image, own_engine.conf, proc)
        back = shell(d, boxed.id, "echo back")
        assert (back.exec.termination, back.exec.stdout) == (pb.TERMINATION_EXITED, b"back\n"), back.exec
    finally:
        assert d.stop() == 0, d.log()
        stop_process(own_engine.process)
    assert "Traceback" not in d.log(), d.log()


def test_nothing_of_a_daemon_stays_on_the_engine_after_a_stop_or_a_kill_and_restart(
    container_engine_service: Engine, tmp_path: Path
) -> None:
    from goexd.sandbox.reaper import owner_key

    d = daemon(tmp_path / "d", container_config(container_engine_service, pool_size=2))
    owner = owner_key(d.state_dir)
    session = open_ws(d, workspace(tmp_path, "ws"))
    assert shell(d, session.id, "true").exec.exit_code == 0

    def left() -> set[str]:
        return {c for c in labelled(container_engine_service) if c.endswith(owner)}

    deadline = time.monotonic() + 30
    while len(left()) < 2 and time.monotonic() < deadline:  # the pool refilled: warm containers of its
        time.sleep(0.1)
    assert len(left()) >= 2
    tag = f"5{os.getpid()}.25"
    detached = shell(d, session.id, f"sleep {tag}", detach=True)  # an action running when goexd is killed
    _container_running(f"sleep\0{tag}")
    d.kill()
    killed = left()
    assert killed, "a kill -9 leaves the warm containers"
    # ...but nothing runs in them for long: each runner's watchdog sees goexd's lock go and ends its container.
    deadline = time.monotonic() + 15
    while running_in(container_engine_service, owner) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running_in(container_engine_service, owner), "a container runs on after goexd was killed"
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _holds(p, f"sleep\0{tag}")]
    d.start(timeout=120)
    assert not (left() & killed), "the next start removed what the killed one left"
    assert "left by an earlier goexd run" in d.log()
    assert get(d, detached.id).state == pb.ACTION_STATE_INTERRUPTED  # recovery's word for the action cut short
    assert d.stop() == 0, d.log()
    assert left() == set(), "a stop leaves nothing labelled as its own"


def running_in(engine: Engine, owner: str) -> list[str]:
    out = engine.cli("ps", "--filter", f"label={LABEL_OWNER}={owner}", "--format", "{{.ID}}")
    return out.stdout.split()


def _holds(proc: Path, tag: str) -> bool:
    try:
        return tag.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_a_remote_engine_is_refused_a_workspace_at_session_open(
    container_engine_service: Engine, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch = tmp_path / "engine"
    scratch.mkdir()
    endpoint = f"tcp://127.0.0.1:{port}"
    proc, _ = start_service(scratch, container_engine_service.conf, endpoint)
    remote = Engine(endpoint, scratch / "none", container_engine_service.image, container_engine_service.conf, proc)
    try:
        d = daemon(tmp_path / "d", container_config(remote, backend="bwrap"))
        try:
            code, msg = status_of(lambda: open_ws(d, workspace(tmp_path, "ws"), sandbox="container"))
            assert code == grpc.StatusCode.FAILED_PRECONDITION, msg
            assert endpoint in msg and "not on this machine" in msg and "resources[0].fs.sandbox" in msg, msg
        finally:
            assert d.stop() == 0, d.log()
    finally:
        stop_process(proc)
