"""Templates of HTTP rule files (docs/http-rules.md): `{name}` references in strings.

A reference is a path variable (`{id}`) or a value of the exchange: `{response.json.a.b}`,
`{response.headers.name}`, `{response.body}`, and the same under `capture.` and `request.`;
`{response.location}` (the Location header as a path under the resource's base URL) and
`{response.etag}` (a strong ETag), and the same under `capture.`.
`{{` and `}}` are literal braces. Rendering looks each reference up through a function and
raises Missing when the value is not there, so the caller can fall through to the next outcome.
This module knows nothing of HTTP: the rule engine supplies the lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

SOURCES = ("response", "capture", "request")
FIELDS = ("json", "headers", "body", "location", "etag")
# Values the rule engine derives from a response's headers; a request has none of them.
DERIVED_FIELDS = ("location", "etag")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIECE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

# A referenced value: bytes for a body, JSON values for JSON paths, str for variables and headers.
Value = bytes | str | int | float | bool | list[Any] | dict[str, Any]


class TemplateError(Exception):
    """A template that cannot be parsed; the message says why."""


class Missing(Exception):
    """A reference whose value is not there (or cannot be used where it stands)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Ref:
    source: str  # "" for a path variable, else one of SOURCES
    field: str  # the variable's name, else one of FIELDS
    path: tuple[str, ...] = ()  # JSON path, or (header name,)

    def __str__(self) -> str:
        return ".".join(p for p in (self.source, self.field, *self.path) if p)


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[str | Ref, ...]

    @property
    def exact(self) -> Ref | None:
        """The reference when the template is exactly one reference and nothing else."""
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Ref) else None

    @property
    def refs(self) -> tuple[Ref, ...]:
        return tuple(p for p in self.parts if isinstance(p, Ref))


def parse_ref(text: str) -> Ref:
    words = text.strip().split(".")
    if len(words) == 1:
        if not _VAR.match(words[0]):
            raise TemplateError(f"{{{text}}} is not a variable name")
        return Ref("", words[0])
    source, field, rest = words[0], words[1], tuple(words[2:])
    if source not in SOURCES:
        raise TemplateError(f"unknown reference {{{text}}}: it starts with a path variable or {', '.join(SOURCES)}")
    if field not in FIELDS:
        raise TemplateError(f"unknown reference {{{text}}}: after {source}. comes {', '.join(FIELDS)}")
    if any(not w for w in rest):
        raise TemplateError(f"empty name in {{{text}}}")
    if field == "body" and rest:
        raise TemplateError(f"{{{text}}}: {source}.body is the whole body; use {source}.json.PATH for a part")
    if field in DERIVED_FIELDS and (rest or source == "request"):
        raise TemplateError(f"{{{text}}}: {field} is a value of a response or capture, as response.{field}")
    if field == "headers":
        if len(rest) != 1:
            raise TemplateError(f"{{{text}}}: name one header, as {source}.headers.NAME")
        rest = (rest[0].lower(),)  # recorded header names are lower case
    return Ref(source, field, rest)


def parse_template(text: str) -> Template:
    parts: list[str | Ref] = []
    literal = ""
    pos = 0
    for m in _PIECE.finditer(text):
        literal += text[pos : m.start()]
        pos = m.end()
        piece = m.group(0)
        if piece in ("{{", "}}"):
            literal += piece[0]
        elif m.group(1) is None:
            raise TemplateError(f"unbalanced {piece!r} in {text!r} (write {piece * 2} for a literal one)")
        else:
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(parse_ref(m.group(1)))
    literal += text[pos:]
    if literal:
        parts.append(literal)
    return Template(text, tuple(parts))


Lookup = Callable[[Ref], Value]


def scalar_text(ref: Ref, value: Value) -> str:
    """The text of a value standing inside a string."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise Missing(f"{ref} is not UTF-8 text") from None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    raise Missing(f"{ref} is not a single value")


def render(template: Template, lookup: Lookup, *, in_path: bool = False) -> str:
    """The template's text. In a path, every value but a path variable or a location is
    percent-encoded (a matched variable is already encoded as it was sent, a location is a path
    as the service wrote it, checked by the lookup)."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text = scalar_text(part, lookup(part))
        encode = in_path and part.source and part.field != "location"
        out.append(quote(text, safe="") if encode else text)
    return "".join(out)


def render_json(value: Any, lookup: Lookup) -> Any:
    """A TOML value with every string rendered; a string that is exactly one reference becomes
    the referenced JSON value (a number stays a number)."""
    if isinstance(value, dict):
        return {k: render_json(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, lookup) for v in value]
    if isinstance(value, Template):
        ref = value.exact
        if ref is None:
            return render(value, lookup)
        got = lookup(ref)
        if isinstance(got, bytes):
            return parse_json_body(ref, got)
        return got
    return value


def parse_json_body(ref: Ref, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise Missing(f"{ref} is not JSON") from None


def json_value(ref: Ref, doc: Any, path: Sequence[str]) -> Value:
    """doc at the dotted path (a number indexes a list); Missing when absent or null."""
    for key in path:
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            raise Missing(f"{ref} is missing")
    if doc is None:
        raise Missing(f"{ref} is null")
    return doc  # type: ignore[no-any-return]
