"""Nothing of a sandbox outlives goexd: it dies with the daemon, or the next start kills it.

Processes are found by the mark goexd puts in the environment of every process it starts for a
sandbox (GOEXD_SANDBOX=<owner>.<instance>, sandbox/reaper.py), never by their argv. Each test runs
with goexd as root (over a root-owned workspace: the worst case, bwrap keeps uid 0) and as the
unprivileged user goex-sec (over a workspace of theirs).

- The window the kill -9 runs found: the daemon dies after starting bwrap and before writing its
  options. A stand-in daemon (a real BwrapSandbox in a process of its own) kills itself exactly
  there. bwrap, reading EOF, must exit instead of running with no options (--disable-userns after
  --args). The control, with that guard off, shows the stuck process the window left before (root
  only: an unprivileged bwrap without options cannot even make its namespaces).
- The parent-death signal over the whole launch chain (uid switch, limits launcher, the overlay's
  unshare + sh prefix), with the options pipe held open elsewhere so that only the signal can end
  bwrap; the control without it shows bwrap still waiting.
- What neither can cover (bwrap's window between its clone and the eventfd write that releases the
  child) the next start reaps: planted marked processes of an earlier run are killed, another
  goexd's are not, and the reaper reaches into a live sandbox's own namespaces.
- Seeded SIGKILLs during a burst of detached shell submits: after each restart no process of an
  earlier run is left and there is one egress run dir. GOEX_FAULT_KILLS sets how many kills per
  daemon mode (1 in make test; `make faults-leftovers-long` runs more).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.sandbox.reaper import MARK_ENV, SandboxMark, owner_key
from goexd.startup import EGRESS_LOCK, EGRESS_PREFIX
from tests.daemon_process import DaemonProcess
from tests.faults.leftovers import egress_dirs, marked, settle, with_tag
from tests.security.conftest import SEC_USER, _scratch_dir, make_workspace
from tests.users import ensure_system_user

MODES = ("root", "user")
KILLS = int(os.environ.get("GOEX_FAULT_KILLS", "1"))
SEED = int(os.environ.get("GOEX_FAULT_SEED", "14"))


def _ids(mode: str) -> tuple[int, int, str | None]:
    if mode == "root":
        return 0, 0, None
    user = ensure_system_user(SEC_USER)
    return user.pw_uid, user.pw_gid, SEC_USER


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scratch(mode: str) -> Iterator[Path]:
    uid, gid, _ = _ids(mode)
    root = _scratch_dir("goex-faults-", uid, gid)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the window between starting bwrap and writing its options ---------------------------------

# A stand-in for goexd: a real BwrapSandbox runs `sleep`, and the process SIGKILLs itself at the
# moment the kill -9 runs found: bwrap is started (and in its cgroup) but has not got its options.
STAND_IN = """
import os, signal, stat, sys, time
from pathlib import Path
from goexd.sandbox import bwrap
from goexd.domain.sandbox import Limits, SandboxSpec, WorkspaceOverlay
from goexd.sandbox.reaper import MARK_ENV

mark, workspace, tag, guards, overlay_dir = sys.argv[1:6]
if "pdeathsig" not in guards:  # the launch chain as it was: no parent-death signal
    bwrap._dying_with_daemon = lambda argv: argv
if "needs-options" not in guards:  # nothing that makes bwrap refuse to start without its options
    bwrap.NEEDS_THE_OPTIONS = "--new-session"

def bwrap_waiting():
    # The chain is one process exec'ing its way to bwrap: wait until it is bwrap (every step of
    # the chain has run by then, setpriv's prctl included), then die.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for tid in os.listdir("/proc/self/task"):
            for pid in open(f"/proc/self/task/{tid}/children").read().split():
                try:
                    if os.readlink(f"/proc/{pid}/exe") == bwrap.shutil.which("bwrap"):
                        return
                except OSError:
                    pass
        time.sleep(0.001)
    raise SystemExit("bwrap never started")

def die_before_the_options(self, fd):
    if "wait-for-bwrap" in guards:
        bwrap_waiting()
    if "hold-args" in guards:
        # A process of its own keeps the options pipe open: bwrap reads no EOF when the stand-in
        # dies, so only the parent-death signal can end it.
        holder = os.fork()
        if holder == 0:
            os.setsid()
            os.close(1)  # the test reads the stand-in's output to its end
            os.close(2)
            time.sleep(30)
            os._exit(0)
        print(holder, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

bwrap._Execution._send_options = die_before_the_options
overlay = None
if overlay_dir:
    upper, work = Path(overlay_dir, "upper"), Path(overlay_dir, "work")
    upper.mkdir(mode=0o700)
    work.mkdir(mode=0o700)
    os.chmod(upper, stat.S_IMODE(os.stat(workspace).st_mode))
    overlay = WorkspaceOverlay(upper, work)
sandbox = bwrap.BwrapSandbox(spawn_env={MARK_ENV: mark})
spec = SandboxSpec(
    argv=["sh", "-c", "sleep 300; :", tag], workspace=Path(workspace), limits=Limits(timeout_s=60), overlay=overlay
)
result = sandbox.run(spec)
raise SystemExit(f"the run returned: the stand-in did not die before the options: {result}")
"""


def _stand_in(mode: str, ws: Path, mark: SandboxMark, tag: str, guards: str, overlay: Path | None = None) -> int:
    """Run the stand-in; returns the pid of the process holding the options pipe ("hold-args"), else 0."""
    _, _, user = _ids(mode)
    who = pwd.getpwnam(user) if user is not None else None
    r = subprocess.run(
        [sys.executable, "-c", STAND_IN, mark.value, str(ws), tag, guards, str(overlay or "")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        user=who.pw_uid if who else None,
        group=who.pw_gid if who else None,
        extra_groups=[] if who else None,
    )
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    return int(r.stdout) if r.stdout.strip() else 0


@pytest.mark.parametrize("guards", ["pdeathsig,needs-options", "needs-options"])
def test_a_daemon_killed_before_bwrap_has_its_options_takes_the_chain_with_it(mode: str, guards: str) -> None:
    """Both guards as goexd runs, and the options check alone: it alone closes this window. (The
    parent-death signal cannot: a dying process closes its files, so bwrap reads EOF, before its
    children are signalled, and setpriv may set the signal after the daemon is gone.)"""
    uid, gid, _ = _ids(mode)
    with make_workspace(uid, gid) as ws:
        mark = SandboxMark(secrets.token_hex(8), secrets.token_hex(8))  # an owner of this test alone
        tag = f"goex-window-{secrets.token_hex(6)}"
        for _ in range(3):
            _stand_in(mode, ws, mark, tag, guards)
            assert settle(mark.owner) == {}, "a sandbox process outlived the daemon that started it"
        assert with_tag(tag) == []


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "overlay"])
@pytest.mark.parametrize("signal_set", [True, False], ids=["pdeathsig", "control"])
def test_the_parent_death_signal_holds_over_the_whole_launch_chain(mode: str, overlay: bool, signal_set: bool) -> None:
    """The daemon dies while bwrap waits for its options and the options pipe stays open elsewhere
    (so no EOF ends bwrap): the parent-death signal set by the first setpriv must reach bwrap through
    the whole chain, the uid switch of a root daemon (which sets it again), the limits launcher and
    the overlay's unshare + sh prefix. The control, without it, shows bwrap still waiting."""
    uid, gid, _ = _ids(mode)
    with make_workspace(uid, gid) as ws:
        mark = SandboxMark(secrets.token_hex(8), secrets.token_hex(8))
        scratch = ws.parent / "overlay"
        if overlay:
            scratch.mkdir()
            os.chown(scratch, uid, gid)
        guards = "wait-for-bwrap,hold-args" + (",pdeathsig" if signal_set else "")
        holder = _stand_in(mode, ws, mark, f"goex-chain-{secrets.token_hex(6)}", guards, scratch if overlay else None)
        try:
            left = settle(mark.owner)
            if signal_set:
                assert left == {}, "the launch chain outlived the daemon that started it"
            else:
                assert len(left) == 1, f"control: bwrap should still wait for its options: {left}"
        finally:
            # bwrap first: once the holder is gone bwrap reads EOF and (in the control) forks a child
            # that would block for ever; then anything marked that came up meanwhile.
            for pid in [*marked(mark.owner), holder, *marked(mark.owner)]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            assert settle(mark.owner) == {}


def test_control_without_the_parent_death_signal_the_window_leaves_a_process_that_reaping_kills() -> None:
    """Root only: that is where the window left uid 0 with every capability in the host's namespaces."""
    with make_workspace(0, 0) as ws:
        mark = SandboxMark(secrets.token_hex(8), secrets.token_hex(8))
        tag = f"goex-window-{secrets.token_hex(6)}"
        try:
            _stand_in("root", ws, mark, tag, guards="")
            time.sleep(0.5)
            left = marked(mark.owner)
            assert left, "control: without the parent-death signal the window should leave a stuck process"
            status = Path(f"/proc/{min(left)}/status").read_text()
            assert "\nUid:\t0\t" in status, status  # what the issue saw: root, waiting for ever
            # The next start's reaping, as another instance of the same daemon:
            from goexd.sandbox import reaper

            killed = reaper.reap(SandboxMark(mark.owner, secrets.token_hex(8)))
            assert {k.pid for k in killed} >= set(left)
            assert settle(mark.owner) == {}
        finally:
            for pid in marked(mark.owner):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


# --- the next start reaps ------------------------------------------------------------------------

PLANTED = "import time\ntime.sleep(300)\n"


def _plant(owner: str, instance: str, uid: int, gid: int, tag: str) -> subprocess.Popen[bytes]:
    """A process carrying a sandbox mark, as bwrap's stuck child would (here: a sleeping python)."""
    return subprocess.Popen(
        [sys.executable, "-c", PLANTED, tag],
        env={MARK_ENV: f"{owner}.{instance}"},
        cwd="/",
        user=uid,
        group=gid,
        extra_groups=[],
        start_new_session=True,
    )


def _egress_dir(owner: str, uid: int, gid: int, lock: bool) -> Path:
    """An egress run dir as a goexd of `owner` would leave it (with its lock file, unlocked)."""
    path = Path(tempfile.mkdtemp(prefix=f"{EGRESS_PREFIX}{owner}-"))
    (path / "egress-0123456789abcdef.sock").touch()
    if lock:
        (path / EGRESS_LOCK).touch()
    for entry in (path, *path.iterdir()):
        os.chown(entry, uid, gid)
    return path


def test_the_next_start_removes_what_dead_goexds_left_and_nothing_of_live_ones(mode: str, scratch: Path) -> None:
    uid, gid, user = _ids(mode)
    d = DaemonProcess(scratch, user=user)
    d.state_dir.mkdir(mode=0o700)
    os.chown(d.state_dir, uid, gid)
    owner = owner_key(d.state_dir)
    tag = f"goex-planted-{secrets.token_hex(6)}"
    ours = [_plant(owner, secrets.token_hex(8), uid, gid, tag) for _ in range(2)]
    other_owner = secrets.token_hex(8)  # another goexd's state dir
    theirs = _plant(other_owner, secrets.token_hex(8), uid, gid, tag)
    gone = [_egress_dir(owner, uid, gid, lock=False), _egress_dir(other_owner, uid, gid, lock=True)]
    live = _egress_dir(other_owner, uid, gid, lock=True)  # its goexd runs: it holds the lock
    old_style = _egress_dir(other_owner, uid, gid, lock=False)  # no lock: whose, and whether alive, is unknown
    # Another user's (nobody's: no goexd of this machine runs as nobody, which would remove it rightly).
    foreign = _egress_dir(secrets.token_hex(8), 65534, 65534, lock=True)
    held = os.open(live / EGRESS_LOCK, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        time.sleep(0.2)
        assert set(marked(owner)) == {p.pid for p in ours}  # control: they are there and marked
        d.start()
        for p in ours:
            assert p.wait(10) == -signal.SIGKILL
        assert marked(owner) == {}
        assert theirs.poll() is None, "the start killed a process of another goexd's"
        assert "left by an earlier goexd run" in d.log()
        assert [p.exists() for p in gone] == [False, False]
        assert live.exists() and old_style.exists() and foreign.exists()
        assert len(egress_dirs(owner)) == 1  # its own, new one
        assert d.stop() == 0
        assert "Traceback" not in d.log()
    finally:
        os.close(held)
        for p in (*ours, theirs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if d.proc is not None and d.proc.poll() is None:
            d.kill()
        for path in (*gone, live, old_style, foreign):
            shutil.rmtree(path, ignore_errors=True)


LIVE_RUN = """
import os, stat, sys
from pathlib import Path
from goexd.domain.sandbox import Limits, SandboxSpec, WorkspaceOverlay
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.reaper import MARK_ENV

mark, workspace, tag = sys.argv[1:4]
overlay = None
if len(sys.argv) > 4:
    upper, work = Path(sys.argv[4], "upper"), Path(sys.argv[4], "work")
    upper.mkdir(mode=0o700)
    work.mkdir(mode=0o700)
    os.chmod(upper, stat.S_IMODE(os.stat(workspace).st_mode))
    overlay = WorkspaceOverlay(upper, work)
spec = SandboxSpec(
    argv=["sh", "-c", "sleep 300; :", tag], workspace=Path(workspace), limits=Limits(timeout_s=60), overlay=overlay
)
result = BwrapSandbox(spawn_env={MARK_ENV: mark}).run(spec)
print(result.termination.value, result.detail)
"""
REAP = """
import sys
from goexd.sandbox.reaper import SandboxMark, reap
print(len(reap(SandboxMark(sys.argv[1], "a-later-start"))))
"""


def test_reaping_reaches_into_a_live_sandbox_of_an_earlier_run(mode: str) -> None:
    """The mark is read, and the kill lands, where the sandbox's pid-1 lives: in user and pid
    namespaces of its own, made by bwrap (as the unprivileged user too, whose reaper is not root)."""
    uid, gid, user = _ids(mode)
    who: dict[str, Any] = {"user": uid, "group": gid, "extra_groups": []} if user else {}
    with make_workspace(uid, gid) as ws:
        mark = SandboxMark(secrets.token_hex(8), secrets.token_hex(8))
        tag = f"goex-live-{secrets.token_hex(6)}"
        argv = [sys.executable, "-c", LIVE_RUN, mark.value, str(ws), tag]
        sandbox = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd="/", **who)
        try:
            deadline = time.monotonic() + 20
            while len(marked(mark.owner)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            # control: the running sandbox carries the mark (bwrap, and its pid-1 in the sandbox's namespaces)
            assert len(marked(mark.owner)) >= 2, marked(mark.owner)
            r = subprocess.run(
                [sys.executable, "-c", REAP, mark.owner], capture_output=True, text=True, timeout=30, cwd="/", **who
            )
            assert r.returncode == 0 and int(r.stdout) >= 1, r
            out, _ = sandbox.communicate(timeout=20)
            assert out.split()[0] in ("signaled", "spawn_failed"), out  # it did not finish by itself
            assert settle(mark.owner) == {} and with_tag(tag) == []
        finally:
            if sandbox.poll() is None:
                sandbox.kill()
                sandbox.wait()


# --- seeded kill -9 during a burst of detached shell submits ------------------------------------


def _sessions(d: DaemonProcess, workspaces: list[Path]) -> list[str]:
    """One open session per workspace: a new one, or the one a killed run left open."""
    held = {s.resources[0].uri: s.id for s in d.sessions.ListSessions(spb.ListSessionsRequest(), timeout=30).sessions}
    out = []
    for ws in workspaces:
        if str(ws) in held:
            out.append(held[str(ws)])
            continue
        req = spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))])
        out.append(d.sessions.CreateSession(req, timeout=60).session.id)
    return out


def _submit_until(d: DaemonProcess, session: str, tag: str, stop: threading.Event) -> None:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"echo x >> f; : {tag}"]))
    while not stop.is_set():
        try:
            d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec, detach=True), timeout=10)
            d.actions.CommitActions(apb.CommitActionsRequest(session_id=session), timeout=10)
        except grpc.RpcError:
            time.sleep(0.01)  # queue full, or the daemon is gone


@pytest.mark.timeout(60 + 30 * KILLS)  # a start and a burst per kill
def test_seeded_kills_during_shell_submits_leave_nothing_after_the_restart(mode: str, scratch: Path) -> None:
    uid, gid, user = _ids(mode)
    rng = random.Random(f"{SEED}-{mode}")
    tag = f"goex-burst-{secrets.token_hex(6)}"
    d = DaemonProcess(scratch, user=user)
    outlived = 0  # sandbox processes a kill left until the next start: what the start had to reap
    with contextlib.ExitStack() as stack:
        workspaces = [stack.enter_context(make_workspace(uid, gid)) for _ in range(3)]
        for kill in range(KILLS + 1):
            d.start()
            owner = owner_key(d.state_dir)
            # Nothing runs yet (no action was submitted to this run): every marked process is a leftover.
            assert marked(owner) == {}, f"after kill {kill}: a sandbox process of an earlier run survived the start"
            assert with_tag(tag) == [], f"after kill {kill}: a command of an earlier run survived the start"
            assert len(egress_dirs(owner)) == 1, egress_dirs(owner)
            if kill == KILLS:
                break
            stop = threading.Event()
            threads = [threading.Thread(target=_submit_until, args=(d, s, tag, stop)) for s in _sessions(d, workspaces)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.8))
            d.kill()
            stop.set()
            for t in threads:
                t.join()
            outlived += len(settle(owner, timeout=1.0))
        assert d.stop() == 0
    assert "Traceback" not in d.log(), d.log()[-5000:]
    print(f"{mode}: {KILLS} kills; {outlived} sandbox process(es) outlived a kill and were reaped at the next start")


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "overlay"])
def test_every_process_of_the_chain_carries_the_mark_and_nothing_of_the_daemons(mode: str, overlay: bool) -> None:
    """/proc/PID/environ of a live run: bwrap and its pid-1 hold the mark and nothing of the daemon's
    environment (a marker variable of the daemon's, its cwd); the command holds its own environment
    and no mark (it lives in the pid namespace of a marked init)."""
    uid, gid, user = _ids(mode)
    who: dict[str, Any] = {"user": uid, "group": gid, "extra_groups": []} if user else {}
    daemon_var = f"GOEX_DAEMON_ONLY={secrets.token_hex(8)}"
    with make_workspace(uid, gid) as ws:
        mark = SandboxMark(secrets.token_hex(8), secrets.token_hex(8))
        tag = f"goex-env-{secrets.token_hex(6)}"
        argv = [sys.executable, "-c", LIVE_RUN, mark.value, str(ws), tag]
        if overlay:
            (ws.parent / "overlay").mkdir()
            os.chown(ws.parent / "overlay", uid, gid)
            argv.append(str(ws.parent / "overlay"))
        env = {**os.environ, "GOEX_DAEMON_ONLY": daemon_var.split("=", 1)[1]}
        cwd = ws.parent  # the stand-in daemon's cwd: not to be seen in the chain's environment
        run = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=cwd, env=env, **who)
        try:
            # Until the command runs (the chain has done its part); generous, as a loaded machine is slow
            # to start the stand-in daemon's Python, but a run that ended early fails at once with its words.
            # The command is the `sh` the pid-1 forked and exec'd: before its exec the child is a copy of the pid-1
            # (bwrap's argv, the tag in it, the mark in its environment), which must not count.
            deadline = time.monotonic() + 60
            chain: dict[int, str] = {}
            command: list[int] = []
            while time.monotonic() < deadline and run.poll() is None:
                chain = marked(mark.owner)
                command = [pid for pid in _children_with_tag(chain, tag) if _comm(pid) == "sh"]
                if command:
                    break
                time.sleep(0.05)
            assert run.poll() is None, f"the run ended before its command was seen: {run.communicate()[0]!r}"
            assert len(chain) >= 2, chain  # bwrap and its pid-1 at least
            for pid in chain:
                env_of = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                assert f"{MARK_ENV}={mark.value}".encode() in env_of
                assert set(env_of) - {b"", f"{MARK_ENV}={mark.value}".encode(), b"PWD=/"} == set(), (pid, env_of)
            assert command, f"control: the command's own process is there (chain {chain}, tagged {with_tag(tag)})"
            for pid in command:
                env_of = Path(f"/proc/{pid}/environ").read_bytes()
                assert MARK_ENV.encode() not in env_of and daemon_var.encode() not in env_of, env_of
        finally:
            for pid in marked(mark.owner):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            run.wait(20)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children_with_tag(parents: dict[int, str], tag: str) -> list[int]:
    """The unmarked processes with `tag` in their argv whose parent is one of `parents`: the command."""
    out = []
    for pid in with_tag(tag):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in parents and pid not in parents:
            out.append(pid)
    return out
