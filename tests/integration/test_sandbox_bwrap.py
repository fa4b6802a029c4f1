"""BwrapSandbox against real bubblewrap and real cgroups (no mocks), plus plan rendering."""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.domain.sandbox import (
    Limits,
    Network,
    ProxyEndpoint,
    SandboxSpec,
    SandboxUnavailable,
    Stream,
    Termination,
    WorkspaceOverlay,
)
from goexd.sandbox.bwrap import MISSING_BWRAP, BwrapSandbox
from goexd.sandbox.bwrap_plan import (
    FORWARDER_PYTHON,
    PROXY_ENV,
    Fds,
    HostView,
    MountOp,
    Op,
    SystemPath,
    render_plan,
)
from goexd.sandbox.egress_forwarder import CA_PATH, SOURCE
from goexd.sandbox.host_view import UnreadableScan, probe
from goexd.sandbox.identity import RunAs
from goexd.sandbox.limits import (
    JOIN_FAILED,
    JOIN_FAILED_STATUS,
    RUN_PREFIX,
    CgroupUnusable,
    CgroupV1Enforcer,
    CgroupV2Enforcer,
    RlimitEnforcer,
    RunLimits,
    _V1Run,
    join_prefix,
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


def test_missing_workspace_is_spawn_failed_naming_it(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    r = sandbox.run(SandboxSpec(argv=["true"], workspace=tmp_path / "gone"))
    assert r.termination is Termination.SPAWN_FAILED
    assert "workspace" in r.detail and "gone" in r.detail


def test_a_workspace_its_owner_cannot_reach_fails_naming_why(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the suite runs as root (CI and make test do): this needs a root daemon's uid switch")
    hidden = Path("/root") / f"goex-unreachable-{uuid.uuid4().hex[:8]}"  # /root is 0700
    (hidden / "ws").mkdir(parents=True)
    os.chown(hidden / "ws", 65534, 65534)
    try:
        r = sandbox.run(SandboxSpec(argv=["true"], workspace=hidden / "ws"))
    finally:
        (hidden / "ws").rmdir()
        hidden.rmdir()
    assert r.termination is Termination.SPAWN_FAILED
    assert "workspace's owner, uid 65534" in r.detail and "Permission denied" in r.detail, r.detail


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
    """Its first look at the host names a masked file that is gone by the time bwrap runs."""

    probes = 0

    def probe(self, spec: SandboxSpec, run_as: RunAs | None = None) -> HostView:
        host = super().probe(spec, run_as)
        self.probes += 1
        if self.probes == 1:
            gone = f"/etc/goex-vanished-{uuid.uuid4().hex}"
            return dataclasses.replace(host, masked_files=(*host.masked_files, gone))
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


def test_a_v1_run_is_joined_from_inside_the_launch_chain(
    private_enforcer: CgroupV1Enforcer | CgroupV2Enforcer,
) -> None:
    """cgroup v1: the chain's first process moves itself into the run's cgroups (no attach from outside,
    whose global lock waits for an RCU grace period); what it execs is in them, and so is what that forks."""
    if not isinstance(private_enforcer, CgroupV1Enforcer):
        pytest.skip("cgroup v1 only: under cgroup v2 goexd attaches a run from outside, there is no join to test")
    run = private_enforcer.start(Limits())
    try:
        joiner = join_prefix(run.joins())
        assert joiner
        out = subprocess.run(
            [*joiner, "sh", "-c", "cat /proc/$$/cgroup; sh -c 'cat /proc/$$/cgroup'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert isinstance(run, _V1Run)
        name = run.memory.name
        for hierarchy in ("memory", "pids"):
            lines = [ln for ln in out.splitlines() if ln.split(":")[1].split(",").count(hierarchy)]
            assert len(lines) == 2 and all(ln.endswith("/" + name) for ln in lines), out
    finally:
        run.close()


def test_a_v1_join_that_fails_stops_the_chain(private_enforcer: CgroupV1Enforcer | CgroupV2Enforcer) -> None:
    """A run cgroup that is gone: the chain stops before it execs anything, and says why."""
    if not isinstance(private_enforcer, CgroupV1Enforcer):
        pytest.skip("cgroup v1 only: under cgroup v2 goexd attaches a run from outside, there is no join to test")
    run = private_enforcer.start(Limits())
    joiner = join_prefix(run.joins())
    run.close()
    r = subprocess.run([*joiner, "sh", "-c", "echo ran"], capture_output=True, text=True)
    assert r.returncode == JOIN_FAILED_STATUS
    assert r.stdout == ""
    assert JOIN_FAILED in r.stderr


@pytest.mark.parametrize("over", [False, True], ids=["direct", "overlay"])
def test_a_run_whose_join_fails_is_a_spawn_failure(
    private_enforcer: CgroupV1Enforcer | CgroupV2Enforcer, workspace: Path, tmp_path: Path, over: bool
) -> None:
    """Through the sandbox: a join that fails (here a `tasks` file that is not there) fails the spawn, naming
    it, and nothing of the command ran; over an overlay (whose shell joins, for a root daemon) too."""
    if not isinstance(private_enforcer, CgroupV1Enforcer):
        pytest.skip("cgroup v1 only: under cgroup v2 goexd attaches a run from outside, there is no join to test")

    class MissingTasks:
        def __init__(self, run: RunLimits) -> None:
            self.run = run

        def joins(self) -> tuple[str, ...]:
            return tuple(a.replace("/tasks", "/gone/tasks") for a in self.run.joins())

        def __getattr__(self, name: str) -> object:
            return getattr(self.run, name)

    class Failing:
        name = private_enforcer.name

        def start(self, limits: Limits) -> RunLimits:
            return MissingTasks(private_enforcer.start(limits))  # type: ignore[return-value]

    overlay = None
    if over:
        (tmp_path / "upper").mkdir()
        (tmp_path / "work").mkdir()
        overlay = WorkspaceOverlay(tmp_path / "upper", tmp_path / "work")
    r = BwrapSandbox(enforcer=Failing()).run(sh("echo ran > ran.txt", workspace=workspace, overlay=overlay))
    assert r.termination is Termination.SPAWN_FAILED
    assert JOIN_FAILED in r.detail and "/gone/tasks" in r.detail
    assert not (workspace / "ran.txt").exists() and not (tmp_path / "upper" / "ran.txt").exists()
    assert list(private_enforcer_dirs(private_enforcer)) == []  # closed all the same


def test_a_retry_on_a_changed_host_mounts_the_overlay_again(workspace: Path, tmp_path: Path) -> None:
    """A setup that failed on a host that changed under the plan is retried once with fresh facts; over an
    overlay the first attempt may have mounted it (a volatile mount leaves its work dir unusable as it is),
    so the retry mounts it again over an emptied work dir, and the command runs."""

    class FlakyHost(BwrapSandbox):
        probes = 0

        def probe(self, spec: SandboxSpec, run_as: RunAs | None = None) -> HostView:
            view = super().probe(spec, run_as)
            self.probes += 1
            if self.probes == 1:  # as if a masked file vanished between the probe and bwrap's setup
                vanished = f"/etc/goex-test-vanished-{uuid.uuid4().hex[:8]}"
                return dataclasses.replace(view, masked_files=(*view.masked_files, vanished))
            return view

    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    sb = FlakyHost()
    r = sb.run(
        sh("echo ran > ran.txt", workspace=workspace, overlay=WorkspaceOverlay(tmp_path / "upper", tmp_path / "work"))
    )
    assert sb.probes == 2  # it did fail first, and was retried
    assert r.termination is Termination.EXITED and r.exit_code == 0, r
    assert (tmp_path / "upper" / "ran.txt").read_text() == "ran\n"
    assert not (workspace / "ran.txt").exists()


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
    assert r.stdout == f"{workspace}\nhello\n".encode()  # commands start at the workspace's real path
    assert (workspace / "made.txt").read_text() == "new\n"
    assert (workspace / "d" / "e").is_dir()


def test_the_workspace_is_the_same_writable_tree_at_its_real_path_and_at_the_alias(
    sandbox: BwrapSandbox, workspace: Path
) -> None:
    (workspace.parent / "sibling").mkdir()
    (workspace.parent / "sibling" / "secret").write_text("s")
    script = (
        f"echo real > {workspace}/abs.txt && cat /workspace/abs.txt; echo alias > /workspace/alias.txt;"
        f" cat {workspace}/alias.txt; ls -a {workspace.parent};"
        f" touch {workspace}/.git/x || echo git-ro; touch {workspace.parent}/planted || echo parent-ro"
    )
    r = sandbox.run(sh(script, workspace=workspace, readonly_subpaths=[".git"]))
    assert r.stdout == b"real\nalias\n.\n..\nws\ngit-ro\nparent-ro\n", r
    assert (workspace / "abs.txt").read_text() == "real\n" and (workspace / "alias.txt").read_text() == "alias\n"
    assert not (workspace / ".git" / "x").exists() and not (workspace.parent / "planted").exists()


def test_a_workspace_reached_through_a_symlink_appears_at_its_resolved_path(
    sandbox: BwrapSandbox, workspace: Path
) -> None:
    link = workspace.parent / "link"
    link.symlink_to(workspace)
    r = sandbox.run(sh("pwd; echo x > via-cwd.txt", workspace=link))
    assert (r.exit_code, r.stdout) == (0, f"{workspace}\n".encode()), r
    assert (workspace / "via-cwd.txt").read_text() == "x\n"


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A scratch dir not under /tmp: a read path under /tmp is covered by the sandbox's own fresh /tmp."""
    made = Path(tempfile.mkdtemp(prefix="goex-readpath-", dir="/var/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def test_a_workspace_inside_a_read_path_is_writable_there_and_the_rest_is_not(outside_tmp: Path) -> None:
    parent = outside_tmp  # shown read-only as a whole: the workspace, a sibling beside it
    workspace = parent / "ws"
    (workspace / ".git").mkdir(parents=True)
    (workspace / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (parent / "sibling").mkdir()
    (parent / "sibling" / "data").write_text("read me\n")
    sandbox = BwrapSandbox(read_paths=[parent])
    script = (
        f"cat {parent}/sibling/data; echo w > {workspace}/in.txt && echo wrote-ws;"
        f" echo w > {parent}/sibling/data || echo sibling-ro; echo w > {workspace}/.git/HEAD || echo git-ro"
    )
    r = sandbox.run(sh(script, workspace=workspace, readonly_subpaths=[".git"]))
    assert r.stdout == b"read me\nwrote-ws\nsibling-ro\ngit-ro\n", r
    assert (workspace / "in.txt").read_text() == "w\n" and (parent / "sibling" / "data").read_text() == "read me\n"


def test_custom_workspace_mount(sandbox: BwrapSandbox, workspace: Path) -> None:
    spec = sh("pwd; cat /srv/project/here/hello.txt", workspace=workspace, workspace_mount="/srv/project/here")
    r = sandbox.run(spec)
    assert r.stdout == f"{workspace}\nhello\n".encode()


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


SYSTEM = (SystemPath("/usr"), SystemPath("/bin", symlink="usr/bin"), SystemPath("/etc"))
HOST = HostView(
    system=SYSTEM,
    masked_dirs=("/etc/ssl/private", "/var/lib/goexd", "/tmp/ws/private"),
    masked_files=("/etc/shadow", "/tmp/ws/secret.env", "/home/alice/.netrc"),
    workspace="/tmp/ws",
    readonly_subpaths=(".git",),
)
FDS = Fds(seccomp=(3, 9))
PROXY_FDS = Fds(seccomp=(3, 9), ca=4, proxy_socket=5, unix_filter=6)


def test_plan_flags_isolate_everything() -> None:
    opts = render_plan(SandboxSpec(argv=["true"], workspace=None), HostView(), FDS).bwrap_options()
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in opts
    assert opts[opts.index("--cap-drop") + 1] == "ALL"
    assert [opts[i + 1] for i, o in enumerate(opts) if o == "--add-seccomp-fd"] == ["3", "9"]
    assert "--share-net" not in opts


def test_plan_shows_only_the_allow_list_of_the_host() -> None:
    plan = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), HOST, FDS)
    m = plan.mounts
    binds = [(x.source, x.dest) for x in m if x.op in (Op.RO_BIND, Op.BIND) and x.source != "/dev/null"]
    assert binds == [
        ("/usr", "/usr"),
        ("/etc", "/etc"),
        ("/proc/sys", "/proc/sys"),
        ("/tmp/ws", "/workspace"),
        ("/tmp/ws/.git", "/workspace/.git"),
        ("/tmp/ws", "/tmp/ws"),  # its real path too, its read-only parts again
        ("/tmp/ws/.git", "/tmp/ws/.git"),
    ]
    assert MountOp(Op.SYMLINK, "/bin", "usr/bin", why="system link") in m
    assert "/" not in dests(m, Op.RO_BIND)  # never the whole host
    assert m[-1] == MountOp(Op.REMOUNT_RO, "/", why="root read-only")


def test_plan_mount_order() -> None:
    plan = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), HOST, FDS)
    m = plan.mounts
    assert dests(m, Op.DEV) == ["/dev"] and dests(m, Op.PROC) == ["/proc"]
    tmp = index(m, Op.TMPFS, "/tmp")
    ws = index(m, Op.BIND, "/workspace")
    assert tmp < ws  # its real path, /tmp/ws, is made on the sandbox's fresh /tmp
    inside = ("/workspace/", "/tmp/ws/")
    assert all(i < ws for i, x in enumerate(m) if x.why == "mask" and not x.dest.startswith(inside))
    assert index(m, Op.RO_BIND, "/workspace/.git") > ws
    assert index(m, Op.BIND, "/tmp/ws") > ws  # made on the sandbox's /tmp
    assert plan.chdir == "/tmp/ws"
    in_src = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws"), workdir="src"), HOST, FDS)
    assert in_src.chdir == "/tmp/ws/src"


def test_plan_masks_only_inside_visible_trees() -> None:
    m = render_plan(SandboxSpec(argv=["true"], workspace=Path("/tmp/ws")), HOST, FDS).mounts
    assert MountOp(Op.TMPFS, "/etc/ssl/private", size=4096, why="mask") in m
    assert MountOp(Op.RO_BIND, "/etc/shadow", "/dev/null", why="mask") in m
    # Not visible at all: nothing to mask (each mount costs time).
    assert "/var/lib/goexd" not in dests(m) and "/home/alice/.netrc" not in dests(m)
    # Inside the workspace, masked paths show through its mount.
    ws = index(m, Op.BIND, "/workspace")
    assert index(m, Op.RO_BIND, "/workspace/secret.env") > ws
    assert index(m, Op.TMPFS, "/workspace/private") > ws
    real = index(m, Op.BIND, "/tmp/ws")
    assert index(m, Op.RO_BIND, "/tmp/ws/secret.env") > real and index(m, Op.TMPFS, "/tmp/ws/private") > real
    # Masks are made read-only at the end, after any mount point was created in them.
    remounts = dests(m, Op.REMOUNT_RO)
    assert remounts == ["/etc/ssl/private", "/workspace/private", "/tmp/ws/private", "/"]
    assert dests(m)[-len(remounts) :] == remounts


def test_plan_never_masks_the_workspace_itself() -> None:
    host = HostView(system=SYSTEM, masked_dirs=("/srv/ws", "/srv"), workspace="/srv/ws")
    spec = SandboxSpec(argv=["true"], workspace=Path("/srv/ws"), workspace_mount="/srv/ws")
    m = render_plan(spec, host, FDS).mounts
    assert "/srv/ws" not in dests(m, Op.TMPFS) and "/srv" not in dests(m, Op.TMPFS)
    assert dests(m, Op.BIND) == ["/srv/ws"]  # the real path is the mount: bound once


def test_plan_where_the_workspace_appears() -> None:
    def places(real: str, mount: str = "/workspace") -> tuple[list[str], str]:
        host = HostView(system=SYSTEM, workspace=real)
        plan = render_plan(SandboxSpec(argv=["true"], workspace=Path(real), workspace_mount=mount), host, FDS)
        return dests(plan.mounts, Op.BIND), plan.chdir

    assert places("/home/u/proj") == (["/workspace", "/home/u/proj"], "/home/u/proj")
    # One inside the other: binding the second would make its mount point in the workspace.
    assert places("/workspace/proj") == (["/workspace/proj"], "/workspace/proj")
    assert places("/srv", "/srv/project") == (["/srv"], "/srv")
    # Where the sandbox has its own trees: the alias only (goexd refuses such workspaces anyway).
    assert places("/tmp/ws") == (["/workspace", "/tmp/ws"], "/tmp/ws")  # on the sandbox's own /tmp
    for real in ("/proc/1/root", "/dev/shm/ws", "/run/goex/ws", "/run", "/tmp", "/"):
        assert places(real) == (["/workspace"], "/workspace"), real


def test_plan_env_and_chdir_without_workspace() -> None:
    plan = render_plan(SandboxSpec(argv=["env"], workspace=None, env={"A": "1"}), HostView(), FDS)
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


def test_plan_copies_the_egress_ca_in_and_mounts_no_socket() -> None:
    plan = render_plan(proxied(), HOST, PROXY_FDS)
    m = plan.mounts
    ca = m.index(MountOp(Op.RO_BIND_DATA, CA_PATH, "4", why="egress CA"))
    masks = [i for i, x in enumerate(m) if x.why == "mask"]
    remounts = [i for i, x in enumerate(m) if x.op is Op.REMOUNT_RO]
    assert max(masks) < ca < min(remounts)
    assert str(PROXY_ENDPOINT.socket_path) not in [x.source for x in m]  # reached by descriptor only
    assert "--unshare-all" in plan.flags and "--share-net" not in plan.bwrap_options()


def test_plan_runs_the_command_behind_the_forwarder_with_proxy_env() -> None:
    plan = render_plan(proxied(env={"HTTPS_PROXY": "http://elsewhere", "FOO": "1"}), HOST, PROXY_FDS)
    assert plan.argv == (FORWARDER_PYTHON, "-I", "-S", "-c", SOURCE, "5", "6", "--", "curl", "x")
    env = dict(plan.env)
    assert env["FOO"] == "1"
    assert {k: env[k] for k in PROXY_ENV} == PROXY_ENV  # the proxy settings win over the spec's
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://127.0.0.1:3128" and env["NO_PROXY"] == ""
    assert env["SSL_CERT_FILE"] == env["CURL_CA_BUNDLE"] == CA_PATH
    assert "<egress forwarder source>" in plan.describe() and SOURCE not in plan.describe()


def test_plan_without_proxy_is_unchanged() -> None:
    plan = render_plan(SandboxSpec(argv=["curl", "x"], workspace=Path("/tmp/ws")), HOST, FDS)
    assert plan.argv == ("curl", "x")
    assert "egress CA" not in {x.why for x in plan.mounts}
    assert "HTTPS_PROXY" not in dict(plan.env)


def test_plan_refuses_specs_that_cannot_work() -> None:
    for mount in ("/run", "/run/goex/x", "/usr/ws", "/etc", "/proc/x", "/tmp/ws", "/"):
        with pytest.raises(ValueError, match="workspace_mount"):
            render_plan(proxied(workspace_mount=mount), HOST, PROXY_FDS)
    relative = ProxyEndpoint(Path("egress.sock"), Path("/ca.pem"))
    with pytest.raises(ValueError, match="absolute"):
        spec = SandboxSpec(argv=["x"], workspace=None, network=Network.PROXY, proxy=relative)
        render_plan(spec, HostView(), PROXY_FDS)
    with pytest.raises(ValueError, match="descriptors"):
        render_plan(proxied(), HOST, FDS)


def test_plan_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subpath"):
        spec = SandboxSpec(argv=["true"], workspace=tmp_path, readonly_subpaths=["../etc"])
        probe(spec, RunAs(0, 0), SYSTEM, UnreadableScan([]))
    with pytest.raises(ValueError, match="workspace_mount"):
        render_plan(SandboxSpec(argv=["true"], workspace=tmp_path, workspace_mount="relative"), HostView(), FDS)
    with pytest.raises(ValueError, match="argv"):
        render_plan(SandboxSpec(argv=[], workspace=None), HostView(), FDS)


def test_probe_masks_what_others_may_not_read_only_for_uid_0(tmp_path: Path) -> None:
    tree = tmp_path / "etc"
    (tree / "private").mkdir(parents=True)
    (tree / "private").chmod(0o700)
    (tree / "key.pem").write_text("k")
    (tree / "key.pem").chmod(0o600)
    (tree / "public.conf").write_text("p")
    (tree / "public.conf").chmod(0o644)
    scan = UnreadableScan([str(tree)])
    spec = SandboxSpec(argv=["true"], workspace=None)
    as_root = probe(spec, RunAs(0, 0), SYSTEM, scan)
    assert str(tree / "private") in as_root.masked_dirs
    assert str(tree / "key.pem") in as_root.masked_files
    assert str(tree / "public.conf") not in as_root.masked_files
    # A non-root identity is held by the modes themselves: no masks, no mounts to pay for.
    as_user = probe(spec, RunAs(1000, 1000), SYSTEM, scan)
    assert as_user.masked_dirs == () and as_user.masked_files == ()


def test_an_entry_removed_after_the_cached_scan_is_not_masked(tmp_path: Path) -> None:
    """The scan is cached; an unreadable file removed since (seen: ssh host keys a package install took away
    during a kill run) must not be masked, or bwrap creates it in a read-only tree and every run fails."""
    tree = tmp_path / "etc"
    tree.mkdir()
    (tree / "key.pem").write_text("k")
    (tree / "key.pem").chmod(0o600)
    scan = UnreadableScan([str(tree)])
    spec = SandboxSpec(argv=["true"], workspace=None)
    assert str(tree / "key.pem") in probe(spec, RunAs(0, 0), SYSTEM, scan).masked_files  # control: scanned
    (tree / "key.pem").unlink()
    assert scan.get()[1] == (str(tree / "key.pem"),)  # still in the cached scan
    assert str(tree / "key.pem") not in probe(spec, RunAs(0, 0), SYSTEM, scan).masked_files


def test_nul_bytes_cannot_inject_bwrap_options(sandbox: BwrapSandbox) -> None:
    # Options reach bwrap NUL-separated: "a\0--bind\0/\0/" would add a writable root.
    evil = "a\0--bind\0/\0/"
    with pytest.raises(ValueError, match="NUL"):
        sandbox.run(SandboxSpec(argv=["true"], workspace=None, env={"X": evil}))
    with pytest.raises(ValueError, match="NUL"):
        render_plan(
            SandboxSpec(argv=["true"], workspace=None), HostView(system=SYSTEM, masked_files=("/etc/" + evil,)), FDS
        ).bwrap_options()
    with pytest.raises(ValueError):
        sandbox.run(SandboxSpec(argv=["true"], workspace=None, env={"A=B": "1"}))
