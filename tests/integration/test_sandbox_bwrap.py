"""BwrapSandbox against real bubblewrap and real cgroups (no mocks), plus plan rendering."""

from __future__ import annotations

import dataclasses
import os
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.sandbox.base import (
    Limits,
    Network,
    ProxyEndpoint,
    SandboxSpec,
    SandboxUnavailable,
    Stream,
    Termination,
)
from goexd.sandbox.bwrap import (
    FORWARDER_PYTHON,
    MISSING_BWRAP,
    PROXY_ENV,
    BwrapSandbox,
    Entry,
    HostView,
    MountOp,
    Op,
    probe_host,
    render_plan,
)
from goexd.sandbox.egress_forwarder import CA_PATH, SOCKET_PATH, SOURCE
from goexd.sandbox.limits import (
    RUN_PREFIX,
    CgroupUnusable,
    CgroupV1Enforcer,
    CgroupV2Enforcer,
    RlimitEnforcer,
    sweep_stale,
)

# The daemon's venv python lives under /root (masked); python actions use the system one,
# which `make install` provides.
PY = "/usr/bin/python3"
PROXY_ENDPOINT = ProxyEndpoint(Path("/srv/goexd-run/egress-1.sock"), Path("/srv/goexd-run/egress-ca.pem"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / ".git").mkdir(parents=True)
    (ws / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (ws / "hello.txt").write_text("hello\n")
    return ws


def sh(script: str, workspace: Path | None = None, **kw: object) -> SandboxSpec:
    return SandboxSpec(argv=["sh", "-c", script], workspace=workspace, **kw)  # type: ignore[arg-type]


def needs_cgroups(sb: BwrapSandbox) -> None:
    if sb.enforcer.name == "rlimit":
        pytest.fail(
            "no cgroup delegation here, so memory and process limits cannot be tested: "
            "run the suite as root or in a delegated cgroup"
        )


# --- exit status, stdin, env ------------------------------------------------------------


def test_true_exits_zero(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(SandboxSpec(argv=["true"], workspace=None))
    assert (r.termination, r.exit_code, r.signal) == (Termination.EXITED, 0, None)
    assert r.limits_enforced_by == sandbox.enforcer.name
    assert r.limits_enforced_by in {"cgroup-v1", "cgroup-v2", "rlimit"}


def test_exit_code_is_reported(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(sh("echo out; echo err >&2; exit 3"))
    assert (r.termination, r.exit_code) == (Termination.EXITED, 3)
    assert (r.stdout, r.stderr) == (b"out\n", b"err\n")


def test_death_by_signal_is_signaled(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(sh("kill -TERM $$"))
    assert (r.termination, r.signal, r.exit_code) == (Termination.SIGNALED, 15, None)


def test_stdin_is_fed(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(SandboxSpec(argv=["cat"], workspace=None, stdin=b"hello\x00world"))
    assert r.stdout == b"hello\x00world"


def test_large_stdin_and_unread_stdin_do_not_block(sandbox: BwrapSandbox) -> None:
    big = os.urandom(3 * 1024 * 1024)
    r = sandbox.run(SandboxSpec(argv=["wc", "-c"], workspace=None, stdin=big))
    assert r.stdout.strip() == str(len(big)).encode()
    r = sandbox.run(SandboxSpec(argv=["true"], workspace=None, stdin=big, limits=Limits(timeout_s=5)))
    assert (r.termination, r.exit_code) == (Termination.EXITED, 0)


def test_env_is_minimal_plus_spec(sandbox: BwrapSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOEX_DAEMON_ONLY", "leak")
    r = sandbox.run(SandboxSpec(argv=["env"], workspace=None, env={"FOO": "bar baz", "LANG": "C"}))
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert env["FOO"] == "bar baz"
    assert env["LANG"] == "C"  # the spec overrides the base env
    assert env["HOME"] == "/tmp"
    assert env["TERM"] == "dumb"
    assert "/usr/bin" in env["PATH"]
    assert "GOEX_DAEMON_ONLY" not in env


def test_missing_command_is_spawn_failed(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(SandboxSpec(argv=["/no/such/cmd"], workspace=None))
    assert r.termination is Termination.SPAWN_FAILED
    assert "/no/such/cmd" in r.detail


def test_missing_workspace_is_spawn_failed_with_bwrap_message(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    r = sandbox.run(SandboxSpec(argv=["true"], workspace=tmp_path / "gone"))
    assert r.termination is Termination.SPAWN_FAILED
    assert "bwrap" in r.detail and "gone" in r.detail


def test_check_names_the_package_when_bwrap_is_missing() -> None:
    sb = BwrapSandbox(enforcer=RlimitEnforcer(), bwrap_path="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable) as e:
        sb.check()
    assert str(e.value) == MISSING_BWRAP


def test_proxy_network_needs_its_endpoint_and_only_it_does(sandbox: BwrapSandbox) -> None:
    with pytest.raises(ValueError, match=r"network=proxy needs SandboxSpec\.proxy"):
        sandbox.run(SandboxSpec(argv=["true"], workspace=None, network=Network.PROXY))
    with pytest.raises(ValueError, match="network is none"):
        sandbox.run(SandboxSpec(argv=["true"], workspace=None, proxy=PROXY_ENDPOINT))


class StaleFirstProbe(BwrapSandbox):
    """Its first look at the host names a socket that is gone by the time bwrap runs."""

    probes = 0

    def probe(self, spec: SandboxSpec) -> HostView:
        host = super().probe(spec)
        self.probes += 1
        if self.probes == 1:
            gone = f"/var/tmp/goex-vanished-{uuid.uuid4().hex}.sock"
            return dataclasses.replace(host, unix_sockets=(*host.unix_sockets, gone))
        return host


def test_setup_failing_on_a_changed_host_is_retried_once(sandbox: BwrapSandbox) -> None:
    sb = StaleFirstProbe(enforcer=sandbox.enforcer)
    r = sb.run(SandboxSpec(argv=["true"], workspace=None))
    assert (r.termination, r.exit_code) == (Termination.EXITED, 0)
    assert sb.probes == 2


# --- output -----------------------------------------------------------------------------


def test_output_streams_as_it_arrives_on_the_calling_thread(sandbox: BwrapSandbox) -> None:
    seen: list[tuple[Stream, bytes, float, int]] = []
    start = time.monotonic()

    def sink(stream: Stream, chunk: bytes) -> None:
        seen.append((stream, chunk, time.monotonic() - start, threading.get_ident()))

    r = sandbox.run(sh("echo first; sleep 0.5; echo second >&2"), on_output=sink)
    assert r.exit_code == 0
    assert {t for *_, t in seen} == {threading.get_ident()}
    first = next(s for s in seen if s[1] == b"first\n")
    assert first[0] is Stream.STDOUT
    assert first[2] < 0.4  # delivered before the command finished sleeping
    assert b"".join(c for s, c, *_ in seen if s is Stream.STDERR) == r.stderr == b"second\n"


def test_output_cap_keeps_the_head_counts_all_and_keeps_draining(sandbox: BwrapSandbox) -> None:
    streamed = bytearray()
    limits = Limits(output_bytes=1000, timeout_s=20)
    script = "head -c 5000000 /dev/zero; head -c 300 /dev/zero | tr '\\0' e >&2"
    r = sandbox.run(sh(script, limits=limits), on_output=lambda s, c: streamed.extend(c))
    assert (r.termination, r.exit_code) == (Termination.EXITED, 0)  # never blocked on a full pipe
    assert r.stdout == b"\0" * 1000 and r.stdout_total == 5_000_000 and r.stdout_truncated
    assert r.stderr == b"e" * 300 and not r.stderr_truncated
    assert len(streamed) == 1300  # only bytes within the caps are streamed


def test_a_failing_output_sink_propagates_and_kills_the_run(sandbox: BwrapSandbox) -> None:
    marker = f"302.{uuid.uuid4().int % 10**9}"

    def sink(stream: Stream, chunk: bytes) -> None:
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        sandbox.run(sh(f"echo hi; sleep {marker}"), on_output=sink)
    assert not is_running(["sleep", marker])


def is_running(argv: list[str]) -> bool:
    want = "\0".join(argv).encode() + b"\0"
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == want:
                return True
        except OSError:
            continue  # exited meanwhile
    return False


# --- limits -----------------------------------------------------------------------------


def test_timeout_kills_a_sleeping_command(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(sh("echo started; sleep 30", limits=Limits(timeout_s=0.5)))
    assert r.termination is Termination.TIMEOUT
    assert r.stdout == b"started\n"
    assert 0.5 <= r.duration_s < 3


def test_endless_loop_times_out(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(sh("while :; do :; done", limits=Limits(timeout_s=0.5)))
    assert r.termination is Termination.TIMEOUT
    assert r.duration_s < 3


def test_timeout_kills_background_children_too(sandbox: BwrapSandbox) -> None:
    r = sandbox.run(sh("sleep 30 & sleep 30 & wait", limits=Limits(timeout_s=0.3)))
    assert r.termination is Termination.TIMEOUT
    assert r.duration_s < 3


def test_memory_hog_is_oom(sandbox: BwrapSandbox) -> None:
    needs_cgroups(sandbox)
    hog = "b = b'x' * (1 << 30); print(len(b))"
    limits = Limits(memory_bytes=64 * 1024 * 1024, timeout_s=30)
    r = sandbox.run(SandboxSpec(argv=[PY, "-c", hog], workspace=None, limits=limits))
    assert r.termination is Termination.OOM, r
    assert "memory" in r.detail
    assert r.duration_s < 10


def test_fork_bomb_is_stopped_at_once(sandbox: BwrapSandbox) -> None:
    needs_cgroups(sandbox)
    bomb = "f() { f | f & }; f; sleep 60"
    r = sandbox.run(sh(bomb, limits=Limits(max_processes=64, timeout_s=30)))
    assert r.termination is Termination.PIDS_LIMIT, r
    assert "process limit of 64" in r.detail
    assert r.duration_s < 2


def test_processes_within_the_limit_are_fine(sandbox: BwrapSandbox) -> None:
    needs_cgroups(sandbox)
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 0.2 & done; wait; echo done"
    r = sandbox.run(sh(script, limits=Limits(max_processes=10)))
    assert (r.termination, r.stdout) == (Termination.EXITED, b"done\n")


def test_cancel_kills_the_run(sandbox: BwrapSandbox) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    r = sandbox.run(sh("sleep 30"), cancel=cancel)
    assert r.termination is Termination.CANCELLED
    assert r.duration_s < 3


def test_rlimit_fallback_caps_memory(tmp_path: Path) -> None:
    sb = BwrapSandbox(enforcer=RlimitEnforcer())
    hog = "b = b'x' * (1 << 30)"
    limits = Limits(memory_bytes=256 * 1024 * 1024, timeout_s=30)
    r = sb.run(SandboxSpec(argv=[PY, "-c", hog], workspace=None, limits=limits))
    assert r.limits_enforced_by == "rlimit"
    # RLIMIT_AS makes the allocation fail inside the program; nothing is reported as OOM.
    assert (r.termination, r.exit_code) == (Termination.EXITED, 1)
    assert b"MemoryError" in r.stderr


@pytest.fixture
def private_enforcer(sandbox: BwrapSandbox) -> Iterator[CgroupV1Enforcer | CgroupV2Enforcer]:
    """The detected cgroup backend, but creating run cgroups in a fresh parent of its own."""
    needs_cgroups(sandbox)
    name = f"goex-test-{uuid.uuid4().hex[:8]}"
    enforcer: CgroupV1Enforcer | CgroupV2Enforcer
    if isinstance(sandbox.enforcer, CgroupV1Enforcer):
        enforcer = CgroupV1Enforcer(sandbox.enforcer.memory_parent / name, sandbox.enforcer.pids_parent / name)
        parents = [enforcer.memory_parent, enforcer.pids_parent]
    else:
        assert isinstance(sandbox.enforcer, CgroupV2Enforcer)
        enforcer = CgroupV2Enforcer(sandbox.enforcer.parent / name)
        parents = [enforcer.parent]
    for p in parents:
        p.mkdir()
    if isinstance(enforcer, CgroupV2Enforcer):
        (enforcer.parent / "cgroup.subtree_control").write_text("+memory +pids")
    yield enforcer
    for p in parents:
        p.rmdir()


def test_run_limits_count_refused_forks_kill_all_and_clean_up(
    private_enforcer: CgroupV1Enforcer | CgroupV2Enforcer,
) -> None:
    run = private_enforcer.start(Limits(max_processes=3))
    marker = f"30.{uuid.uuid4().int % 10**9}"
    # `read` holds the shell until it is attached, like bwrap waiting on --args.
    script = f"read go; for i in 1 2 3 4 5 6; do sleep {marker} & done; wait"
    proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        run.attach(proc.pid)
        assert run.limit_hit() is None
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        deadline = time.monotonic() + 5
        while run.limit_hit() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.limit_hit() is Termination.PIDS_LIMIT
        assert "process limit of 3" in run.describe_hit()
        assert is_running(["sleep", marker])
        run.kill_all()
        proc.wait(timeout=5)
        assert not is_running(["sleep", marker])
    finally:
        proc.kill()
        proc.wait()
        run.close()
    assert list(private_enforcer_dirs(private_enforcer)) == []


def private_enforcer_dirs(enforcer: CgroupV1Enforcer | CgroupV2Enforcer) -> Iterator[Path]:
    parents = (
        [enforcer.parent]
        if isinstance(enforcer, CgroupV2Enforcer)
        else [
            enforcer.memory_parent,
            enforcer.pids_parent,
        ]
    )
    for parent in parents:
        yield from parent.glob(f"{RUN_PREFIX}*")


def test_sweep_removes_only_idle_run_cgroups(private_enforcer: CgroupV1Enforcer | CgroupV2Enforcer) -> None:
    busy = private_enforcer.start(Limits())
    idle = private_enforcer.start(Limits())  # as if its daemon died mid-run
    proc = subprocess.Popen(["sleep", "30"])
    try:
        busy.attach(proc.pid)
        parents = {p.parent for p in private_enforcer_dirs(private_enforcer)}
        removed = sum(sweep_stale(parent, min_age_s=0) for parent in parents)
        assert removed == len(parents)  # the idle run's dir in each hierarchy
        assert len(list(private_enforcer_dirs(private_enforcer))) == len(parents)  # the busy ones
    finally:
        proc.kill()
        proc.wait()
        busy.close()
        idle.close()  # already gone: must not fail
    assert list(private_enforcer_dirs(private_enforcer)) == []


def test_cgroup_v2_detection_says_what_is_missing() -> None:
    unified = Path("/sys/fs/cgroup/unified")
    controllers = unified / "cgroup.controllers"
    if not controllers.is_file() or "memory" in controllers.read_text().split():
        pytest.skip("needs a hybrid host whose cgroup2 mount has no memory controller")
    with pytest.raises(CgroupUnusable, match="not delegated"):
        CgroupV2Enforcer.detect(unified)
    with pytest.raises(CgroupUnusable, match="not a cgroup v2 directory"):
        CgroupV2Enforcer.detect(Path("/sys/fs/cgroup/memory"))


def test_run_cgroups_are_removed(private_enforcer: CgroupV1Enforcer | CgroupV2Enforcer) -> None:
    sb = BwrapSandbox(enforcer=private_enforcer)
    assert sb.run(sh("sleep 30 & exit 0")).termination is Termination.EXITED
    assert sb.run(sh("sleep 30", limits=Limits(timeout_s=0.2))).termination is Termination.TIMEOUT
    assert list(private_enforcer_dirs(private_enforcer)) == []


# --- concurrency and speed --------------------------------------------------------------


def test_concurrent_runs_are_independent_and_parallel(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    results: dict[int, bytes] = {}

    def one(i: int) -> None:
        ws = tmp_path / f"ws{i}"
        ws.mkdir()
        r = sandbox.run(sh(f"echo {i} > mine; sleep 0.5; cat mine", workspace=ws))
        results[i] = r.stdout

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i}\n".encode() for i in range(8)}
    assert time.monotonic() - start < 3  # 8 x 0.5 s sequentially would be 4 s


def test_spawn_latency(sandbox: BwrapSandbox, workspace: Path) -> None:
    spec = SandboxSpec(argv=["true"], workspace=workspace, readonly_subpaths=[".git"])
    durations = []
    for _ in range(30):
        start = time.perf_counter()
        assert sandbox.run(spec).exit_code == 0
        durations.append(time.perf_counter() - start)
    # ~10 ms on an idle machine; the bound only catches gross regressions on a busy one.
    assert statistics.median(durations) < 0.1


# --- workspace --------------------------------------------------------------------------


def test_workspace_writes_are_visible_on_the_host(sandbox: BwrapSandbox, workspace: Path) -> None:
    r = sandbox.run(sh("pwd; cat hello.txt; echo new > made.txt; mkdir -p d/e", workspace=workspace))
    assert r.stdout == b"/workspace\nhello\n"
    assert (workspace / "made.txt").read_text() == "new\n"
    assert (workspace / "d" / "e").is_dir()


def test_custom_workspace_mount(sandbox: BwrapSandbox, workspace: Path) -> None:
    spec = sh("pwd; cat hello.txt", workspace=workspace, workspace_mount="/srv/project/here")
    r = sandbox.run(spec)
    assert r.stdout == b"/srv/project/here\nhello\n"


def test_git_dir_is_read_only(sandbox: BwrapSandbox, workspace: Path) -> None:
    script = "touch .git/evil; echo x >> .git/HEAD; rm -rf .git; echo ok > other.txt"
    r = sandbox.run(sh(script, workspace=workspace, readonly_subpaths=[".git"]))
    assert b"Read-only file system" in r.stderr
    assert sorted(p.name for p in (workspace / ".git").iterdir()) == ["HEAD"]
    assert (workspace / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (workspace / "other.txt").read_text() == "ok\n"


def test_missing_readonly_subpath_is_skipped(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    r = sandbox.run(sh("echo fine", workspace=tmp_path, readonly_subpaths=[".git", "vendor"]))
    assert (r.termination, r.stdout) == (Termination.EXITED, b"fine\n")


# --- plan rendering (pure) --------------------------------------------------------------


def dests(mounts: tuple[MountOp, ...], op: Op | None = None) -> list[str]:
    return [m.dest for m in mounts if op is None or m.op is op]


def index(mounts: tuple[MountOp, ...], op: Op, dest: str) -> int:
    return next(i for i, m in enumerate(mounts) if m.op is op and m.dest == dest)


HOST = HostView(
    masked_dirs=("/root", "/run", "/var/lib/goexd"),
    masked_files=("/etc/shadow", "/tmp/ws/secret.env"),
    unix_sockets=("/run/dbus/system_bus_socket", "/tmp/x.sock", "/var/tmp/a/s.sock", "/tmp/ws/app.sock"),
    workspace="/tmp/ws",
    readonly_subpaths=(".git",),
)


def test_plan_flags_isolate_everything() -> None:
    opts = render_plan(SandboxSpec(argv=["true"], workspace=None), HostView()).bwrap_options()
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in opts
    assert opts[opts.index("--cap-drop") + 1] == "ALL"
    assert "--share-net" not in opts


def test_plan_mount_order() -> None:
    plan = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), HOST)
    m = plan.mounts
    assert m[0] == MountOp(Op.RO_BIND, "/", "/", why="system read-only")
    assert dests(m, Op.DEV) == ["/dev"] and dests(m, Op.PROC) == ["/proc"]
    tmp = index(m, Op.TMPFS, "/tmp")
    ws = index(m, Op.BIND, "/workspace")
    # The workspace lives under /tmp: its bind comes after /tmp and every host mask.
    assert tmp < ws
    assert all(i < ws for i, x in enumerate(m) if x.why == "mask" and not x.dest.startswith("/workspace"))
    assert m[ws].source == "/tmp/ws"
    assert index(m, Op.RO_BIND, "/workspace/.git") > ws
    assert plan.chdir == "/workspace"


def test_plan_masks_dirs_with_tmpfs_and_files_with_dev_null() -> None:
    m = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), HOST).mounts
    assert MountOp(Op.TMPFS, "/var/lib/goexd", size=4096, why="mask") in m
    assert MountOp(Op.RO_BIND, "/etc/shadow", "/dev/null", why="mask") in m
    # Masks are made read-only at the very end, after any mount point was created in them.
    remounts = dests(m, Op.REMOUNT_RO)
    assert {"/root", "/run", "/var/lib/goexd"} <= set(remounts)
    assert dests(m)[-len(remounts) :] == remounts


def test_plan_masks_sockets_not_already_hidden() -> None:
    m = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), HOST).mounts
    null_binds = [x.dest for x in m if x.source == "/dev/null"]
    assert "/var/tmp/a/s.sock" in null_binds
    assert "/run/dbus/system_bus_socket" not in null_binds  # /run is masked as a whole
    assert "/tmp/x.sock" not in null_binds  # /tmp is a fresh tmpfs
    # Inside the workspace, the socket and the masked file show through its mount.
    ws = index(m, Op.BIND, "/workspace")
    assert index(m, Op.RO_BIND, "/workspace/app.sock") > ws
    assert index(m, Op.RO_BIND, "/workspace/secret.env") > ws


def test_plan_never_masks_the_workspace_itself() -> None:
    host = HostView(masked_dirs=("/srv/ws", "/srv"), workspace="/srv/ws")
    spec = SandboxSpec(argv=["true"], workspace=Path("/srv/ws"), workspace_mount="/srv/ws")
    m = render_plan(spec, host).mounts
    assert dests(m, Op.TMPFS).count("/srv") == 1
    assert "/srv/ws" not in dests(m, Op.TMPFS)
    assert index(m, Op.BIND, "/srv/ws") > index(m, Op.TMPFS, "/srv")


def test_plan_rebuilds_root_when_the_mount_point_is_missing() -> None:
    host = HostView(
        masked_dirs=("/root",),
        workspace="/tmp/ws",
        anchor="/",
        anchor_entries=(
            Entry("bin", symlink="usr/bin"),
            Entry("etc"),
            Entry("proc"),
            Entry("root"),
            Entry("srv", empty_dir=True),
            Entry("usr"),
        ),
    )
    m = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), host).mounts
    assert MountOp(Op.RO_BIND, "/", "/", why="system read-only") not in m
    assert MountOp(Op.SYMLINK, "/bin", "usr/bin", why="rebuilt dir") in m
    assert {"/etc", "/usr"} <= set(dests(m, Op.RO_BIND))
    assert "/proc" not in dests(m, Op.RO_BIND) and "/root" not in dests(m, Op.RO_BIND)
    assert dests(m, Op.DIR) == ["/srv"]  # empty: recreated, not mounted
    assert m[-1] == MountOp(Op.REMOUNT_RO, "/", why="rebuilt dir read-only")


def test_plan_env_and_chdir_without_workspace() -> None:
    plan = render_plan(SandboxSpec(argv=["env"], workspace=None, env={"A": "1"}), HostView())
    env = dict(plan.env)
    assert env.pop("PATH").startswith("/usr/local/sbin:")
    assert env == {"HOME": "/tmp", "LANG": "C.UTF-8", "TERM": "dumb", "A": "1"}
    assert plan.chdir == "/tmp"
    assert "workspace" not in [m.why for m in plan.mounts]
    opts = plan.bwrap_options()
    assert opts.index("--clearenv") < opts.index("--setenv")


def proxied(workspace: Path | None = Path("/tmp/ws"), **kw: object) -> SandboxSpec:
    return SandboxSpec(
        argv=["curl", "x"],
        workspace=workspace,
        network=Network.PROXY,
        proxy=PROXY_ENDPOINT,
        **kw,  # type: ignore[arg-type]
    )


def test_plan_wires_the_egress_socket_and_ca_after_every_mask() -> None:
    host = dataclasses.replace(HOST, unix_sockets=(*HOST.unix_sockets, str(PROXY_ENDPOINT.socket_path)))
    plan = render_plan(proxied(), host)
    m = plan.mounts
    sock = m.index(MountOp(Op.RO_BIND, SOCKET_PATH, str(PROXY_ENDPOINT.socket_path), why="egress socket"))
    ca = m.index(MountOp(Op.RO_BIND, CA_PATH, str(PROXY_ENDPOINT.ca_path), why="egress CA"))
    masks = [i for i, x in enumerate(m) if x.why == "mask"]
    remounts = [i for i, x in enumerate(m) if x.op is Op.REMOUNT_RO]
    # On the /run mask's tmpfs, after every mask (the route socket itself is masked at its host
    # path like any live socket) and before the remounts make the masks read-only.
    assert index(m, Op.TMPFS, "/run") < min(sock, ca)
    assert max(masks) < sock < ca < min(remounts)
    assert MountOp(Op.RO_BIND, str(PROXY_ENDPOINT.socket_path), "/dev/null", why="mask") in m
    assert "--unshare-all" in plan.flags and "--share-net" not in plan.bwrap_options()


def test_plan_masks_run_for_the_proxy_even_when_it_is_not_masked_otherwise() -> None:
    m = render_plan(proxied(workspace=None), HostView()).mounts
    assert index(m, Op.TMPFS, "/run") < index(m, Op.RO_BIND, SOCKET_PATH) < index(m, Op.REMOUNT_RO, "/run")


def test_plan_runs_the_command_behind_the_forwarder_with_proxy_env() -> None:
    plan = render_plan(proxied(env={"HTTPS_PROXY": "http://elsewhere", "FOO": "1"}), HOST)
    assert plan.argv == (FORWARDER_PYTHON, "-I", "-S", "-c", SOURCE, "curl", "x")
    env = dict(plan.env)
    assert env["FOO"] == "1"
    assert {k: env[k] for k in PROXY_ENV} == PROXY_ENV  # the proxy settings win over the spec's
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://127.0.0.1:3128" and env["NO_PROXY"] == ""
    assert env["SSL_CERT_FILE"] == env["CURL_CA_BUNDLE"] == CA_PATH
    assert "<egress forwarder source>" in plan.describe() and SOURCE not in plan.describe()


def test_plan_without_proxy_is_unchanged() -> None:
    plan = render_plan(SandboxSpec(argv=["curl", "x"], workspace=Path("/tmp/ws")), HOST)
    assert plan.argv == ("curl", "x")
    assert not {"egress socket", "egress CA"} & {x.why for x in plan.mounts}
    assert "HTTPS_PROXY" not in dict(plan.env)


def test_plan_refuses_proxy_specs_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="overlaps /run/goex"):
        render_plan(proxied(workspace_mount="/run"), HOST)
    relative = ProxyEndpoint(Path("egress.sock"), Path("/ca.pem"))
    with pytest.raises(ValueError, match="absolute"):
        render_plan(SandboxSpec(argv=["x"], workspace=None, network=Network.PROXY, proxy=relative), HostView())


def test_plan_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subpath"):
        probe_host(SandboxSpec(argv=["true"], workspace=tmp_path, readonly_subpaths=["../etc"]))
    with pytest.raises(ValueError, match="workspace_mount"):
        render_plan(SandboxSpec(argv=["true"], workspace=tmp_path, workspace_mount="relative"), HostView())
    with pytest.raises(ValueError, match="argv"):
        render_plan(SandboxSpec(argv=[], workspace=None), HostView())


def test_probe_finds_live_unix_sockets(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "live.sock"))
        host = probe_host(SandboxSpec(argv=["true"], workspace=tmp_path))
    assert str(tmp_path / "live.sock") in host.unix_sockets
    assert host.workspace == str(tmp_path)


def test_nul_bytes_cannot_inject_bwrap_options(sandbox: BwrapSandbox) -> None:
    # Options reach bwrap NUL-separated: "a\0--bind\0/\0/" would add a writable root.
    evil = "a\0--bind\0/\0/"
    with pytest.raises(ValueError, match="NUL"):
        sandbox.run(SandboxSpec(argv=["true"], workspace=None, env={"X": evil}))
    with pytest.raises(ValueError, match="NUL"):
        render_plan(SandboxSpec(argv=["true"], workspace=None), HostView(masked_files=(evil,))).bwrap_options()
    with pytest.raises(ValueError):
        sandbox.run(SandboxSpec(argv=["true"], workspace=None, env={"A=B": "1"}))
