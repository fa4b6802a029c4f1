"""Secrets used by sandboxed actions through goexd's egress proxy, and the leak scan.

Secrets are planted in the vault; actions try to print, echo and encode them; then every place
a value could end up is scanned for it: stdout/stderr (results and the live stream), the
journal, the daemon's log, and every object in the snapshot store. Zero hits.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpbin
import pytest
from werkzeug.serving import make_server

import goex
from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, status_of

API = b"api-Tk9fQ2x7Lm4pR8sW"  # bearer, header injection by default
CLI = b"cli-Zq3vB6nY1hJ5dX0c"  # env opt-in: the only way a value enters a sandbox
PASSWORD = b"pw-Hs7Kd2Lq9Vn4"  # basic auth password


@pytest.fixture(scope="module")
def httpbin_port() -> Iterator[int]:
    server = make_server("127.0.0.1", 0, httpbin.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join()


def plant(d: DaemonProcess, port: int) -> None:
    host = f"http://127.0.0.1:{port}"  # plain http: only an explicit http:// entry allows it

    def put(name: str, kind: int, injection: spb.Injection | None = None, **values: bytes) -> None:
        info = spb.SecretInfo(name=name, kind=kind, allowed_hosts=[host])  # type: ignore[arg-type]
        if injection is not None:
            info.injection.CopyFrom(injection)
        req = spb.PutSecretRequest(info=info)
        if list(values) == ["value"]:
            req.value = values["value"]
        else:
            for k, v in values.items():
                req.values[k] = v
        d.secrets.PutSecret(req)

    put("api", spb.SECRET_KIND_BEARER, value=API)
    put("cli", spb.SECRET_KIND_API_KEY, spb.Injection(env=spb.EnvInjection(variable="CLI_TOKEN")), value=CLI)
    put("svc", spb.SECRET_KIND_BASIC, username=b"bob", password=PASSWORD)
    nowhere = spb.SecretInfo(name="nowhere", kind=spb.SECRET_KIND_API_KEY)  # no allowed host
    d.secrets.PutSecret(spb.PutSecretRequest(info=nowhere, value=b"nowhere-value-1"))


def python(d: DaemonProcess, session_id: str, code: str, secrets: list[str], hosts: list[str] = ()) -> pb.Action:  # type: ignore[assignment]
    spec = pb.ActionSpec(python=pb.PythonAction(code=code), egress=pb.Egress(secrets=secrets, hosts=list(hosts)))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session_id, spec=spec)).action


FETCH = """
import json, sys, urllib.request
def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
"""


def forms(value: bytes) -> list[bytes]:
    return [
        value,
        base64.b64encode(value),
        value.hex().encode(),
        urllib.parse.quote(value).encode(),
    ]


def leaks(blob: bytes) -> list[str]:
    return [f"{v!r} as {f!r}" for v in (API, CLI, PASSWORD) for f in forms(v) if f in blob]


def snapshot_objects(state_dir: Path) -> bytes:
    """Every object of every snapshot repository, decompressed."""
    out = b""
    for repo in (state_dir / "fs").glob("*.git"):
        out += subprocess.run(
            ["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True,
            check=True,
        ).stdout
    return out


def test_actions_use_secrets_they_never_see_and_no_value_leaks_anywhere(
    daemon: DaemonProcess, httpbin_port: int, workspace: Path
) -> None:
    plant(daemon, httpbin_port)
    session = open_fs(daemon, workspace)
    base = f"http://127.0.0.1:{httpbin_port}"

    # 1. The proxy adds the bearer header; httpbin echoes it; the sandbox gets it redacted and saves it.
    fetched = python(
        daemon,
        session.id,
        FETCH
        + f"""
status, body = get("{base}/headers")
print(status)
print(body)
open("echo.json", "w").write(body)
status, body = get("{base}/get", {{"X-Other": "goex-secret:svc"}})
print("basic", status)
""",
        ["api"],
    )
    assert fetched.state == pb.ACTION_STATE_EXECUTED, fetched.error
    out = fetched.exec.stdout
    assert out.startswith(b"200\n") and b"Bearer [secret:api]" in out
    assert b"[secret:api]" in (workspace / "echo.json").read_bytes()
    [record, refused] = fetched.egress
    assert record.decision == pb.EGRESS_DECISION_ALLOWED and record.status == 200
    assert list(record.secrets_used) == ["api"] and record.url == f"{base}/headers"
    # svc was not declared by the action: its placeholder is refused, nothing goes upstream.
    assert refused.decision == pb.EGRESS_DECISION_REFUSED and "svc" in refused.reason
    assert b"basic 403" in out

    # 2. A declared basic secret is added as its header; the echo of user:password comes back redacted.
    basic = python(daemon, session.id, FETCH + f'\nprint(get("{base}/headers")[1])\n', ["svc"])
    assert b'"Authorization": "Basic ' in basic.exec.stdout and b"[secret:svc]" in basic.exec.stdout

    # 3. An env-injected secret (explicit opt-in) is in the process; every way of printing it is redacted.
    printed = python(
        daemon,
        session.id,
        """
import base64, os, sys, urllib.parse
v = os.environ["CLI_TOKEN"]
print(v); print(base64.b64encode(v.encode()).decode()); print(v.encode().hex())
print(urllib.parse.quote(v)); print("x:" + v, file=sys.stderr)
for ch in v: sys.stdout.write(ch); sys.stdout.flush()
print()
raise SystemExit("failing with " + v)
""",
        ["cli"],
    )
    assert printed.exec.exit_code == 1
    assert printed.exec.stdout.count(b"[secret:cli]") == 5 and b"[secret:cli]" in printed.exec.stderr

    # 4. A placeholder towards a host the secret is not allowed for is refused and recorded.
    elsewhere = python(
        daemon,
        session.id,
        FETCH + '\nprint(get("http://example.invalid/x", {"X-Key": "goex-secret:api"}))\n',
        ["api"],
    )
    [rec] = elsewhere.egress
    assert rec.decision == pb.EGRESS_DECISION_REFUSED and rec.host == "example.invalid"
    assert "api" in rec.reason and b"403" in elsewhere.exec.stdout

    # Live output of a watched action goes through the same redaction.
    detached = daemon.actions.SubmitAction(
        apb.SubmitActionRequest(
            session_id=session.id,
            detach=True,
            spec=pb.ActionSpec(
                python=pb.PythonAction(code="import os; print(os.environ['CLI_TOKEN'], flush=True)"),
                egress=pb.Egress(secrets=["cli"]),
            ),
        )
    ).action
    live = b"".join(e.output.data for e in daemon.actions.WatchAction(apb.WatchActionRequest(action_id=detached.id)))

    # The scan: results, the live stream, journal, log, snapshot store.
    results = daemon.actions.ListActions(apb.ListActionsRequest(session_id=session.id)).SerializeToString()
    journal = b"".join(p.read_bytes() for p in daemon.state_dir.glob("journal.sqlite3*"))
    places = {
        "results": results,
        "live output": live,
        "journal": journal,
        "log": daemon.log_path.read_bytes(),
        "snapshot store": snapshot_objects(daemon.state_dir),
        "workspace": b"".join(p.read_bytes() for p in workspace.rglob("*") if p.is_file()),
    }
    assert b"[secret:cli]" in live
    assert len(places["snapshot store"]) > 1000  # the scan did read the objects
    assert {name: leaks(blob) for name, blob in places.items() if leaks(blob)} == {}


def test_egress_refusals_happen_before_anything_runs(daemon: DaemonProcess, httpbin_port: int, workspace: Path) -> None:
    plant(daemon, httpbin_port)
    session = open_fs(daemon, workspace)
    cases = [
        (["nowhere"], [], grpc.StatusCode.PERMISSION_DENIED, "secret 'nowhere' is allowed for no host"),
        (["missing"], [], grpc.StatusCode.NOT_FOUND, "secret 'missing' not found"),
        (["a/b"], [], grpc.StatusCode.INVALID_ARGUMENT, "spec.egress.secrets[0]"),
        ([], ["api.example.com"], grpc.StatusCode.PERMISSION_DENIED, "egress.hosts"),
        ([], ["http://x/"], grpc.StatusCode.INVALID_ARGUMENT, "spec.egress.hosts[0]"),
    ]
    for secrets, hosts, code, words in cases:
        got, msg = status_of(lambda s=secrets, h=hosts: python(daemon, session.id, "print(1)", s, h))
        assert got == code and words in msg, (got, msg)
    listed = daemon.actions.ListActions(apb.ListActionsRequest(session_id=session.id)).actions
    # Bad input leaves no trace; the policy's refusal of a host is recorded as a BLOCKED action that never ran.
    assert [(a.state, "policy rule egress.hosts" in a.error) for a in listed] == [(pb.ACTION_STATE_BLOCKED, True)]
    assert list(listed[0].egress) == [] and not listed[0].HasField("exec")


def test_without_egress_there_is_no_network(daemon: DaemonProcess, httpbin_port: int, workspace: Path) -> None:
    session = open_fs(daemon, workspace)
    code = f'\ntry:\n    get("http://127.0.0.1:{httpbin_port}/get")\nexcept OSError as e:\n    print("no", e)\n'
    spec = pb.ActionSpec(python=pb.PythonAction(code=FETCH + code))
    action = daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=session.id, spec=spec)).action
    assert action.exec.stdout.startswith(b"no ") and list(action.egress) == []


def test_clients_run_shell_and_run_python_with_secrets(
    daemon: DaemonProcess, httpbin_port: int, workspace: Path
) -> None:
    plant(daemon, httpbin_port)
    url = f"http://127.0.0.1:{httpbin_port}/headers"
    code = f"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())"
    with goex.Client(daemon.socket) as client:
        s = client.create_session(fs=workspace)
        shell = client.run_shell(s.id, ["python3", "-c", code], secrets=["api"])
        plain = client.run_python(s.id, code)  # no egress: no network at all
    assert b"Bearer [secret:api]" in shell.exec.stdout
    assert [(r.method, r.url, r.decision, r.secrets_used) for r in shell.egress] == [
        ("GET", url, goex.EgressDecision.ALLOWED, ("api",))
    ]
    assert plain.exec.exit_code != 0 and plain.egress == ()

    async def run_async() -> goex.Action:
        async with goex.AsyncClient(daemon.socket) as aclient:
            return await aclient.run_python(s.id, code, secrets=["svc"])

    basic = asyncio.run(run_async())
    assert b'"Authorization": "Basic ' in basic.exec.stdout and basic.egress[0].secrets_used == ("svc",)


def test_a_sandbox_with_egress_sees_no_key_vault_or_other_route(
    daemon: DaemonProcess, httpbin_port: int, workspace: Path
) -> None:
    plant(daemon, httpbin_port)
    session = open_fs(daemon, workspace)
    other = python(daemon, session.id, "import time; time.sleep(3)", ["api"])  # runs first; its route is closed
    assert other.state == pb.ACTION_STATE_EXECUTED
    state = daemon.state_dir
    assert daemon.proc is not None
    daemon_environ = f"/proc/{daemon.proc.pid}/environ"  # the sandbox has its own pid namespace
    code = f"""
import os
for p in ["{state}/vault.key", "{state}/vault.bin", "{state}/journal.sqlite3", "{daemon_environ}"]:
    try:
        open(p, "rb").read(1)
        print("READ", p)
    except OSError as e:
        print("no", p, type(e).__name__)
print(sorted(os.listdir("/run/goex")), sorted(os.listdir("/tmp")))
print(sorted(k for k in os.environ if "PASS" in k or "KEY" in k))
"""
    action = python(daemon, session.id, code, ["api"])
    out = action.exec.stdout.decode()
    assert "READ" not in out and out.count("no ") == 4, out
    # Only the CA: the route's socket reaches the forwarder as an inherited O_PATH descriptor (sandbox/bwrap.py),
    # so no socket path of it, or of other actions' routes, is in the sandbox.
    # /tmp is the sandbox's own: empty but for the top of the workspace's real path when it lies under /tmp.
    resolved = workspace.resolve()
    top = [resolved.parts[2]] if resolved.parts[1:2] == ("tmp",) and len(resolved.parts) > 3 else []
    assert f"['ca.pem'] {top}" in out, (top, out)
    assert out.rstrip().endswith("[]")  # no passphrase or key variable reached the sandbox
