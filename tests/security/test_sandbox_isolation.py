"""Negative tests: what a sandboxed command must NOT be able to do (real bwrap, no mocks).

Each test that hides something first shows, where it helps, that the same thing is
reachable without the protection, so a pass means the protection did the work.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.domain.sandbox import ExecResult, Limits, SandboxSpec, Termination
from goexd.sandbox.bwrap import BwrapSandbox

# The daemon's venv python lives under /root (masked); python actions use the system one,
# which `make install` provides.
PY = "/usr/bin/python3"
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A scratch dir outside /tmp (which the sandbox replaces anyway), so hiding is real."""
    path = Path("/var/tmp") / f"goex-sec-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_sh(sb: BwrapSandbox, script: str, **kw: object) -> ExecResult:
    kw.setdefault("workspace", None)
    return sb.run(SandboxSpec(argv=["sh", "-c", script], **kw))  # type: ignore[arg-type]


# --- reading ----------------------------------------------------------------------------


def test_root_home_is_empty(sandbox: BwrapSandbox) -> None:
    r = run_sh(sandbox, "ls -A /root | wc -l; ls -A /run | wc -l")
    assert r.stdout.split() == [b"0", b"0"]


def test_only_the_allow_list_of_the_host_is_visible(sandbox: BwrapSandbox, outside_tmp: Path) -> None:
    home = outside_tmp / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine example.com password hunter2\n")
    home.chmod(0o755)
    (home / ".netrc").chmod(0o644)  # readable by anyone: only the mount plan can hide it
    script = f"cat {home}/.netrc; ls -A {home}"
    shown = BwrapSandbox(sandbox.enforcer, read_paths=[outside_tmp])
    assert b"hunter2" in run_sh(shown, script).stdout  # control: visible once it is a read path
    r = run_sh(sandbox, script + "; ls -d /home /root /var /srv /mnt /media /opt /run /boot /sys")
    assert b"hunter2" not in r.stdout
    assert r.stdout == b""
    assert r.stderr.count(b"No such file or directory") == 12, r.stderr


def test_cannot_read_a_masked_state_dir_or_file(sandbox: BwrapSandbox, outside_tmp: Path) -> None:
    state = outside_tmp / "state"
    state.mkdir()
    (state / "journal.db").write_text("secret-journal")
    token = outside_tmp / "token"
    token.write_text("secret-token")
    script = f"cat {state}/journal.db {token}; ls -A {state}"
    shown = BwrapSandbox(sandbox.enforcer, read_paths=[outside_tmp])
    assert run_sh(shown, script).stdout.count(b"secret-") == 2  # control
    masked = BwrapSandbox(sandbox.enforcer, read_paths=[outside_tmp], always_masked=[token])
    r = run_sh(masked, script, masked_paths=[state])
    assert b"secret-" not in r.stdout
    assert b"journal.db" not in r.stdout


def test_masks_apply_inside_the_workspace_too(sandbox: BwrapSandbox, outside_tmp: Path) -> None:
    ws = outside_tmp / "ws"
    (ws / "private").mkdir(parents=True)
    (ws / "private" / "key").write_text("secret-key")
    r = run_sh(sandbox, "cat private/key; echo ok > visible", workspace=ws, masked_paths=[ws / "private"])
    assert b"secret-key" not in r.stdout
    assert (ws / "visible").read_text() == "ok\n"


def test_root_only_secrets_are_hidden_even_from_uid_0(sandbox: BwrapSandbox, outside_tmp: Path) -> None:
    ws = outside_tmp / "ws"  # owned by the daemon's uid: as root, the command keeps uid 0
    ws.mkdir()
    r = run_sh(
        sandbox, "id -u; cat /etc/shadow /etc/gshadow 2>/dev/null | wc -c; ls -A /etc/ssl/private | wc -l", workspace=ws
    )
    assert r.stdout.split() == [str(os.geteuid()).encode(), b"0", b"0"], r


def test_host_tmp_is_not_visible(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("secret-in-tmp")
    r = run_sh(sandbox, f"cat {tmp_path}/secret; ls -A /tmp | wc -l; echo x > /tmp/scratch && echo writable")
    assert b"secret-in-tmp" not in r.stdout
    assert r.stdout.split() == [b"0", b"writable"]


# --- writing ----------------------------------------------------------------------------


def test_cannot_write_outside_the_workspace(sandbox: BwrapSandbox, outside_tmp: Path, tmp_path: Path) -> None:
    ws = outside_tmp / "ws"
    ws.mkdir()
    name = f"goex-sec-{uuid.uuid4().hex[:8]}"
    targets = [
        Path("/etc") / name,
        Path("/usr") / name,
        Path("/var/tmp") / name,
        outside_tmp / "sibling.txt",  # right next to the workspace
        tmp_path / "sibling.txt",  # /tmp on the host: the sandbox only sees its own tmpfs
    ]
    script = "; ".join(f"echo x > {t}" for t in targets) + "; echo x > /new-at-root; echo inside > in.txt"
    r = run_sh(sandbox, script, workspace=ws)
    # /etc, /usr and / are read-only, and so are the directories down to the workspace's real path
    # (/var/tmp, the workspace's parent: empty ones of the sandbox's); the rest of the host is not there.
    assert r.stderr.count(b"Read-only file system") == 5, r.stderr
    assert r.stderr.count(b"Directory nonexistent") == 1, r.stderr
    assert [t for t in targets if t.exists()] == []
    assert (ws / "in.txt").read_text() == "inside\n"


def test_cannot_regain_privileges(sandbox: BwrapSandbox) -> None:
    script = (
        "grep CapEff /proc/self/status;"
        "mount -o remount,rw / 2>/dev/null && echo REMOUNTED;"
        "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo SYSCTL;"
        "unshare -U true 2>/dev/null && echo USERNS;"
        "true"
    )
    r = run_sh(sandbox, script)
    assert r.stdout.strip() == b"CapEff:\t0000000000000000"


def test_cannot_see_host_processes(sandbox: BwrapSandbox) -> None:
    r = run_sh(sandbox, "ls /proc | grep -c '^[0-9]*$'; hostname")
    count, hostname = r.stdout.split()
    assert int(count) <= 4  # bwrap's init, sh, ls, grep: nothing from the host
    assert hostname == b"sandbox"


# --- network and sockets ----------------------------------------------------------------


CONNECT = """
import socket, sys
for target in sys.argv[1:]:
    try:
        if target.startswith("tcp:"):
            socket.create_connection(("127.0.0.1", int(target[4:])), timeout=2).close()
        else:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(target.replace("@", "\\0", 1))
            s.close()
        print("CONNECTED", target)
    except OSError as e:
        print("refused", target, e)
"""


def assert_nobody_came(listeners: list[socket.socket]) -> None:
    for listener in listeners:
        listener.settimeout(0.05)
        with pytest.raises(TimeoutError):
            listener.accept()


def test_cannot_reach_a_tcp_listener_on_localhost(sandbox: BwrapSandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port)).close()  # control: reachable from the host
        listener.accept()[0].close()
        r = sandbox.run(SandboxSpec(argv=[PY, "-c", CONNECT, f"tcp:{port}"], workspace=None))
        assert r.stdout.startswith(b"refused"), r
        assert_nobody_came([listener])


@pytest.fixture
def unix_listeners(outside_tmp: Path, tmp_path: Path) -> Iterator[list[Path]]:
    tag = uuid.uuid4().hex[:8]
    paths = [
        tmp_path / "in-tmp.sock",
        outside_tmp / "in-var-tmp.sock",
        outside_tmp / "ws" / "in-workspace.sock",
    ]
    if IS_ROOT:
        paths.append(Path("/run") / f"goex-sec-{tag}.sock")
    (outside_tmp / "ws").mkdir()
    listeners = []
    for p in paths:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.listen()
        listeners.append(s)
    yield paths
    for s in listeners:
        s.close()
    for p in paths:
        p.unlink(missing_ok=True)


def test_cannot_connect_to_host_unix_sockets(
    sandbox: BwrapSandbox, unix_listeners: list[Path], outside_tmp: Path
) -> None:
    ws = outside_tmp / "ws"
    for p in unix_listeners:  # control: each one accepts from the host
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(p))
    targets = [str(p) for p in unix_listeners] + ["/workspace/in-workspace.sock"]
    r = sandbox.run(SandboxSpec(argv=[PY, "-c", CONNECT, *targets], workspace=ws))
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(targets), r
    assert all(line.startswith("refused") for line in lines), lines


def test_cannot_connect_to_abstract_unix_sockets(sandbox: BwrapSandbox) -> None:
    name = f"goex-sec-{uuid.uuid4().hex[:8]}"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("\0" + name)
        listener.listen()
        r = sandbox.run(SandboxSpec(argv=[PY, "-c", CONNECT, "@" + name], workspace=None))
        assert r.stdout.startswith(b"refused"), r
        assert_nobody_came([listener])


# --- lifetime ---------------------------------------------------------------------------


HELPER = """
import sys
from goexd.domain.sandbox import Limits, SandboxSpec
from goexd.sandbox.bwrap import BwrapSandbox
BwrapSandbox().run(SandboxSpec(argv=["sleep", sys.argv[1]], workspace=None, limits=Limits(timeout_s=600)))
"""


def pids_running(argv: list[str]) -> list[int]:
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "cmdline").read_bytes() == want:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def run_cgroups_of(pid: int) -> list[Path]:
    """The goex run cgroup dirs `pid` is in (left behind when its daemon is SIGKILLed)."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, fs = line.split(" - ")[0].split(), line.split(" - ")[1].split()
        if fs[0] == "cgroup2":
            mounts[""] = fields[4]
        elif fs[0] == "cgroup":
            for opt in fs[2].split(","):
                mounts[opt] = fields[4]
    out = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            if "/goex-" in path and c in mounts:
                out.append(Path(mounts[c] + path))
    return out


def test_sandbox_dies_with_the_daemon(sandbox: BwrapSandbox) -> None:
    marker = f"300.{uuid.uuid4().int % 10**9}"  # a unique `sleep` argv to find it by
    helper = subprocess.Popen([sys.executable, "-c", HELPER, marker])
    leftovers: list[Path] = []
    try:
        assert wait_for(lambda: pids_running(["sleep", marker]), 10), "sandboxed sleep never started"
        leftovers = run_cgroups_of(pids_running(["sleep", marker])[0])
        os.kill(helper.pid, signal.SIGKILL)
        helper.wait()
        assert wait_for(lambda: not pids_running(["sleep", marker]), 5), "sleep outlived its daemon"
    finally:
        helper.kill()
        helper.wait()
        for pid in pids_running(["sleep", marker]):
            os.kill(pid, signal.SIGKILL)
        for cgroup in leftovers:  # the daemon died before it could remove them
            assert wait_for(lambda c=cgroup: not (c / "cgroup.procs").read_text(), 5)
            cgroup.rmdir()


def test_a_killed_run_leaves_no_process_behind(sandbox: BwrapSandbox) -> None:
    marker = f"301.{uuid.uuid4().int % 10**9}"
    r = run_sh(sandbox, f"sleep {marker} & sleep {marker} & exit 0", limits=Limits(timeout_s=5))
    assert r.termination is Termination.EXITED
    assert pids_running(["sleep", marker]) == []
