"""Bad input gets the right status, a message naming the field or cause, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell, status_of
from tests.fs_fingerprint import fingerprint


def _journal_counts(d: DaemonProcess) -> tuple[int, dict[str, int]]:
    sessions = d.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True)).sessions
    stats = d.admin.GetStats(adpb.GetStatsRequest())
    return len(sessions), dict(stats.actions_by_state)


def _fs(path: str) -> spb.CreateSessionRequest:
    return spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=path))])


def test_bad_workspace_paths_are_invalid_arguments(daemon: DaemonProcess, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    (daemon.state_dir / "inner").mkdir()
    before = _journal_counts(daemon)
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(a_file): "not a directory",
        "/": "root",
        str(Path.home()): "home",
        str(daemon.state_dir): "state directory",
        str(daemon.state_dir / "inner"): "state directory",
        "relative/dir": "absolute",
        "": "required",
    }
    for path, words in cases.items():
        code, msg = status_of(lambda p=path: daemon.sessions.CreateSession(_fs(p), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, msg)
        assert "resources[0].fs.path" in msg and words in msg, (path, msg)
    assert _journal_counts(daemon) == before


def test_malformed_requests_name_the_field(daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(daemon, workspace)
    ws_before = fingerprint(workspace)
    before = _journal_counts(daemon)
    calls = {
        "resources": lambda: daemon.sessions.CreateSession(spb.CreateSessionRequest()),
        "resources[0].kind": lambda: daemon.sessions.CreateSession(
            spb.CreateSessionRequest(resources=[pb.ResourceSpec(name="x")])
        ),
        "session_id": lambda: daemon.actions.SubmitAction(apb.SubmitActionRequest(spec=pb.ActionSpec())),
        "spec": lambda: daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=session.id)),
        "spec.body": lambda: daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=session.id, spec=pb.ActionSpec(description="nothing"))
        ),
        "spec.shell.argv": lambda: daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=session.id, spec=pb.ActionSpec(shell=pb.ShellAction()))
        ),
        "spec.resource": lambda: daemon.actions.SubmitAction(
            apb.SubmitActionRequest(
                session_id=session.id,
                spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"]), resource="nope"),
            )
        ),
        "spec.limits.memory_bytes": lambda: daemon.actions.SubmitAction(
            apb.SubmitActionRequest(
                session_id=session.id,
                spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"]), limits=pb.SandboxLimits(memory_bytes=1 << 50)),
            )
        ),
        "action_id": lambda: daemon.actions.GetAction(apb.GetActionRequest(action_id="../../etc")),
        "page_token": lambda: daemon.actions.ListActions(
            apb.ListActionsRequest(session_id=session.id, page_token="garbage")
        ),
    }
    for field, call in calls.items():
        code, msg = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, code, msg)
        assert msg.startswith(field + ":"), (field, msg)
    assert _journal_counts(daemon) == before
    assert fingerprint(workspace) == ws_before


def test_unknown_ids_are_not_found(daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(daemon, workspace)
    before = _journal_counts(daemon)
    calls = [
        lambda: daemon.sessions.GetSession(spb.GetSessionRequest(session_id="ses_0000000000000000")),
        lambda: daemon.sessions.CloseSession(spb.CloseSessionRequest(session_id="ses_0000000000000000")),
        lambda: daemon.actions.GetAction(apb.GetActionRequest(action_id="act_0000000000000000")),
        lambda: daemon.actions.UndoAction(
            apb.UndoActionRequest(session_id=session.id, action_id="act_0000000000000000")
        ),
        lambda: daemon.actions.UndoTo(apb.UndoToRequest(action_id="act_0000000000000000")),
        lambda: daemon.actions.SubmitAction(
            apb.SubmitActionRequest(
                session_id="ses_0000000000000000", spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"]))
            )
        ),
        lambda: list(daemon.actions.WatchAction(apb.WatchActionRequest(action_id="act_0000000000000000"))),
    ]
    for call in calls:
        code, msg = status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND, msg
        assert "0000000000000000" in msg and "not found" in msg
    assert _journal_counts(daemon) == before


def test_a_workspace_is_held_by_one_open_session(daemon: DaemonProcess, workspace: Path) -> None:
    first = open_fs(daemon, workspace)
    (workspace / "inner").mkdir()
    before = _journal_counts(daemon)
    for path in (workspace, workspace / "inner", workspace.parent):
        code, msg = status_of(lambda p=path: daemon.sessions.CreateSession(_fs(str(p))))
        assert code == grpc.StatusCode.FAILED_PRECONDITION, msg
        assert first.id in msg
    assert _journal_counts(daemon) == before


def test_sql_without_a_database_and_reversibility_tests(daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(daemon, workspace)
    code, msg = status_of(
        lambda: daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=session.id, spec=pb.ActionSpec(sql=pb.SqlAction(sql="select 1")))
        )
    )
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT and msg == "spec.resource: no resource for sql actions in this session"
    )
    code, msg = status_of(
        lambda: daemon.actions.TestReversibility(
            apb.TestReversibilityRequest(session_id=session.id, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"])))
        )
    )
    assert code == grpc.StatusCode.UNIMPLEMENTED and "inverse" in msg
    assert shell(daemon, session.id, "true").state == pb.ACTION_STATE_EXECUTED


def test_a_database_refuses_a_strategy_it_cannot_use(daemon: DaemonProcess, tmp_path: Path) -> None:
    for url, kind in ((f"sqlite://{tmp_path}/a.db", "sqlite"), ("postgresql://app@127.0.0.1/db", "postgres")):
        spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=url), strategy=pb.UNDO_STRATEGY_VERSIONED)
        code, msg = status_of(lambda s=spec: daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[s])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("resources[0].strategy: "), msg
        assert kind in msg and "versioned" in msg


def test_a_method_goexd_does_not_have_is_unimplemented_every_time(daemon: DaemonProcess) -> None:
    # Handlers are kept per method once called; a name goexd has none for is not, and stays unimplemented.
    unknown = daemon.connect().unary_unary("/goex.v1.Actions/NoSuchMethod")
    for _ in range(2):
        code, _msg = status_of(lambda: unknown(b"", timeout=10))
        assert code == grpc.StatusCode.UNIMPLEMENTED
    for _ in range(2):  # a known method answers through its kept handler, errors mapped as on its first call
        code, msg = status_of(lambda: daemon.actions.GetAction(apb.GetActionRequest(action_id="act-missing")))
        assert code == grpc.StatusCode.NOT_FOUND and "act-missing" in msg
