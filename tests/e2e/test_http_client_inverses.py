"""HTTP client inverses checked like derived ones, TestReversibility on http resources, and the policy on
client inverses: through a real goexd against real json-servers on loopback (one for the service, a
second one as its staging copy).

The corpus (tests/corpus/http.toml) is data: each case's action runs with the right inverse, then on a
fresh service with the wrong one; the undo must say verified / not verified / unverified as the case
says, and the service's real state must agree with what was said."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.corpus.http_cases import HttpCall, HttpCase, load
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_cli_sql import goex as goex_cli
from tests.services.json_server import JsonServer, run_json_server

SEED, CASES = load()
VERDICT_WORD = {pb.VERDICT_PASSED: "verified", pb.VERDICT_FAILED: "not verified", pb.VERDICT_UNKNOWN: "unverified"}

# The corpus's rule set "creates-only" (tests/corpus/rules/): creates deleted but never checked, an outbox that sends.
RULES_DIR = Path(__file__).resolve().parents[1] / "corpus" / "rules"


def _daemon(root: Path, rules: Path, policy: str = "") -> DaemonProcess:
    root.mkdir(parents=True)
    env = {"GOEXD_HTTP__RULES_DIRS": str(rules)}
    if policy:
        (root / "policy.toml").write_text(policy)
        env["GOEXD_POLICY__FILE"] = str(root / "policy.toml")
    return DaemonProcess(root, env=env).start()


def _stop(d: DaemonProcess) -> None:
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture(scope="module")
def rules_dir() -> Path:
    return RULES_DIR


@pytest.fixture(scope="module")
def goexd(tmp_path_factory: pytest.TempPathFactory, rules_dir: Path) -> Iterator[DaemonProcess]:
    d = _daemon(tmp_path_factory.mktemp("goexd") / "d", rules_dir)
    yield d
    _stop(d)


def _server(tmp_path: Path, name: str) -> Any:
    return run_json_server(tmp_path / name, json.loads(json.dumps(SEED)))


def state(server: JsonServer) -> dict[str, list[dict[str, Any]]]:
    """The service's collections, each sorted by id (a re-created item comes back at the end)."""
    db = server.db()
    return {k: sorted(v, key=lambda i: i["id"]) for k, v in db.items()}


def open_http(d: DaemonProcess, url: str, *, rules: str = "", staging: str = "", policy: str = "") -> pb.Session:
    spec = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=url, rules=rules, staging_base_url=staging))
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec], policy_toml=policy)).session


def close(d: DaemonProcess, session_id: str) -> None:
    d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=session_id, mode=sepb.CLOSE_MODE_COMMIT_ALL))


def spec_of(call: HttpCall) -> pb.ActionSpec:
    http = pb.HttpAction(method=call.method, path=call.path)
    if call.json is not None:
        http.json = call.json
    return pb.ActionSpec(http=http)


def submit(
    d: DaemonProcess, session_id: str, call: HttpCall, inverse: HttpCall | None, approval: str = ""
) -> pb.Action:
    req = apb.SubmitActionRequest(session_id=session_id, spec=spec_of(call), approval=approval)
    if inverse is not None:
        req.inverse.CopyFrom(spec_of(inverse))
    return d.actions.SubmitAction(req).action


def undo(d: DaemonProcess, session_id: str, action_id: str) -> pb.Action:
    return d.actions.UndoAction(apb.UndoActionRequest(session_id=session_id, action_id=action_id)).undone[-1]


def reversibility_of(d: DaemonProcess, session_id: str, call: HttpCall, inverse: HttpCall | None) -> pb.Reversibility:
    req = apb.TestReversibilityRequest(session_id=session_id, spec=spec_of(call))
    if inverse is not None:
        req.inverse.CopyFrom(spec_of(inverse))
    return d.actions.TestReversibility(req).reversibility


def _run_one(d: DaemonProcess, server: JsonServer, case: HttpCase, inverse: HttpCall) -> tuple[str, pb.Action]:
    """The case's action with `inverse` attached, then undone: the verdict the undo reported, and the action."""
    session = open_http(d, server.base_url, rules=case.rules)
    try:
        done = submit(d, session.id, case.action, inverse, case.approval)
        assert done.state == pb.ACTION_STATE_EXECUTED, (case.name, done.error)
        assert done.inverse.http.method == inverse.method and done.inverse.http.path == inverse.path
        assert done.reversibility.verdict == pb.VERDICT_UNTESTED  # run, never tried first: no staging copy
        undone = undo(d, session.id, done.id)
        assert undone.state == pb.ACTION_STATE_UNDONE, (case.name, undone)
        return VERDICT_WORD[undone.reversibility.verdict], undone
    finally:
        close(d, session.id)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_right_inverses_are_verified_wrong_ones_are_not(
    goexd: DaemonProcess, tmp_path: Path, case: HttpCase
) -> None:
    with _server(tmp_path, "right") as server:
        said, undone = _run_one(goexd, server, case, case.right)
        assert said == case.right_verdict, (case.name, undone.reversibility.detail)
        assert state(server) == state_of_seed(), case.name  # the right inverse did restore it, whatever was said
    with _server(tmp_path, "wrong") as server:
        said, undone = _run_one(goexd, server, case, case.wrong)
        assert said == case.wrong_verdict, (case.name, undone.reversibility.detail)
        # Never "verified" while the service is left changed: every wrong inverse here leaves it so.
        assert state(server) != state_of_seed(), case.name
    if case.wrong_verdict == "not verified":
        assert (
            "should be gone" in undone.reversibility.detail
            or "differs from the pre-image" in undone.reversibility.detail
        )
    else:
        assert "nothing to compare" in undone.reversibility.detail, undone.reversibility.detail


def state_of_seed() -> dict[str, list[dict[str, Any]]]:
    return {k: sorted(v, key=lambda i: i["id"]) for k, v in SEED.items()}


def test_the_corpus_holds_every_kind_of_wrong_inverse_the_issue_names() -> None:
    wrong = [c for c in CASES if c.wrong_verdict == "not verified"]
    assert len(wrong) >= 15 and len(CASES) == len({c.name for c in CASES})
    kinds = {c.wrong.method for c in wrong}
    assert {"DELETE", "GET", "PATCH", "PUT", "POST"} <= kinds
    assert any(c.wrong.path.split("/")[1] != c.action.path.split("/")[1] for c in wrong)  # another collection
    assert any("unverified" in (c.right_verdict, c.wrong_verdict) for c in CASES)


def test_a_failed_check_says_what_differs(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "s") as server:
        session = open_http(goexd, server.base_url)
        done = submit(
            goexd,
            session.id,
            HttpCall("PATCH", "/items/1", '{"price": 95}'),
            HttpCall("PATCH", "/items/1", '{"price": 100, "sale": true}'),
        )
        assert done.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_REVERSIBLE
        assert "the client's inverse PATCH /items/1, checked when undone" in done.reversibility.detail
        undone = undo(goexd, session.id, done.id)
        assert undone.reversibility.verdict == pb.VERDICT_FAILED
        assert "differs from the pre-image (added: 'sale')" in undone.reversibility.detail, undone.reversibility.detail
        close(goexd, session.id)


def test_nothing_to_undo_is_still_checked(goexd: DaemonProcess, tmp_path: Path) -> None:
    """A rule outcome that says the call changed nothing sends no inverse, but its undo still compares."""
    with _server(tmp_path, "s") as server:
        session = open_http(goexd, server.base_url, rules="creates-only")
        done = submit(goexd, session.id, HttpCall("PATCH", "/users/1", '{"price": 5}'), None)
        assert not done.HasField("inverse") and "claims the call changed nothing" in done.reversibility.detail
        undone = undo(goexd, session.id, done.id)
        assert undone.reversibility.verdict == pb.VERDICT_FAILED, undone.reversibility
        assert undone.reversibility.detail.startswith("nothing to undo: ")
        assert "differs from the pre-image (changed: 'price')" in undone.reversibility.detail
        close(goexd, session.id)


# ---------------------------------------------------------------- TestReversibility


def test_test_reversibility_answers_without_sending_anything(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "s") as server:
        session = open_http(goexd, server.base_url)
        read = reversibility_of(goexd, session.id, HttpCall("GET", "/items"), None)
        assert (read.reversibility_class, read.verdict) == (pb.REVERSIBILITY_CLASS_READ_ONLY, pb.VERDICT_PASSED)
        assert "read-only" in read.detail and read.HasField("tested_at")

        covered = reversibility_of(goexd, session.id, HttpCall("PATCH", "/items/1", '{"price": 1}'), None)
        assert covered.reversibility_class == pb.REVERSIBILITY_CLASS_REVERSIBLE
        assert covered.verdict == pb.VERDICT_UNKNOWN, covered
        detail = covered.detail
        assert "cannot be tried without its side effect" in detail and "names no staging base URL" in detail, detail
        assert "plan (rule rest.update)" in detail and "capture GET /items/1 first" in detail, detail
        # A shape the resource's rule set does not know: the generic fallback behind it plans it.
        nested = reversibility_of(goexd, session.id, HttpCall("DELETE", "/items/1/notes/2"), None)
        assert nested.verdict == pb.VERDICT_UNKNOWN and "plan (rule generic.delete)" in nested.detail, nested.detail
        assert "capture GET /items/1/notes/2 first" in nested.detail
        assert "if replaced: reversible, PUT /{collection}/{id}, checked: the item must answer its pre-image" in detail
        assert "if created: reversible, DELETE /{collection}/{id}, checked: the item must be gone" in detail

        created = reversibility_of(goexd, session.id, HttpCall("POST", "/items", "{}"), HttpCall("DELETE", "/items/4"))
        assert (
            created.verdict == pb.VERDICT_UNKNOWN and created.reversibility_class == pb.REVERSIBILITY_CLASS_REVERSIBLE
        )
        assert created.detail.startswith("not tried: an HTTP call cannot be tried without its side effect"), created
        assert "the client's inverse DELETE /items/4 is checked when undone" in created.detail

        # A client inverse that leaves the base URL is refused as at submit.
        got, msg = status_of(
            lambda: reversibility_of(goexd, session.id, HttpCall("POST", "/items", "{}"), HttpCall("DELETE", "/../x"))
        )
        assert got == grpc.StatusCode.INVALID_ARGUMENT and "inverse.http.path" in msg, msg
        close(goexd, session.id)

        sends = open_http(goexd, server.base_url, rules="creates-only")
        irreversible = reversibility_of(goexd, sends.id, HttpCall("POST", "/outbox", '{"to": "bob"}'), None)
        assert irreversible.reversibility_class == pb.REVERSIBILITY_CLASS_IRREVERSIBLE
        assert irreversible.verdict == pb.VERDICT_UNKNOWN and "no inverse to try" in irreversible.detail
        with_inverse = reversibility_of(
            goexd, sends.id, HttpCall("POST", "/outbox", '{"to": "bob"}'), HttpCall("DELETE", "/outbox/1")
        )
        assert with_inverse.verdict == pb.VERDICT_UNKNOWN
        assert with_inverse.reversibility_class == pb.REVERSIBILITY_CLASS_BEST_EFFORT  # never reversible on its word
        close(goexd, sends.id)

        confined = goexd.sessions.CreateSession(
            sepb.CreateSessionRequest(
                resources=[
                    pb.ResourceSpec(
                        name="api",
                        strategy=pb.UNDO_STRATEGY_CONFINE,
                        http=pb.HttpResourceSpec(base_url=server.base_url),
                    )
                ]
            )
        ).session
        conf = reversibility_of(goexd, confined.id, HttpCall("DELETE", "/items/1"), None)
        assert (conf.reversibility_class, conf.verdict) == (pb.REVERSIBILITY_CLASS_IRREVERSIBLE, pb.VERDICT_UNKNOWN)
        close(goexd, confined.id)
        assert state(server) == state_of_seed()  # nothing was sent


def _reset_item_2(staging: JsonServer) -> None:
    """What a person does to a staging copy goexd could not put back: item 2 as seeded."""
    [item] = [i for i in state_of_seed()["items"] if i["id"] == 2]
    with staging.client() as c:
        assert c.post("/items", json=item).status_code == 201
    assert state(staging) == state_of_seed()


def test_a_staging_copy_tries_the_pair_for_real(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "live") as live, _server(tmp_path, "staging") as staging:
        session = open_http(goexd, live.base_url, staging=staging.base_url)
        [resource] = session.resources
        assert resource.staging_base_url == staging.base_url

        create = HttpCall("POST", "/items", '{"name": "chair", "price": 40}')
        right = reversibility_of(goexd, session.id, create, HttpCall("DELETE", "/items/4"))
        assert right.verdict == pb.VERDICT_PASSED, right.detail
        assert f"on the staging copy {staging.base_url}" in right.detail and "(gone, as expected)" in right.detail
        assert state(staging) == state_of_seed()

        wrong = reversibility_of(goexd, session.id, create, HttpCall("DELETE", "/items/2"))
        assert wrong.verdict == pb.VERDICT_FAILED and "but it should be gone" in wrong.detail, wrong.detail
        # goexd puts the staging copy back from the trial's captures: what the call created is deleted, but item 2,
        # which the wrong inverse deleted, cannot be PUT back (json-server's PUT does not create): not trusted, so
        # a trial there answers unknown until a person resets it.
        assert "could not be put back" in wrong.detail and "GET /items/2" in wrong.detail, wrong.detail
        assert [i["id"] for i in state(staging)["items"]] == [1, 3]
        untrusted = reversibility_of(goexd, session.id, HttpCall("PATCH", "/items/1", '{"price": 1}'), None)
        assert untrusted.verdict == pb.VERDICT_UNKNOWN, untrusted.detail
        assert "the staging copy differs from what a trial left" in untrusted.detail, untrusted.detail
        _reset_item_2(staging)

        # Without a client inverse: the one goexd derives from the staging answer.
        derived = reversibility_of(goexd, session.id, HttpCall("PATCH", "/items/1", '{"price": 1}'), None)
        assert derived.verdict == pb.VERDICT_PASSED and "equals the pre-image" in derived.detail, derived.detail
        bad_put = reversibility_of(
            goexd,
            session.id,
            HttpCall("PATCH", "/items/1", '{"price": 1}'),
            HttpCall("PUT", "/items/1", '{"name": "lamp"}'),
        )
        assert bad_put.verdict == pb.VERDICT_FAILED and "missing: 'price'" in bad_put.detail, bad_put.detail
        refused = reversibility_of(goexd, session.id, HttpCall("PATCH", "/items/99", '{"price": 1}'), None)
        assert refused.verdict == pb.VERDICT_UNKNOWN and "answered the call 404" in refused.detail, refused.detail
        assert state(live) == state_of_seed()  # the service itself never got a call
        close(goexd, session.id)

        # A write carrying the client's inverse is tried on the staging copy first: a failed pair never reaches
        # the service; a passed one runs, and records the trial's verdict beside the class its answer gave.
        with _server(tmp_path, "fresh-staging") as fresh:
            session = open_http(goexd, live.base_url, staging=fresh.base_url)
            blocked = submit(goexd, session.id, create, HttpCall("DELETE", "/items/2"))
            assert blocked.state == pb.ACTION_STATE_BLOCKED, blocked
            assert "its inverse failed the reversibility test" in blocked.error and "should be gone" in blocked.error
            assert state(live) == state_of_seed()
            fresh_ids = [i["id"] for i in state(fresh)["items"]]
            assert fresh_ids == [1, 3]  # the created item deleted; item 2 left for a person to put back
            _reset_item_2(fresh)
            patched = submit(
                goexd,
                session.id,
                HttpCall("PATCH", "/items/1", '{"price": 7}'),
                HttpCall("PATCH", "/items/1", '{"price": 100}'),
            )
            assert patched.state == pb.ACTION_STATE_EXECUTED, patched.error
            rev = patched.reversibility
            assert rev.verdict == pb.VERDICT_PASSED and rev.reversibility_class == pb.REVERSIBILITY_CLASS_REVERSIBLE
            assert "the client's inverse PATCH /items/1, checked when undone" in rev.detail
            assert "; tried first: " in rev.detail and "equals the pre-image" in rev.detail, rev.detail
            assert state(live)["items"][0]["price"] == 7
            assert undo(goexd, session.id, patched.id).reversibility.verdict == pb.VERDICT_PASSED
            assert state(live) == state_of_seed()
            close(goexd, session.id)

        # A staging copy that is down: unknown, and why.
        down = open_http(goexd, live.base_url, staging="http://127.0.0.1:9")
        gone = reversibility_of(goexd, down.id, create, HttpCall("DELETE", "/items/4"))
        assert gone.verdict == pb.VERDICT_UNKNOWN and "not tried on the staging copy" in gone.detail, gone.detail
        close(goexd, down.id)
        assert state(live) == state_of_seed()


def test_what_the_policy_refuses_is_not_tried_on_staging_either(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "live") as live, _server(tmp_path, "staging") as staging:
        policy = '[http]\nmethods = ["GET", "POST", "PATCH"]\nrate_limit = "1/hour"\n'
        session = open_http(goexd, live.base_url, staging=staging.base_url, policy=policy)
        got, msg = status_of(lambda: reversibility_of(goexd, session.id, HttpCall("DELETE", "/items/1"), None))
        assert got == grpc.StatusCode.PERMISSION_DENIED and "[policy rule http.methods]" in msg, msg
        # A test is a question: it does not use up the rate limit the real call then gets.
        for _ in range(2):
            tried = reversibility_of(goexd, session.id, HttpCall("PATCH", "/items/1", '{"price": 1}'), None)
            assert tried.verdict == pb.VERDICT_PASSED, tried.detail
        assert submit(goexd, session.id, HttpCall("PATCH", "/items/1", '{"price": 1}'), None).state == (
            pb.ACTION_STATE_EXECUTED
        )
        assert state(staging) == state_of_seed()
        close(goexd, session.id)


def test_a_bad_staging_url_is_refused_at_open(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "live") as live:
        for staging, words in (
            ("ftp://x", "http.staging_base_url"),
            ("http://user:pw@127.0.0.1:1", "credentials"),
            (live.base_url, "the resource's own base URL"),
        ):
            got, msg = status_of(lambda s=staging: open_http(goexd, live.base_url, staging=s))
            assert got == grpc.StatusCode.INVALID_ARGUMENT and words in msg, (staging, msg)
        got, msg = status_of(lambda: open_http(goexd, live.base_url, staging="http://10.0.0.1:8080"))
        assert got == grpc.StatusCode.PERMISSION_DENIED and "staging_base_url" in msg, msg
        listed = goexd.sessions.ListSessions(sepb.ListSessionsRequest()).sessions
        assert not any(r.uri == live.base_url for s in listed for r in s.resources)  # nothing opened


# ---------------------------------------------------------------- the policy


OUTBOX = HttpCall("POST", "/outbox", '{"to": "bob", "text": "hi"}')


def test_a_client_inverse_does_not_lift_an_irreversible_call(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "s") as server:
        session = open_http(goexd, server.base_url, rules="creates-only")
        for inverse in (HttpCall("DELETE", "/outbox/1"), HttpCall("GET", "/items")):
            got, msg = status_of(lambda i=inverse: submit(goexd, session.id, OUTBOX, i))
            assert got == grpc.StatusCode.PERMISSION_DENIED, msg
            assert "irreversible (its client inverse is not trusted: [http] trust_client_inverses)" in msg, msg
            assert "[policy rule http.irreversible]" in msg
        assert state(server)["outbox"] == []  # nothing was sent
        listed = goexd.actions.ListActions(apb.ListActionsRequest(session_id=session.id)).actions
        assert [a.state for a in listed] == [pb.ACTION_STATE_BLOCKED] * 2
        close(goexd, session.id)


def test_a_policy_that_trusts_client_inverses_lets_them_through(rules_dir: Path, tmp_path: Path) -> None:
    trusting = _daemon(tmp_path / "trusting", rules_dir, "[http]\ntrust_client_inverses = true\n")
    try:
        with _server(tmp_path, "s") as server:
            session = open_http(trusting, server.base_url, rules="creates-only")
            sent = submit(trusting, session.id, OUTBOX, HttpCall("DELETE", "/outbox/1"))
            assert sent.state == pb.ACTION_STATE_EXECUTED and not sent.approval, sent.error
            assert sent.reversibility.reversibility_class == pb.REVERSIBILITY_CLASS_BEST_EFFORT
            assert "nothing to check it against, so its undo is unverified" in sent.reversibility.detail
            undone = undo(trusting, session.id, sent.id)
            assert undone.reversibility.verdict == pb.VERDICT_UNKNOWN, undone.reversibility
            assert state(server)["outbox"] == []
            # Without a client inverse it still needs an approval; a session policy can take the trust back.
            got, msg = status_of(lambda: submit(trusting, session.id, OUTBOX, None))
            assert got == grpc.StatusCode.PERMISSION_DENIED and "http.irreversible" in msg, msg
            close(trusting, session.id)
            strict = open_http(
                trusting,
                server.base_url,
                rules="creates-only",
                policy='[http]\nirreversible = "approval"\ntrust_client_inverses = false\n',
            )
            got, msg = status_of(lambda: submit(trusting, strict.id, OUTBOX, HttpCall("DELETE", "/outbox/1")))
            assert got == grpc.StatusCode.PERMISSION_DENIED and "not trusted" in msg, msg
            close(trusting, strict.id)
            assert state(server)["outbox"] == []
    finally:
        _stop(trusting)


# ---------------------------------------------------------------- the CLI


def test_the_cli_says_verified_not_verified_or_unverified_with_its_exit_status(
    goexd: DaemonProcess, tmp_path: Path
) -> None:
    def cli(*argv: str, code: int = 0) -> str:
        return goex_cli(goexd, tmp_path, *argv, code=code)

    with _server(tmp_path, "s") as server:
        cli("session", "open", "--http", f"api={server.base_url}")
        patch = ("http", "PATCH", "/items/1", "--json", '{"price": 95}', "--inverse-method", "PATCH")
        cli(*patch, "--inverse-path", "/items/1", "--inverse-json", '{"price": 100}')
        assert "  verified: inverse PATCH /items/1 answered 200; GET /items/1 equals the pre-image" in cli("undo")
        cli(*patch, "--inverse-path", "/items/3", "--inverse-json", '{"price": 100}')
        wrong = cli("undo", code=3)
        assert "  NOT verified: inverse PATCH /items/3 answered 200; GET /items/1 differs from the pre-image" in wrong
        assert "changed: 'price'" in wrong, wrong
        undone_id = re.search(r"^undone (\S+) ", wrong, re.M)
        assert undone_id is not None, wrong
        shown = cli("show", undone_id[1])  # the record says what its undo found, in the undo's words
        assert re.search(r"^reversibility\s+reversible$", shown, re.M), shown
        assert re.search(
            r"^undo\s+NOT verified: inverse PATCH /items/3 answered 200; GET /items/1 differs", shown, re.M
        )
        before_tests = state(server)
        tested = cli("http", "POST", "/items", "--json", "{}", "--test", code=4)
        assert "reversible, test unknown: not tried: an HTTP call cannot be tried without its side effect" in tested
        assert cli("http", "GET", "/items", "--test").startswith("reversibility")
        as_json = json.loads(cli("--json", "http", "DELETE", "/items/1", "--test", code=4))
        assert as_json["reversibility"]["verdict"] == "unknown", as_json
        assert "plan (rule rest.delete)" in as_json["reversibility"]["detail"]
        assert "--test sends nothing" in cli("http", "DELETE", "/items/1", "--test", "--approve", "x", code=2)
        assert state(server) == before_tests  # --test sent nothing
        cli("session", "close", "--commit-all")

        cli("session", "open", "--http", f"api={server.base_url}", "--http-rules", "creates-only")
        cli("http", "POST", "/items", "--json", '{"name": "x"}')
        unchecked = cli("undo", code=4)
        assert "  unverified: inverse DELETE /items/" in unchecked and "nothing to compare" in unchecked, unchecked
        cli("session", "close", "--commit-all")
        usage = cli(
            "session",
            "open",
            "--http",
            server.base_url,
            "--http",
            server.url("/x"),
            "--http-staging",
            server.base_url,
            code=2,
        )
        assert "--http-staging" in usage
