"""Class 5 of issue 13: a session's policy can only narrow what the daemon allows, key by key.

A session's `policy_toml` used to be merged over the daemon's policy and replaced its lists: with
an empty `egress.allowed_hosts`, a session policy let `curl` in a sandbox reach a service listening
only on the host's loopback. Now the session's policy is checked beside the daemon's, and the
stricter answer wins (docs/policy.md). Each test below takes one key, sends a session policy that
asks for more than the daemon's policy gives, and tries the widened thing through the real daemon:
it must be refused, naming the key, with nothing reaching the service. A control in the same test
does what the daemon allows through the same session, so a refusal is the policy's doing.

The daemon here: `egress.allowed_hosts` is the `api` service only, 127.0.0.1/32 is an allowed
address (the services listen on loopback), and its policy file (POLICY) narrows every key.
Also class 8: a policy nested thousands deep, and one over the size cap, are INVALID_ARGUMENT
naming the field (they were INTERNAL), and leave no session behind.

Every test runs against a real goexd as root and as an unprivileged user (tests/security/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.policy.parse import MAX_POLICY_BYTES
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.security.conftest import MODES, make_workspace, start_daemon
from tests.security.upstreams import Service, serving

# The daemon's policy file; {api} is the port of the one service it lets sessions call.
POLICY = """
[sql]
write = "approval"            # privileged = "deny" stays the built-in default

[sandbox]
max_timeout_s = 40
max_memory = "256MiB"
max_processes = 64
network = "approval"

[http]
hosts = ["127.0.0.1:{api}"]
methods = ["GET", "POST", "PUT", "PATCH"]
paths = ["/anything/ok", "/anything/ok/**"]

[http.resources.limited]
rate_limit = "2/minute"

[[deny]]
name = "no-forbidden-word"
contains = "forbidden-word"
"""
APPROVAL = "sec-suite: approved"


# ---------------------------------------------------------------- services and the daemon


@dataclass(frozen=True)
class Env:
    d: DaemonProcess
    api: Service  # the daemon lets sessions reach this one
    other: Service  # and not this one: what a session's policy tries to add


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[Service, Service]]:
    with serving() as api, serving() as other:
        yield api, other


@contextlib.contextmanager
def _policy_file(text: str) -> Iterator[Path]:
    """A world-readable file outside root's 0700 temp dirs, so an unprivileged goexd can read it."""
    where = Path(tempfile.mkdtemp(prefix="goex-secpol-", dir="/var/tmp"))
    where.chmod(0o755)
    path = where / "policy.toml"
    path.write_text(text)
    path.chmod(0o644)
    try:
        yield path
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module", params=MODES)
def env(request: pytest.FixtureRequest, services: tuple[Service, Service]) -> Iterator[Env]:
    api, other = services
    with _policy_file(POLICY.format(api=api.port)) as policy:
        config = f'[egress]\nallowed_hosts = ["{api.host}"]\n\n[policy]\nfile = "{policy}"\n'
        with start_daemon(request.param, config, allowed_addresses=("127.0.0.1/32",)) as d:
            yield Env(d, api, other)


@pytest.fixture
def ws(env: Env) -> Iterator[Path]:
    with make_workspace(env.d.uid, env.d.gid) as path:
        yield path


# ---------------------------------------------------------------- requests


_OPENED: list[tuple[DaemonProcess, str]] = []


def create(d: DaemonProcess, policy: str, *resources: pb.ResourceSpec) -> pb.Session:
    req = spb.CreateSessionRequest(resources=list(resources), policy_toml=policy)
    session = d.sessions.CreateSession(req, timeout=60).session
    _OPENED.append((d, session.id))
    return session


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    """Each test's sessions are closed after it (a session holds its resources: the next test opens them too)."""
    yield
    while _OPENED:
        d, session = _OPENED.pop()
        d.sessions.CloseSession(spb.CloseSessionRequest(session_id=session, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60)


def fs(path: Path) -> pb.ResourceSpec:
    return pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(path)))


def http(url: str, name: str = "api", strategy: int = pb.UNDO_STRATEGY_UNSPECIFIED) -> pb.ResourceSpec:
    return pb.ResourceSpec(name=name, strategy=strategy, http=pb.HttpResourceSpec(base_url=url))


def submit(d: DaemonProcess, session: str, spec: pb.ActionSpec, approval: str = "") -> pb.Action:
    req = apb.SubmitActionRequest(session_id=session, spec=spec, approval=approval)
    return d.actions.SubmitAction(req, timeout=120).action


def refused(call: Callable[[], object], code: grpc.StatusCode, rule: str) -> str:
    """The call fails with `code`, naming the policy `rule` and saying the daemon's policy decided."""
    got, msg = status_of(call)
    assert got == code, (got, msg)
    assert f"policy rule {rule}]" in msg and "the daemon's policy" in msg, msg
    return msg


def call(d: DaemonProcess, session: str, method: str, path: str, approval: str = "", **query: str) -> pb.Action:
    spec = pb.ActionSpec(http=pb.HttpAction(method=method, path=path, query=query), resource="api")
    return submit(d, session, spec, approval)


def code(
    script: str,
    *,
    hosts: list[str] | None = None,
    resources: list[str] | None = None,
    limits: dict[str, int] | None = None,
) -> pb.ActionSpec:
    """A shell action; `limits` as SandboxLimits fields (timeout_s in seconds; 30 unless given)."""
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    asked = dict(limits or {})
    spec.limits.timeout.FromSeconds(asked.pop("timeout_s", 30))
    for k, v in asked.items():
        setattr(spec.limits, k, v)
    if hosts is not None or resources is not None:
        spec.egress.hosts.extend(hosts or [])
        spec.egress.resources.extend(resources or [])
    return spec


def curl(url: str, method: str = "GET") -> str:
    """Prints the status the sandbox got (000 when curl got none)."""
    return f"curl -s -o /dev/null -w '%{{http_code}}' -X {method} --max-time 20 '{url}'"


def stdout(action: pb.Action) -> str:
    assert action.state in (pb.ACTION_STATE_EXECUTED, pb.ACTION_STATE_COMMITTED), action.error
    return str(action.exec.stdout.decode(errors="replace"))


def no_session_left(d: DaemonProcess, before: int) -> None:
    listed = d.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True), timeout=30).sessions
    assert len(listed) == before, "a refused CreateSession left a session behind"


def session_count(d: DaemonProcess) -> int:
    return len(d.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True), timeout=30).sessions)


# ---------------------------------------------------------------- egress of code


def test_egress_hosts_a_session_adds_stay_out_of_reach(env: Env, ws: Path) -> None:
    """The issue's case: the session's [egress] hosts named a loopback service the daemon does not list."""
    policy = f'[egress]\nhosts = ["{env.api.host}", "{env.other.host}"]\n'
    s = create(env.d, policy, fs(ws))
    before = list(env.other.requests)
    widened = code(curl(f"{env.other.url}/anything/x"), hosts=[env.other.host])
    refused(lambda: submit(env.d, s.id, widened, APPROVAL), grpc.StatusCode.PERMISSION_DENIED, "egress.hosts")
    assert env.other.requests == before
    # control: the host the daemon lists is reached, by the same session
    assert (
        stdout(submit(env.d, s.id, code(curl(f"{env.api.url}/anything/ok"), hosts=[env.api.host]), APPROVAL)) == "200"
    )


def test_the_daemons_network_approval_stays_required(env: Env, ws: Path) -> None:
    s = create(env.d, '[sandbox]\nnetwork = "allow"\n', fs(ws))
    spec = code(curl(f"{env.api.url}/anything/ok"), hosts=[env.api.host])
    msg = refused(lambda: submit(env.d, s.id, spec), grpc.StatusCode.PERMISSION_DENIED, "sandbox.network")
    assert "explicit approval" in msg
    assert stdout(submit(env.d, s.id, spec, APPROVAL)) == "200"  # control: with the approval the daemon asks for


@pytest.mark.parametrize(
    "key,session_value,asked,within",
    [
        ("max_timeout_s", "1000", {"timeout_s": 100}, {"timeout_s": 30}),
        ("max_memory", '"8GiB"', {"memory_bytes": 1 << 30}, {"memory_bytes": 128 << 20}),
        ("max_processes", "4096", {"max_processes": 1000}, {"max_processes": 32}),
    ],
)
def test_sandbox_ceilings_a_session_raises_stay_the_daemons(
    env: Env, ws: Path, key: str, session_value: str, asked: dict[str, int], within: dict[str, int]
) -> None:
    s = create(env.d, f"[sandbox]\n{key} = {session_value}\n", fs(ws))
    refused(
        lambda: submit(env.d, s.id, code("echo ran", limits=asked)), grpc.StatusCode.PERMISSION_DENIED, f"sandbox.{key}"
    )
    assert stdout(submit(env.d, s.id, code("echo ran", limits=within))) == "ran\n"  # control


# ---------------------------------------------------------------- SQL


@pytest.fixture
def db(env: Env, ws: Path) -> Path:
    path = ws / "app.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
    os.chown(path, env.d.uid, env.d.gid)
    return path


def _sql(d: DaemonProcess, session: str, text: str, approval: str = "") -> pb.Action:
    return submit(d, session, pb.ActionSpec(sql=pb.SqlAction(sql=text)), approval)


def test_privileged_sql_stays_refused_when_a_session_allows_it(env: Env, db: Path) -> None:
    s = create(env.d, '[sql]\nprivileged = "allow"\n', pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite:///{db}")))
    attach = f"ATTACH DATABASE '{db.parent / 'x.db'}' AS x"
    refused(lambda: _sql(env.d, s.id, attach, APPROVAL), grpc.StatusCode.PERMISSION_DENIED, "sql.privileged")
    assert not (db.parent / "x.db").exists()
    assert [list(r.values) for r in _sql(env.d, s.id, "SELECT x FROM t").sql.rows] == [["1"]]  # control


def test_sql_writes_the_daemon_holds_for_approval_stay_held(env: Env, db: Path) -> None:
    s = create(env.d, '[sql]\nwrite = "allow"\n', pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite:///{db}")))
    msg = refused(lambda: _sql(env.d, s.id, "INSERT INTO t VALUES (2)"), grpc.StatusCode.PERMISSION_DENIED, "sql.write")
    assert "explicit approval" in msg
    assert _sql(env.d, s.id, "INSERT INTO t VALUES (2)", APPROVAL).state == pb.ACTION_STATE_EXECUTED  # control


# ---------------------------------------------------------------- http resources


def test_http_hosts_a_session_adds_cannot_be_opened(env: Env) -> None:
    policy = f'[http]\nhosts = ["{env.api.host}", "{env.other.host}"]\n'
    before = session_count(env.d)
    refused(lambda: create(env.d, policy, http(env.other.url)), grpc.StatusCode.PERMISSION_DENIED, "http.hosts")
    no_session_left(env.d, before)
    create(env.d, policy, http(env.api.url))  # control: the daemon's host opens


def test_http_methods_a_session_adds_stay_refused(env: Env) -> None:
    s = create(env.d, '[http]\nmethods = ["GET", "DELETE"]\n', http(env.api.url))
    before = list(env.api.requests)
    refused(
        lambda: call(env.d, s.id, "DELETE", "/anything/ok", APPROVAL), grpc.StatusCode.PERMISSION_DENIED, "http.methods"
    )
    assert env.api.requests == before
    assert call(env.d, s.id, "GET", "/anything/ok").http.status == 200  # control


def test_http_paths_a_session_adds_stay_refused(env: Env) -> None:
    s = create(env.d, '[http]\npaths = ["/**"]\n', http(env.api.url))
    before = list(env.api.requests)
    refused(lambda: call(env.d, s.id, "GET", "/anything/elsewhere"), grpc.StatusCode.PERMISSION_DENIED, "http.paths")
    assert env.api.requests == before
    assert call(env.d, s.id, "GET", "/anything/ok/7").http.status == 200  # control


def test_a_rate_limit_a_session_loosens_stays_the_daemons(env: Env) -> None:
    policy = '[http.resources.limited]\nrate_limit = "100/second"\n'
    s = create(env.d, policy, http(env.api.url, name="limited"))
    spec = pb.ActionSpec(http=pb.HttpAction(method="GET", path="/anything/ok"), resource="limited")
    assert [submit(env.d, s.id, spec).http.status for _ in range(2)] == [200, 200]  # control: within the limit
    refused(lambda: submit(env.d, s.id, spec), grpc.StatusCode.RESOURCE_EXHAUSTED, "http.resources.limited.rate_limit")


def test_irreversible_calls_the_daemon_holds_for_approval_stay_held(env: Env) -> None:
    s = create(env.d, '[http]\nirreversible = "allow"\n', http(env.api.url, strategy=pb.UNDO_STRATEGY_CONFINE))
    before = list(env.api.requests)
    msg = refused(
        lambda: call(env.d, s.id, "POST", "/anything/ok"), grpc.StatusCode.PERMISSION_DENIED, "http.irreversible"
    )
    assert "explicit approval" in msg and env.api.requests == before
    assert call(env.d, s.id, "POST", "/anything/ok", APPROVAL).http.status == 200  # control


def test_a_client_inverse_lifts_no_call_past_the_daemons_approval_nor_passes_its_undo_unchecked(env: Env) -> None:
    """Issue 15: any inverse attached (even a GET) used to make an irreversible call run without approval, and its
    undo "verified" on the inverse's 2xx alone. A session's policy cannot trust client inverses for the daemon."""
    policy = '[http]\nirreversible = "allow"\ntrust_client_inverses = true\n'
    s = create(env.d, policy, http(env.api.url))
    spec = pb.ActionSpec(http=pb.HttpAction(method="POST", path="/anything/ok", json="{}"), resource="api")
    inverse = pb.ActionSpec(http=pb.HttpAction(method="GET", path="/anything/ok"), resource="api")
    before = list(env.api.requests)
    req = apb.SubmitActionRequest(session_id=s.id, spec=spec, inverse=inverse)
    msg = refused(
        lambda: env.d.actions.SubmitAction(req, timeout=120), grpc.StatusCode.PERMISSION_DENIED, "http.irreversible"
    )
    assert "its client inverse is not trusted" in msg and env.api.requests == before
    req.approval = APPROVAL  # control: approved, it runs; its undo by a GET that nothing checks is refused
    done = env.d.actions.SubmitAction(req, timeout=120).action
    assert done.state == pb.ACTION_STATE_EXECUTED and done.http.status == 200, done.error
    undo = apb.UndoActionRequest(session_id=s.id, action_id=done.id)
    got, msg = status_of(lambda: env.d.actions.UndoAction(undo, timeout=120))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "is read-only, so it takes nothing back" in msg, msg
    again = env.d.actions.GetAction(apb.GetActionRequest(action_id=done.id)).action
    assert again.state == pb.ACTION_STATE_EXECUTED  # never recorded undone


def test_a_deny_rule_of_the_daemon_cannot_be_replaced_by_one_of_the_same_name(env: Env) -> None:
    policy = '[[deny]]\nname = "no-forbidden-word"\ncontains = "something-harmless"\n'
    s = create(env.d, policy, http(env.api.url))
    before = list(env.api.requests)
    refused(
        lambda: call(env.d, s.id, "GET", "/anything/ok", q="forbidden-word"),
        grpc.StatusCode.PERMISSION_DENIED,
        "deny.no-forbidden-word",
    )
    assert env.api.requests == before
    assert call(env.d, s.id, "GET", "/anything/ok", q="fine").http.status == 200  # control


def test_code_calling_an_http_resource_gets_the_daemons_methods_too(env: Env, ws: Path) -> None:
    """The other way to an http resource: sandboxed code through the egress proxy's gate."""
    s = create(env.d, '[http]\nmethods = ["GET", "DELETE"]\n', fs(ws), http(env.api.url))
    script = f"{curl(f'{env.api.url}/anything/ok', 'DELETE')}; echo; {curl(f'{env.api.url}/anything/ok')}"
    action = submit(env.d, s.id, code(script, resources=["api"]), APPROVAL)
    assert stdout(action).split() == ["403", "200"]
    refusal = next(r for r in action.egress if r.method == "DELETE")
    assert "http.methods" in refusal.reason and "the daemon's policy" in refusal.reason
    assert "DELETE /anything/ok" not in env.api.requests


# ---------------------------------------------------------------- keys a session does not have at all


@pytest.mark.parametrize("key", ["allowed_addresses", "allowed_hosts"])
def test_daemon_only_egress_settings_are_not_policy_keys(env: Env, ws: Path, key: str) -> None:
    before = session_count(env.d)
    got, msg = status_of(lambda: create(env.d, f'[egress]\n{key} = ["0.0.0.0/0"]\n', fs(ws)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and f"egress.{key}" in msg and "unknown key" in msg, msg
    no_session_left(env.d, before)


# ---------------------------------------------------------------- class 8: hostile policy text


@pytest.mark.parametrize("nested", ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a=" * 5000 + "1" + "}" * 5000])
def test_a_policy_nested_thousands_deep_is_invalid_argument_and_opens_nothing(env: Env, ws: Path, nested: str) -> None:
    before = session_count(env.d)
    got, msg = status_of(lambda: create(env.d, nested, fs(ws)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "policy_toml: line 1" in msg and "nested too deeply" in msg, msg
    no_session_left(env.d, before)
    checked = env.d.admin.CheckPolicy(adpb.CheckPolicyRequest(toml=nested), timeout=30)
    assert not checked.ok and "nested too deeply" in checked.errors[0].message


def test_a_policy_over_the_size_cap_is_invalid_argument_naming_the_field(env: Env, ws: Path) -> None:
    big = "# padding\n" * (MAX_POLICY_BYTES // 10 + 1)
    before = session_count(env.d)
    got, msg = status_of(lambda: create(env.d, big, fs(ws)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "policy_toml" in msg and str(MAX_POLICY_BYTES) in msg, msg
    no_session_left(env.d, before)
    got, msg = status_of(lambda: env.d.admin.CheckPolicy(adpb.CheckPolicyRequest(toml=big), timeout=30))
    assert got == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("toml:"), msg
    assert env.d.admin.CheckPolicy(adpb.CheckPolicyRequest(toml=big[: MAX_POLICY_BYTES - 10]), timeout=30).ok
