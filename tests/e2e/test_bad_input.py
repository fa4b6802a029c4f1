"""Bad input gets the right status, a message naming the field or cause, and changes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from google.protobuf.duration_pb2 import Duration

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import secrets_pb2 as scpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, session_count, shell, status_of
from tests.fs_fingerprint import fingerprint


def _journal_counts(d: DaemonProcess) -> tuple[int, dict[str, int]]:
    stats = d.admin.GetStats(adpb.GetStatsRequest())
    return session_count(d), dict(stats.actions_by_state)


def _fs(path: str) -> spb.CreateSessionRequest:
    return spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=path))])


def test_bad_workspace_paths_are_invalid_arguments(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    (shared_daemon.state_dir / "inner").mkdir()
    before = _journal_counts(shared_daemon)
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(a_file): "not a directory",
        "/": "root",
        str(Path.home()): "home",
        str(shared_daemon.state_dir): "state directory",
        str(shared_daemon.state_dir / "inner"): "state directory",
        "relative/dir": "absolute",
        "": "required",
    }
    for path, words in cases.items():
        code, msg = status_of(lambda p=path: shared_daemon.sessions.CreateSession(_fs(p), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, msg)
        assert "resources[0].fs.path" in msg and words in msg, (path, msg)
    assert _journal_counts(shared_daemon) == before


def test_malformed_requests_name_the_field(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    ws_before = fingerprint(workspace)
    before = _journal_counts(shared_daemon)
    calls = {
        "resources": lambda: shared_daemon.sessions.CreateSession(spb.CreateSessionRequest()),
        "resources[0].kind": lambda: shared_daemon.sessions.CreateSession(
            spb.CreateSessionRequest(resources=[pb.ResourceSpec(name="x")])
        ),
        "session_id": lambda: shared_daemon.actions.SubmitAction(apb.SubmitActionRequest(spec=pb.ActionSpec())),
        "spec": lambda: shared_daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=session.id)),
        "spec.body": lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=session.id, spec=pb.ActionSpec(description="nothing"))
        ),
        "spec.shell.argv": lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=session.id, spec=pb.ActionSpec(shell=pb.ShellAction()))
        ),
        "spec.resource": lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(
                session_id=session.id,
                spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"]), resource="nope"),
            )
        ),
        "spec.limits.memory_bytes": lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(
                session_id=session.id,
                spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"]), limits=pb.SandboxLimits(memory_bytes=1 << 50)),
            )
        ),
        "action_id": lambda: shared_daemon.actions.GetAction(apb.GetActionRequest(action_id="../../etc")),
        "page_token": lambda: shared_daemon.actions.ListActions(
            apb.ListActionsRequest(session_id=session.id, page_token="garbage")
        ),
    }
    for field, call in calls.items():
        code, msg = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, code, msg)
        assert msg.startswith(field + ":"), (field, msg)
    assert _journal_counts(shared_daemon) == before
    assert fingerprint(workspace) == ws_before


def test_unknown_ids_are_not_found(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    before = _journal_counts(shared_daemon)
    calls = [
        lambda: shared_daemon.sessions.GetSession(spb.GetSessionRequest(session_id="ses_0000000000000000")),
        lambda: shared_daemon.sessions.CloseSession(spb.CloseSessionRequest(session_id="ses_0000000000000000")),
        lambda: shared_daemon.actions.GetAction(apb.GetActionRequest(action_id="act_0000000000000000")),
        lambda: shared_daemon.actions.UndoAction(
            apb.UndoActionRequest(session_id=session.id, action_id="act_0000000000000000")
        ),
        lambda: shared_daemon.actions.UndoTo(apb.UndoToRequest(action_id="act_0000000000000000")),
        lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(
                session_id="ses_0000000000000000", spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"]))
            )
        ),
        lambda: list(shared_daemon.actions.WatchAction(apb.WatchActionRequest(action_id="act_0000000000000000"))),
    ]
    for call in calls:
        code, msg = status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND, msg
        assert "0000000000000000" in msg and "not found" in msg
    assert _journal_counts(shared_daemon) == before


def test_a_workspace_is_held_by_one_open_session(shared_daemon: DaemonProcess, workspace: Path) -> None:
    first = open_fs(shared_daemon, workspace)
    (workspace / "inner").mkdir()
    before = _journal_counts(shared_daemon)
    for path in (workspace, workspace / "inner", workspace.parent):
        code, msg = status_of(lambda p=path: shared_daemon.sessions.CreateSession(_fs(str(p))))
        assert code == grpc.StatusCode.FAILED_PRECONDITION, msg
        assert first.id in msg
    assert _journal_counts(shared_daemon) == before


def test_sql_without_a_database_and_reversibility_tests(shared_daemon: DaemonProcess, workspace: Path) -> None:
    session = open_fs(shared_daemon, workspace)
    code, msg = status_of(
        lambda: shared_daemon.actions.SubmitAction(
            apb.SubmitActionRequest(session_id=session.id, spec=pb.ActionSpec(sql=pb.SqlAction(sql="select 1")))
        )
    )
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT and msg == "spec.resource: no resource for sql actions in this session"
    )
    # A shell action on a workspace is tried on an overlay, whatever the strategy: `true` changes nothing.
    tried = shared_daemon.actions.TestReversibility(
        apb.TestReversibilityRequest(session_id=session.id, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["true"])))
    ).reversibility
    assert tried.verdict == pb.VERDICT_PASSED and tried.reversibility_class == pb.REVERSIBILITY_CLASS_READ_ONLY
    assert shell(shared_daemon, session.id, "true").state == pb.ACTION_STATE_EXECUTED


def test_a_database_refuses_a_strategy_it_cannot_use(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    for url, kind in ((f"sqlite://{tmp_path}/a.db", "sqlite"), ("postgresql://app@127.0.0.1/db", "postgres")):
        spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=url), strategy=pb.UNDO_STRATEGY_VERSIONED)
        code, msg = status_of(
            lambda s=spec: shared_daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[s]))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("resources[0].strategy: "), msg
        assert kind in msg and "versioned" in msg
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(tmp_path)), strategy=pb.UNDO_STRATEGY_CLONE)
    code, msg = status_of(lambda: shared_daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec])))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and msg == "resources[0].strategy: a workspace cannot use the clone strategy"
    )


def test_a_method_goexd_does_not_have_is_unimplemented_every_time(daemon: DaemonProcess) -> None:
    # Handlers are kept per method once called; a name goexd has none for is not, and stays unimplemented.
    unknown = daemon.connect().unary_unary("/goex.v1.Actions/NoSuchMethod")
    for _ in range(2):
        code, _msg = status_of(lambda: unknown(b"", timeout=10))
        assert code == grpc.StatusCode.UNIMPLEMENTED
    for _ in range(2):  # a known method answers through its kept handler, errors mapped as on its first call
        code, msg = status_of(lambda: daemon.actions.GetAction(apb.GetActionRequest(action_id="act-missing")))
        assert code == grpc.StatusCode.NOT_FOUND and "act-missing" in msg


def _rows(d: DaemonProcess) -> int:
    return session_count(d)


def test_page_tokens_goexd_did_not_issue_are_invalid_arguments(daemon: DaemonProcess, tmp_path: Path) -> None:
    # A non-numeric token answered INTERNAL (ListSessions), a huge one too (ListActions: beyond SQLite's INTEGER).
    sessions = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        sessions.append(open_fs(daemon, tmp_path / name))
    for token in ("garbage", "1e999/ses_x", "nan/ses_x", "1.5/", "1.5/../x", "9" * 5000, "x" * 100_000):
        code, msg = status_of(
            lambda t=token: daemon.sessions.ListSessions(spb.ListSessionsRequest(page_token=t), timeout=10)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("page_token: "), (token[:20], code, msg)
    for token in ("9" * 25, str(2**63), "-1", "١٢", "1e3", "9" * 10_000):
        req = apb.ListActionsRequest(session_id=sessions[0].id, page_token=token)
        code, msg = status_of(lambda r=req: daemon.actions.ListActions(r, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("page_token: "), (token[:20], code, msg)
    # Control: the tokens goexd issues still page.
    first = daemon.sessions.ListSessions(spb.ListSessionsRequest(page_size=1), timeout=10)
    assert [s.id for s in first.sessions] == [sessions[0].id] and first.next_page_token
    rest = daemon.sessions.ListSessions(spb.ListSessionsRequest(page_token=first.next_page_token), timeout=10)
    assert [s.id for s in rest.sessions] == [sessions[1].id]
    for _ in range(2):
        shell(daemon, sessions[0].id, "true")
    page = daemon.actions.ListActions(apb.ListActionsRequest(session_id=sessions[0].id, page_size=1), timeout=10)
    later = daemon.actions.ListActions(
        apb.ListActionsRequest(session_id=sessions[0].id, page_token=page.next_page_token), timeout=10
    )
    assert len(page.actions) == 1 and [a.seq for a in later.actions] == [2]


def _http(url: str) -> spb.CreateSessionRequest:
    return spb.CreateSessionRequest(resources=[pb.ResourceSpec(http=pb.HttpResourceSpec(base_url=url))])


def test_dns_names_the_resolver_cannot_take_are_invalid_arguments(shared_daemon: DaemonProcess) -> None:
    # A label over 63 bytes answered INTERNAL (the idna codec raised inside getaddrinfo); a host over 253 UNAVAILABLE.
    before = _rows(shared_daemon)
    for url in (
        f"https://{'a' * 64}.example.com",
        f"https://{'.'.join(['a' * 60] * 5)}.com",
        "https://a..example.com",
    ):
        code, msg = status_of(lambda u=url: shared_daemon.sessions.CreateSession(_http(u), timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (url, code, msg)
        assert msg.startswith("resources[0].http.base_url: host "), msg
    assert _rows(shared_daemon) == before


def test_a_create_session_that_fails_leaves_no_row_and_no_file(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    # Five such failures left closed session rows behind; the sqlite file of a failed session was created.
    db_file = tmp_path / "fresh.db"
    sqlite_res = pb.ResourceSpec(name="db", db=pb.DbResourceSpec(url=f"sqlite://{db_file}"))
    unreachable_http = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url="http://127.0.0.1:1"))
    unreachable_pg = pb.ResourceSpec(name="pg", db=pb.DbResourceSpec(url="postgresql://app@127.0.0.1:1/db"))
    (tmp_path / "ws").mkdir()
    fs_res = pb.ResourceSpec(name="fs", fs=pb.FsResourceSpec(path=str(tmp_path / "ws")))
    before = _rows(shared_daemon)
    for resources in (
        [unreachable_http],
        [unreachable_pg],
        [sqlite_res, unreachable_http],
        [fs_res, sqlite_res, unreachable_pg],
    ):
        req = spb.CreateSessionRequest(resources=resources)
        code, msg = status_of(lambda r=req: shared_daemon.sessions.CreateSession(r, timeout=60))
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED), (code, msg)
        assert _rows(shared_daemon) == before, msg
        assert not db_file.exists()
    # The resources it would have held are free: the same sqlite file and workspace open at once.
    open_fs(shared_daemon, tmp_path / "ws")
    shared_daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[sqlite_res]), timeout=60)
    assert _rows(shared_daemon) == before + 2


def test_echoed_input_is_cut_in_error_details(shared_daemon: DaemonProcess) -> None:
    # A 10 MB path came back whole: more than gRPC lets a status carry, so the client saw a transport error.
    before = _rows(shared_daemon)
    huge = "y" * 10_000_000
    for req in (
        _fs(huge),
        _fs("/" + huge),
        spb.CreateSessionRequest(resources=[pb.ResourceSpec(db=pb.DbResourceSpec(url=huge))]),
        _http("https://" + huge),
        spb.CreateSessionRequest(label=huge, resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path="/nonexistent"))]),
    ):
        code, msg = status_of(lambda r=req: shared_daemon.sessions.CreateSession(r, timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg[:200])
        assert len(msg.encode()) <= 2048, len(msg)
        assert "y" * 130 not in msg, msg  # a quoted input is cut to 120 characters
    assert _rows(shared_daemon) == before


def test_durations_out_of_their_range_are_invalid_arguments(shared_daemon: DaemonProcess, workspace: Path) -> None:
    # Found by the fuzz test: AwaitOAuth with timeout.seconds = -2**63 answered INTERNAL (an overflow).
    session = open_fs(shared_daemon, workspace)
    before = _rows(shared_daemon)
    for seconds, nanos in ((-(2**63), 0), (2**62, 0), (1, -1), (0, 2_000_000_000)):
        req = scpb.AwaitOAuthRequest(name="github", timeout=Duration(seconds=seconds, nanos=nanos))
        code, msg = status_of(lambda r=req: shared_daemon.secrets.AwaitOAuth(r, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("timeout: "), (seconds, code, msg)
        spec = pb.ActionSpec(shell=pb.ShellAction(argv=["true"]))
        spec.limits.timeout.CopyFrom(Duration(seconds=seconds, nanos=nanos))
        sub = apb.SubmitActionRequest(session_id=session.id, spec=spec)
        code, msg = status_of(lambda r=sub: shared_daemon.actions.SubmitAction(r, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("spec.limits.timeout: "), (code, msg)
    # The longest Duration there is waits like any other (there is no flow to wait for here).
    req = scpb.AwaitOAuthRequest(name="github", timeout=Duration(seconds=315_576_000_000))
    code, msg = status_of(lambda: shared_daemon.secrets.AwaitOAuth(req, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND, (code, msg)
    assert _rows(shared_daemon) == before


def test_closing_a_session_with_a_queued_action_never_runs_it_on_closed_managers(
    shared_daemon: DaemonProcess, workspace: Path
) -> None:
    # Found by the fuzz test: a close that took the session's lock before a queued detached action closed the
    # snapshot store under it; the action then failed with "snapshot store is closed" (a traceback in the log).
    for _ in range(3):
        session = open_fs(shared_daemon, workspace)
        slow = shell(shared_daemon, session.id, "sleep 0.5; echo a >> a.txt", detach=True)
        queued = shell(shared_daemon, session.id, "echo b >> b.txt", detach=True)
        req = spb.CloseSessionRequest(session_id=session.id, mode=spb.CLOSE_MODE_COMMIT_ALL)
        try:
            shared_daemon.sessions.CloseSession(req, timeout=60)
        except grpc.RpcError as exc:  # it found the queued action: refused, and says why
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "queued or running" in (exc.details() or "")
            _wait_done(shared_daemon, queued.id)
            shared_daemon.sessions.CloseSession(req, timeout=60)
        for action in (slow, queued):
            done = _wait_done(shared_daemon, action.id)
            assert done.state in (pb.ACTION_STATE_COMMITTED, pb.ACTION_STATE_EXECUTED), (done.state, done.error)
        assert "closed" not in get(shared_daemon, queued.id).error
    assert "snapshot store is closed" not in shared_daemon.log()


def _wait_done(d: DaemonProcess, action_id: str) -> pb.Action:
    deadline = time.monotonic() + 60
    while True:
        action = get(d, action_id)
        if action.state not in (pb.ACTION_STATE_PROPOSED, pb.ACTION_STATE_PREPARING, pb.ACTION_STATE_RUNNING):
            return action
        assert time.monotonic() < deadline, action
        time.sleep(0.05)
