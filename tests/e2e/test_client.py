"""The Python client (sync and asyncio) against a real goexd process.

One daemon serves the whole module; every test opens its sessions over its own
`workspace`. Undo is checked byte for byte with tests/fs_fingerprint.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import goex
from goexd import __version__ as goexd_version
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import describe_diff, fingerprint

A = goex.ActionState


@pytest.fixture
def client(shared_daemon: DaemonProcess) -> Iterator[goex.Client]:
    with goex.Client(shared_daemon.socket, timeout=60) as c:
        yield c


@pytest.fixture
def session(client: goex.Client, workspace: Path) -> Iterator[goex.Session]:
    s = client.create_session(fs=workspace)
    yield s
    if client.get_session(s.id).state is goex.SessionState.OPEN:
        client.close_session(s.id, "undo")


def sh(script: str) -> goex.Shell:
    return goex.Shell(["sh", "-c", script])


def lines(action: goex.Action) -> list[str]:
    assert action.changes is not None
    return [c.line for c in action.changes.changes]


def assert_tree(root: Path, expected: dict[str, tuple[str, int, str]]) -> None:
    actual = fingerprint(root)
    assert actual == expected, describe_diff(expected, actual)


# ---------------------------------------------------------------- sessions


def test_session_lifecycle(client: goex.Client, workspace: Path) -> None:
    s = client.create_session(fs=workspace, label="refactor", limits=goex.Limits(timeout=5, memory_bytes=256 << 20))
    assert s.id.startswith("ses_") and s.state is goex.SessionState.OPEN and s.label == "refactor"
    assert [(r.name, r.kind, r.uri, r.strategy) for r in s.resources] == [
        ("fs", goex.ResourceKind.FS, str(workspace), goex.UndoStrategy.VERSIONED)
    ]
    assert s.limits.timeout == 5 and s.limits.memory_bytes == 256 << 20
    assert s.limits.max_processes and s.limits.output_bytes  # the daemon's defaults fill the rest
    assert s.created_at is not None and s.closed_at is None

    got = client.get_session(s.id)
    assert (got.id, got.label, got.state, got.total_actions, got.pending_actions) == (s.id, "refactor", s.state, 0, 0)
    assert s.id in [x.id for x in client.list_sessions()]
    [described] = client.describe_session(s.id)
    assert described.resource == "fs" and str(workspace) in described.text

    client.run_shell(s.id, ["true"])
    assert (client.get_session(s.id).total_actions, client.get_session(s.id).pending_actions) == (1, 1)
    client.commit(s.id)

    closed = client.close_session(s.id)
    assert closed.session.state is goex.SessionState.CLOSED and closed.session.closed_at is not None
    assert closed.resolved == ()
    assert s.id not in [x.id for x in client.list_sessions()]
    everything = {x.id: x for x in client.list_sessions(include_closed=True)}
    assert everything[s.id].state is goex.SessionState.CLOSED
    with pytest.raises(goex.FailedPrecondition, match="already closed"):
        client.close_session(s.id)
    with pytest.raises(goex.FailedPrecondition, match="closed"):
        client.run_shell(s.id, ["true"])
    # Closing frees the workspace for a new session.
    client.close_session(client.create_session(fs=workspace).id)


def test_close_undo_all_restores_and_commit_all_keeps(client: goex.Client, workspace: Path) -> None:
    before = fingerprint(workspace)
    s = client.create_session(fs=workspace)
    client.run_shell(s.id, ["sh", "-c", "echo hi > a.txt && rm b.txt"])
    client.run_python(s.id, "open('keep.txt', 'a').write('more')")
    with pytest.raises(goex.FailedPrecondition, match="2 pending") as refused:
        client.close_session(s.id)
    assert "commit_all" in refused.value.message and "undo_all" in refused.value.message
    with pytest.raises(ValueError):
        client.close_session(s.id, "both")  # type: ignore[arg-type]

    closed = client.close_session(s.id, "undo")
    assert [(a.seq, a.state) for a in closed.resolved] == [(2, A.UNDONE), (1, A.UNDONE)]  # newest first
    assert_tree(workspace, before)

    s2 = client.create_session(fs=workspace)
    client.run_shell(s2.id, ["sh", "-c", "echo hi > a.txt && rm b.txt"])
    closed = client.close_session(s2.id, "commit")
    assert [a.state for a in closed.resolved] == [A.COMMITTED]
    assert (workspace / "a.txt").read_text() == "hi\n" and not (workspace / "b.txt").exists()


# ---------------------------------------------------------------- actions


def test_blocking_submit_returns_output_and_change_set(client: goex.Client, session: goex.Session) -> None:
    a = client.run_shell(session.id, ["sh", "-c", "echo hi > a.txt && rm b.txt && echo out && echo err >&2 && exit 3"])
    assert a.id.startswith("act_") and a.session_id == session.id and a.seq == 1
    assert a.kind is goex.ActionKind.SHELL and a.state is A.EXECUTED and a.is_pending and a.resource == "fs"
    assert a.spec is not None and a.spec.body == sh("echo hi > a.txt && rm b.txt && echo out && echo err >&2 && exit 3")
    assert a.exec is not None
    assert (a.exec.termination, a.exec.exit_code) == (goex.Termination.EXITED, 3)
    assert (a.exec.stdout, a.exec.stderr) == (b"out\n", b"err\n")
    assert lines(a) == ["A a.txt", "D b.txt"]
    assert a.changes is not None and a.changes.summary == "+1 ~0 -1"
    assert a.timings is not None and a.timings.total is not None and a.timings.total > 0
    assert a.finished_at is not None and a.resolved_at is None
    assert a.reversibility is not None and a.reversibility.reversibility_class is goex.ReversibilityClass.REVERSIBLE

    p = client.run_python(session.id, "import sys; open('keep.txt', 'a').write('x'); print('py'); sys.exit(5)")
    assert p.kind is goex.ActionKind.PYTHON and p.seq == 2
    assert p.exec is not None and (p.exec.exit_code, p.exec.stdout) == (5, b"py\n")
    assert lines(p) == ["M keep.txt"]
    assert client.get_action(p.id).proto == p.proto

    described = client.submit(
        session.id, sh("chmod 600 sub/c.bin"), resource="fs", limits=goex.Limits(timeout=10), description="tighten"
    )
    assert described.spec is not None and described.spec.description == "tighten"
    assert described.spec.limits.timeout == 10
    assert lines(described) == ["P sub/c.bin"]


def test_detach_then_watch_states_and_output(client: goex.Client, session: goex.Session) -> None:
    proposed = client.run_shell(
        session.id, ["sh", "-c", "echo one; sleep 0.2; echo two >&2; echo w > w.txt"], detach=True
    )
    assert proposed.state is A.PROPOSED and proposed.is_active and proposed.exec is None
    events = list(client.watch_action(proposed.id))
    assert all(e.action_id == proposed.id for e in events)
    states = [e.state for e in events if isinstance(e, goex.StateEvent)]
    assert states == [A.PROPOSED, A.PREPARING, A.RUNNING, A.EXECUTED]
    out = b"".join(e.data for e in events if isinstance(e, goex.OutputEvent) and e.stream is goex.OutputStream.STDOUT)
    err = b"".join(e.data for e in events if isinstance(e, goex.OutputEvent) and e.stream is goex.OutputStream.STDERR)
    assert (out, err) == (b"one\n", b"two\n")
    # Output arrives while the action runs, before its final state.
    kinds = ["state" if isinstance(e, goex.StateEvent) else "output" for e in events]
    assert kinds.index("output") < len(kinds) - 1 and kinds[-1] == "state"

    final = client.get_action(proposed.id)
    assert final.state is A.EXECUTED and lines(final) == ["A w.txt"]
    assert final.exec is not None and final.exec.stdout == b"one\n"

    # Leaving a watch early cancels the stream and leaves the channel usable.
    slow = client.run_shell(session.id, ["sh", "-c", "echo a; sleep 0.3"], detach=True)
    for _event in client.watch_action(slow.id):
        break
    assert client.health().ok
    last = [e for e in client.watch_action(slow.id) if isinstance(e, goex.StateEvent)][-1]
    assert last.state is A.EXECUTED


def test_cancel_a_running_action_rolls_it_back(client: goex.Client, session: goex.Session, workspace: Path) -> None:
    before = fingerprint(workspace)
    a = client.run_shell(session.id, ["sh", "-c", "echo x > half.txt; rm b.txt; echo started; sleep 30"], detach=True)
    seen: list[goex.ActionEvent] = []
    t0 = time.monotonic()
    for event in client.watch_action(a.id, timeout=30):
        seen.append(event)
        if isinstance(event, goex.OutputEvent) and b"started" in event.data:
            delivered = client.cancel(a.id)
            assert delivered.id == a.id and delivered.state is A.RUNNING
    assert time.monotonic() - t0 < 10, "the cancel did not stop the sleep"
    assert [e.state for e in seen if isinstance(e, goex.StateEvent)][-1] is A.FAILED

    final = client.get_action(a.id)
    assert final.state is A.FAILED and not final.is_pending
    assert final.exec is not None and final.exec.termination is goex.Termination.CANCELLED
    assert "cancelled" in final.error and "rolled back" in final.error
    assert lines(final) == ["D b.txt", "A half.txt"]  # what it did before the rollback, by path
    assert_tree(workspace, before)

    with pytest.raises(goex.FailedPrecondition, match="not running"):
        client.cancel(a.id)
    with pytest.raises(goex.NotFound, match="act_nope"):
        client.cancel("act_nope")
    with pytest.raises(goex.InvalidArgument, match="action_id"):
        client.cancel("")
    with pytest.raises(goex.FailedPrecondition):  # nothing pending: the cancelled action is not undoable
        client.undo(session.id)


def test_cancel_a_queued_action(client: goex.Client, session: goex.Session, workspace: Path) -> None:
    # Actions of one session run one at a time: the second waits behind the first.
    first = client.run_shell(session.id, ["sleep", "1"], detach=True)
    queued = client.run_shell(session.id, ["sh", "-c", "echo q > q.txt"], detach=True)
    assert client.cancel(queued.id).state is A.PROPOSED
    states = [e.state for e in client.watch_action(queued.id, timeout=30) if isinstance(e, goex.StateEvent)]
    assert states == [A.PROPOSED, A.FAILED]
    final = client.get_action(queued.id)
    assert final.state is A.FAILED and final.exec is None and "before it started" in final.error
    assert client.get_action(first.id).state in (A.RUNNING, A.EXECUTED)
    list(client.watch_action(first.id, timeout=30))  # until it is done
    assert client.get_action(first.id).state is A.EXECUTED
    assert not (workspace / "q.txt").exists()


def test_list_actions_in_order_with_state_filters(client: goex.Client, session: goex.Session) -> None:
    ids = [client.run_shell(session.id, ["sh", "-c", f"echo {i} > f{i}"]).id for i in range(4)]
    timeline = client.list_actions(session.id)
    assert [a.id for a in timeline] == ids and [a.seq for a in timeline] == [1, 2, 3, 4]
    assert [lines(a) for a in timeline] == [[f"A f{i}"] for i in range(4)]
    client.commit(session.id, up_to=ids[1])
    client.undo(session.id)
    assert [a.seq for a in client.list_actions(session.id, states=["executed"])] == [3]
    assert [a.seq for a in client.list_actions(session.id, states=[A.COMMITTED])] == [1, 2]
    assert [a.seq for a in client.list_actions(session.id, states=[A.UNDONE, "executed"])] == [3, 4]
    assert client.list_actions(session.id, states=[A.FAILED]) == []
    with pytest.raises(ValueError):
        client.list_actions(session.id, states=["nonsense"])
    # One page holds up to 100 actions; the client's page loop beyond that is not exercised here.


# ---------------------------------------------------------------- undo / commit


def test_undo_cascade_undo_to_and_commit_restore_exactly(
    client: goex.Client, session: goex.Session, workspace: Path
) -> None:
    sid = session.id
    original = fingerprint(workspace)
    a1 = client.run_shell(sid, ["sh", "-c", "echo one > a.txt && chmod 700 sub"])
    after_a1 = fingerprint(workspace)
    a2 = client.run_shell(sid, ["sh", "-c", "printf '\\0\\1' >> sub/c.bin && ln -s keep.txt link && rm b.txt"])
    after_a2 = fingerprint(workspace)
    a3 = client.run_python(sid, "import shutil; shutil.rmtree('sub'); open('keep.txt', 'w').write('new')")
    assert lines(a3) == ["M keep.txt", "D sub/c.bin"]
    assert lines(a1) == ["A a.txt", "P sub/"]  # directories end with "/"; implied ones are left out

    # The newest by default; an older one only with cascade (later ones first).
    [undone] = client.undo(sid)
    assert undone.id == a3.id and undone.state is A.UNDONE and undone.resolved_at is not None
    assert undone.reversibility is not None and undone.reversibility.verdict is goex.Verdict.PASSED
    assert_tree(workspace, after_a2)
    # A later action over a path a2 changed (it deleted b.txt) stands in the way; one elsewhere would not.
    a3b = client.run_shell(sid, ["sh", "-c", "echo three > b.txt"])
    with pytest.raises(goex.FailedPrecondition, match="cascade") as refused:
        client.undo(sid, a2.id)
    assert a3b.id in refused.value.message and "b.txt;" in refused.value.message
    assert [a.id for a in client.undo(sid, a2.id, cascade=True)] == [a3b.id, a2.id]
    assert_tree(workspace, after_a1)

    # undo-to keeps its anchor and undoes everything pending after it, newest first.
    b1 = client.run_shell(sid, ["sh", "-c", "echo b1 > b1.txt"])
    b2 = client.run_shell(sid, ["sh", "-c", "rm -r sub keep.txt"])
    assert client.undo_to(a1.id) == [client.get_action(b2.id), client.get_action(b1.id)]
    assert [a.state for a in client.list_actions(sid)] == [A.EXECUTED, A.UNDONE, A.UNDONE, A.UNDONE, A.UNDONE, A.UNDONE]
    assert client.undo_to(a1.id) == []
    assert_tree(workspace, after_a1)

    # Commit keeps; committed actions cannot be undone any more.
    c1 = client.run_shell(sid, ["sh", "-c", "echo c1 > c1.txt"])
    after_c1 = fingerprint(workspace)
    client.run_shell(sid, ["sh", "-c", "echo c2 > c2.txt"])
    assert [a.id for a in client.commit(sid, up_to=c1.id)] == [a1.id, c1.id]
    assert [a.state for a in client.undo(sid)] == [A.UNDONE]
    assert_tree(workspace, after_c1)
    assert client.commit(sid) == []
    with pytest.raises(goex.FailedPrecondition, match="no pending action"):
        client.undo(sid)
    with pytest.raises(goex.FailedPrecondition, match="committed"):
        client.undo(sid, a1.id)
    with pytest.raises(goex.FailedPrecondition, match="already undone"):
        client.undo(sid, a2.id)
    assert fingerprint(workspace) != original


def test_undo_of_an_action_in_another_session_is_refused(
    client: goex.Client, session: goex.Session, tmp_path: Path
) -> None:
    other_ws = tmp_path / "other"
    other_ws.mkdir()
    other = client.create_session(fs=other_ws)
    theirs = client.run_shell(other.id, ["touch", "x"])
    with pytest.raises(goex.InvalidArgument, match="action_id") as exc:
        client.undo(session.id, theirs.id)
    assert "another session" in exc.value.message
    with pytest.raises(goex.InvalidArgument, match="up_to_action_id"):
        client.commit(session.id, up_to=theirs.id)
    client.close_session(other.id, "undo")
    assert list(other_ws.iterdir()) == []


# ---------------------------------------------------------------- errors


def test_not_found(client: goex.Client) -> None:
    for call, words in (
        (lambda: client.get_session("ses_0000000000000000"), "session 'ses_0000000000000000' not found"),
        (lambda: client.get_action("act_0000000000000000"), "action 'act_0000000000000000' not found"),
        (lambda: client.list_actions("ses_nope"), "session 'ses_nope' not found"),
        (lambda: client.undo_to("act_nope"), "action 'act_nope' not found"),
        (lambda: list(client.watch_action("act_nope")), "action 'act_nope' not found"),
    ):
        with pytest.raises(goex.NotFound) as exc:
            call()
        assert exc.value.message == words
        assert exc.value.code is grpc.StatusCode.NOT_FOUND and exc.value.code_name == "NOT_FOUND"


def test_invalid_argument_names_the_field(client: goex.Client, session: goex.Session, workspace: Path) -> None:
    huge = goex.Limits(memory_bytes=1 << 50)
    for call, fld in (
        (client.create_session, "resources"),
        (lambda: client.create_session(fs=workspace / "missing"), "resources[0].fs.path"),
        (lambda: client.create_session(fs=workspace, limits=huge), "limits.memory_bytes"),
        (lambda: client.run_shell(session.id, []), "spec.shell.argv"),
        (lambda: client.run_shell(session.id, ["a\0b"]), "spec.shell.argv"),
        (lambda: client.run_python(session.id, "  "), "spec.python.code"),
        (lambda: client.run_shell(session.id, ["true"], limits=huge), "spec.limits.memory_bytes"),
        (lambda: client.run_shell(session.id, ["true"], resource="db"), "spec.resource"),
        (lambda: client.get_action(""), "action_id"),
        (lambda: client.get_session("bad id!"), "session_id"),
    ):
        with pytest.raises(goex.InvalidArgument) as exc:
            call()
        assert exc.value.message.startswith(f"{fld}: "), exc.value.message


def test_failed_precondition(client: goex.Client, session: goex.Session, workspace: Path) -> None:
    with pytest.raises(goex.FailedPrecondition, match="held by open session") as exc:
        client.create_session(fs=workspace / "sub")  # overlaps the open session's workspace
    assert session.id in exc.value.message
    with pytest.raises(goex.FailedPrecondition, match="no pending action"):
        client.undo(session.id)


def test_reversibility_tests_and_client_inverses_on_a_workspace(client: goex.Client, session: goex.Session) -> None:
    # (Prompt actions, once UNIMPLEMENTED here, are planned now: tests/e2e/test_planner_*.py.)
    # A workspace's reversibility test is built, whatever its strategy: `true` is tried and changes nothing.
    tried = client.test_reversibility(session.id, goex.Shell(["true"]))
    assert tried.verdict is goex.Verdict.PASSED and tried.reversibility_class is goex.ReversibilityClass.READ_ONLY
    with pytest.raises(goex.InvalidArgument, match="client inverses are for the inverse strategy"):
        client.submit(session.id, sh("touch x"), inverse=sh("rm x"))
    assert client.list_actions(session.id) == []  # none of those left an action behind


def test_a_bad_session_policy_opens_nothing_and_check_policy_says_why(client: goex.Client, workspace: Path) -> None:
    before = client.list_sessions(include_closed=True)
    with pytest.raises(goex.InvalidArgument, match=r"policy_toml: line 2: files: unknown key"):
        client.create_session(fs=workspace, policy='[sql]\n[files]\ndeny_delete = ["*"]\n')
    assert client.list_sessions(include_closed=True) == before
    check = client.check_policy('[sandbox]\nmax_timeout_s = 5\nnetwork = "sometimes"\n')
    assert not check.ok and [(e.line, "sandbox.network" in e.message) for e in check.errors] == [(3, True)]
    assert client.check_policy("[sandbox]\nmax_timeout_s = 5\n").ok
    session = client.create_session(fs=workspace, policy="[sandbox]\nmax_timeout_s = 5\n")
    with pytest.raises(goex.PermissionDenied, match=r"sandbox.max_timeout_s"):
        client.run_shell(session.id, ["true"], limits=goex.Limits(timeout=9))
    assert client.run_shell(session.id, ["true"]).state is goex.ActionState.EXECUTED


def test_daemon_not_running(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sock"
    with goex.Client(missing, timeout=5) as c, pytest.raises(goex.DaemonNotRunning) as exc:
        c.health()
    assert isinstance(exc.value, goex.Unavailable) and exc.value.socket_path == str(missing)
    assert f"no socket at {missing}" in exc.value.message and "goexd" in exc.value.message

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # bound, never listening: what a crashed daemon leaves behind
        with goex.Client(stale, timeout=5) as c, pytest.raises(goex.DaemonNotRunning, match="refuses connections"):
            c.list_sessions()


# ---------------------------------------------------------------- admin


def test_admin(client: goex.Client, session: goex.Session) -> None:
    client.run_shell(session.id, ["true"])
    health = client.health()
    assert health.ok and health.version == goexd_version and health.uptime > 0
    assert {c.name for c in health.components} == {"journal", "sandbox", "snapshots", "vault", "egress"}
    assert all(c.ok for c in health.components)
    stats = client.stats()
    assert stats.open_sessions >= 1 and stats.actions_by_state.get("executed", 0) >= 1
    assert stats.journal_bytes > 0 and stats.running_actions == 0
    gc = client.gc(dry_run=True)
    assert gc.snapshots_removed >= 0 and gc.bytes_freed >= 0


# ---------------------------------------------------------------- asyncio


def test_async_client(shared_daemon: DaemonProcess, workspace: Path, tmp_path: Path) -> None:
    before = fingerprint(workspace)

    async def scenario() -> None:
        async with goex.AsyncClient(shared_daemon.socket, timeout=60) as client:
            s = await client.create_session(fs=workspace, label="aio")
            assert (await client.get_session(s.id)).label == "aio"
            assert s.id in [x.id for x in await client.list_sessions()]

            a = await client.run_shell(s.id, ["sh", "-c", "echo hi > a.txt && rm b.txt && echo out"])
            assert a.state is A.EXECUTED and a.exec is not None and a.exec.stdout == b"out\n"
            assert lines(a) == ["A a.txt", "D b.txt"]

            d = await client.run_python(s.id, "print('py')", detach=True)
            events = [e async for e in client.watch_action(d.id)]
            assert [e.data for e in events if isinstance(e, goex.OutputEvent)] == [b"py\n"]
            assert [e.state for e in events if isinstance(e, goex.StateEvent)][-1] is A.EXECUTED

            slow = await client.run_shell(s.id, ["sh", "-c", "echo x > half.txt; sleep 30"], detach=True)
            async for event in client.watch_action(slow.id, timeout=30):
                if isinstance(event, goex.StateEvent) and event.state is A.RUNNING:
                    assert (await client.cancel(slow.id)).id == slow.id
            cancelled = await client.get_action(slow.id)
            assert cancelled.state is A.FAILED and cancelled.exec is not None
            assert cancelled.exec.termination is goex.Termination.CANCELLED

            assert [x.seq for x in await client.list_actions(s.id)] == [1, 2, 3]
            assert [x.id for x in await client.undo(s.id, a.id, cascade=True)] == [d.id, a.id]
            assert fingerprint(workspace) == before
            c = await client.run_shell(s.id, ["touch", "kept"])
            assert await client.undo_to(c.id) == []
            assert [x.id for x in await client.commit(s.id)] == [c.id]
            with pytest.raises(goex.NotFound):
                await client.get_action("act_nope")
            with pytest.raises(goex.NotFound, match="secret 'nope' not found"):
                await client.delete_secret("nope")
            with pytest.raises(goex.FailedPrecondition, match="not running"):
                await client.cancel(c.id)
            assert (await client.health()).ok
            closed = await client.close_session(s.id)
            assert closed.session.state is goex.SessionState.CLOSED

        async with goex.AsyncClient(tmp_path / "missing.sock", timeout=5) as nowhere:
            with pytest.raises(goex.DaemonNotRunning):
                await nowhere.stats()

    asyncio.run(scenario())
    assert (workspace / "kept").exists() and not (workspace / "a.txt").exists()
