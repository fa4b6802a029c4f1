"""The security suite's harness: every test here runs against a real goexd, twice.

`sec_daemon` is parametrized over two modes (the ids show in test names), and for a module that sets
`SEC_BACKENDS = ("bwrap", "container")` over both sandbox backends (ids "root-container", "user-container":
the container backend on the session's engine, tests/services/container_engine.py):

- "root": goexd runs as root, as the other tests and CI run it, over a root-owned
  workspace: the worst case, where the sandbox keeps uid 0 (without capabilities) and only
  its view of the host protects the host.
- "user": goexd runs as the unprivileged system user `goex-sec` (created if missing), over a
  workspace that user owns.

A module may set `SEC_DAEMON_CONFIG` (TOML added to the daemon's config) and
`SEC_ALLOWED_ADDRESSES` (its egress.allowed_addresses; none by default). One daemon per mode
and such configuration serves every module that asks for it, for the whole session (starting
and stopping one costs 2-4 s on the test machine, and there are two per module): each module
checks at its end that the daemon is still up and logged no traceback meanwhile, and the
session's end that it stops cleanly. A module that sets `SEC_OWN_DAEMON = True` (its tests read
or change daemon-wide state) gets daemons of its own. A daemon's root dir is under /var/tmp, not
pytest's tmp_path (root's 0700 dir, which `goex-sec` cannot reach).

Escape attempts are actions submitted through the daemon's gRPC API (`run`), asserted to fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.services.container_engine import Engine
from tests.users import ensure_system_user

SEC_USER = "goex-sec"  # the unprivileged user goexd runs as in "user" mode
MODES = ("root", "user")
# An environment variable of the daemon's that no sandbox may see (class 3). Not GOEXD_*: the
# daemon reads those as config keys.
MARKER_VAR = "GOEX_SEC_MARKER"
DEFAULT_TIMEOUT_S = 30


def _scratch_dir(prefix: str, uid: int, gid: int) -> Path:
    """A fresh 0755 dir under /var/tmp owned by uid:gid (reachable by every user, unlike tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    os.chown(path, uid, gid)
    return path


@contextlib.contextmanager
def start_daemon(
    mode: str,
    config_toml: str = "",
    env: dict[str, str] | None = None,
    allowed_addresses: Sequence[str] = (),
    check_alive: bool = True,
) -> Iterator[DaemonProcess]:
    """A started goexd in `mode` ("root" or "user"), stopped and removed afterwards. By default it
    may reach no special address (loopback, private, ...) over HTTP: `allowed_addresses` adds some.

    It must still be alive at the end (no escape attempt may crash it; `check_alive=False` for a
    test that kills it itself), stop cleanly on SIGTERM and have logged no traceback."""
    assert mode in MODES, mode
    user = ensure_system_user(SEC_USER) if mode == "user" else None
    uid, gid = (user.pw_uid, user.pw_gid) if user is not None else (0, 0)
    root = _scratch_dir("goex-sec-", uid, gid)
    marker = secrets.token_hex(16)
    d = DaemonProcess(
        root,
        "--log-file",
        str(root / "logs" / "goexd.log"),
        config_toml=config_toml,
        env={MARKER_VAR: marker, **(env or {})},
        user=SEC_USER if user is not None else None,
        allowed_addresses=allowed_addresses,
    )
    try:
        d.start()
        yield d
        if check_alive:
            assert d.proc is not None
            alive = d.proc.poll() is None
            code = d.stop()
            assert alive, f"goexd ({mode}) died during the tests:\n{d.log()}"
            assert code == 0, f"goexd ({mode}) exited with {code} on SIGTERM:\n{d.log()}"
        assert "Traceback" not in d.log(), d.log()
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()
        shutil.rmtree(root, ignore_errors=True)


class SharedDaemons:
    """The session's daemons, one per mode and configuration, started when first asked for (again if one died)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._daemons: dict[tuple[str, str, tuple[str, ...]], DaemonProcess] = {}

    def get(self, mode: str, config_toml: str, allowed_addresses: Sequence[str]) -> DaemonProcess:
        key = (mode, config_toml, tuple(allowed_addresses))
        d = self._daemons.get(key)
        if d is None or d.proc is None or d.proc.poll() is not None:
            # A dead one already failed its module; its start_daemon still reports it at the session's end.
            started = start_daemon(mode, config_toml, allowed_addresses=allowed_addresses)
            d = self._daemons[key] = self._stack.enter_context(started)
        return d


@pytest.fixture(scope="session")
def shared_sec_daemons() -> Iterator[SharedDaemons]:
    with contextlib.ExitStack() as stack:
        yield SharedDaemons(stack)


@pytest.fixture(scope="session")
def shared_container_sec_daemons(container_engine_service: Engine) -> Iterator[SharedDaemons]:
    """The container backend's shared daemons: made after the engine and stopped before it (a stop removes the
    daemon's containers, which takes the engine)."""
    with contextlib.ExitStack() as stack:
        yield SharedDaemons(stack)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`sec_daemon` over the modes, and over the module's SEC_BACKENDS (bwrap alone by default): a module whose
    escape attempts apply to any sandbox names ("bwrap", "container") and runs against both, ids "root",
    "user", "root-container", "user-container". A test marked `@pytest.mark.backends("bwrap")` in such a module
    checks what the sandbox takes no part in (the egress proxy's own parsing, say): it runs once, with bwrap."""
    if "sec_daemon" not in metafunc.fixturenames:
        return
    backends = getattr(metafunc.module, "SEC_BACKENDS", ("bwrap",))
    only = metafunc.definition.get_closest_marker("backends")  # a test of what no sandbox takes part in
    if only is not None:
        backends = tuple(b for b in backends if b in only.args)
    combos = [(mode, backend) for backend in backends for mode in MODES]
    ids = [mode if backend == "bwrap" else f"{mode}-{backend}" for mode, backend in combos]
    metafunc.parametrize("sec_daemon", combos, ids=ids, indirect=True, scope="module")


def backend_config(request: pytest.FixtureRequest, backend: str) -> str:
    """The daemon's [sandbox]/[container] config for `backend`: the container one on the session's engine."""
    if backend == "bwrap":
        return ""
    engine: Engine = request.getfixturevalue("container_engine_service")
    return (
        f'[sandbox]\nbackend = "{backend}"\n'
        f'[container]\nendpoint = "{engine.endpoint}"\nimage = "{engine.image}"\npool_size = 3\n'
    )


@pytest.fixture(scope="module")
def sec_daemon(request: pytest.FixtureRequest, shared_sec_daemons: SharedDaemons) -> Iterator[DaemonProcess]:
    """The goexd of this module, mode and backend; see the module docstring."""
    mode, backend = request.param
    config = backend_config(request, backend) + getattr(request.module, "SEC_DAEMON_CONFIG", "")
    addresses = getattr(request.module, "SEC_ALLOWED_ADDRESSES", ())
    if getattr(request.module, "SEC_OWN_DAEMON", False):
        with start_daemon(mode, config, allowed_addresses=addresses) as d:
            yield d
        return
    if backend != "bwrap":
        shared_sec_daemons = request.getfixturevalue("shared_container_sec_daemons")
    d = shared_sec_daemons.get(mode, config, addresses)
    seen = len(d.log())
    yield d
    # What start_daemon checks at the end, for this module's share of the shared daemon's life.
    assert d.proc is not None and d.proc.poll() is None, f"goexd ({request.param}) died during the tests:\n{d.log()}"
    assert "Traceback" not in d.log()[seen:], d.log()[seen:]


def mode_of(d: DaemonProcess) -> str:
    return "user" if d.user is not None else "root"


def backend_of(d: DaemonProcess) -> str:
    """The sandbox backend the daemon runs actions in ("bwrap" or "container")."""
    return "container" if 'backend = "container"' in d.config_toml else "bwrap"


@contextlib.contextmanager
def make_workspace(uid: int, gid: int) -> Iterator[Path]:
    """A fresh workspace dir owned by uid:gid, in a 0755 root-owned parent that holds nothing else."""
    parent = _scratch_dir("goex-secws-", 0, 0)
    ws = parent / "ws"
    ws.mkdir(mode=0o755)
    (ws / "README").write_text("a workspace of the security suite\n")
    for p in (ws, ws / "README"):
        os.chown(p, uid, gid)
    try:
        yield ws
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def sec_workspace(sec_daemon: DaemonProcess) -> Iterator[Path]:
    """A fresh workspace owned by the daemon's user ("user" mode) or by root ("root" mode)."""
    with make_workspace(sec_daemon.uid, sec_daemon.gid) as ws:
        yield ws


def sec_session(d: DaemonProcess, ws: Path, policy_toml: str = "") -> str:
    """Open a session over the fs workspace `ws`; returns its id."""
    req = spb.CreateSessionRequest(
        resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))], policy_toml=policy_toml
    )
    return str(d.sessions.CreateSession(req, timeout=60).session.id)


def close_session(d: DaemonProcess, session_id: str) -> None:
    d.sessions.CloseSession(spb.CloseSessionRequest(session_id=session_id, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60)


class Shared(NamedTuple):
    """One daemon, one workspace and one open session, shared by a module's tests."""

    d: DaemonProcess
    ws: Path
    session: str


@pytest.fixture(scope="module")
def sec_shared(sec_daemon: DaemonProcess) -> Iterator[Shared]:
    """A module-wide session (each test uses its own scratch names in the workspace)."""
    with make_workspace(sec_daemon.uid, sec_daemon.gid) as ws:
        session = sec_session(sec_daemon, ws)
        yield Shared(sec_daemon, ws, session)
        close_session(sec_daemon, session)


class Run(NamedTuple):
    code: int | None  # the exit code; None when the action did not exit by itself (see the action)
    out: str
    err: str


def action_spec(
    script: str,
    *,
    python: bool = False,
    network: bool | Sequence[str] = False,
    env: dict[str, str] | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    max_processes: int = 0,
    memory_bytes: int = 0,
) -> pb.ActionSpec:
    """A shell (`sh -c script`) or python action. `network`: True = the egress proxy with no host
    granted, a list = those hosts, False = no network at all."""
    if python:
        spec = pb.ActionSpec(python=pb.PythonAction(code=script, env=env or {}))
    else:
        spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script], env=env or {}))
    spec.limits.timeout.FromSeconds(timeout_s)
    if max_processes:
        spec.limits.max_processes = max_processes
    if memory_bytes:
        spec.limits.memory_bytes = memory_bytes
    if network is not False:
        spec.egress.SetInParent()
        if network is not True:
            spec.egress.hosts.extend(network)
    return spec


def run_action(d: DaemonProcess, session: str, script: str, **kw: object) -> pb.Action:
    """Submit an action and wait for it; returns the finished action."""
    spec = action_spec(script, **kw)  # type: ignore[arg-type]
    req = apb.SubmitActionRequest(session_id=session, spec=spec)
    action: pb.Action = d.actions.SubmitAction(req, timeout=spec.limits.timeout.seconds + 60).action
    return action


def result_of(action: pb.Action) -> Run:
    ex = action.exec
    code = ex.exit_code if ex.termination == pb.TERMINATION_EXITED else None
    return Run(code, ex.stdout.decode(errors="replace"), ex.stderr.decode(errors="replace"))


def run(
    d: DaemonProcess,
    session: str,
    script: str,
    *,
    python: bool = False,
    network: bool | Sequence[str] = False,
    env: dict[str, str] | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> Run:
    """Run `script` as an action (shell, or python code) and return its exit code and output."""
    action = run_action(d, session, script, python=python, network=network, env=env, timeout_s=timeout_s)
    return result_of(action)
