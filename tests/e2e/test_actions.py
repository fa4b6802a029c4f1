"""End to end: goexd as a process, driven over gRPC on its Unix socket."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import change_lines, commit, get, open_fs, shell, status_of, undo, upper_of
from tests.fs_fingerprint import fingerprint


def test_socket_is_private(shared_daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(shared_daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(shared_daemon.socket.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared_daemon.state_dir.stat().st_mode) == 0o700


def test_run_reports_output_and_change_set_then_undo_restores(shared_daemon: DaemonProcess, workspace: Path) -> None:
    before = fingerprint(workspace)
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "echo hi > a.txt && rm b.txt && echo done; echo warn >&2")
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    assert action.exec.termination == pb.TERMINATION_EXITED and action.exec.exit_code == 0
    assert action.exec.stdout == b"done\n" and action.exec.stderr == b"warn\n"
    assert change_lines(action) == ["A a.txt", "D b.txt"]
    assert (action.changes.added, action.changes.deleted, action.changes.total) == (1, 1, 2)
    assert (workspace / "a.txt").read_text() == "hi\n" and not (workspace / "b.txt").exists()

    undone = undo(shared_daemon, session.id)
    assert [a.id for a in undone] == [action.id]
    assert undone[0].state == pb.ACTION_STATE_UNDONE
    assert undone[0].reversibility.verdict == pb.VERDICT_PASSED
    assert fingerprint(workspace) == before


def test_non_zero_exit_stays_pending_for_the_user_to_judge(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "echo partial > p.txt; exit 3")
    assert action.state == pb.ACTION_STATE_EXECUTED
    assert action.exec.exit_code == 3
    assert change_lines(action) == ["A p.txt"]


def test_commit_then_undo_is_refused_and_changes_nothing(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "echo 1 > one.txt")
    committed = commit(shared_daemon, session.id)
    assert [a.id for a in committed] == [action.id]
    assert committed[0].state == pb.ACTION_STATE_COMMITTED
    after = fingerprint(workspace)
    code, msg = status_of(lambda: undo(shared_daemon, session.id, action.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "committed" in msg
    assert fingerprint(workspace) == after
    code, msg = status_of(lambda: undo(shared_daemon, session.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no pending action" in msg


def test_undo_of_older_action_needs_cascade_when_a_later_one_changed_its_paths(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    before = fingerprint(workspace)
    session = open_fs(shared_daemon, workspace)
    first = shell(shared_daemon, session.id, "echo 1 >> b.txt")
    second = shell(shared_daemon, session.id, "echo 2 >> b.txt; mkdir -p new/dir && ln -s ../b.txt new/link")
    mid = fingerprint(workspace)
    code, msg = status_of(lambda: undo(shared_daemon, session.id, first.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert second.id in msg and "b.txt" in msg and "cascade" in msg
    assert fingerprint(workspace) == mid
    assert get(shared_daemon, first.id).state == pb.ACTION_STATE_EXECUTED

    undone = undo(shared_daemon, session.id, first.id, cascade=True)
    assert [a.id for a in undone] == [second.id, first.id]  # newest first
    assert fingerprint(workspace) == before


def test_undo_to_undoes_everything_after_the_anchor(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    anchor = shell(shared_daemon, session.id, "echo a > a.txt")
    at_anchor = fingerprint(workspace)
    later = [shell(shared_daemon, session.id, f"echo {i} > f{i}.txt && rm -f a.txt") for i in range(3)]
    undone = list(shared_daemon.actions.UndoTo(apb.UndoToRequest(action_id=anchor.id), timeout=60).undone)
    assert [a.id for a in undone] == [a.id for a in reversed(later)]
    assert fingerprint(workspace) == at_anchor
    assert get(shared_daemon, anchor.id).state == pb.ACTION_STATE_EXECUTED


def test_user_edits_between_actions_are_kept(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    shell(shared_daemon, session.id, "echo agent > agent.txt")
    (workspace / "user.txt").write_text("typed by the user\n")
    (workspace / "keep.txt").chmod(0o600)
    with_user_edits = fingerprint(workspace)
    second = shell(shared_daemon, session.id, "rm user.txt keep.txt")
    assert change_lines(second) == ["D keep.txt", "D user.txt"]
    undo(shared_daemon, session.id, second.id)
    assert fingerprint(workspace) == with_user_edits


def test_workspace_git_dir_is_read_only_and_untouched(shared_daemon: DaemonProcess, workspace: Path) -> None:
    git = workspace / ".git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    before = fingerprint(git)
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "echo x > .git/HEAD; rm -rf .git; echo y > y.txt")
    assert action.state == pb.ACTION_STATE_EXECUTED
    assert b"Read-only" in action.exec.stderr or b"read-only" in action.exec.stderr.lower()
    assert change_lines(action) == ["A y.txt"]
    undo(shared_daemon, session.id)
    assert fingerprint(git) == before
    assert not (workspace / "y.txt").exists()


def test_watch_streams_states_and_output(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "echo one; sleep 0.3; echo two >&2", detach=True)
    assert action.state == pb.ACTION_STATE_PROPOSED
    events = list(shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id=action.id), timeout=60))
    states = [e.state for e in events if e.WhichOneof("event") == "state"]
    output = b"".join(e.output.data for e in events if e.WhichOneof("event") == "output")
    assert states == [
        pb.ACTION_STATE_PROPOSED,
        pb.ACTION_STATE_PREPARING,
        pb.ACTION_STATE_RUNNING,
        pb.ACTION_STATE_EXECUTED,
    ]
    assert output == b"one\ntwo\n"
    # Watching a finished action tells its state and ends.
    again = list(shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id=action.id), timeout=10))
    assert again[-1].state == pb.ACTION_STATE_EXECUTED


def test_timeout_fails_the_action_and_rolls_it_back(shared_daemon: DaemonProcess, workspace: Path) -> None:
    before = fingerprint(workspace)
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "echo partial > half.txt; rm b.txt; sleep 60", timeout_s=1)
    assert action.state == pb.ACTION_STATE_FAILED
    assert action.exec.termination == pb.TERMINATION_TIMEOUT
    assert "rolled back" in action.error
    assert fingerprint(workspace) == before
    # The daemon keeps serving.
    assert shell(shared_daemon, session.id, "true").state == pb.ACTION_STATE_EXECUTED


def test_memory_hog_and_fork_bomb_are_stopped(shared_daemon: DaemonProcess, workspace: Path) -> None:
    before = fingerprint(workspace)
    session = open_fs(shared_daemon, workspace)
    hog = shell(
        shared_daemon,
        session.id,
        "echo x > hog.txt; python3 -c 'b = bytearray(1 << 30); print(len(b))'",
        memory_bytes=64 << 20,
    )
    assert hog.state == pb.ACTION_STATE_FAILED
    assert hog.exec.termination == pb.TERMINATION_OOM
    # In units a person reads, the exact bytes beside them.
    assert "memory limit of 64.0 MiB (67108864 bytes) hit" in hog.exec.detail, hog.exec.detail
    bomb = shell(shared_daemon, session.id, "bomb() { bomb | bomb & }; bomb; sleep 30", max_processes=32, timeout_s=20)
    assert bomb.state == pb.ACTION_STATE_FAILED
    assert bomb.exec.termination == pb.TERMINATION_PIDS_LIMIT
    assert fingerprint(workspace) == before
    assert shell(shared_daemon, session.id, "echo alive").exec.stdout == b"alive\n"


def test_output_is_capped_and_counted(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "head -c 100000 /dev/zero", output_bytes=1000)
    assert action.state == pb.ACTION_STATE_EXECUTED
    assert len(action.exec.stdout) == 1000
    assert action.exec.stdout_truncated and action.exec.stdout_total_bytes == 100000


def test_python_action(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    req = apb.SubmitActionRequest(
        session_id=session.id,
        spec=pb.ActionSpec(python=pb.PythonAction(code="open('py.txt','w').write('py'); print(2 + 2)")),
    )
    action = shared_daemon.actions.SubmitAction(req, timeout=60).action
    assert action.kind == pb.ACTION_KIND_PYTHON
    assert action.exec.stdout == b"4\n"
    assert change_lines(action) == ["A py.txt"]


def test_close_session_modes(shared_daemon: DaemonProcess, workspace: Path) -> None:
    before = fingerprint(workspace)
    session = open_fs(shared_daemon, workspace)
    a = shell(shared_daemon, session.id, "echo 1 > x.txt")
    code, msg = status_of(lambda: shared_daemon.sessions.CloseSession(spb.CloseSessionRequest(session_id=session.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "pending" in msg
    resp = shared_daemon.sessions.CloseSession(
        spb.CloseSessionRequest(session_id=session.id, mode=spb.CLOSE_MODE_UNDO_ALL), timeout=60
    )
    assert resp.session.state == pb.SESSION_STATE_CLOSED
    assert [x.id for x in resp.resolved] == [a.id] and resp.resolved[0].state == pb.ACTION_STATE_UNDONE
    assert fingerprint(workspace) == before
    # The workspace is free again; commit-all keeps the changes.
    s2 = open_fs(shared_daemon, workspace)
    shell(shared_daemon, s2.id, "echo 2 > y.txt")
    resp = shared_daemon.sessions.CloseSession(
        spb.CloseSessionRequest(session_id=s2.id, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60
    )
    assert resp.resolved[0].state == pb.ACTION_STATE_COMMITTED
    assert (workspace / "y.txt").read_text() == "2\n"
    code, _ = status_of(lambda: shared_daemon.sessions.CloseSession(spb.CloseSessionRequest(session_id=s2.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_log_lists_the_timeline(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    ids = [shell(shared_daemon, session.id, f"echo {i} > {i}.txt").id for i in range(3)]
    undo(shared_daemon, session.id)
    listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=session.id), timeout=10).actions
    assert [a.id for a in listed] == ids
    assert [a.seq for a in listed] == [1, 2, 3]
    assert [a.state for a in listed][-1] == pb.ACTION_STATE_UNDONE
    page = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=session.id, page_size=2), timeout=10)
    assert len(page.actions) == 2 and page.next_page_token
    rest = shared_daemon.actions.ListActions(
        apb.ListActionsRequest(session_id=session.id, page_size=2, page_token=page.next_page_token), timeout=10
    )
    assert [a.id for a in rest.actions] == ids[2:] and not rest.next_page_token
    s = shared_daemon.sessions.GetSession(spb.GetSessionRequest(session_id=session.id)).session
    assert (s.total_actions, s.pending_actions) == (3, 2)


def test_sessions_in_parallel_on_different_workspaces(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    spaces = []
    for i in range(3):
        ws = tmp_path / f"w{i}"
        ws.mkdir()
        spaces.append(ws)
    sessions = [open_fs(shared_daemon, ws) for ws in spaces]
    with ThreadPoolExecutor(3) as pool:
        actions = list(pool.map(lambda s: shell(shared_daemon, s.id, "sleep 0.5; echo $$ > pid.txt"), sessions))
    assert all(a.state == pb.ACTION_STATE_EXECUTED for a in actions)
    assert all((ws / "pid.txt").exists() for ws in spaces)
    assert os.path.exists(shared_daemon.socket)


def test_cancel_stops_a_running_action_and_rolls_it_back(shared_daemon: DaemonProcess, workspace: Path) -> None:
    import time

    before = fingerprint(workspace)
    session = open_fs(shared_daemon, workspace)
    action = shell(shared_daemon, session.id, "rm b.txt; echo x > started.txt; sleep 60", detach=True)
    deadline = time.monotonic() + 30
    upper = upper_of(shared_daemon, action.id)
    while not (upper / "started.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # While it runs, its writes are in its overlay, not in the workspace.
    assert (upper / "started.txt").exists() and fingerprint(workspace) == before
    shared_daemon.actions.CancelAction(apb.CancelActionRequest(action_id=action.id), timeout=10)
    while get(shared_daemon, action.id).state not in (pb.ACTION_STATE_FAILED,) and time.monotonic() < deadline:
        time.sleep(0.05)
    final = get(shared_daemon, action.id)
    assert final.state == pb.ACTION_STATE_FAILED
    assert final.exec.termination == pb.TERMINATION_CANCELLED
    assert fingerprint(workspace) == before
    assert not upper.parent.exists()  # the overlay is gone with it
    code, msg = status_of(lambda: shared_daemon.actions.CancelAction(apb.CancelActionRequest(action_id=action.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not running" in msg
