"""Class 6 of issue 13: sandboxed code trying to get a secret's value back through the egress proxy.

The sandbox holds only placeholders (`goex-secret:NAME`). An upstream the action may reach and
that echoes what it gets (httpbin's /headers and /anything; here also an echo that hands the
request back reversed, rot13'd, spaced out and gzip+base64'd, forms the redactor does not know)
would return the value to the code if the proxy put it anywhere the upstream echoes. So a value
goes only where its secret says, and a placeholder anywhere else is refused before anything is
sent. Each attack asserts the 403, the refusal in the action's egress records, that no request
of it reached either server, and that nothing the code could decode from any answer is the
value. A control sends the value where its secret says, to the same transforming echo, and the
code does rebuild it there: the decoding works, so the refusals are what kept it out.

Also: a host entry without a scheme or port is https on 443 (values once went in clear text to
any port of the host); plain http needs an `http://` entry. And no record field grows with what
the code sends: the URL and header values in a record are cut short, saying so.

Every test runs against a real goexd as root and as an unprivileged user (tests/security/conftest.py).
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import gzip
import io
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpbin
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.conftest import MODES, make_workspace, sec_session, start_daemon

API = "api-" + secrets.token_hex(12)  # bearer, allowed (http://) for httpbin and the echo
QKEY = "qk-" + secrets.token_hex(12)  # injected as query parameter "key"
BINONLY = "bo-" + secrets.token_hex(12)  # bearer, allowed for httpbin only
BARE = "ba-" + secrets.token_hex(12)  # stored for "127.0.0.1": https on 443, nothing else
BAREPORT = "bp-" + secrets.token_hex(12)  # stored for "127.0.0.1:<httpbin port>": https only
VALUES = {"api": API, "qkey": QKEY, "binonly": BINONLY, "bare": BARE, "bareport": BAREPORT}
CASE_HEADER = "X-Case"  # each request names its case, so the servers' logs say which ones arrived


# ---------------------------------------------------------------- the upstreams


@dataclass
class Server:
    port: int
    received: list[str] = field(default_factory=list)  # each request as text: request line, headers, body

    def cases(self) -> set[int]:
        return {int(m) for text in self.received for m in re.findall(rf"(?im)^{CASE_HEADER}: (\d+)$", text)}

    def got(self, value: str) -> bool:
        return any(value in text for text in self.received)


def _as_text(environ: dict[str, Any]) -> tuple[str, bytes]:
    req = Request(environ)
    body = req.get_data()
    head = f"{req.method} {environ.get('REQUEST_URI', req.full_path)}\n"
    head += "".join(f"{k}: {v}\n" for k, v in req.headers.items())
    return head + "\n" + body.decode("latin-1"), body


def _logging_httpbin(server: Server) -> Callable[..., Any]:
    """httpbin as it is, with every request it gets written down first."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        text, body = _as_text(environ)
        server.received.append(text)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return httpbin.app(environ, start_response)

    return app


def _transforming_echo(server: Server) -> Callable[..., Any]:
    """Answers with the whole request in forms the redactor does not know."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        text, _ = _as_text(environ)
        server.received.append(text)
        raw = text.encode("latin-1")
        out = {
            "reversed": text[::-1],
            "rot13": codecs.encode(text, "rot13"),
            "spaced": " ".join(text),
            "b64gzip": base64.b64encode(gzip.compress(raw)).decode(),
        }
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(out).encode()]

    return app


@contextlib.contextmanager
def serving(make_app: Callable[[Server], Callable[..., Any]]) -> Iterator[Server]:
    server = Server(0)
    wsgi = make_server("127.0.0.1", 0, make_app(server), threaded=True)
    server.port = wsgi.server_port
    thread = threading.Thread(target=wsgi.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        wsgi.shutdown()
        thread.join()


@dataclass(frozen=True)
class Upstreams:
    httpbin: Server
    echo: Server
    other: Server  # a third port of the same host, reachable only when granted


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with serving(_logging_httpbin) as b, serving(_transforming_echo) as e, serving(_transforming_echo) as o:
        yield Upstreams(b, e, o)


# ---------------------------------------------------------------- the daemon and its vault


@dataclass(frozen=True)
class Env:
    d: DaemonProcess
    ws: Path
    session: str
    up: Upstreams


def _plant(d: DaemonProcess, up: Upstreams) -> None:
    both = [f"http://127.0.0.1:{up.httpbin.port}", f"http://127.0.0.1:{up.echo.port}"]

    def put(name: str, hosts: list[str], injection: spb.Injection | None = None) -> None:
        info = spb.SecretInfo(name=name, kind=spb.SECRET_KIND_BEARER, allowed_hosts=hosts)
        if injection is not None:
            info.kind = spb.SECRET_KIND_API_KEY
            info.injection.CopyFrom(injection)
        d.secrets.PutSecret(spb.PutSecretRequest(info=info, value=VALUES[name].encode()))

    put("api", both)
    put("qkey", both, spb.Injection(query=spb.QueryInjection(param="key")))
    put("binonly", both[:1])
    put("bare", ["127.0.0.1"])
    put("bareport", [f"127.0.0.1:{up.httpbin.port}"])


@pytest.fixture(scope="module", params=MODES)
def env(request: pytest.FixtureRequest, upstreams: Upstreams) -> Iterator[Env]:
    # Code may reach httpbin and the third port without a secret only when an action grants them.
    granted = [f"127.0.0.1:{upstreams.httpbin.port}", f"127.0.0.1:{upstreams.other.port}"]
    config = f"[egress]\nallowed_hosts = {json.dumps(granted)}\n"
    with start_daemon(request.param, config, allowed_addresses=("127.0.0.1/32",)) as d:
        _plant(d, upstreams)
        with make_workspace(d.uid, d.gid) as ws:
            yield Env(d, ws, sec_session(d, ws), upstreams)


# ---------------------------------------------------------------- what the code does

# Sends each request, keeps what came back, and writes down everything it can decode from it
# (into the workspace, which goexd does not redact: the test reads what the code would have).
CLIENT = r"""
import base64, codecs, gzip, json, sys, urllib.request

def decodings(text):
    out = [text]
    try:
        doc = json.loads(text)
    except ValueError:
        return out
    if isinstance(doc, dict) and "reversed" in doc:
        out += [doc["reversed"][::-1], codecs.decode(doc["rot13"], "rot13"), doc["spaced"][::2]]
        out.append(gzip.decompress(base64.b64decode(doc["b64gzip"])).decode("latin-1"))
    return out

answers = []
for i, case in enumerate(json.loads(sys.argv[1])):
    headers = {"X-Case": str(case["case"]), **case.get("headers", {})}
    data = case["body"].encode() if "body" in case else None
    req = urllib.request.Request(case["url"], data=data, headers=headers, method=case.get("method", "GET"))
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            status, body = r.status, r.read().decode("latin-1")
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode("latin-1")
    open(f"loot-{case['case']}.txt", "w").write("\n".join(decodings(body)))
    answers.append({"case": case["case"], "status": status, "body": body[:300]})
print(json.dumps(answers))
"""


def attack(
    e: Env,
    cases: list[dict[str, Any]],
    secrets_: list[str],
    hosts: list[str] = (),  # type: ignore[assignment]
) -> tuple[pb.Action, dict[int, dict[str, Any]]]:
    """One action sending `cases`; returns it and each case's answer (status, start of the body)."""
    code = CLIENT.replace("json.loads(sys.argv[1])", f"json.loads({json.dumps(json.dumps(cases))})")
    spec = pb.ActionSpec(python=pb.PythonAction(code=code), egress=pb.Egress(secrets=secrets_, hosts=list(hosts)))
    spec.limits.timeout.FromSeconds(60)
    action = e.d.actions.SubmitAction(apb.SubmitActionRequest(session_id=e.session, spec=spec), timeout=120).action
    assert action.state == pb.ACTION_STATE_EXECUTED and action.exec.exit_code == 0, (action.error, action.exec)
    answers = {a["case"]: a for a in json.loads(action.exec.stdout)}
    assert sorted(answers) == sorted(c["case"] for c in cases)
    return action, answers


def loot(e: Env, case: int) -> str:
    return (e.ws / f"loot-{case}.txt").read_text(encoding="latin-1")


def record_of(action: pb.Action, case: int) -> pb.EgressRecord:
    [rec] = [r for r in action.egress if r.request_headers.get("x-case") == str(case)]
    return rec


def assert_refused(e: Env, action: pb.Action, answers: dict[int, dict[str, Any]], case: int, *words: str) -> None:
    answer = answers[case]
    assert answer["status"] == 403 and answer["body"].startswith("goex egress proxy: refused:"), answer
    rec = record_of(action, case)
    assert rec.decision == pb.EGRESS_DECISION_REFUSED and rec.status == 0, rec
    for word in words:
        assert word.lower() in rec.reason.lower(), (word, rec.reason)  # urllib sends "X-other" for "X-Other"
    assert not any(value in loot(e, case) for value in VALUES.values())


# ---------------------------------------------------------------- placeholders where no value goes


def test_a_placeholder_anywhere_but_its_own_header_is_refused_and_never_sent(env: Env) -> None:
    bin_, echo = (f"http://127.0.0.1:{p.port}" for p in (env.up.httpbin, env.up.echo))
    attacks: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        ({"url": f"{bin_}/headers", "headers": {"X-Other": "goex-secret:api"}}, ("in header X-Other",)),
        ({"url": f"{bin_}/anything", "headers": {"X-Other": "Bearer goex-secret%3Aapi"}}, ("header X-Other",)),
        ({"url": f"{bin_}/anything", "method": "POST", "body": '{"t": "goex-secret:api"}'}, ("request body",)),
        ({"url": f"{bin_}/anything/goex-secret:api"}, ("URL path",)),
        ({"url": f"{bin_}/base64/goex-secret%3Aapi"}, ("URL path",)),
        ({"url": f"{bin_}/anything?other=goex-secret:api"}, ("query parameter other",)),
        ({"url": f"{bin_}/anything?key=goex-secret:api"}, ("query parameter key", "only into header Authorization")),
        (
            {"url": f"{bin_}/anything?other=goex-secret:qkey"},
            ("query parameter other", "only into query parameter key"),
        ),
        ({"url": f"{bin_}/headers", "headers": {"X-Key": "goex-secret:qkey"}}, ("header X-Key",)),
        ({"url": f"{echo}/x", "headers": {"X-Other": "goex-secret:api"}}, ("header X-Other",)),
        ({"url": f"{echo}/x", "method": "PUT", "body": "goex-secret:api"}, ("request body",)),
        ({"url": f"{echo}/goex-secret:api"}, ("URL path",)),
        ({"url": f"{echo}/x?q=goex-secret:api"}, ("query parameter q",)),
        # Its own header, but to a host the secret is not meant for.
        ({"url": f"{echo}/x", "headers": {"Authorization": "Bearer goex-secret:binonly"}}, ("may not be sent",)),
        # Not declared by the action at all.
        ({"url": f"{echo}/x", "headers": {"Authorization": "goex-secret:bare"}}, ("not declared",)),
    ]
    cases = [{**req, "case": i} for i, (req, _) in enumerate(attacks)]
    action, answers = attack(env, cases, ["api", "qkey", "binonly"])
    for i, (_, words) in enumerate(attacks):
        assert_refused(env, action, answers, i, *words)
    # Nothing of any attack reached either server.
    assert env.up.httpbin.cases() & set(answers) == set() and env.up.echo.cases() & set(answers) == set()


def test_control_where_its_secret_says_the_value_goes_and_only_the_redaction_stands_between(env: Env) -> None:
    """The value does reach the echo in its own header, and the code does rebuild it from the
    transformed echo: the decoding works, so the refusals above are what kept the value out.
    (An upstream the secret is meant for is trusted with it: see docs/security.md.)"""
    bin_, echo = (f"http://127.0.0.1:{p.port}" for p in (env.up.httpbin, env.up.echo))
    cases = [
        {"case": 100, "url": f"{bin_}/headers"},  # the declared header, added by the proxy
        {"case": 101, "url": f"{bin_}/anything", "headers": {"Authorization": "Token goex-secret:api"}},
        {"case": 102, "url": f"{bin_}/anything?x=1&key=goex-secret:qkey"},
        {"case": 103, "url": f"{echo}/x"},
    ]
    action, answers = attack(env, cases, ["api", "qkey"])
    assert all(a["status"] == 200 for a in answers.values()), answers
    headers = _first_json(loot(env, 100))["headers"]
    assert headers["Authorization"] == "Bearer [secret:api]"  # httpbin echoed it; the proxy redacted it
    assert _first_json(loot(env, 101))["headers"]["Authorization"] == "Token [secret:api]"
    assert _first_json(loot(env, 102))["args"] == {"x": "1", "key": "[secret:qkey]"}
    assert env.up.httpbin.got(f"Bearer {API}") and env.up.httpbin.got(f"Token {API}") and env.up.httpbin.got(QKEY)
    assert API in loot(env, 103)  # rebuilt from the forms the redactor does not know
    assert {record_of(action, c).decision for c in answers} == {pb.EGRESS_DECISION_ALLOWED}
    assert list(record_of(action, 103).secrets_used) == ["api", "qkey"]


def _first_json(text: str) -> dict[str, Any]:
    return dict(json.JSONDecoder().raw_decode(text)[0])


# ---------------------------------------------------------------- scheme and port


def test_a_host_without_scheme_or_port_is_https_on_its_default_port_only(env: Env) -> None:
    bin_ = f"http://127.0.0.1:{env.up.httpbin.port}"
    other = f"http://127.0.0.1:{env.up.other.port}"
    granted = [f"127.0.0.1:{env.up.httpbin.port}", f"127.0.0.1:{env.up.other.port}"]
    # Not reachable through the secret: "127.0.0.1" is https to port 443, "127.0.0.1:port" https to that port.
    action, answers = attack(env, [{"case": 200, "url": f"{bin_}/headers"}], ["bare", "bareport"])
    assert_refused(env, action, answers, 200, "not reachable")
    # Reachable because the action was granted the host: the secrets are still not added ...
    cases = [
        {"case": 201, "url": f"{bin_}/headers"},
        {"case": 202, "url": f"{other}/x"},
        # ... and a placeholder in their own header is refused, naming the rule.
        {"case": 203, "url": f"{bin_}/headers", "headers": {"Authorization": "Bearer goex-secret:bareport"}},
        {"case": 204, "url": f"{bin_}/headers", "headers": {"Authorization": "Bearer goex-secret:bare"}},
    ]
    action, answers = attack(env, cases, ["bare", "bareport"], granted)
    assert answers[201]["status"] == 200 and "Authorization" not in _first_json(loot(env, 201))["headers"]
    assert answers[202]["status"] == 200 and "Authorization" not in loot(env, 202)
    assert [list(record_of(action, c).secrets_used) for c in (201, 202)] == [[], []]
    assert_refused(env, action, answers, 203, "may not be sent to http://127.0.0.1", "plain http needs an http://")
    assert_refused(env, action, answers, 204, "may not be sent to http://127.0.0.1")
    # An explicit http:// entry covers its own port, not the host's other ports.
    cases = [
        {"case": 205, "url": f"{other}/x"},
        {"case": 206, "url": f"{other}/x", "headers": {"Authorization": "Bearer goex-secret:api"}},
    ]
    action, answers = attack(env, cases, ["api"], granted)
    assert answers[205]["status"] == 200 and "Authorization" not in loot(env, 205)
    assert_refused(env, action, answers, 206, f"may not be sent to http://127.0.0.1:{env.up.other.port}")
    for value in (BARE, BAREPORT, API):
        assert not env.up.other.got(value)
    assert not env.up.httpbin.got(BARE) and not env.up.httpbin.got(BAREPORT)


def test_an_explicit_http_entry_sends_the_value_in_clear_text_to_that_port(env: Env) -> None:
    bin_ = f"http://127.0.0.1:{env.up.httpbin.port}"
    action, answers = attack(env, [{"case": 300, "url": f"{bin_}/headers"}], ["binonly"])
    assert answers[300]["status"] == 200
    assert _first_json(loot(env, 300))["headers"]["Authorization"] == "Bearer [secret:binonly]"
    assert env.up.httpbin.got(f"Bearer {BINONLY}") and list(record_of(action, 300).secrets_used) == ["binonly"]


# ---------------------------------------------------------------- bounded records


def test_no_record_field_grows_with_what_the_code_sends(env: Env) -> None:
    bin_ = f"http://127.0.0.1:{env.up.httpbin.port}"
    big = "x" * 20_000
    cases = [
        {"case": 400, "url": f"{bin_}/response-headers?X-Big={big}", "headers": {"X-Big": big}},
    ]
    action, answers = attack(env, cases, [], [f"127.0.0.1:{env.up.httpbin.port}"])
    assert answers[400]["status"] == 200
    rec = record_of(action, 400)
    for text in (rec.url, rec.request_headers["x-big"], rec.response.headers["x-big"]):
        assert len(text) < 4200 and re.search(r"… \[truncated \d+ bytes\]$", text), text[-80:]
    assert rec.url.startswith(f"{bin_}/response-headers?X-Big=xxx")
