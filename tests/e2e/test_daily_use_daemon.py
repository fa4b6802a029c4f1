"""Issue 19, the daemon side, against a real goexd:

- an action runs in a directory of its workspace (ShellAction/PythonAction.cwd), which `goex run` and `goex python`
  take from the current directory; what leaves the workspace is refused naming the field;
- cancel follows the caller: a blocking SubmitAction whose client is killed (SIGKILL) or whose deadline passes, and a
  `goex run` killed with SIGKILL (submitted with cancel_when_unwatched), end cancelled and rolled back, nothing of
  them left running; a dropped watch of a plain detached action cancels nothing;
- sessions: CreateSession(reuse) is an atomic get-or-create; idle sessions expire (session_idle_lease_s) keeping their
  pending actions pending, and are picked up again by their resources or id.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import goex
from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e import test_cli_daily_use as cli_suite
from tests.e2e.rpc import get, open_fs, status_of
from tests.e2e.test_cli_daily_use import _marker, _processes_with
from tests.fs_fingerprint import describe_diff, fingerprint

GOEX = Path(sys.executable).with_name("goex")  # the console script installed in the venv
CANCEL_BOUND_S = 10.0  # from the caller's death to the action ended cancelled and rolled back
LEASE_S = 1.5

environ = cli_suite.environ  # the fixture: the installed goex's environment for the shared goexd


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src" / "lib").mkdir(parents=True)
    (root / "keep.txt").write_text("keep\n")
    (root / "src" / "lib" / "mod.py").write_text("x = 1\n")
    return root


@pytest.fixture
def session(shared_daemon: DaemonProcess, project: Path) -> Iterator[str]:
    sid = open_fs(shared_daemon, project).id
    yield sid
    with goex.Client(shared_daemon.socket, timeout=60) as c:
        if c.get_session(sid).state is goex.SessionState.OPEN:
            c.close_session(sid, "undo")


def goex_in(environ: dict[str, str], cwd: Path | bytes, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(GOEX), *argv], env=environ, cwd=cwd, capture_output=True, timeout=60)


def submit(d: DaemonProcess, session_id: str, body: pb.ActionSpec, **request: object) -> pb.Action:
    req = apb.SubmitActionRequest(session_id=session_id, spec=body, **request)  # type: ignore[arg-type]
    return d.actions.SubmitAction(req, timeout=60).action


def actions_of(d: DaemonProcess, session_id: str) -> list[pb.Action]:
    return list(d.actions.ListActions(apb.ListActionsRequest(session_id=session_id), timeout=10).actions)


# ---------------------------------------------------------------- the working directory


def test_goex_run_runs_where_the_current_directory_is_in_the_workspace(
    environ: dict[str, str], session: str, project: Path, tmp_path: Path
) -> None:
    lib = project / "src" / "lib"
    # Commands start at the workspace's real path (/workspace is an alias of it).
    real = os.path.realpath(project)
    ran = goex_in(environ, lib, "run", "-q", "--", "pwd")
    assert (ran.returncode, ran.stdout) == (0, f"{real}/src/lib\n".encode()), ran.stderr
    py = goex_in(environ, lib, "python", "-q", "import os; print(os.getcwd(), open('mod.py').read().strip())")
    assert (py.returncode, py.stdout) == (0, f"{real}/src/lib x = 1\n".encode()), py.stderr
    # A relative path written there lands there, in the workspace.
    wrote = goex_in(environ, lib, "run", "-q", "--", "sh", "-c", "echo made > made.txt")
    assert wrote.returncode == 0, wrote.stderr
    assert (lib / "made.txt").read_text() == "made\n"
    # The root from the root; from outside the workspace (the session named) too; --cwd chooses.
    assert goex_in(environ, project, "run", "-q", "--", "pwd").stdout == f"{real}\n".encode()
    assert goex_in(environ, tmp_path, "--session", session, "run", "-q", "--", "pwd").stdout == f"{real}\n".encode()
    chosen = goex_in(environ, tmp_path, "--session", session, "run", "-q", "--cwd", "src", "--", "pwd")
    assert chosen.stdout == f"{real}/src\n".encode(), chosen.stderr
    assert goex_in(environ, lib, "run", "-q", "--cwd", ".", "--", "pwd").stdout == f"{real}\n".encode()
    # The action records where it ran.
    shown = goex_in(environ, lib, "--json", "show", "1")
    assert b'"cwd": "src/lib"' in shown.stdout, shown.stdout


def test_a_directory_whose_name_is_not_utf8(
    shared_daemon: DaemonProcess, environ: dict[str, str], session: str, project: Path
) -> None:
    odd = os.fsencode(project) + b"/d\xff\xfe"
    os.mkdir(odd)
    action = submit(shared_daemon, session, pb.ActionSpec(shell=pb.ShellAction(argv=["pwd"], cwd=b"d\xff\xfe")))
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    real = os.fsencode(os.path.realpath(project))
    assert action.exec.stdout == real + b"/d\xff\xfe\n"
    assert action.spec.shell.cwd == b"d\xff\xfe"
    ran = goex_in(environ, odd, "run", "-q", "--", "pwd")
    assert (ran.returncode, ran.stdout) == (0, real + b"/d\xff\xfe\n"), ran.stderr


@pytest.mark.parametrize(
    ("kind", "cwd", "says"),
    [
        ("shell", b"../proj", "'..'"),
        ("shell", b"src/../../x", "'..'"),
        ("shell", b"/etc", "absolute"),
        ("shell", b"/", "absolute"),
        ("shell", b"missing", "not in the workspace"),
        ("shell", b"keep.txt", "not a directory"),
        ("shell", b"up", "symlink"),
        ("shell", b"inside/lib", "symlink"),
        ("shell", b"src\x00", "NUL"),
        ("python", b"..", "'..'"),
        ("python", b"missing/deeper", "not in the workspace"),
    ],
)
def test_a_cwd_out_of_the_workspace_is_refused_naming_the_field(
    shared_daemon: DaemonProcess, session: str, project: Path, kind: str, cwd: bytes, says: str
) -> None:
    (project / "up").symlink_to("..")  # leaves the workspace
    (project / "inside").symlink_to("src")  # stays in it, still refused: the sandbox sees other paths
    before = fingerprint(project)
    if kind == "shell":
        spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo escaped > written"], cwd=cwd))
    else:
        spec = pb.ActionSpec(python=pb.PythonAction(code="open('written', 'w').write('escaped')", cwd=cwd))
    code, message = status_of(lambda: submit(shared_daemon, session, spec))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"spec.{kind}.cwd" in message and says in message, message
    assert actions_of(shared_daemon, session) == []  # nothing recorded
    after = fingerprint(project)
    assert after == before, describe_diff(before, after)
    assert not (project.parent / "written").exists() and not Path("/written").exists()


def test_goex_run_with_a_cwd_that_leaves_the_workspace_fails(
    environ: dict[str, str], session: str, project: Path
) -> None:
    p = goex_in(environ, project, "run", "--cwd", "../..", "--", "pwd")
    assert p.returncode == 1 and b"spec.shell.cwd" in p.stderr and p.stdout == b"", p.stderr


# ---------------------------------------------------------------- cancel follows the caller


def _running(d: DaemonProcess, session_id: str, marker: str) -> pb.Action:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [a for a in actions_of(d, session_id) if a.state == pb.ACTION_STATE_RUNNING]
        if running and _processes_with(marker):
            return running[-1]
        time.sleep(0.05)
    raise AssertionError("the action never ran")


def _ends_cancelled(d: DaemonProcess, action_id: str, marker: str, project: Path, before: object) -> float:
    """Waits for the action to end; asserts it was cancelled and rolled back, nothing of it left. Returns how long."""
    started = time.monotonic()
    action = get(d, action_id)
    while action.state in (pb.ACTION_STATE_RUNNING, pb.ACTION_STATE_PREPARING, pb.ACTION_STATE_PROPOSED):
        assert time.monotonic() - started < CANCEL_BOUND_S, "the action went on after its caller was gone"
        time.sleep(0.05)
        action = get(d, action_id)
    took = time.monotonic() - started
    assert action.state == pb.ACTION_STATE_FAILED, action
    assert action.exec.termination == pb.TERMINATION_CANCELLED, action.exec
    assert "rolled back" in action.error, action.error
    assert _processes_with(marker) == [], "a sandboxed process outlived the cancel"
    after = fingerprint(project)
    assert after == before, describe_diff(before, after)  # type: ignore[arg-type]
    return took


CLIENT = """
import sys
import grpc
from goex.v1 import actions_pb2 as apb, actions_pb2_grpc as agrpc, types_pb2 as pb
channel = grpc.insecure_channel("unix://" + sys.argv[1])
spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", sys.argv[3]]))
agrpc.ActionsStub(channel).SubmitAction(apb.SubmitActionRequest(session_id=sys.argv[2], spec=spec), timeout=600)
"""


def _killed_mid_run(
    d: DaemonProcess, session: str, project: Path, argv: list[str], env: dict[str, str] | None = None
) -> None:
    """Starts a client process whose action runs a marked sleep, SIGKILLs it mid-run: goexd alone must stop it."""
    before = fingerprint(project)
    marker = _marker()
    script = f"echo partial > half.txt; rm keep.txt; sleep {marker}"
    client = subprocess.Popen(
        [*argv, script], env=env, cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        action = _running(d, session, marker)
        client.send_signal(signal.SIGKILL)  # no handler of its own runs
        client.wait(10)
        _ends_cancelled(d, action.id, marker, project, before)
    finally:
        client.kill()


def test_a_blocking_submit_whose_client_is_killed_is_cancelled_and_rolled_back(
    shared_daemon: DaemonProcess, session: str, project: Path
) -> None:
    argv = [sys.executable, "-c", CLIENT, str(shared_daemon.socket), session]
    _killed_mid_run(shared_daemon, session, project, argv)


def test_goex_run_killed_with_sigkill_leaves_nothing_running(
    shared_daemon: DaemonProcess, environ: dict[str, str], session: str, project: Path
) -> None:
    # goex finds the session from its directory, as from a terminal.
    _killed_mid_run(shared_daemon, session, project, [str(GOEX), "run", "--", "sh", "-c"], environ)


def test_a_blocking_submit_past_its_deadline_is_cancelled(
    shared_daemon: DaemonProcess, session: str, project: Path
) -> None:
    before = fingerprint(project)
    marker = _marker()
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"rm keep.txt; sleep {marker}"]))
    req = apb.SubmitActionRequest(session_id=session, spec=spec)
    with pytest.raises(grpc.RpcError) as info:
        shared_daemon.actions.SubmitAction(req, timeout=3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    (action,) = actions_of(shared_daemon, session)
    _ends_cancelled(shared_daemon, action.id, marker, project, before)


def test_a_dropped_watch_cancels_only_what_asked_for_it(
    shared_daemon: DaemonProcess, session: str, project: Path
) -> None:
    before = fingerprint(project)
    marker = _marker()
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"rm keep.txt; sleep {marker}"]))
    plain = submit(shared_daemon, session, spec, detach=True)
    stream = shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id=plain.id), timeout=60)
    next(stream)
    _running(shared_daemon, session, marker)
    stream.cancel()  # the watcher goes; the action is not its to stop
    time.sleep(2)
    assert get(shared_daemon, plain.id).state == pb.ACTION_STATE_RUNNING
    shared_daemon.actions.CancelAction(apb.CancelActionRequest(action_id=plain.id), timeout=10)
    _ends_cancelled(shared_daemon, plain.id, marker, project, before)

    # Submitted cancel_when_unwatched: the same drop cancels it.
    marker = _marker()
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"rm keep.txt; sleep {marker}"]))
    followed = submit(shared_daemon, session, spec, detach=True, cancel_when_unwatched=True)
    stream = shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id=followed.id), timeout=60)
    next(stream)
    _running(shared_daemon, session, marker)
    stream.cancel()
    _ends_cancelled(shared_daemon, followed.id, marker, project, before)


def test_cancel_when_unwatched_without_a_watch_ends_after_the_grace(
    shared_daemon: DaemonProcess, session: str, project: Path
) -> None:
    """A client killed between its submit and its watch: nobody ever follows the action."""
    before = fingerprint(project)
    marker = _marker()
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"rm keep.txt; sleep {marker}"]))
    action = submit(shared_daemon, session, spec, detach=True, cancel_when_unwatched=True)
    _running(shared_daemon, session, marker)
    time.sleep(5)
    assert get(shared_daemon, action.id).state == pb.ACTION_STATE_RUNNING  # the grace is 10 s
    _ends_cancelled(shared_daemon, action.id, marker, project, before)


def test_cancel_when_unwatched_goes_with_detach(shared_daemon: DaemonProcess, session: str) -> None:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["true"]))
    code, message = status_of(lambda: submit(shared_daemon, session, spec, cancel_when_unwatched=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cancel_when_unwatched" in message, message
    assert actions_of(shared_daemon, session) == []


# ---------------------------------------------------------------- sessions: get-or-create


def _create(d: DaemonProcess, *resources: pb.ResourceSpec, **request: object) -> spb.CreateSessionResponse:
    req = spb.CreateSessionRequest(resources=list(resources), **request)  # type: ignore[arg-type]
    return d.sessions.CreateSession(req, timeout=60)


def _fs(path: Path, **spec: object) -> pb.ResourceSpec:
    return pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(path)), **spec)  # type: ignore[arg-type]


def _db(path: Path) -> pb.ResourceSpec:
    return pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{path}"))


def _close(d: DaemonProcess, session_id: str, mode: int = spb.CLOSE_MODE_UNDO_ALL) -> None:
    d.sessions.CloseSession(spb.CloseSessionRequest(session_id=session_id, mode=mode), timeout=60)  # type: ignore[arg-type]


def test_create_session_reuse_is_one_get_or_create(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    ws, db = tmp_path / "ws", tmp_path / "shop.db"
    (ws / "sub").mkdir(parents=True)
    first = _create(shared_daemon, _fs(ws), _db(db), reuse=True)
    try:
        assert not first.reused
        (tmp_path / "link").symlink_to(ws)
        again = _create(shared_daemon, _db(db), _fs(tmp_path / "link"), reuse=True)  # order, a symlinked path
        assert (again.session.id, again.reused) == (first.session.id, True)
        # At once, from several clients: all get the one session, none is refused as held.
        found: list[str] = []
        errors: list[BaseException] = []

        def one() -> None:
            try:
                found.append(_create(shared_daemon, _fs(ws), _db(db), reuse=True).session.id)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and found == [first.session.id] * 6, errors

        # Held otherwise: a clear FAILED_PRECONDITION naming the session and what it holds.
        code, message = status_of(lambda: _create(shared_daemon, _fs(ws), reuse=True))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert first.session.id in message and "not exactly the resources asked" in message, message
        code, message = status_of(lambda: _create(shared_daemon, _fs(ws / "sub"), reuse=True))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and first.session.id in message, message
        strategy = _fs(ws, strategy=pb.UNDO_STRATEGY_INVERSE)
        code, message = status_of(lambda: _create(shared_daemon, strategy, _db(db), reuse=True))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "resources[0].strategy" in message, message
        code, message = status_of(
            lambda: _create(shared_daemon, _fs(ws), _db(db), reuse=True, policy_toml="[sql]\nddl = 'deny'\n")
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "policy_toml" in message, message
        # Without reuse: held, and the refusal says how to pick it up.
        code, message = status_of(lambda: _create(shared_daemon, _fs(ws)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"held by open session {first.session.id}" in message and "--reuse" in message, message
    finally:
        _close(shared_daemon, first.session.id)
    fresh = _create(shared_daemon, _fs(ws), _db(db), reuse=True)  # nothing holds them: a new one
    assert not fresh.reused and fresh.session.id != first.session.id
    _close(shared_daemon, fresh.session.id)


# ---------------------------------------------------------------- sessions: idle leases


@pytest.fixture
def leased(tmp_path: Path) -> Iterator[DaemonProcess]:
    (tmp_path / "leased").mkdir()
    d = DaemonProcess(tmp_path / "leased", config_toml=f"session_idle_lease_s = {LEASE_S}\n").start()
    yield d
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def _state_after_lease(d: DaemonProcess, session_id: str, want: int) -> pb.Session:
    deadline = time.monotonic() + LEASE_S * 4 + 5
    while True:
        session = d.sessions.GetSession(spb.GetSessionRequest(session_id=session_id), timeout=10).session
        if session.state == want or time.monotonic() > deadline:
            return session
        time.sleep(0.1)


def test_an_idle_session_expires_keeping_its_pending_actions(leased: DaemonProcess, tmp_path: Path) -> None:
    empty_ws, busy_ws = tmp_path / "empty", tmp_path / "busy"
    empty_ws.mkdir()
    busy_ws.mkdir()
    (busy_ws / "keep.txt").write_text("keep\n")
    empty = _create(leased, _fs(empty_ws)).session
    busy = _create(leased, _fs(busy_ws)).session
    done = submit(leased, busy.id, pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo new > made.txt"])))
    assert done.state == pb.ACTION_STATE_EXECUTED

    # Nothing pending: closed, its workspace free for anyone.
    assert _state_after_lease(leased, empty.id, pb.SESSION_STATE_CLOSED).state == pb.SESSION_STATE_CLOSED
    other = _create(leased, _fs(empty_ws)).session
    _close(leased, other.id)

    # Pending work: expired, the action still pending (neither committed nor undone), the file still there.
    expired = _state_after_lease(leased, busy.id, pb.SESSION_STATE_EXPIRED)
    assert expired.state == pb.SESSION_STATE_EXPIRED and expired.pending_actions == 1
    assert get(leased, done.id).state == pb.ACTION_STATE_EXECUTED
    assert (busy_ws / "made.txt").read_text() == "new\n"
    listed = leased.sessions.ListSessions(spb.ListSessionsRequest(), timeout=10).sessions
    assert busy.id in [s.id for s in listed]  # still listed without include_closed: it holds its workspace
    # Held still; the refusal says it expired and how to pick it up.
    code, message = status_of(lambda: _create(leased, _fs(busy_ws)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"held by expired session {busy.id}" in message and "reuse" in message and "1 pending" in message, message
    # Picked up by its path: the same session, open again, its action undoable.
    picked = _create(leased, _fs(busy_ws), reuse=True)
    assert (picked.session.id, picked.reused, picked.session.state) == (busy.id, True, pb.SESSION_STATE_OPEN)
    (undone,) = leased.actions.UndoAction(apb.UndoActionRequest(session_id=busy.id), timeout=60).undone
    assert undone.id == done.id and undone.state == pb.ACTION_STATE_UNDONE
    assert not (busy_ws / "made.txt").exists()
    _close(leased, busy.id)
    assert "idle past its lease" in leased.log()


def test_an_expired_session_opens_again_when_used_by_id(leased: DaemonProcess, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    sid = _create(leased, _fs(ws)).session.id
    submit(leased, sid, pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo 1 > one"])))
    assert _state_after_lease(leased, sid, pb.SESSION_STATE_EXPIRED).state == pb.SESSION_STATE_EXPIRED
    second = submit(leased, sid, pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo 2 > two"])))
    assert second.state == pb.ACTION_STATE_EXECUTED and second.seq == 2
    session = leased.sessions.GetSession(spb.GetSessionRequest(session_id=sid), timeout=10).session
    assert (session.state, session.pending_actions) == (pb.SESSION_STATE_OPEN, 2)
    _close(leased, sid, spb.CLOSE_MODE_COMMIT_ALL)
    assert (ws / "one").exists() and (ws / "two").exists()


def test_a_lease_spares_running_actions_and_open_transactions(leased: DaemonProcess, tmp_path: Path) -> None:
    ws, db = tmp_path / "ws", tmp_path / "app.db"
    ws.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    running = _create(leased, _fs(ws)).session
    held = _create(leased, _db(db)).session  # the transaction strategy: pending work in an open transaction
    insert = submit(leased, held.id, pb.ActionSpec(sql=pb.SqlAction(sql="INSERT INTO t VALUES (1)")))
    assert insert.state == pb.ACTION_STATE_EXECUTED
    slow = submit(
        leased,
        running.id,
        pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"sleep {LEASE_S * 3}; echo done > out"])),
    )
    assert slow.state == pb.ACTION_STATE_EXECUTED  # ran past the lease: not let go meanwhile
    time.sleep(LEASE_S * 3)
    state = leased.sessions.GetSession(spb.GetSessionRequest(session_id=held.id), timeout=10).session.state
    assert state == pb.SESSION_STATE_OPEN  # closing its connection would roll the INSERT back
    assert get(leased, insert.id).state == pb.ACTION_STATE_EXECUTED
    _close(leased, held.id, spb.CLOSE_MODE_COMMIT_ALL)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]  # the pending INSERT was never lost
    assert _state_after_lease(leased, running.id, pb.SESSION_STATE_EXPIRED).state == pb.SESSION_STATE_EXPIRED
