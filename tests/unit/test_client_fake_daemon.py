"""The sync and async clients over a real gRPC channel, against the in-memory fake goexd."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import goex
from goex.v1 import actions_pb2, secrets_pb2
from tests.unit.fake_goexd import FakeGoexd


@pytest.fixture
def fake() -> Iterator[FakeGoexd]:
    with tempfile.TemporaryDirectory(prefix="gx", dir="/tmp") as d, FakeGoexd(Path(d) / "goexd.sock") as server:
        yield server


@pytest.fixture
def client(fake: FakeGoexd) -> Iterator[goex.Client]:
    with goex.Client(str(fake.socket_path), timeout=10) as c:
        yield c


def test_session_lifecycle(client: goex.Client, tmp_path: Path) -> None:
    s = client.create_session(fs=tmp_path, label="t", limits=goex.Limits(timeout=5, memory_bytes=1 << 20))
    assert s.state is goex.SessionState.OPEN and s.label == "t"
    assert s.resources[0].uri == str(tmp_path)
    assert s.limits.timeout == 5 and s.limits.memory_bytes == 1 << 20
    assert client.get_session(s.id).id == s.id
    assert [d.resource for d in client.describe_session(s.id)] == ["fs"]
    closed = client.close_session(s.id)
    assert closed.session.state is goex.SessionState.CLOSED and closed.resolved == ()


def test_submit_blocking_and_changes(client: goex.Client, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    a = client.run_shell(sid, ["out:hello", "A:a.txt", "M:b.txt", "exit:3"], inverse=["undo-it"])
    assert a.state is goex.ActionState.EXECUTED
    assert a.exec is not None and a.exec.stdout == b"hello\n" and a.exec.exit_code == 3
    assert a.changes is not None and [c.line for c in a.changes.changes] == ["A a.txt", "M b.txt"]
    assert a.inverse is not None and a.inverse.body == goex.Shell(["undo-it"])
    assert a.spec is not None and a.inverse.resource == a.spec.resource


def test_submit_sends_the_spec(client: goex.Client, fake: FakeGoexd, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    client.submit(
        sid,
        goex.Python("print(1)"),
        resource="fs",
        limits=goex.Limits(timeout=1.5),
        description="one",
        approval="yes",
    )
    req = fake.state.requests[-1]
    assert isinstance(req, actions_pb2.SubmitActionRequest)
    assert req.session_id == sid and req.approval == "yes" and not req.detach
    assert req.spec.python.code == "print(1)" and req.spec.resource == "fs" and req.spec.description == "one"
    assert req.spec.limits.timeout.ToMilliseconds() == 1500


def test_detach_then_watch(client: goex.Client, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    proposed = client.run_shell(sid, ["out:one", "err:two", "D:c.txt"], detach=True)
    assert proposed.state is goex.ActionState.PROPOSED and proposed.is_active
    events = list(client.watch_action(proposed.id))
    states = [e.state for e in events if isinstance(e, goex.StateEvent)]
    outputs = [(e.stream, e.data) for e in events if isinstance(e, goex.OutputEvent)]
    assert states == [goex.ActionState.RUNNING, goex.ActionState.EXECUTED]
    assert outputs == [(goex.OutputStream.STDOUT, b"one\n"), (goex.OutputStream.STDERR, b"two\n")]
    final = client.get_action(proposed.id)
    assert final.state is goex.ActionState.EXECUTED and final.changes is not None
    assert final.changes.summary == "+0 ~0 -1"


def test_watch_can_stop_early(client: goex.Client, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    a = client.run_shell(sid, ["out:x"], detach=True)
    for _event in client.watch_action(a.id):
        break  # leaving early cancels the stream without raising
    assert client.health().ok


def test_list_pages_through_everything(client: goex.Client, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    for i in range(5):
        client.run_shell(sid, [f"out:{i}"])
    actions = client.list_actions(sid)
    assert [a.seq for a in actions] == [1, 2, 3, 4, 5]  # the fake serves pages of 2
    client.commit(sid, up_to=actions[1].id)
    assert [a.seq for a in client.list_actions(sid, states=["executed"])] == [3, 4, 5]
    assert [a.seq for a in client.list_actions(sid, states=[goex.ActionState.COMMITTED])] == [1, 2]
    for _ in range(2):
        client.create_session(fs=tmp_path / "x")
    assert len(client.list_sessions()) == 3


def test_undo_commit_and_errors(client: goex.Client, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    a1, a2, a3 = (client.run_shell(sid, [f"out:{i}"]) for i in range(3))
    with pytest.raises(goex.FailedPrecondition, match="cascade"):
        client.undo(sid, a2.id)
    assert [a.id for a in client.undo(sid, a2.id, cascade=True)] == [a3.id, a2.id]
    assert client.undo_to(a1.id) == []
    assert [a.id for a in client.commit(sid)] == [a1.id]
    with pytest.raises(goex.FailedPrecondition):
        client.undo(sid)
    with pytest.raises(goex.NotFound, match="nope"):
        client.get_action("nope")
    with pytest.raises(goex.InvalidArgument):
        client.create_session()


def test_close_with_pending_actions(client: goex.Client, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    client.run_shell(sid, ["A:a"])
    with pytest.raises(goex.FailedPrecondition, match="pending"):
        client.close_session(sid)
    closed = client.close_session(sid, "undo")
    assert [a.state for a in closed.resolved] == [goex.ActionState.UNDONE]
    with pytest.raises(ValueError):
        client.close_session(sid, "both")  # type: ignore[arg-type]


def test_reversibility(client: goex.Client, fake: FakeGoexd, tmp_path: Path) -> None:
    sid = client.create_session(fs=tmp_path).id
    r = client.test_reversibility(sid, goex.Shell(["touch", "a"]), inverse=goex.Shell(["rm", "a"]))
    assert r.verdict is goex.Verdict.PASSED and r.reversibility_class is goex.ReversibilityClass.REVERSIBLE


def test_secrets(client: goex.Client, fake: FakeGoexd) -> None:
    info = client.put_secret(
        "gh",
        "tok",
        kind="bearer",
        injection=goex.Injection.header("Authorization", "Bearer {value}"),
        allowed_hosts=["api.github.com"],
    )
    assert info.kind is goex.SecretKind.BEARER and info.created_at is not None
    req = fake.state.requests[-1]
    assert isinstance(req, secrets_pb2.PutSecretRequest) and req.value == b"tok"
    with pytest.raises(goex.AlreadyExists):
        client.put_secret("gh", b"other")
    client.put_secret("gh", b"other", overwrite=True)
    assert [s.name for s in client.list_secrets()] == ["gh"]
    client.delete_secret("gh")
    with pytest.raises(goex.NotFound):
        client.delete_secret("gh")


def test_admin(client: goex.Client) -> None:
    h = client.health()
    assert h.ok and h.version == "0.0-fake" and h.uptime == 3725
    assert client.stats().actions_by_state == {"executed": 2}
    assert client.gc(dry_run=True).snapshots_removed == 0
    check = client.check_policy("[fs]\nbad = 1\n")
    assert not check.ok and check.errors[0].line == 2


def test_async_client(fake: FakeGoexd, tmp_path: Path) -> None:
    async def go() -> None:
        async with goex.AsyncClient(str(fake.socket_path), timeout=10) as client:
            s = await client.create_session(fs=tmp_path)
            a = await client.run_shell(s.id, ["out:hi"], detach=True)
            events = [e async for e in client.watch_action(a.id)]
            assert [e.data for e in events if isinstance(e, goex.OutputEvent)] == [b"hi\n"]
            assert (await client.get_action(a.id)).state is goex.ActionState.EXECUTED
            await client.run_python(s.id, "print(2)")
            assert [x.seq for x in await client.list_actions(s.id)] == [1, 2]
            assert len(await client.undo(s.id)) == 1
            assert len(await client.commit(s.id)) == 1
            assert (await client.health()).ok
            with pytest.raises(goex.NotFound):
                await client.get_session("nope")

    asyncio.run(go())
