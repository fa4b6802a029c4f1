"""An answer of the model, checked: JSON, valid against the schema asked for, then made into action specs.

Every refusal is a `Refused` naming the field of the answer ("action.path: ...") and why, which the planner sends
back to the model when it asks again, and records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jsonschema

from goexd.domain.models import ActionKind, ActionSpec, HttpRequest, ResourceKind
from goexd.planner.schemas import Target

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class Refused(Exception):
    """An answer goexd does not take, and why (for the model's next attempt, and the record)."""


@dataclass(frozen=True)
class Plan:
    forward: ActionSpec
    inverse: ActionSpec | None
    resource: str
    description: str
    function: str = ""  # functions mode: "<set>.<function>"


def parse_json(text: str) -> Any:
    """The answer's JSON; a fenced block (```json ... ```) is taken as its content."""
    if not text.strip():
        raise Refused("the answer is empty")
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as exc:
        raise Refused(f"the answer is not JSON: {exc.msg} at character {exc.pos}") from None


def check_schema(value: Any, schema: Mapping[str, Any], root: str = "answer") -> None:
    """Refused naming the first field that breaks the schema (the deepest, best-matching error)."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join([root, *(str(p) for p in error.absolute_path)])
        raise Refused(f"{where}: {_short(error.message)}")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chat_plan(answer: Mapping[str, Any], targets: Sequence[Target]) -> Plan:
    """A schema-valid chat answer as the action and its inverse on the resource it names."""
    action = answer["action"]
    by_name = {t.resource: t for t in targets}
    target = by_name[action["resource"]]
    description = str(action.get("description", "")).strip()
    if target.kind is ResourceKind.FS:
        forward = _shell(action["command"], "action.command", target, description)
        inverse = None
        if target.wants_inverse:
            inverse = _shell(action["inverse_command"], "action.inverse_command", target, "")
    elif target.kind is ResourceKind.HTTP:
        path, query = split_target(action["path"])
        forward = http_spec(action["method"], path, query, _body(action["body"]), target.resource, description)
        inverse = None
    else:
        sql = str(action["sql"]).strip()
        if not sql:
            raise Refused("action.sql: empty")
        forward = ActionSpec(ActionKind.SQL, sql=sql, resource=target.resource, description=description)
        inverse = None
        if target.wants_inverse and str(action["inverse_sql"]).strip():
            inverse = ActionSpec(ActionKind.SQL, sql=str(action["inverse_sql"]).strip(), resource=target.resource)
    return Plan(forward, inverse, target.resource, description)


def _shell(command: str, fld: str, target: Target, description: str) -> ActionSpec:
    if not command.strip():
        raise Refused(f"{fld}: empty")
    return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", command), resource=target.resource, description=description)


def _body(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"action.body: not JSON text: {exc.msg}") from None


def http_spec(
    method: str, path: str, query: tuple[tuple[str, str], ...], body: Any, resource: str, description: str
) -> ActionSpec:
    """An http action: a method, a path relative to the base URL, its query and a JSON body (None: no body)."""
    if not path.startswith("/"):
        path = "/" + path
    path = quote(path, safe="/%:@!$&'()*+,;=-._~")  # what is not already percent-encoded is
    if body is None:
        request = HttpRequest(method.upper(), path, tuple(sorted(query)))
    else:  # sent as application/json, as a client's `json` payload is
        data = json.dumps(body, ensure_ascii=False).encode()
        request = HttpRequest(method.upper(), path, tuple(sorted(query)), (), data, json=True)
    return ActionSpec(ActionKind.HTTP, http=request, resource=resource, description=description)


def split_target(target: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A model's "path?query" as the path and its query parameters."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        raise Refused("action.path: give the path relative to the resource's base URL, not a URL")
    return parts.path, tuple(parse_qsl(parts.query, keep_blank_values=True))
