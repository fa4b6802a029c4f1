"""Resource limits hold against an action that tries to exhaust the host, and the daemon lives.

The bombs are bounded by their own code too (200 processes, 1 GiB), so that a broken limit
fails the test instead of the machine. Under cgroups (a root daemon here) a hit is reported
(PIDS_LIMIT, OOM) and the whole run is killed; under the rlimit fallback (an unprivileged daemon
without a delegated cgroup, as here) the kernel refuses the fork or the allocation and nothing
is reported: the action just ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.security.conftest import (
    MODES,
    Shared,
    action_spec,
    make_workspace,
    result_of,
    run,
    run_action,
    sec_session,
    start_daemon,
)
from tests.security.probes import tag
from tests.security.test_sandbox_isolation import pids_running, run_cgroups_of, wait_for

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both

MAX_PROCESSES = 32
FORK_BOMB = """
import os, sys, time
made = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            time.sleep(20)  # MARKER
            os._exit(0)
        made += 1
    except OSError:
        pass
print("FORKED", made, flush=True)
time.sleep(3)
"""


def test_a_fork_bomb_is_contained_and_the_daemon_lives(sec_shared: Shared) -> None:
    marker = tag()
    code = FORK_BOMB.replace("MARKER", marker)
    action = run_action(sec_shared.d, sec_shared.session, code, python=True, max_processes=MAX_PROCESSES, timeout_s=20)
    ex = action.exec
    if ex.limits_enforced_by.startswith("cgroup"):
        assert ex.termination == pb.TERMINATION_PIDS_LIMIT, action.exec
    else:
        forked = int(result_of(action).out.split()[1])
        # RLIMIT_NPROC counts the daemon user's other tasks too: bounded, not exact.
        assert forked <= MAX_PROCESSES, f"{forked} processes forked under a limit of {MAX_PROCESSES}"
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the bomb outlived the action: {left}"
    assert sec_shared.d.proc is not None and sec_shared.d.proc.poll() is None, sec_shared.d.log()
    assert run(sec_shared.d, sec_shared.session, "echo alive").out == "alive\n"


MEMORY_BOMB = """
chunks = []
try:
    for i in range(16):
        chunks.append(bytearray(64 * 1024 * 1024))  # zero-filled: every page touched
        print("MIB", (i + 1) * 64, flush=True)
except MemoryError:
    print("MemoryError", flush=True)
"""


def test_a_memory_bomb_is_contained_and_the_daemon_lives(sec_shared: Shared) -> None:
    limit = 256 * 1024 * 1024
    action = run_action(sec_shared.d, sec_shared.session, MEMORY_BOMB, python=True, memory_bytes=limit, timeout_s=30)
    ex = action.exec
    got = [int(line.split()[1]) for line in result_of(action).out.splitlines() if line.startswith("MIB")]
    assert max(got, default=0) * 1024 * 1024 <= limit, f"the action held {max(got)} MiB under a {limit} byte limit"
    if ex.limits_enforced_by.startswith("cgroup"):
        assert ex.termination == pb.TERMINATION_OOM, ex
    else:
        assert "MemoryError" in result_of(action).out or ex.termination != pb.TERMINATION_EXITED, ex
    assert run(sec_shared.d, sec_shared.session, "echo alive").out == "alive\n"


@pytest.mark.parametrize("mode", MODES)
def test_an_action_does_not_outlive_a_killed_daemon(mode: str) -> None:
    """SIGKILL goexd (no clean-up) while an action sleeps: the sandbox dies with it, whoever the
    sandbox runs as (a root daemon may start it as the workspace's owner)."""
    marker = f"300.{int(time.time() * 1000) % 10**9}"  # a unique `sleep` argv to find it by
    with start_daemon(mode, check_alive=False) as d, make_workspace(d.uid, d.gid) as ws:
        session = sec_session(d, ws)
        spec = action_spec(f"sleep {marker}", timeout_s=600)
        d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec, detach=True), timeout=60)
        assert wait_for(lambda: pids_running(["sleep", marker]), 20), "the sandboxed sleep never started"
        leftovers = run_cgroups_of(pids_running(["sleep", marker])[0])
        d.kill()
        try:
            assert wait_for(lambda: not pids_running(["sleep", marker]), 5), "the action outlived goexd"
        finally:
            for pid in pids_running(["sleep", marker]):
                os.kill(pid, signal.SIGKILL)
            for cgroup in leftovers:  # the daemon died before it could remove them
                assert wait_for(lambda c=cgroup: not (c / "cgroup.procs").read_text(), 5)
                cgroup.rmdir()
