"""protobuf -> dataclass conversion, on hand-built messages."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import goex
from goex._enums import _DESCRIPTORS, ProtoEnum
from goex._models import action_event_from_proto
from goex.v1 import admin_pb2, secrets_pb2, sessions_pb2
from goex.v1 import types_pb2 as pb

WHEN = datetime(2026, 11, 24, 11, 0, 5, 250000, tzinfo=UTC)


def ts(dt: datetime = WHEN) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt)
    return out


def full_action() -> pb.Action:
    a = pb.Action(
        id="a1",
        session_id="s1",
        seq=3,
        kind=pb.ACTION_KIND_SHELL,
        state=pb.ACTION_STATE_EXECUTED,
        resource="fs",
        error="",
        created_at=ts(),
    )
    a.spec.shell.argv.extend(["sh", "-c", "echo hi > a.txt"])
    a.spec.shell.env["LANG"] = "C"
    a.spec.limits.timeout.FromMilliseconds(1500)
    a.spec.limits.memory_bytes = 512 << 20
    a.spec.description = "greet"
    a.inverse.shell.argv.extend(["rm", "a.txt"])
    a.reversibility.reversibility_class = pb.REVERSIBILITY_CLASS_BEST_EFFORT
    a.reversibility.verdict = pb.VERDICT_PASSED
    a.reversibility.tested_at.CopyFrom(ts())
    a.exec.termination = pb.TERMINATION_EXITED
    a.exec.exit_code = 3
    a.exec.stdout = b"hi\n"
    a.exec.stdout_total_bytes = 3
    a.exec.limits_enforced_by = "cgroup-v2"
    a.changes.changes.add(kind=pb.CHANGE_KIND_ADDED, path="a.txt", new_mode=0o100644)
    a.changes.changes.add(kind=pb.CHANGE_KIND_MODE_CHANGED, path="run.sh", old_mode=0o100644, new_mode=0o100755)
    a.changes.added, a.changes.modified, a.changes.deleted, a.changes.total = 1, 0, 0, 1236
    a.changes.truncated = True
    a.timings.prepare.FromMilliseconds(3)
    a.timings.run.FromMilliseconds(1250)
    a.timings.total.FromMilliseconds(1260)
    return a


def test_action_fields_enums_times_and_durations() -> None:
    a = goex.Action.from_proto(full_action())
    assert (a.id, a.session_id, a.seq, a.resource) == ("a1", "s1", 3, "fs")
    assert a.kind is goex.ActionKind.SHELL and a.kind == "shell"
    assert a.state is goex.ActionState.EXECUTED and a.state == "executed"
    assert a.is_pending and not a.is_active
    assert a.created_at == WHEN and a.created_at.tzinfo is not None
    assert a.finished_at is None and a.resolved_at is None
    assert a.timings is not None
    assert a.timings.prepare == pytest.approx(0.003)
    assert a.timings.run == pytest.approx(1.25)
    assert a.timings.capture is None and a.timings.undo is None
    assert a.error == ""
    assert a.sql is None and a.http is None


def test_action_spec_and_inverse_become_bodies() -> None:
    a = goex.Action.from_proto(full_action())
    assert a.spec is not None
    assert a.spec.body == goex.Shell(["sh", "-c", "echo hi > a.txt"], env={"LANG": "C"})
    assert a.spec.kind is goex.ActionKind.SHELL
    assert a.spec.text == "sh -c 'echo hi > a.txt'"
    assert a.spec.description == "greet"
    assert a.spec.limits == goex.Limits(timeout=1.5, memory_bytes=512 << 20)
    assert a.inverse is not None and a.inverse.body == goex.Shell(["rm", "a.txt"])
    assert a.reversibility is not None
    assert a.reversibility.reversibility_class == "best_effort"
    assert a.reversibility.verdict == "passed"
    assert a.reversibility.tested_at == WHEN


def test_exec_result_and_change_set() -> None:
    a = goex.Action.from_proto(full_action())
    assert a.exec is not None
    assert a.exec.termination is goex.Termination.EXITED
    assert (a.exec.exit_code, a.exec.stdout, a.exec.limits_enforced_by) == (3, b"hi\n", "cgroup-v2")
    assert not a.exec.succeeded
    c = a.changes
    assert c is not None
    assert [ch.line for ch in c.changes] == ["A a.txt", "P run.sh"]
    assert c.changes[1].kind is goex.ChangeKind.MODE_CHANGED
    assert (c.changes[1].old_mode, c.changes[1].new_mode) == (0o100644, 0o100755)
    assert c.summary == "+1 ~0 -0"
    assert c.truncated and c.omitted == 1234


def test_unset_sub_messages_are_none() -> None:
    a = goex.Action.from_proto(pb.Action(id="a2", state=pb.ACTION_STATE_PROPOSED))
    assert a.spec is None and a.inverse is None and a.exec is None and a.changes is None
    assert a.timings is None and a.reversibility is None and a.created_at is None
    assert a.is_active


def test_unknown_enum_number_becomes_unspecified() -> None:
    assert goex.ActionState.from_proto(99) is goex.ActionState.UNSPECIFIED
    a = goex.Action.from_proto(pb.Action(id="a3", state=99))  # type: ignore[arg-type]
    assert a.state is goex.ActionState.UNSPECIFIED


@pytest.mark.parametrize("cls", list(_DESCRIPTORS), ids=lambda c: c.__name__)
def test_enums_cover_the_contract_both_ways(cls: type[ProtoEnum]) -> None:
    descriptor = _DESCRIPTORS[cls]
    assert len(cls) == len(descriptor.values)
    for value in descriptor.values:
        member = cls.from_proto(value.number)
        assert member.proto_name == value.name
        assert member.to_proto() == value.number
        assert member.value == member.value.lower()


def test_sql_and_http_results() -> None:
    msg = pb.Action(id="a4")
    msg.sql.columns.extend(["id", "name"])
    msg.sql.rows.add(values=["1", "ann"], is_null=[False, False])
    msg.sql.rows.add(values=["2", ""], is_null=[False, True])
    msg.sql.total_rows = 2
    msg.http.status = 201
    msg.http.headers["content-type"] = "application/json"
    msg.http.body = b"{}"
    a = goex.Action.from_proto(msg)
    assert a.sql is not None and a.sql.columns == ("id", "name")
    assert a.sql.rows == (("1", "ann"), ("2", None))
    assert a.http is not None and a.http.status == 201
    assert a.http.headers == {"content-type": "application/json"}


def test_session_and_resources() -> None:
    msg = pb.Session(
        id="s1",
        state=pb.SESSION_STATE_OPEN,
        label="demo",
        resources=[pb.Resource(name="fs", kind=pb.RESOURCE_KIND_FS, uri="/w", strategy=pb.UNDO_STRATEGY_VERSIONED)],
        created_at=ts(),
        pending_actions=2,
        total_actions=5,
    )
    msg.limits.max_processes = 64
    s = goex.Session.from_proto(msg)
    assert s.state == "open" and s.label == "demo"
    (r,) = s.resources
    assert (r.name, r.kind, r.uri, r.strategy) == ("fs", goex.ResourceKind.FS, "/w", goex.UndoStrategy.VERSIONED)
    assert r.rules == ""
    assert s.limits == goex.Limits(max_processes=64)
    assert s.closed_at is None and s.created_at == WHEN
    assert (s.pending_actions, s.total_actions) == (2, 5)

    closed = goex.ClosedSession.from_proto(sessions_pb2.CloseSessionResponse(session=msg, resolved=[full_action()]))
    assert closed.session.id == "s1" and [a.id for a in closed.resolved] == ["a1"]


def test_http_resource_rules() -> None:
    msg = pb.Resource(
        name="api",
        kind=pb.RESOURCE_KIND_HTTP,
        uri="http://127.0.0.1:3000",
        strategy=pb.UNDO_STRATEGY_INVERSE,
        rules="s3",
    )
    r = goex.Resource.from_proto(msg)
    assert (r.name, r.kind, r.strategy, r.rules) == ("api", goex.ResourceKind.HTTP, goex.UndoStrategy.INVERSE, "s3")
    assert r.to_dict()["rules"] == "s3"
    confined = goex.Resource.from_proto(pb.Resource(kind=pb.RESOURCE_KIND_HTTP, strategy=pb.UNDO_STRATEGY_CONFINE))
    assert confined.strategy is goex.UndoStrategy.CONFINE and confined.rules == ""


def test_http_text_shows_the_query_sorted() -> None:
    assert goex.Http("delete", "/items/7").text == "DELETE /items/7"
    assert goex.Http("GET", "/items", query={"q": "a&b", "limit": "10"}).text == "GET /items?limit=10&q=a%26b"
    spec = goex.ActionSpec(goex.Http("GET", "/s", query={"x": "1"}))
    assert spec.text == "GET /s?x=1" and spec.kind is goex.ActionKind.HTTP


def test_action_events() -> None:
    state = action_event_from_proto(pb.ActionEvent(action_id="a1", at=ts(), state=pb.ACTION_STATE_RUNNING))
    assert isinstance(state, goex.StateEvent) and state.state is goex.ActionState.RUNNING and state.at == WHEN
    out = action_event_from_proto(
        pb.ActionEvent(action_id="a1", output=pb.OutputChunk(stream=pb.OUTPUT_STREAM_STDERR, data=b"oops"))
    )
    assert isinstance(out, goex.OutputEvent)
    assert (out.stream, out.data, out.at) == (goex.OutputStream.STDERR, b"oops", None)
    assert action_event_from_proto(pb.ActionEvent(action_id="a1")) is None


def test_secret_info_and_injections() -> None:
    msg = secrets_pb2.SecretInfo(name="gh", kind=secrets_pb2.SECRET_KIND_BEARER, allowed_hosts=["api.github.com"])
    msg.injection.header.name = "Authorization"
    msg.injection.header.template = "Bearer {value}"
    info = goex.SecretInfo.from_proto(msg)
    assert info.kind is goex.SecretKind.BEARER
    assert info.injection == goex.Injection.header("Authorization", "Bearer {value}")
    assert info.allowed_hosts == ("api.github.com",)
    assert info.created_at is None
    for inj in (
        goex.Injection.header("X-Key"),
        goex.Injection.query("key", "k-{value}"),
        goex.Injection.env("TOKEN"),
        goex.Injection.dsn_password(),
    ):
        assert goex.Injection.from_proto(inj.to_proto()) == inj
    assert goex.Injection.from_proto(secrets_pb2.Injection()) is None


def test_secret_info_oauth2_metadata() -> None:
    msg = secrets_pb2.SecretInfo(
        name="gh", kind=secrets_pb2.SECRET_KIND_OAUTH2, refreshable=True, problem="", parts=["access_token"]
    )
    msg.expires_at.CopyFrom(ts())
    info = goex.SecretInfo.from_proto(msg)
    assert info.kind is goex.SecretKind.OAUTH2
    assert info.expires_at == WHEN and info.refreshable and info.usable
    assert info.parts == ("access_token",)
    revoked = goex.SecretInfo.from_proto(secrets_pb2.SecretInfo(name="x", problem="refresh token revoked"))
    assert revoked.problem == "refresh token revoked" and not revoked.usable
    assert revoked.expires_at is None and not revoked.refreshable and revoked.parts == ()


def test_oauth_start() -> None:
    msg = secrets_pb2.StartOAuthResponse(browser_url="https://idp/auth?x=1", redirect_uri="http://127.0.0.1:5/cb")
    start = goex.OAuthStart.from_proto(msg)
    assert (start.browser_url, start.redirect_uri, start.expires_at) == (msg.browser_url, msg.redirect_uri, None)
    msg.expires_at.CopyFrom(ts())
    assert goex.OAuthStart.from_proto(msg).expires_at == WHEN


def test_egress_records() -> None:
    msg = pb.Action(id="a5", kind=pb.ACTION_KIND_PYTHON)
    ok = msg.egress.add(
        method="GET",
        url="https://api.github.com/user",
        host="api.github.com",
        status=200,
        decision=pb.EGRESS_DECISION_ALLOWED,
        secrets_used=["gh"],
        request_bytes=120,
        response_bytes=2048,
        at=ts(),
    )
    ok.duration.FromMilliseconds(250)
    msg.egress.add(
        method="POST",
        url="https://evil.example/?t=goex-secret:gh",
        host="evil.example",
        decision=pb.EGRESS_DECISION_REFUSED,
        reason="not an allowed host of secret gh",
    )
    a = goex.Action.from_proto(msg)
    first, second = a.egress
    assert (first.method, first.url, first.host, first.status) == (
        "GET",
        "https://api.github.com/user",
        "api.github.com",
        200,
    )
    assert first.decision is goex.EgressDecision.ALLOWED and first.allowed
    assert first.secrets_used == ("gh",) and (first.request_bytes, first.response_bytes) == (120, 2048)
    assert first.duration == pytest.approx(0.25) and first.at == WHEN
    assert second.decision == "refused" and not second.allowed and second.status == 0
    assert second.reason == "not an allowed host of secret gh"
    assert second.duration is None and second.at is None and second.secrets_used == ()
    assert first.to_dict()["decision"] == "EGRESS_DECISION_ALLOWED"
    assert goex.Action.from_proto(pb.Action(id="a6")).egress == ()


def test_admin_models() -> None:
    h = admin_pb2.GetHealthResponse(
        ok=True, version="1.2", components=[admin_pb2.ComponentHealth(name="vault", ok=False)]
    )
    h.uptime.FromSeconds(90)
    health = goex.Health.from_proto(h)
    assert health.ok and health.uptime == 90.0 and health.components[0].name == "vault"
    assert not health.components[0].ok
    stats = goex.Stats.from_proto(admin_pb2.GetStatsResponse(open_sessions=2, actions_by_state={"executed": 4}))
    assert stats.open_sessions == 2 and stats.actions_by_state == {"executed": 4}
    gc = goex.GcResult.from_proto(admin_pb2.RunGcResponse(snapshots_removed=1, bytes_freed=10, reasons=["x"]))
    assert gc.reasons == ("x",)
    check = goex.PolicyCheck.from_proto(
        admin_pb2.CheckPolicyResponse(ok=False, errors=[admin_pb2.PolicyError(line=3, message="bad")])
    )
    assert not check.ok and check.errors[0].line == 3


def test_models_are_frozen_and_keep_their_proto() -> None:
    msg = full_action()
    a = goex.Action.from_proto(msg)
    assert a.proto is msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.state = goex.ActionState.UNDONE  # type: ignore[misc]
    d = a.to_dict()
    assert d["session_id"] == "s1" and d["state"] == "ACTION_STATE_EXECUTED"
    assert d["exec"]["exit_code"] == 3 and d["exec"]["signal"] == 0  # defaults included
    assert "proto" not in repr(a)


@pytest.mark.parametrize(
    "body",
    [
        goex.Shell(["ls", "-l"], env={"A": "1"}, stdin=b"x"),
        goex.Python("print(1)\nprint(2)"),
        goex.Sql("select ?", ["1"]),
        goex.Http("post", "/items", query={"q": "1"}, headers={"X": "y"}, json='{"a": 1}'),
        goex.Http("PUT", "/raw", body=b"\x00\x01"),
        goex.Prompt("tidy the readme"),
    ],
    ids=lambda b: type(b).__name__,
)
def test_action_specs_round_trip(body: goex.ActionBody) -> None:
    spec = goex.ActionSpec(body, resource="fs", limits=goex.Limits(timeout=2, output_bytes=1024), description="d")
    assert goex.ActionSpec.from_proto(spec.to_proto()) == spec
    assert spec.egress is None and not spec.to_proto().HasField("egress")


@pytest.mark.parametrize(
    "egress",
    [goex.Egress(secrets=["gh", "npm"]), goex.Egress(hosts=["pypi.org"]), goex.Egress(["gh"], ["pypi.org"])],
    ids=["secrets", "hosts", "both"],
)
def test_egress_round_trips(egress: goex.Egress) -> None:
    spec = goex.ActionSpec(goex.Shell(["curl", "https://api.github.com"]), egress=egress)
    msg = spec.to_proto()
    assert list(msg.egress.secrets) == list(egress.secrets) and list(msg.egress.hosts) == list(egress.hosts)
    assert goex.ActionSpec.from_proto(msg) == spec
    assert goex.Egress.from_proto(egress.to_proto()) == egress
    assert hash(spec.egress) == hash(goex.Egress(egress.secrets, egress.hosts))


def test_egress_text() -> None:
    assert goex.Egress(["gh", "npm"], ["pypi.org"]).text == "secrets gh, npm; hosts pypi.org"
    assert goex.Egress(hosts=["pypi.org"]).text == "hosts pypi.org"
    assert goex.Egress().is_empty and not goex.Egress(["gh"]).is_empty


def test_spec_helpers() -> None:
    with pytest.raises(TypeError):
        goex.Shell("ls -l")  # a string is not an argv
    with pytest.raises(ValueError, match="not both"):
        goex.Http("POST", "/", body=b"x", json="{}")
    assert goex.Python("a = 1\nb = 2").text == "python: a = 1 …"
    assert goex.Limits().is_empty
    assert goex.Limits.from_proto(pb.SandboxLimits()) == goex.Limits()
    spec = goex.ResourceSpec.fs("relative/dir", strategy="inverse").to_proto()
    assert spec.fs.path.startswith("/") and spec.fs.path.endswith("/relative/dir")
    assert spec.strategy == pb.UNDO_STRATEGY_INVERSE
    db = goex.ResourceSpec.db("sqlite:///x.db", secret="pw", name="main").to_proto()
    assert (db.name, db.db.url, db.db.secret) == ("main", "sqlite:///x.db", "pw")
