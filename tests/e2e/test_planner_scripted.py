"""Prompt actions end to end against a scripted OpenAI-compatible endpoint (tests/services/scripted_llm.py).

Scripted, because each of these needs an answer a real model cannot be made to give on purpose: the paper
prototype's scenarios with the right command, SQL or call (the tiny local model writes something else), a given
wrong inverse, a malformed answer before a good one, a given bad argument, and the endpoint's 401/429/timeout.
What a real model's answers do is tests/e2e/test_planner_real_model.py. Everything else is real: goexd, its
sandbox, SQLite, json-server, the openai client and HTTP in between.
"""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import goex
from tests.daemon_process import DaemonProcess
from tests.services.json_server import JsonServer
from tests.services.scripted_llm import ScriptedLLM, planner_daemon, scripted_endpoint

GOEX = Path(sys.executable).with_name("goex")
ITEMS_SET = """
name = "items"
description = "the items of a shop's REST API"
[[function]]
name = "create_item"
description = "Create an item"
parameters.type = "object"
parameters.properties = { name = { type = "string" }, price = { type = "integer", minimum = 0 } }
parameters.required = ["name", "price"]
parameters.additionalProperties = false
inverse = "delete_item"
http = { method = "POST", path = "/items", json = { name = "{name}", price = "{price}" } }
[[function]]
name = "delete_item"
description = "Delete an item by its id"
parameters = { type = "object", properties = { id = { type = "string" } }, required = ["id"] }
http = { method = "DELETE", path = "/items/{id}" }
"""


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    yield from scripted_endpoint()


@pytest.fixture(scope="module")
def goexd(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("goexd-planner")
    functions = root / "functions"
    functions.mkdir()
    (functions / "items.toml").write_text(ITEMS_SET)
    with planner_daemon(root, llm.base_url, f'timeout_s = 3\nretries = 1\nfunctions_dirs = ["{functions}"]\n') as d:
        yield d


@pytest.fixture
def client(goexd: DaemonProcess, llm: ScriptedLLM) -> Iterator[goex.Client]:
    llm.script.clear()
    with goex.Client(goexd.socket, timeout=120) as c:
        yield c
    assert not llm.script, "the test left scripted answers unused"


def _fs_answer(command: str, inverse: str | None = None, description: str = "as asked") -> dict[str, object]:
    action: dict[str, object] = {"resource": "fs", "description": description, "command": command}
    if inverse is not None:
        action["inverse_command"] = inverse
    return {"action": action}


def _db_answer(sql: str, inverse: str | None = None) -> dict[str, object]:
    action: dict[str, object] = {"resource": "db", "description": "as asked", "sql": sql}
    if inverse is not None:
        action["inverse_sql"] = inverse
    return {"action": action}


def test_joke_into_a_file_then_undo(client: goex.Client, llm: ScriptedLLM, workspace: Path) -> None:
    session = client.create_session(fs=workspace)
    llm.reply(_fs_answer("echo 'Why do programmers prefer dark mode? Light attracts bugs.' > joke.txt"))
    action = client.prompt(session.id, "write a joke into joke.txt")
    assert action.state is goex.ActionState.EXECUTED, action.error
    assert action.spec is not None and action.spec.body == goex.Shell(
        ["sh", "-c", "echo 'Why do programmers prefer dark mode? Light attracts bugs.' > joke.txt"]
    )
    assert "Light attracts bugs" in (workspace / "joke.txt").read_text()
    plan = action.plan
    assert plan is not None and plan.prompt == "write a joke into joke.txt" and plan.mode == "chat"
    assert plan.endpoint == llm.base_url and plan.model == "scripted-model" and plan.transport == "json_schema"
    assert [a.error for a in plan.attempts] == [""] and plan.attempts[0].prompt_tokens == 100
    assert plan.plan_json is not None and plan.plan_json["action"]["argv"][:2] == ["sh", "-c"]
    assert "Resource fs" in plan.request and "keep.txt" in plan.request  # the workspace's own tree
    # What the model was asked: the schema as the response format, the workspace's tree in the system message.
    sent = llm.chats()[-1].json
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["action"]["properties"]["resource"] == {
        "type": "string",
        "enum": ["fs"],
    }
    assert "keep.txt" in sent["messages"][0]["content"]
    assert sent["messages"][1]["content"] == "write a joke into joke.txt"
    # The exchange is journaled with the action: read back from goexd, not from the submit's answer.
    again = client.get_action(action.id)
    assert again.plan is not None and again.plan.attempts == plan.attempts
    client.undo(session.id)
    assert not (workspace / "joke.txt").exists()


def test_users_table_three_users_and_500_more_each_undone(
    client: goex.Client, llm: ScriptedLLM, tmp_path: Path
) -> None:
    db_path = tmp_path / "shop.db"
    sqlite3.connect(db_path).close()
    session = client.create_session(resources=[goex.ResourceSpec.db(f"sqlite:///{db_path}", strategy="inverse")])
    steps = [
        (
            "create a users table",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)",
            "DROP TABLE users",
        ),
        (
            "add 3 users",
            "INSERT INTO users VALUES (1, 'ada', 100), (2, 'bob', 50), (3, 'cy', 0)",
            "DELETE FROM users WHERE id IN (1, 2, 3)",
        ),
        (
            "add 500 to every balance",
            "UPDATE users SET balance = balance + 500",
            "UPDATE users SET balance = balance - 500",
        ),
    ]
    done = []
    for prompt, sql, inverse in steps:
        llm.reply(_db_answer(sql, inverse))
        action = client.prompt(session.id, prompt)
        assert action.state is goex.ActionState.EXECUTED, action.error
        assert action.inverse is not None and action.inverse.body == goex.Sql(inverse)
        assert action.reversibility is not None and action.reversibility.verdict is goex.Verdict.PASSED
        done.append(action)
    rows = sqlite3.connect(db_path).execute("SELECT name, balance FROM users ORDER BY id").fetchall()
    assert rows == [("ada", 600), ("bob", 550), ("cy", 500)]
    # The recent actions are told to the model: the third request names the first two.
    assert "CREATE TABLE users" in llm.chats()[-1].json["messages"][0]["content"]
    client.undo(session.id, done[2].id)
    assert sqlite3.connect(db_path).execute("SELECT sum(balance) FROM users").fetchone() == (150,)
    client.undo(session.id, done[1].id)
    client.undo(session.id, done[0].id)
    tables = sqlite3.connect(db_path).execute("SELECT count(*) FROM sqlite_master WHERE name = 'users'").fetchone()
    assert tables == (0,)
    assert [a.state for a in client.list_actions(session.id)] == [goex.ActionState.UNDONE] * 3


def test_create_an_item_on_a_rest_service_then_undo(
    client: goex.Client, llm: ScriptedLLM, json_server: JsonServer
) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.http(json_server.base_url, name="shop")])
    body = json.dumps({"name": "lamp", "price": 30})
    llm.reply({"action": {"resource": "shop", "description": "c", "method": "POST", "path": "/items", "body": body}})
    action = client.prompt(session.id, "create an item called lamp for 30")
    assert action.state is goex.ActionState.EXECUTED, action.error
    created = json_server.db()["items"]
    assert [i["name"] for i in created] == ["lamp"]
    # The undo is the rule set's, from the recorded response (the id the service gave), not the model's.
    assert action.inverse is not None and action.inverse.body == goex.Http("DELETE", f"/items/{created[0]['id']}")
    client.undo(session.id)
    assert json_server.db()["items"] == []


def test_a_malformed_answer_is_asked_again_with_why(client: goex.Client, llm: ScriptedLLM, workspace: Path) -> None:
    session = client.create_session(fs=workspace)
    llm.reply_text("Sure! Here is the command: touch x")
    llm.reply(_fs_answer("touch x"))
    action = client.prompt(session.id, "create an empty file x")
    assert action.state is goex.ActionState.EXECUTED and (workspace / "x").exists()
    assert action.plan is not None
    first, second = action.plan.attempts
    assert first.answer == "Sure! Here is the command: touch x" and "not JSON" in first.error and second.error == ""
    again = llm.chats()[-1].json["messages"]
    assert again[-2] == {"role": "assistant", "content": "Sure! Here is the command: touch x"}
    assert "goexd refused that answer" in again[-1]["content"] and "not JSON" in again[-1]["content"]


def test_no_usable_answer_fails_the_action_with_the_last_answer(
    client: goex.Client, llm: ScriptedLLM, workspace: Path
) -> None:
    session = client.create_session(fs=workspace)
    llm.reply({"action": {"resource": "fs", "description": "x"}})  # no command
    llm.reply({"action": {"resource": "elsewhere", "description": "x", "command": "true"}})
    action = client.prompt(session.id, "do something")
    assert action.state is goex.ActionState.FAILED and action.kind is goex.ActionKind.PROMPT
    assert action.error.startswith("no plan: the model gave no usable plan in 2 answers")
    assert action.plan is not None and len(action.plan.attempts) == 2 and action.plan.plan == ""
    assert "answer.action" in action.plan.attempts[0].error and "elsewhere" in action.plan.attempts[1].answer
    assert sorted(p.name for p in workspace.iterdir()) == ["b.txt", "keep.txt", "sub"]  # nothing ran


def test_a_wrong_inverse_is_caught_by_the_reversibility_test(
    client: goex.Client, llm: ScriptedLLM, workspace: Path, tmp_path: Path
) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.fs(workspace, strategy="inverse")])
    llm.reply(_fs_answer("echo new > b.txt", inverse="echo wrong > b.txt"))
    action = client.prompt(session.id, "replace b.txt with new")
    assert action.state is goex.ActionState.BLOCKED
    assert "its inverse failed the reversibility test" in action.error
    assert action.reversibility is not None and action.reversibility.verdict is goex.Verdict.FAILED
    assert (workspace / "b.txt").read_text() == "bee\n"  # it never ran
    assert action.plan is not None and action.plan.attempts[0].error == ""
    # The same on a database: the inverse SQL is tried first (in a transaction rolled back).
    db_path = tmp_path / "t.db"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE t (n INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")
    db_session = client.create_session(resources=[goex.ResourceSpec.db(f"sqlite:///{db_path}", strategy="inverse")])
    llm.reply(_db_answer("UPDATE t SET n = n + 500", "UPDATE t SET n = n - 50"))
    wrong = client.prompt(db_session.id, "add 500 to n")
    assert wrong.state is goex.ActionState.BLOCKED and "reversibility test" in wrong.error
    assert sqlite3.connect(db_path).execute("SELECT n FROM t").fetchall() == [(1,)]


def test_a_plan_the_resource_refuses_is_asked_again(client: goex.Client, llm: ScriptedLLM, tmp_path: Path) -> None:
    db_path = tmp_path / "t.db"
    sqlite3.connect(db_path).close()
    session = client.create_session(resources=[goex.ResourceSpec.db(f"sqlite:///{db_path}", strategy="inverse")])
    llm.reply(_db_answer("CREATE TABLE t (n INTEGER)", ""))  # a write with no inverse: refused by the resource
    llm.reply(_db_answer("CREATE TABLE t (n INTEGER)", "DROP TABLE t"))
    action = client.prompt(session.id, "make a table t")
    assert action.state is goex.ActionState.EXECUTED, action.error
    assert action.plan is not None and "needs an inverse" in action.plan.attempts[0].error


def test_plan_only_runs_nothing(client: goex.Client, llm: ScriptedLLM, workspace: Path) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.fs(workspace, strategy="inverse")])
    llm.reply(_fs_answer("rm b.txt", inverse="echo bee > b.txt"))
    review = client.plan(session.id, "delete b.txt")
    assert review.action is not None and review.action.body == goex.Shell(["sh", "-c", "rm b.txt"])
    assert review.inverse is not None and review.inverse.body == goex.Shell(["sh", "-c", "echo bee > b.txt"])
    assert review.policy_decision == "allow"
    assert review.reversibility is not None and review.reversibility.verdict is goex.Verdict.PASSED
    assert (workspace / "b.txt").read_text() == "bee\n" and client.list_actions(session.id) == []


def test_function_call_runs_and_is_undone_by_the_rule_set(
    client: goex.Client, llm: ScriptedLLM, json_server: JsonServer
) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.http(json_server.base_url, name="shop")])
    llm.reply_tool("create_item", {"name": "desk", "price": 120})
    action = client.prompt(session.id, "add a desk for 120", functions="items")
    assert action.state is goex.ActionState.EXECUTED, action.error
    assert action.plan is not None and action.plan.function == "items.create_item" and action.plan.transport == "tools"
    assert [(i["name"], i["price"]) for i in json_server.db()["items"]] == [("desk", 120)]
    sent = llm.chats()[-1].json
    assert [t["function"]["name"] for t in sent["tools"]] == ["create_item", "delete_item"]
    client.undo(session.id)
    assert json_server.db()["items"] == []


def test_function_call_with_a_bad_argument_is_refused(
    client: goex.Client, llm: ScriptedLLM, json_server: JsonServer
) -> None:
    session = client.create_session(resources=[goex.ResourceSpec.http(json_server.base_url, name="shop")])
    llm.reply_tool("create_item", {"name": "desk", "price": -5})
    llm.reply_tool("create_item", {"name": "desk", "price": "cheap"})
    action = client.prompt(session.id, "add a desk", functions="items")
    assert action.state is goex.ActionState.FAILED
    assert action.plan is not None and [a.error.split(":")[0] for a in action.plan.attempts] == [
        "arguments.price",
        "arguments.price",
    ]
    assert "arguments.price" in action.error and json_server.db()["items"] == []
    with pytest.raises(goex.NotFound, match="function set"):
        client.prompt(session.id, "add a desk", functions="nosuchset")


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "refused the API key"), (429, "rate limiting goexd"), (503, "refused the request (HTTP 503")],
)
def test_endpoint_errors_fail_the_action_clearly(
    client: goex.Client, llm: ScriptedLLM, workspace: Path, status: int, words: str
) -> None:
    session = client.create_session(fs=workspace)
    llm.fail(status, "scripted refusal")
    action = client.prompt(session.id, "touch x")
    assert action.state is goex.ActionState.FAILED and words in action.error, action.error
    assert action.plan is not None and action.plan.error and not (workspace / "x").exists()
    llm.fail(status, "scripted refusal")
    expected = {401: goex.FailedPrecondition, 429: goex.ResourceExhausted, 503: goex.FailedPrecondition}[status]
    with pytest.raises(expected, match=words.split(" (", maxsplit=1)[0]):
        client.plan(session.id, "touch x")


def test_an_endpoint_that_does_not_answer_in_time(client: goex.Client, llm: ScriptedLLM, workspace: Path) -> None:
    session = client.create_session(fs=workspace)
    llm.hang(5.0)  # [planner] timeout_s is 3
    action = client.prompt(session.id, "touch x")
    assert action.state is goex.ActionState.FAILED and "did not answer within 3 s" in action.error


def _goex(d: DaemonProcess, tmp_path: Path, *argv: str, code: int = 0) -> str:
    env = {**os.environ, "GOEX_SOCKET": str(d.socket), "GOEX_CLI_STATE": str(tmp_path / "cli.json"), "COLUMNS": "200"}
    done = subprocess.run([str(GOEX), *argv], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == code, (argv, done.returncode, done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_the_cli_prompts_plans_shows_and_undoes(
    client: goex.Client, goexd: DaemonProcess, llm: ScriptedLLM, workspace: Path, tmp_path: Path
) -> None:
    _goex(goexd, tmp_path, "session", "open", "--fs", str(workspace))
    llm.reply(_fs_answer("echo hello > greeting.txt", description="greet"))
    out = _goex(goexd, tmp_path, "prompt", "write", "hello", "into", "greeting.txt")
    assert "prompt" in out and "write hello into greeting.txt" in out and "scripted-model" in out
    assert "sh -c 'echo hello > greeting.txt'" in out and "A greeting.txt" in out
    assert (workspace / "greeting.txt").read_text() == "hello\n"
    shown = _goex(goexd, tmp_path, "show", "last")
    assert "planned by" in shown and "--- model answer 1" in shown and '"command": "echo hello > greeting.txt"' in shown
    assert "undone" in _goex(goexd, tmp_path, "undo")
    assert not (workspace / "greeting.txt").exists()
    # --plan-only: the plan, the policy's answer, its test; nothing runs (the versioned strategy needs no inverse).
    llm.reply(_fs_answer("rm keep.txt"))
    planned = _goex(goexd, tmp_path, "prompt", "--plan-only", "delete keep.txt")
    assert "rm keep.txt" in planned and "allow" in planned and "nothing: a plan for review" in planned
    assert (workspace / "keep.txt").exists()
    llm.reply(_fs_answer("rm keep.txt"))
    document = json.loads(_goex(goexd, tmp_path, "--json", "prompt", "--plan-only", "delete keep.txt"))
    assert document["action"]["shell"]["argv"] == ["sh", "-c", "rm keep.txt"] and document["policy_decision"] == "allow"
    # No usable plan: exit 125 and the error (the planner's refusals too).
    llm.reply_text("no")
    llm.reply_text("still no")
    failed = _goex(goexd, tmp_path, "prompt", "do it", code=125)
    assert "no plan" in failed and "not JSON" in failed
    _goex(goexd, tmp_path, "session", "close", "--commit-all")


def test_function_sets_put_over_the_api_are_kept_across_a_restart(
    llm: ScriptedLLM, json_server: JsonServer, tmp_path: Path
) -> None:
    with planner_daemon(tmp_path / "one", llm.base_url) as d, goex.Client(d.socket, timeout=60) as client:
        assert [s.name for s in client.function_sets()] == ["slack"]
        kept = client.put_function_set(ITEMS_SET)
        assert (
            kept.name == "items"
            and kept.source == "put"
            and [f.name for f in kept.functions]
            == [
                "create_item",
                "delete_item",
            ]
        )
        assert kept.functions[0].parameters["properties"]["price"] == {"type": "integer", "minimum": 0}
        with pytest.raises(goex.AlreadyExists, match="overwrite"):
            client.put_function_set(ITEMS_SET)
        with pytest.raises(goex.InvalidArgument, match=r"^toml: function\[0\]\.http: refers to \['nope'\]"):
            client.put_function_set(ITEMS_SET.replace("{price}", "{nope}"), overwrite=True)
        with pytest.raises(goex.FailedPrecondition, match="not one put over the API"):
            client.delete_function_set("slack")
        listed = _goex(d, tmp_path, "functions", "list")
        assert "items  (put)" in listed and "create_item(name, price)  POST /items; undone by delete_item" in listed
    # A restart (the same state dir and config file) reads it back from the state dir.
    d3 = DaemonProcess(tmp_path / "one" / "d").start()
    try:
        with goex.Client(d3.socket, timeout=60) as client:
            assert sorted(s.name for s in client.function_sets()) == ["items", "slack"]
            session = client.create_session(resources=[goex.ResourceSpec.http(json_server.base_url, name="shop")])
            llm.reply_tool("create_item", {"name": "stool", "price": 15})
            made = client.prompt(session.id, "add a stool for 15", functions="items")
            assert made.state is goex.ActionState.EXECUTED, made.error
            client.delete_function_set("items")
            with pytest.raises(goex.NotFound, match="function set"):
                client.prompt(session.id, "add a stool", functions="items")
            client.close_session(session.id, "undo")
    finally:
        d3.stop()
    assert json_server.db()["items"] == []


def test_functions_mode_needs_one_http_resource_before_the_model_is_asked(client: goex.Client, workspace: Path) -> None:
    session = client.create_session(fs=workspace)
    needs = r"^spec\.resource: a function set's http functions need one http resource"
    with pytest.raises(goex.InvalidArgument, match=needs):
        client.prompt(session.id, "add a desk", functions="items")
    assert client.list_actions(session.id) == []  # nothing asked, nothing journaled


def test_the_cli_on_a_terminal(goexd: DaemonProcess, llm: ScriptedLLM, workspace: Path, tmp_path: Path) -> None:
    """stdout and stderr on a pseudo-terminal, as a person runs it: spinners drawn while goexd plans and runs,
    then the plan and the result."""
    env = {**os.environ, "GOEX_SOCKET": str(goexd.socket), "GOEX_CLI_STATE": str(tmp_path / "cli.json")}
    _goex(goexd, tmp_path, "session", "open", "--fs", str(workspace))
    for argv, answer in (
        (["prompt", "make a file"], _fs_answer("echo hi > t.txt")),
        (["prompt", "--plan-only", "remove it"], _fs_answer("rm t.txt")),
    ):
        llm.reply(answer)
        master, slave = pty.openpty()
        proc = subprocess.Popen([str(GOEX), *argv], env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            try:
                chunk = os.read(master, 4096) if ready else b""
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            seen += chunk
        os.close(master)
        assert proc.wait(30) == 0, seen
        text = seen.decode(errors="replace")
        assert "planned by" in text and "Traceback" not in text and "live display" not in text, text
    assert (workspace / "t.txt").exists()


FILES_SET = """
name = "files"
[[function]]
name = "write_note"
description = "Write a note into NAME.txt"
parameters.type = "object"
parameters.properties = { name = { type = "string", pattern = "^[a-z]+$" }, text = { type = "string" } }
parameters.required = ["name", "text"]
[function.python]
code = "import json, sys\\nargs = json.load(sys.stdin)\\nopen(args['name'] + '.txt', 'w').write(args['text'])"
"""


def test_a_python_function_runs_in_the_sandbox_with_its_arguments_as_data(
    client: goex.Client, llm: ScriptedLLM, workspace: Path
) -> None:
    client.put_function_set(FILES_SET, overwrite=True)
    session = client.create_session(fs=workspace)
    hostile = "'); import os; os.remove('keep.txt'); ('$(rm keep.txt)"
    llm.reply_tool("write_note", {"name": "todo", "text": hostile})
    action = client.prompt(session.id, "note the hostile text", functions="files")
    assert action.state is goex.ActionState.EXECUTED, action.error
    assert (
        action.kind is goex.ActionKind.PYTHON and action.plan is not None and action.plan.function == "files.write_note"
    )
    # The arguments reached the code as JSON on stdin: the text is written as it is, nothing of it ran.
    assert (workspace / "todo.txt").read_text() == hostile and (workspace / "keep.txt").exists()
    client.undo(session.id)
    assert not (workspace / "todo.txt").exists()
    llm.reply_tool("write_note", {"name": "../escape", "text": "x"})
    llm.reply_tool("write_note", {"name": "Up", "text": "x"})  # asked again once ([planner] retries = 1)
    refused = client.prompt(session.id, "note", functions="files")
    assert refused.state is goex.ActionState.FAILED and "arguments.name" in refused.error
    client.delete_function_set("files")
