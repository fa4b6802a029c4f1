"""The shipped `slack` function set against a local service shaped like Slack's Web API (tests/services/slack_api.py).

The model's choices are scripted (tests/services/scripted_llm.py), because each test needs a given function with
given arguments, which a real model cannot be made to pick; everything after the choice is real: goexd checks the
arguments against the function's schema, fills its HTTP template, sends it with the vault's token, and the `slack`
rule set derives the undo from Slack's answer, which goexd sends at `goex undo`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

import goex
from tests.daemon_process import DaemonProcess
from tests.services.scripted_llm import ScriptedLLM, planner_daemon, scripted_endpoint
from tests.services.slack_api import SlackApi

TOKEN = "xoxb-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    yield from scripted_endpoint()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[DaemonProcess]:
    with planner_daemon(tmp_path_factory.mktemp("goexd-slack"), llm.base_url, "retries = 0\n") as d:
        yield d


@pytest.fixture
def slack() -> Iterator[SlackApi]:
    api = SlackApi(TOKEN).start()
    yield api
    api.stop()


@pytest.fixture
def session(daemon: DaemonProcess, slack: SlackApi, llm: ScriptedLLM) -> Iterator[tuple[goex.Client, str]]:
    llm.script.clear()
    with goex.Client(daemon.socket, timeout=60) as client:
        client.put_secret(
            "slack", TOKEN, kind="bearer", allowed_hosts=[f"http://127.0.0.1:{slack.port}"], overwrite=True
        )
        s = client.create_session(
            resources=[goex.ResourceSpec.http(slack.base_url, name="slack", secret="slack", rules="slack")]
        )
        yield client, s.id
        client.close_session(s.id, "commit")
    assert not llm.script


def test_send_a_message_then_undo_deletes_it(
    session: tuple[goex.Client, str], llm: ScriptedLLM, slack: SlackApi
) -> None:
    client, sid = session
    llm.reply_tool("send_message", {"channel": "#general", "text": "the build is green"})
    action = client.prompt(sid, "tell #general the build is green", functions="slack")
    assert action.state is goex.ActionState.EXECUTED, action.error
    assert slack.state.texts("general") == ["the build is green"]
    ts = slack.state.messages["C1"][0]["ts"]
    # The undo is the rule set's, from Slack's answer (the channel id and ts it gave), not the model's.
    inverse = action.inverse.body if action.inverse is not None else None
    assert isinstance(inverse, goex.Http) and (inverse.method, inverse.path) == ("POST", "/api/chat.delete")
    assert json.loads(inverse.json or inverse.body or b"") == {"channel": "C1", "ts": ts}
    assert action.reversibility is not None
    assert action.reversibility.reversibility_class is goex.ReversibilityClass.BEST_EFFORT
    assert action.plan is not None and action.plan.function == "slack.send_message"
    undone = client.undo(sid)
    assert undone[0].state is goex.ActionState.UNDONE and slack.state.texts("general") == []
    # Slack has no read that answers 404: the undo was sent and is unverified, never called verified.
    assert undone[0].reversibility is not None and undone[0].reversibility.verdict is goex.Verdict.UNKNOWN


def test_a_reaction_and_a_file_are_undone(session: tuple[goex.Client, str], llm: ScriptedLLM, slack: SlackApi) -> None:
    client, sid = session
    posted = slack.call("chat.postMessage", {"channel": "C2", "text": "lunch?"})
    llm.reply_tool("add_reaction", {"channel": "C2", "timestamp": posted["ts"], "name": "thumbsup"})
    reacted = client.prompt(sid, "thumbs up the lunch message in #random", functions="slack")
    assert reacted.state is goex.ActionState.EXECUTED, reacted.error
    assert slack.state.messages["C2"][0]["reactions"] == ["thumbsup"]
    llm.reply_tool("upload_file", {"channels": "C1", "filename": "notes.txt", "content": "hello"})
    uploaded = client.prompt(sid, "upload notes.txt saying hello to #general", functions="slack")
    assert uploaded.state is goex.ActionState.EXECUTED, uploaded.error
    assert [f["name"] for f in slack.state.files.values()] == ["notes.txt"]
    client.undo(sid, uploaded.id)
    client.undo(sid, reacted.id)
    assert slack.state.files == {} and slack.state.messages["C2"][0]["reactions"] == []


def test_an_irreversible_function_waits_for_an_approval(
    session: tuple[goex.Client, str], llm: ScriptedLLM, slack: SlackApi
) -> None:
    client, sid = session
    slack.call("chat.postMessage", {"channel": "C1", "text": "keep me"})
    llm.reply_tool("delete_latest_message", {"channel": "general"})
    with pytest.raises(goex.PermissionDenied, match="approval"):
        client.prompt(sid, "delete the latest message in #general", functions="slack")
    assert slack.state.texts("general") == ["keep me"]
    assert client.list_actions(sid)[-1].state is goex.ActionState.BLOCKED
    llm.reply_tool("delete_latest_message", {"channel": "general"})
    done = client.prompt(sid, "delete the latest message", functions="slack", approval="ann: it was a test")
    assert done.state is goex.ActionState.EXECUTED and slack.state.texts("general") == []


def test_reads_resolve_at_once_and_bad_arguments_are_refused(
    session: tuple[goex.Client, str], llm: ScriptedLLM, slack: SlackApi
) -> None:
    client, sid = session
    llm.reply_tool("list_channels", {})
    listed = client.prompt(sid, "which channels are there?", functions="slack")
    assert listed.state is goex.ActionState.COMMITTED and listed.http is not None and b"general" in listed.http.body
    llm.reply_tool("add_reaction", {"channel": "C1", "timestamp": "1", "name": "Thumbs Up!"})
    bad = client.prompt(sid, "react", functions="slack")
    assert bad.state is goex.ActionState.FAILED and "arguments.name" in bad.error
    llm.reply_tool("read_messages", {"channel": "C1", "limit": 500})
    too_many = client.prompt(sid, "read 500 messages", functions="slack")
    assert too_many.state is goex.ActionState.FAILED and "arguments.limit" in too_many.error
    llm.reply_tool("post_everywhere", {})
    unknown = client.prompt(sid, "spam", functions="slack")
    assert unknown.state is goex.ActionState.FAILED and "post_everywhere" in unknown.error
    assert [c for c in slack.state.calls if c.startswith("POST")] == []  # none of the refused ones was sent
