"""What an HTTP rule file holds once loaded and checked (http_rules_parse.py builds it, grammar
in docs/http-rules.md): plain frozen data, and the matching of a request path against a rule's
path pattern."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from goexd.domain.models import ReversibilityClass
from goexd.resources.http.rules_template import Template


class VerifyKind(enum.StrEnum):
    ABSENT = "absent"  # the undone item is gone: the check answers 404 or 410
    PRE_IMAGE = "pre-image"  # the check answers what the capture did
    STATUS = "status"  # only the inverse's own 2xx answer
    NONE = "none"


class RuleError(Exception):
    """A problem in a rule file; line 0 is about the file (or directory) as a whole."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}, line {line}: {message}" if line else f"{file}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Segment:
    text: str  # a literal segment, or the variable's name
    variable: bool = False
    plus: bool = False  # {name+}: one or more segments


@dataclass(frozen=True)
class PathPattern:
    source: str
    segments: tuple[Segment, ...]

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(s.text for s in self.segments if s.variable)

    def match(self, path: str) -> dict[str, str] | None:
        """The variables a path binds (values as sent, still percent-encoded), or None."""
        words = path[1:].split("/") if path.startswith("/") else []
        segments = self.segments
        plus = next((i for i, s in enumerate(segments) if s.plus), None)
        if plus is None:
            if len(words) != len(segments):
                return None
            pairs = list(zip(segments, words, strict=True))
        else:
            tail = len(segments) - plus - 1
            if len(words) < len(segments):
                return None
            middle = "/".join(words[plus : len(words) - tail])
            pairs = [*zip(segments[:plus], words[:plus], strict=True), (segments[plus], middle)]
            pairs += zip(segments[plus + 1 :], words[len(words) - tail :], strict=True)
        variables: dict[str, str] = {}
        for segment, word in pairs:
            if not segment.variable:
                if unquote(word) != segment.text:
                    return None
            elif not word:
                return None
            else:
                variables[segment.text] = word
        return variables


@dataclass(frozen=True)
class CallSpec:
    method: str
    path: Template
    query: tuple[tuple[str, Template], ...] = ()
    headers: tuple[tuple[str, Template], ...] = ()
    body: Template | None = None
    json: Any = None  # a TOML value with Templates for strings; None: no JSON body


@dataclass(frozen=True)
class VerifySpec:
    kind: VerifyKind
    method: str = "GET"
    path: Template | None = None  # None: the default for the kind (docs/http-rules.md)
    query: tuple[tuple[str, Template], ...] = ()


@dataclass(frozen=True)
class When:
    response_status: tuple[tuple[int, int], ...] = ()  # inclusive ranges; () = any
    response_header: tuple[str, ...] = ()
    response_header_not: tuple[tuple[str, str], ...] = ()
    response_json: tuple[tuple[str, ...], ...] = ()
    capture_status: tuple[tuple[int, int], ...] = ()
    capture_allows: tuple[str, ...] = ()  # methods the capture's Allow header must list


@dataclass(frozen=True)
class Outcome:
    label: str
    when: When
    reversibility: ReversibilityClass
    inverse: CallSpec | None
    verify: VerifySpec
    note: str


@dataclass(frozen=True)
class Rule:
    name: str
    methods: frozenset[str]
    pattern: PathPattern
    no_query: bool
    capture: CallSpec | None
    outcomes: tuple[Outcome, ...]
    ignore_fields: tuple[str, ...] = ()  # JSON fields a pre-image check leaves out, beside the file's
    # GETs of what else the call changes beside its item (a trash, a log, a counter), captured with the pre-image
    # and compared at undo as the pre-image is: an undo that leaves them changed is not verified.
    related: tuple[CallSpec, ...] = ()


@dataclass(frozen=True)
class RuleFile:
    name: str
    description: str
    rules: tuple[Rule, ...]
    # How a pre-image check compares bodies: "bytes" (exactly, the default) or "json" (JSON-equal when both are
    # JSON by content type: for a JSON API, whose answers may re-serialise what it holds).
    compare: str = "bytes"
    # JSON fields the service manages itself (a write bumps them: "updated", "meta.etag"), left out of every
    # pre-image check of the file's rules (compare = "json" only); a rule can name more.
    ignore_fields: tuple[str, ...] = ()
