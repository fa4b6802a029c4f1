"""The planner probes what an endpoint supports and asks in the strongest way it has (planner/planner.py).

Against tests/services/scripted_llm.py, which refuses with a 400 a probe for what it is told it lacks, as an
endpoint without structured output or tool calls does (scripted: no real server can be told to lack either).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.config import PlannerConfig
from goexd.domain.errors import Unavailable
from goexd.domain.models import ResourceKind, UndoStrategy
from goexd.domain.plans import PromptRequest, Transport
from goexd.planner.context import Described
from goexd.planner.functions import FunctionSets
from goexd.planner.planner import Capabilities, Context, Planner, PlanningFailed
from goexd.planner.schemas import Target
from tests.services.scripted_llm import ScriptedLLM

CONTEXT = Context(
    targets=[Target("fs", ResourceKind.FS, UndoStrategy.VERSIONED, False)],
    described=[Described("fs", "fs", "directory /w\n  a.txt")],
)
ANSWER = {"action": {"resource": "fs", "description": "d", "command": "touch b"}}


@pytest.fixture
def llm(request: pytest.FixtureRequest) -> Iterator[ScriptedLLM]:
    server = ScriptedLLM(capabilities=request.param).start()
    yield server
    server.stop()


def _script(llm: ScriptedLLM, transport: Transport) -> None:
    if transport is Transport.TOOLS:  # the chat mode through a single "plan" tool
        llm.reply_tool("plan", ANSWER)
    else:
        llm.reply(ANSWER)


def _planner(url: str) -> Planner:
    return Planner(PlannerConfig(base_url=url, retries=0, timeout_s=5), lambda _: "", lambda t: t, {})


@pytest.mark.parametrize(
    ("llm", "caps", "transport"),
    [
        (("json_schema", "tools"), Capabilities(True, True), Transport.JSON_SCHEMA),
        (("tools",), Capabilities(False, True), Transport.TOOLS),
        ((), Capabilities(False, False), Transport.JSON),
    ],
    indirect=["llm"],
)
def test_the_probe_finds_what_the_endpoint_has(llm: ScriptedLLM, caps: Capabilities, transport: Transport) -> None:
    planner = _planner(llm.base_url)
    _script(llm, transport)
    plan, exchange = planner.plan(PromptRequest("make b"), CONTEXT, lambda p: None)
    assert planner._caps == caps and exchange.transport is transport
    assert plan.forward.argv == ("sh", "-c", "touch b")
    sent = llm.chats()[-1].json
    if transport is Transport.JSON:  # nothing constrains the answer: the schema is said in words, and checked
        assert sent["response_format"] == {"type": "json_object"}
        assert '"maxLength"' in sent["messages"][0]["content"]
    probes = 3 if caps.json_schema else 4  # GET /models, a structured probe (bounded, then without), a tool call
    assert len(llm.requests) - len(llm.chats()) == probes
    _script(llm, transport)
    planner.plan(PromptRequest("again"), CONTEXT, lambda p: None)
    assert len(llm.requests) - len(llm.chats()) == probes  # not probed again
    planner.close()


def test_an_unreachable_endpoint_fails_planning_with_the_exchange() -> None:
    planner = _planner("http://127.0.0.1:9/v1")
    with pytest.raises(PlanningFailed) as exc:
        planner.plan(PromptRequest("make b"), CONTEXT, lambda p: None)
    assert isinstance(exc.value.cause, Unavailable) and "cannot be reached" in str(exc.value)
    assert exc.value.exchange.prompt == "make b" and exc.value.exchange.error and not exc.value.exchange.attempts


@pytest.mark.parametrize("llm", [("json_schema", "no_bounds")], indirect=True)
def test_bounds_are_left_out_where_the_endpoint_refuses_them(llm: ScriptedLLM) -> None:
    planner = _planner(llm.base_url)
    llm.reply(ANSWER)
    _, exchange = planner.plan(PromptRequest("make b"), CONTEXT, lambda p: None)
    assert planner._caps == Capabilities(True, False, bounds=False) and exchange.transport is Transport.JSON_SCHEMA
    sent = llm.chats()[-1].json["response_format"]["json_schema"]["schema"]
    assert "maxLength" not in json.dumps(sent) and sent["properties"]["action"]["required"][-1] == "command"
    planner.close()


@pytest.mark.parametrize("llm", [("json_schema",)], indirect=True)
def test_functions_mode_without_tool_calls_asks_for_the_choice_by_schema(llm: ScriptedLLM) -> None:
    sets = FunctionSets([], Path("/nonexistent-goex-functions"))
    planner = Planner(PlannerConfig(base_url=llm.base_url, retries=0, timeout_s=5), lambda _: "", lambda t: t, sets)
    llm.reply({"call": {"function": "send_message", "arguments": {"channel": "#general", "text": "green"}}})
    ctx = Context(targets=[], described=[], http_resources=["slack"])
    plan, exchange = planner.plan(PromptRequest("say green", functions="slack"), ctx, lambda p: None)
    assert exchange.transport is Transport.JSON_SCHEMA and plan.function == "slack.send_message"
    assert plan.forward.http is not None
    assert json.loads(plan.forward.http.body) == {"channel": "#general", "text": "green"}
    sent = llm.chats()[-1].json["response_format"]["json_schema"]["schema"]
    assert sent["additionalProperties"] is False and len(sent["properties"]["call"]["anyOf"]) == 9
    planner.close()
