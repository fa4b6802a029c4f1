"""An unprivileged goexd given a delegated cgroup v1 parent (`sandbox.cgroup_parent`): its runs over an
overlay join the run's cgroups from inside the launch chain (a shell of their own, before the overlay's
user namespace), so the limits hold and are reported as a root daemon's are. The rest of the suite's
"user" mode has no delegation and falls back to rlimits; this mode is the one the join changed most."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import types_pb2 as pb
from tests.security.conftest import SEC_USER, make_workspace, result_of, run, run_action, sec_session, start_daemon
from tests.security.probes import tag
from tests.users import ensure_system_user

V1_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids"))


@contextlib.contextmanager
def delegated_v1_parent(uid: int, gid: int) -> Iterator[str]:
    """A cgroup path made in the v1 memory and pids hierarchies and handed to uid:gid (the dir, its tasks and
    cgroup.procs, as a delegation does); removed afterwards."""
    if not all((root / "cgroup.procs").is_file() for root in V1_ROOTS):
        pytest.skip("cgroup v1 only: this machine has no v1 memory and pids hierarchies to delegate")
    name = f"goex-sec-deleg-{uuid.uuid4().hex[:8]}"
    dirs = [root / name for root in V1_ROOTS]
    for d in dirs:
        d.mkdir()
        for f in (d, d / "tasks", d / "cgroup.procs"):
            os.chown(f, uid, gid)
    try:
        yield f"/{name}"
    finally:
        for d in dirs:
            for run_dir in d.glob("goex-*"):
                with contextlib.suppress(OSError):
                    run_dir.rmdir()
            d.rmdir()


def test_an_unprivileged_daemon_with_a_delegated_v1_cgroup_contains_a_fork_bomb_over_an_overlay() -> None:
    user = ensure_system_user(SEC_USER)
    with delegated_v1_parent(user.pw_uid, user.pw_gid) as parent:
        config = f'[sandbox]\ncgroup_parent = "{parent}"\n[fs]\nisolation = "overlay"\n'
        with start_daemon("user", config) as d, make_workspace(d.uid, d.gid) as ws:
            session = sec_session(d, ws)
            first = run_action(d, session, "echo agent > made.txt")
            assert first.exec.limits_enforced_by == "cgroup-v1", first.exec
            assert result_of(first).code == 0 and (ws / "made.txt").read_text() == "agent\n"
            marker = f"20.{tag()[:6]}"
            bomb = f"for i in $(seq 40); do sleep {marker} & done; wait"
            action = run_action(d, session, bomb, max_processes=8, timeout_s=20)
            assert action.exec.termination == pb.TERMINATION_PIDS_LIMIT, action.exec
            time.sleep(0.2)
            left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
            assert left == [], f"processes of the bomb outlived the action: {left}"
            assert run(d, session, "echo alive").out == "alive\n"
