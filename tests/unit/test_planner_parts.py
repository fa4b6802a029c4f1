"""The planner's pure parts: the request's budget, the answer's schemas, checking answers, function sets, config."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from goexd import config
from goexd.domain.errors import SetupError
from goexd.domain.models import ActionKind, ResourceKind, UndoStrategy
from goexd.domain.plans import PlanMode, Transport
from goexd.planner import answers, context, functions, schemas
from goexd.planner.planner import Capabilities, _transport

FS = schemas.Target("fs", ResourceKind.FS, UndoStrategy.VERSIONED, False)
FS_INVERSE = schemas.Target("ws", ResourceKind.FS, UndoStrategy.INVERSE, True)
DB_INVERSE = schemas.Target("db", ResourceKind.SQLITE, UndoStrategy.INVERSE, True)
API = schemas.Target("api", ResourceKind.HTTP, UndoStrategy.INVERSE, False)


def test_the_request_stays_within_its_budget_whatever_the_resources_hold() -> None:
    huge = "\n".join(f"  src/module_{i}/file_{i}.py" for i in range(100_000))  # a 100k-file tree
    small = "sqlite database: 1 table.\n\nTABLE users (2 rows)\n  id INTEGER PRIMARY KEY"
    described = [context.Described("fs", "fs", huge), context.Described("db", "sqlite", small)]
    text = context.system_message("intro", ["a rule"], described, ["#1 shell on fs (executed): ls"], ["pg"], 4000)
    assert context.tokens(text) <= 4000
    assert small in text  # the small one is whole; the large one takes what is left, cut at a line end
    assert context.CUT_NOTE in text and "  src/module_0/file_0.py" in text
    assert "Secrets goexd adds to requests itself (by name; their values are never shown to you" in text


def test_fit_gives_what_a_short_text_leaves_to_the_others() -> None:
    a, b = "x" * 30, "\n".join(["y" * 10] * 100)
    fitted = context.fit([a, b], 200)
    assert fitted[0] == a and context.tokens(fitted[1]) <= 200 - context.tokens(a)
    assert fitted[1].endswith(context.CUT_NOTE)


def test_schemas_ask_for_an_inverse_only_where_the_strategy_undoes_by_one() -> None:
    assert "inverse_command" not in schemas.target_schema(FS, 512)["properties"]
    assert schemas.target_schema(FS_INVERSE, 512)["required"] == [
        "resource",
        "description",
        "command",
        "inverse_command",
    ]
    assert "inverse_sql" in schemas.target_schema(DB_INVERSE, 512)["properties"]
    http = schemas.target_schema(API, 512)["properties"]
    assert set(http) == {"resource", "description", "method", "path", "body"}  # its undo is the rule set's
    one = schemas.plan_schema([FS], 512)
    many = schemas.plan_schema([FS, DB_INVERSE, API], 512)
    assert one["properties"]["action"]["properties"]["resource"] == {"type": "string", "enum": ["fs"]}
    assert len(many["properties"]["action"]["anyOf"]) == 3
    for s in (one, many):
        jsonschema.Draft202012Validator.check_schema(s)


def test_each_long_field_is_bounded_so_a_whole_answer_fits_max_tokens() -> None:
    for max_tokens in (128, 256, 512, 4096):
        for target in (FS, FS_INVERSE, DB_INVERSE, API):
            props = schemas.target_schema(target, max_tokens)["properties"]
            long = [p["maxLength"] for name, p in props.items() if name not in ("resource", "method", "path")]
            worst = sum(long) / schemas.CHARS_PER_TOKEN + schemas.STRUCTURE_TOKENS
            assert worst <= max(max_tokens, schemas.MIN_FIELD * len(long)) + schemas.MAX_DESCRIPTION, (target, long)


def test_answers_are_json_valid_for_the_schema_and_made_into_specs() -> None:
    assert answers.parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    with pytest.raises(answers.Refused, match="not JSON"):
        answers.parse_json("Sure! touch x")
    with pytest.raises(answers.Refused, match="empty"):
        answers.parse_json("  ")
    schema = schemas.plan_schema([FS_INVERSE, DB_INVERSE], 512)
    with pytest.raises(answers.Refused, match=r"^answer\.action"):
        answers.check_schema({"action": {"resource": "ws", "description": "d", "command": "x"}}, schema)
    plan = answers.chat_plan(
        {"action": {"resource": "ws", "description": "d", "command": "echo hi > a", "inverse_command": "rm a"}},
        [FS_INVERSE, DB_INVERSE],
    )
    assert plan.forward.argv == ("sh", "-c", "echo hi > a") and plan.inverse is not None
    assert plan.inverse.argv == ("sh", "-c", "rm a") and plan.forward.resource == "ws"
    read = answers.chat_plan(
        {"action": {"resource": "db", "description": "", "sql": "SELECT 1", "inverse_sql": " "}}, [DB_INVERSE]
    )
    assert read.forward.kind is ActionKind.SQL and read.inverse is None  # "" inverse: none (a read)
    call = answers.chat_plan(
        {"action": {"resource": "api", "description": "", "method": "POST", "path": "items/a b?x=1&y=2", "body": "{}"}},
        [API],
    )
    assert call.forward.http is not None
    assert (call.forward.http.path, call.forward.http.query) == ("/items/a%20b", (("x", "1"), ("y", "2")))
    assert json.loads(call.forward.http.body) == {} and call.forward.http.json
    with pytest.raises(answers.Refused, match="not a URL"):
        answers.chat_plan(
            {"action": {"resource": "api", "description": "", "method": "GET", "path": "http://evil/x", "body": ""}},
            [API],
        )


SET = """
name = "shop"
[[function]]
name = "create"
parameters.type = "object"
parameters.properties = { name = { type = "string" }, price = { type = "integer" }, tag = { type = "string" } }
parameters.required = ["name"]
http = { method = "POST", path = "/items/{name}", query = { tag = "{tag}" }, json = { price = "{price}" } }
"""


def test_a_function_set_fills_its_template_keeping_types_and_dropping_what_was_left_out(tmp_path: Path) -> None:
    (tmp_path / "shop.toml").write_text(SET)
    fset = functions.load_sets([tmp_path])["shop"]
    method, path, query, body = fset.functions["create"].call({"name": "a/b", "price": 3})
    assert (method, path, query, body) == ("POST", "/items/a%2Fb", (), {"price": 3})  # tag left out: no ?tag
    assert functions.load_sets([tmp_path])["slack"].rules == "slack"  # the shipped set is there too


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("{price}", "{cost}"), "refers to ['cost']"),
        (('name = "create"', 'name = "create"\ninverse = "nope"'), "inverse 'nope' is not a function"),
        (('price = { type = "integer" }', 'price = { type = "integr" }'), "not a valid JSON Schema"),
        (('method = "POST"', 'method = "BREW"'), "http.method"),
        (("[[function]]", "colour = 1\n[[function]]"), "unknown key"),
        (("http = {", 'python = { code = "print(1)" }\nhttp = {'), "give one implementation, http or python"),
    ],
)
def test_a_broken_function_set_stops_goexd_naming_the_file_and_key(
    tmp_path: Path, change: tuple[str, str], words: str
) -> None:
    (tmp_path / "shop.toml").write_text(SET.replace(*change, 1))
    with pytest.raises(SetupError, match=r"shop\.toml") as exc:
        functions.load_sets([tmp_path])
    assert words in str(exc.value)


def test_the_transport_is_the_strongest_the_endpoint_has() -> None:
    both, schema_only, tools_only, none = (
        Capabilities(True, True),
        Capabilities(True, False),
        Capabilities(False, True),
        Capabilities(False, False),
    )
    assert _transport(PlanMode.CHAT, both) is Transport.JSON_SCHEMA
    assert _transport(PlanMode.FUNCTIONS, both) is Transport.TOOLS
    assert _transport(PlanMode.FUNCTIONS, schema_only) is Transport.JSON_SCHEMA
    assert _transport(PlanMode.CHAT, tools_only) is Transport.TOOLS
    assert _transport(PlanMode.CHAT, none) is Transport.JSON


@pytest.mark.parametrize(
    ("planner", "words"),
    [
        ({"mode": "magic"}, "planner.mode"),
        ({"base_url": "ftp://x"}, "planner.base_url"),
        ({"base_url": "https://user:pw@api.example.com/v1"}, "no credentials"),
        ({"retries": 11}, "planner.retries"),
        ({"request_tokens": 100}, "request_tokens"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_planner_config_is_checked(planner: dict[str, object], words: str) -> None:
    with pytest.raises(SetupError, match=words):
        config.load(overrides={"planner": planner}, environ={})
