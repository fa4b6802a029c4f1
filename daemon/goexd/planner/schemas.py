"""What the model may answer: one JSON Schema per resource it may act on, built from the session's resources.

Words: a *target* is one resource of the session the model may act on, with the action kind it takes there and
whether its strategy undoes by an inverse the model must write (the inverse strategies of workspaces and
databases: that inverse is tried before the action runs). Strategies that undo by themselves (snapshots, an open
transaction, a copy) get no inverse field: the model has less to get wrong, and a client inverse would be refused.
An http call's undo is never the model's: the resource's rule set derives it from the recorded response, which
holds what no model can know before the call (the id the service gives).

The schemas use only what OpenAI's strict structured output and llama.cpp's grammar both take: type, properties,
required, additionalProperties false, enum/const, anyOf and maxLength (llama.cpp bounds the answer by it, so a
small model's repetition ends where the schema does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from goexd.domain.models import Resource, ResourceKind, UndoStrategy

MAX_DESCRIPTION = 100
MIN_FIELD = 120  # characters a command or SQL field may hold, at the least
# Characters per token assumed when a field's length is bounded by the answer's token budget: a low guess, so a
# whole answer (all its fields at their longest) fits in [planner] max_tokens and is never cut into invalid JSON.
CHARS_PER_TOKEN = 2
STRUCTURE_TOKENS = 80  # the JSON around the fields, the resource's name and the description
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Target:
    resource: str
    kind: ResourceKind
    strategy: UndoStrategy
    wants_inverse: bool  # the model writes the inverse (tested before the action runs)

    @property
    def action(self) -> str:
        """The field the action goes in: "command", "sql" or "request"."""
        return {ResourceKind.FS: "command", ResourceKind.HTTP: "request"}.get(self.kind, "sql")


def target_of(resource: Resource) -> Target:
    inverse = resource.strategy is UndoStrategy.INVERSE and resource.kind is not ResourceKind.HTTP
    return Target(resource.name, resource.kind, resource.strategy, inverse)


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit}


def field_chars(max_tokens: int, fields: int) -> int:
    """How long each of `fields` long fields may be for a whole answer to fit in `max_tokens`."""
    return max(MIN_FIELD, (max_tokens - STRUCTURE_TOKENS) * CHARS_PER_TOKEN // max(1, fields))


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def target_schema(t: Target, max_tokens: int) -> dict[str, Any]:
    """One resource's answer: {"resource", "description", the action, and its inverse where the model writes it},
    each long field bounded so that the whole answer fits in `max_tokens` (llama.cpp stops a field there)."""
    long = field_chars(max_tokens, 2 if t.wants_inverse or t.kind is ResourceKind.HTTP else 1)
    props: dict[str, Any] = {
        "resource": {"type": "string", "enum": [t.resource]},
        "description": _text(MAX_DESCRIPTION),
    }
    if t.kind is ResourceKind.FS:
        props["command"] = _text(long)
        if t.wants_inverse:
            props["inverse_command"] = _text(long)
    elif t.kind is ResourceKind.HTTP:
        props["method"] = {"type": "string", "enum": list(HTTP_METHODS)}
        props["path"] = _text(min(long, 500))
        props["body"] = _text(long)  # JSON text, or "" for none: a free-form object is more than a grammar bounds
    else:
        props["sql"] = _text(long)
        if t.wants_inverse:
            props["inverse_sql"] = _text(long)
    return _object(props)


def plan_schema(targets: Sequence[Target], max_tokens: int) -> dict[str, Any]:
    """The chat mode's answer: {"action": one of the targets' schemas} (a root object, as strict mode wants)."""
    schemas = [target_schema(t, max_tokens) for t in targets]
    return _object({"action": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}})


def target_example(t: Target) -> str:
    """One worked example of an answer on `t` (small models follow an example far better than a description)."""
    head = f'{{"action": {{"resource": "{t.resource}", '
    if t.kind is ResourceKind.FS:
        inverse = ', "inverse_command": "rm notes.txt"' if t.wants_inverse else ""
        return (
            f'Example: "create notes.txt saying hi" -> {head}"description": "create notes.txt", '
            f'"command": "echo hi > notes.txt"{inverse}}}}}'
        )
    if t.kind is ResourceKind.HTTP:
        return (
            f'Example: "add an item called lamp" -> {head}"description": "create the item lamp", "method": "POST", '
            f'"path": "/items", "body": "{{\\"name\\": \\"lamp\\"}}"}}}}'
        )
    inverse = ', "inverse_sql": "UPDATE items SET price = price / 2"' if t.wants_inverse else ""
    return (  # text for the model, never run
        f'Example: "double every price" -> {head}"description": "double the prices", '  # noqa: S608
        f'"sql": "UPDATE items SET price = price * 2"{inverse}}}}}'
    )


def target_help(t: Target) -> str:
    """How to fill one target's fields, for the system message."""
    if t.kind is ResourceKind.FS:
        text = (
            f'resource "{t.resource}": "command" is one POSIX sh command line, run in the workspace directory with '
            "no network"
        )
        if t.wants_inverse:
            text += (
                '; "inverse_command" is the command that undoes it exactly (goexd tries both on a copy first: an '
                "inverse that does not restore the workspace gets the action refused)"
            )
        return text
    if t.kind is ResourceKind.HTTP:
        return (
            f'resource "{t.resource}": "method", "path" (relative to its base URL, may hold a ?query) and "body" '
            '(JSON text, or "" for none); goexd adds the credential and derives the undo itself'
        )
    engine = "SQLite" if t.kind is ResourceKind.SQLITE else "PostgreSQL"
    text = f'resource "{t.resource}": "sql" is {engine} SQL, one statement or a script'
    if t.wants_inverse:
        text += (
            '; "inverse_sql" is the SQL that undoes it exactly ("" for a query that changes nothing; goexd tries '
            "both first and refuses the action when the inverse does not restore the database)"
        )
    return text
