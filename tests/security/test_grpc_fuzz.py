"""Property-based fuzz of goexd's whole gRPC API, and conflicting calls made at once.

Requests are generated from the proto descriptors, for every method of every service in
proto/goex/v1: each field set or not, strings and bytes random, malformed, oversized (up to
5 MB) or taken from a list of known ids and hostile values, integers at their type's edges,
enums out of range, nested messages, maps, oneofs. After each call:

- the daemon answers its health check (it stays up);
- the status is never INTERNAL or UNKNOWN and no detail holds a traceback;
- a refused call changed nothing: the journal's rows (sessions, resources, actions and their
  states, transitions), the vault's secret names and the workspace's files are as before.

Hypothesis is derandomized (CI runs the same examples every time). GOEX_FUZZ_EXAMPLES sets
the examples per method and daemon mode (default 6: about a minute for both modes);
GOEX_FUZZ_RANDOM=1 draws new examples each run (a failure prints its reproduction blob).
`make fuzz` runs hundreds, at random.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goex.v1 import actions_pb2, admin_pb2, secrets_pb2, sessions_pb2
from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as scpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import fingerprint
from tests.security.conftest import make_workspace

EXAMPLES = int(os.environ.get("GOEX_FUZZ_EXAMPLES", "6"))
RANDOM = os.environ.get("GOEX_FUZZ_RANDOM") == "1"
# Daemons of its own: the fuzz takes any open session for its own and compares the whole journal.
SEC_OWN_DAEMON = True
# A prompt the fuzz makes goes to an endpoint nobody listens on (port 9, discard): it fails at once, as an action
# FAILED (SubmitAction) or UNAVAILABLE (PlanAction), instead of starting the embedded model under fuzz.
SEC_DAEMON_CONFIG = '[planner]\nbase_url = "http://127.0.0.1:9/v1"\nmode = "json"\ntimeout_s = 2\n'

CALL_TIMEOUT_S = 30.0
MAX_DEPTH = 4  # nested messages deeper than this are left empty
HUGE = (100_000, 1_000_000, 5_000_000)
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
ACTIVE = ("proposed", "preparing", "running")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+")

# Admin.Stop stops the daemon under fuzz by design: its refusals are tested in tests/e2e/test_daemon_stop.py.
NOT_FUZZED = frozenset({"goex.v1.Admin.Stop"})
METHODS: list[MethodDescriptor] = [
    m
    for module in (sessions_pb2, actions_pb2, secrets_pb2, admin_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for m in service.methods
    if m.full_name not in NOT_FUZZED
]


@dataclass
class World:
    """The daemon under fuzz and what requests may name: its ids and paths, refreshed as calls change them."""

    d: DaemonProcess
    ws: Path
    db_dir: Path
    journal: sqlite3.Connection
    ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _interesting(world: World) -> list[str]:
    """Values that reach past structural checks, and values that must be refused."""
    ws, db = str(world.ws), str(world.db_dir)
    return [
        *world.ids,
        *world.paths,
        "ses_0000000000000000",
        "act_0000000000000000",
        ws,
        f"{ws}/sub",
        f"{ws}/../..",
        f"sqlite://{db}/fuzz.db",
        f"sqlite://{db}/new.db",
        "sqlite:///proc/self/mem",
        "sqlite:///dev/zero",
        f"sqlite://{world.d.state_dir}/journal.sqlite3",
        "postgresql://app@127.0.0.1:1/db",
        "postgres://u:pw@h/db",
        "http://127.0.0.1:1",
        "https://" + "a" * 64 + ".example.com",
        "http://169.254.169.254/latest",
        str(world.d.state_dir),
        str(world.d.root),
        "/",
        "/etc",
        "/proc/self/mem",
        "../../etc/passwd",
        "relative/dir",
        "{",
        "{value:>100000000}",
        "{value}",
        "Bearer {value}",
        "[http]\nhosts = ['*']\n",
        "[[[[[[[[",
        "a = " + "[" * 3000 + "]" * 3000,
        "1.5/ses_x",
        "9" * 30,
        "nan",
        "-1",
        "true",
        "sh",
        "echo fuzz > fuzz.txt",
        "SELECT 1",
        "DROP TABLE t",
        "ATTACH '/etc/passwd' AS p",
        "GET",
        "/items",
        "example.com",
        "*",
        "\x00",
        "%s%n%x",
    ]


def _strings(world: World) -> st.SearchStrategy[str]:
    def pick(i: int) -> str:  # at draw time: the ids change as calls open and close sessions
        pool = _interesting(world)
        return pool[i % len(pool)]

    return st.one_of(
        st.integers(min_value=0, max_value=10_000).map(pick),
        st.text(max_size=40),
        st.sampled_from(HUGE).map(lambda n: "A" * n),
        st.text(alphabet="/.a\x00é😀 {}", max_size=300),
    )


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(f: FieldDescriptor, world: World) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return _strings(world)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from(HUGE).map(lambda n: b"\xff" * n))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(min_value=-(2**31), max_value=2**31 - 1))
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    lo, hi = _INT_RANGES[t]
    return st.one_of(st.sampled_from([0, 1, -1 if lo else 2, lo, hi]), st.integers(min_value=lo, max_value=hi))


def _value(f: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(f.message_type, world, depth + 1)
    return _scalar(f, world)


def _is_map(f: FieldDescriptor) -> bool:
    return f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def _set(msg: Message, f: FieldDescriptor, value: Any) -> None:
    if _is_map(f):
        target = getattr(msg, f.name)
        value_field = f.message_type.fields_by_name["value"]
        for k, v in value:
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif f.is_repeated:
        target = getattr(msg, f.name)
        for v in value:
            target.add().CopyFrom(v) if f.type == FieldDescriptor.TYPE_MESSAGE else target.append(v)
    elif f.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(msg, f.name).CopyFrom(value)
    else:
        setattr(msg, f.name, value)


def messages(desc: Descriptor, world: World, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of this type, each field set or not (one member per oneof at most)."""
    cls = message_factory.GetMessageClass(desc)
    if depth > MAX_DEPTH:
        return st.just(cls())
    strategies: list[tuple[FieldDescriptor, st.SearchStrategy[Any]]] = []
    for f in desc.fields:
        if _is_map(f):
            entry = f.message_type.fields_by_name
            pair = st.tuples(_scalar(entry["key"], world), _value(entry["value"], world, depth))
            strategies.append((f, st.lists(pair, max_size=3)))
        elif f.is_repeated:
            strategies.append((f, st.lists(_value(f, world, depth), max_size=3)))
        else:
            strategies.append((f, _value(f, world, depth)))
    oneofs = [o for o in desc.oneofs if not (len(o.fields) == 1 and o.name.startswith("_"))]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        chosen = {o.name: draw(st.sampled_from([None, *o.fields])) for o in oneofs}
        for f, strategy in strategies:
            group = f.containing_oneof
            if group is not None and group.name in chosen:
                if chosen[group.name] is not f:
                    continue
            elif not draw(st.booleans()):
                continue
            _set(msg, f, draw(strategy))
        return msg

    return build()


# ---------------------------------------------------------------- the daemon's state


def _journal_state(db: sqlite3.Connection) -> tuple[Any, ...]:
    return (
        db.execute("SELECT id, state, closed_at FROM sessions ORDER BY id").fetchall(),
        db.execute("SELECT session_id, name, uri, held FROM resources ORDER BY session_id, name").fetchall(),
        db.execute("SELECT id, state, undo_started, resolved_at FROM actions ORDER BY id").fetchall(),
        db.execute("SELECT count(*) FROM transitions").fetchone(),
    )


def _state(world: World) -> tuple[Any, ...]:
    secrets = world.d.secrets.ListSecrets(scpb.ListSecretsRequest(), timeout=10).secrets
    return (_journal_state(world.journal), sorted(s.name for s in secrets), fingerprint(world.ws))


def _healthy(d: DaemonProcess) -> None:
    assert d.proc is not None and d.proc.poll() is None, f"goexd died:\n{d.log()[-5000:]}"
    status = health_pb2_grpc.HealthStub(d.connect()).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def _settle(world: World) -> None:
    """Wait until no action runs (a detached one changes the state later); cancel any that lingers."""
    deadline = time.monotonic() + 60
    while True:
        active = world.journal.execute(
            f"SELECT id FROM actions WHERE state IN ({','.join('?' * len(ACTIVE))})", ACTIVE
        ).fetchall()
        if not active:
            return
        assert time.monotonic() < deadline, f"actions still running: {active}"
        for (action_id,) in active:
            with contextlib.suppress(grpc.RpcError):
                world.d.actions.CancelAction(apb.CancelActionRequest(action_id=action_id), timeout=10)
        time.sleep(0.05)


def _refresh(world: World) -> None:
    """Keep one open session over the workspace and the database, and the current ids at hand."""
    open_sessions = world.journal.execute("SELECT id FROM sessions WHERE state = 'open'").fetchall()
    if not open_sessions:
        _open_session(world)
    world.ids[:] = [r[0] for r in world.journal.execute("SELECT id FROM sessions ORDER BY created_at DESC LIMIT 3")]
    world.ids += [r[0] for r in world.journal.execute("SELECT id FROM actions ORDER BY created_at DESC LIMIT 5")]


def _open_session(world: World) -> str:
    req = spb.CreateSessionRequest(
        resources=[
            pb.ResourceSpec(name="fs", fs=pb.FsResourceSpec(path=str(world.ws))),
            pb.ResourceSpec(name="db", db=pb.DbResourceSpec(url=f"sqlite://{world.db_dir}/fuzz.db")),
        ]
    )
    session = world.d.sessions.CreateSession(req, timeout=60).session
    run = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo one > one.txt"]), resource="fs")
    world.d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session.id, spec=run), timeout=60)
    sql = pb.ActionSpec(sql=pb.SqlAction(sql="CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1)"))
    sql.resource = "db"
    world.d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session.id, spec=sql), timeout=60)
    return str(session.id)


def _caller(d: DaemonProcess, method: MethodDescriptor) -> Callable[[Message], Any]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    out = message_factory.GetMessageClass(method.output_type)
    ch = d.connect()
    if method.server_streaming:
        stream = ch.unary_stream(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=out.FromString
        )
        return lambda req: list(stream(req, timeout=CALL_TIMEOUT_S))
    unary = ch.unary_unary(
        path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=out.FromString
    )
    return lambda req: unary(req, timeout=CALL_TIMEOUT_S)


def check_call(world: World, method: MethodDescriptor, request: Message) -> None:
    """One call and the properties every call must keep (see the module docstring)."""
    _refresh(world)
    before = _state(world)
    try:
        _caller(world.d, method)(request)
    except grpc.RpcError as exc:
        code, detail = exc.code(), exc.details() or ""
        where = f"{method.full_name}({str(request)[:600]})"
        assert code not in BAD_CODES, f"{where} -> {code}: {detail}"
        assert not TRACEBACK.search(detail), f"{where} -> {detail}"
        assert len(detail.encode()) <= 2048, f"{where} -> a {len(detail)}-character detail"
        if code is not grpc.StatusCode.DEADLINE_EXCEEDED:  # the client gave up: the call may still go on
            assert _state(world) == before, f"{where} was refused ({code}: {detail}) but changed the state"
    _settle(world)
    _healthy(world.d)


@pytest.fixture(scope="module")
def world(sec_daemon: DaemonProcess) -> Iterator[World]:
    d = sec_daemon
    with make_workspace(d.uid, d.gid) as ws, make_workspace(d.uid, d.gid) as db_dir:
        (ws / "sub").mkdir()
        (ws / "sub" / "keep.txt").write_text("keep\n")
        for p in (ws / "sub", ws / "sub" / "keep.txt"):
            os.chown(p, d.uid, d.gid)
        journal = sqlite3.connect(f"file:{d.state_dir / 'journal.sqlite3'}?mode=ro", uri=True, isolation_level=None)
        w = World(d, ws, db_dir, journal)
        _open_session(w)
        w.paths += [str(ws / "sub"), str(db_dir)]
        try:
            yield w
        finally:
            journal.close()
        log = d.log()
        assert "Traceback" not in log, log[-5000:]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_any_request_keeps_goexd_up_and_a_refusal_changes_nothing(world: World, method: MethodDescriptor) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=RANDOM,
    )
    @given(request=messages(method.input_type, world))
    def run(request: Message) -> None:
        check_call(world, method, request)

    run()


# ---------------------------------------------------------------- conflicting calls at once


def _at_once(*calls: Callable[[], Any]) -> list[BaseException | Any]:
    """Run the calls in threads started together; each one's result or exception."""
    results: list[BaseException | Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _no_bad_status(results: list[BaseException | Any]) -> list[grpc.StatusCode]:
    codes = []
    for r in results:
        if isinstance(r, grpc.RpcError):
            assert r.code() not in BAD_CODES, (r.code(), r.details())
            assert not TRACEBACK.search(r.details() or "")
            codes.append(r.code())
        else:
            assert not isinstance(r, BaseException), repr(r)
            codes.append(grpc.StatusCode.OK)
    return codes


def test_two_create_sessions_on_one_workspace_hold_it_once(world: World) -> None:
    d = world.d
    with make_workspace(d.uid, d.gid) as ws:
        req = spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))])
        for _ in range(5):
            before = len(_journal_state(world.journal)[0])
            results = _at_once(*[lambda: d.sessions.CreateSession(req, timeout=60)] * 3)
            codes = _no_bad_status(results)
            assert codes.count(grpc.StatusCode.OK) == 1, codes
            assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION}, codes
            assert len(_journal_state(world.journal)[0]) == before + 1  # the loser left no row
            (won,) = [r for r in results if not isinstance(r, BaseException)]
            d.sessions.CloseSession(spb.CloseSessionRequest(session_id=won.session.id), timeout=60)
    _healthy(d)


def _slow_session(world: World, ws: Path) -> tuple[str, str]:
    """A session over ws with one detached action that runs for a while; (session id, action id)."""
    d = world.d
    req = spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))])
    session = d.sessions.CreateSession(req, timeout=60).session.id
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo a > a.txt; sleep 1; echo b > b.txt"]))
    action = d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec, detach=True), timeout=60)
    return session, action.action.id


def test_undo_commit_and_close_while_an_action_runs(world: World) -> None:
    d = world.d
    with make_workspace(d.uid, d.gid) as ws:
        original = fingerprint(ws)
        session, action = _slow_session(world, ws)
        submit = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo c > c.txt"]))
        results = _at_once(
            lambda: d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=action), timeout=60),
            lambda: d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=submit), timeout=60),
            lambda: d.actions.UndoTo(apb.UndoToRequest(action_id=action), timeout=60),
            lambda: d.actions.CommitActions(apb.CommitActionsRequest(session_id=session), timeout=60),
            lambda: d.sessions.CloseSession(
                spb.CloseSessionRequest(session_id=session, mode=spb.CLOSE_MODE_UNDO_ALL), timeout=60
            ),
            lambda: d.actions.CancelAction(apb.CancelActionRequest(action_id=action), timeout=60),
        )
        _no_bad_status(results)
        _settle(world)
        # Whatever order they ran in, the journal and the files agree: every action ended in a final
        # state, and the workspace holds exactly what the surviving (committed or pending) actions wrote.
        states = dict(
            world.journal.execute("SELECT id, state FROM actions WHERE session_id = ?", (session,)).fetchall()
        )
        assert not set(states.values()) & set(ACTIVE), states
        files = set(fingerprint(ws)) - set(original)
        if all(s in ("undone", "failed", "blocked") for s in states.values()):
            assert fingerprint(ws) == original, files
        closed = world.journal.execute("SELECT state FROM sessions WHERE id = ?", (session,)).fetchone()[0]
        if closed == "open":
            d.sessions.CloseSession(
                spb.CloseSessionRequest(session_id=session, mode=spb.CLOSE_MODE_UNDO_ALL), timeout=60
            )
    _healthy(d)


def test_close_while_running_then_calls_on_the_closed_session(world: World) -> None:
    d = world.d
    with make_workspace(d.uid, d.gid) as ws:
        session, action = _slow_session(world, ws)
        close = spb.CloseSessionRequest(session_id=session, mode=spb.CLOSE_MODE_COMMIT_ALL)
        results = _at_once(
            lambda: d.sessions.CloseSession(close, timeout=60),
            lambda: d.sessions.CloseSession(close, timeout=60),
            lambda: d.sessions.DescribeSession(spb.DescribeSessionRequest(session_id=session), timeout=60),
            lambda: list(d.actions.WatchAction(apb.WatchActionRequest(action_id=action), timeout=60)),
        )
        codes = _no_bad_status(results)
        assert codes[:2].count(grpc.StatusCode.OK) <= 1, codes  # one close wins at most
        _settle(world)
        with contextlib.suppress(grpc.RpcError):  # if neither close won (the action was running), close now
            d.sessions.CloseSession(close, timeout=60)
        spec = pb.ActionSpec(shell=pb.ShellAction(argv=["true"]))
        before = _state(world)
        for call in (
            lambda: d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session, spec=spec), timeout=60),
            lambda: d.actions.UndoAction(apb.UndoActionRequest(session_id=session), timeout=60),
            lambda: d.sessions.CloseSession(close, timeout=60),
        ):
            (code,) = _no_bad_status(_at_once(call))
            assert code is grpc.StatusCode.FAILED_PRECONDITION, code
        assert _state(world) == before
    _healthy(d)
