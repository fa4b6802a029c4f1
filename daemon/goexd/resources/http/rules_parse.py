"""Load and validate one HTTP rule file (grammar: docs/http-rules.md) into plain specs.

Every key is checked the way policy files are (goexd.policy.parse: same checks, same messages,
the line found by goexd.policy.locate), so a typo is an error naming the file, line and key
rather than a rule that silently never applies. Templates are parsed here and every reference
is checked against what the rule can bind: its path variables, `request.*`, and after the call
`response.*` and (when the rule captures) `capture.*`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from goexd.domain.models import ReversibilityClass
from goexd.policy.locate import line_of
from goexd.resources.http.rules_spec import (
    CallSpec,
    Outcome,
    PathPattern,
    Rule,
    RuleError,
    RuleFile,
    Segment,
    VerifyKind,
    VerifySpec,
    When,
)
from goexd.resources.http.rules_template import Template, TemplateError, parse_template
from goexd.tomlcheck import Check, Invalid, choice, http_method, key_name, nonempty_str, table

KeyPath = tuple[str | int, ...]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEGMENT_VAR = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")
_STATUS_CLASS = re.compile(r"^([1-5])xx$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
OUTCOME_CLASSES = ("reversible", "best_effort", "irreversible")
COMPARES = ("bytes", "json")  # a rule file's compare: how a pre-image check compares bodies
_FIELD_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")  # ignore_fields: "updated", "meta.etag"


# ---------------------------------------------------------------- loading


def parse_rule_file(text: str, file: str) -> RuleFile:
    """The rules of one file; RuleError(file, line, message) on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise RuleError(file, int(m.group(1)) if m else 1, f"invalid TOML: {exc}") from None
    try:
        return _rule_file(data)
    except Invalid as exc:
        where = f"{key_name(exc.path)}: " if exc.path else ""
        raise RuleError(file, _line(text, exc.path), where + exc.message) from None


def _line(text: str, path: KeyPath) -> int:
    """line_of for a path into `[[rule.outcome]]`: line_of numbers such a table among all the
    file's `[[rule.outcome]]` headers, not within its rule, so the index is translated first."""
    if len(path) < 4 or path[0] != "rule" or path[2] != "outcome":
        return line_of(text, path)
    rule, outcome, seen_rules, seen_outcomes, local = path[1], path[3], -1, 0, 0
    for line in text.splitlines():
        words = line.split("#", 1)[0].replace(" ", "").replace("\t", "")
        if words == "[[rule]]":
            seen_rules, local = seen_rules + 1, 0
        elif words == "[[rule.outcome]]":
            if seen_rules == rule and local == outcome:
                return line_of(text, ("rule", "outcome", seen_outcomes, *path[4:]))
            seen_outcomes, local = seen_outcomes + 1, local + 1
    return line_of(text, path[:3])  # outcomes written inline (`outcome = [...]`)


def _rule_file(data: dict[str, Any]) -> RuleFile:
    table(
        (),
        data,
        {
            "name": _ident,
            "description": nonempty_str,
            "compare": choice(COMPARES),
            "ignore_fields": _field_paths,
            "rule": _array_of_tables,
        },
    )
    if "name" not in data:
        raise Invalid((), "a rule file needs a name (rule sets are chosen by it)")
    rules = data.get("rule", [])
    if not rules:
        raise Invalid((), "a rule file needs at least one [[rule]]")
    compare = data.get("compare", "bytes")
    ignoring = [(("ignore_fields",), data)] + [(("rule", i, "ignore_fields"), r) for i, r in enumerate(rules)]
    for where, t in ignoring:
        if "ignore_fields" in t and compare != "json":
            raise Invalid(where, 'leaves JSON fields out of the comparison: the file needs compare = "json"')
    names: set[str] = set()
    built = []
    for i, rule_table in enumerate(rules):
        rule = _rule(("rule", i), rule_table)
        if rule.name in names:
            raise Invalid(("rule", i, "name"), f"rule {rule.name!r} is defined twice")
        names.add(rule.name)
        built.append(rule)
    ignore = tuple(data.get("ignore_fields", ()))
    return RuleFile(data["name"], data.get("description", ""), tuple(built), compare, ignore)


def _rule(here: KeyPath, t: dict[str, Any]) -> Rule:
    table(
        here,
        t,
        {
            "name": _ident,
            "method": _methods,
            "path": nonempty_str,
            "no_query": _bool,
            "ignore_fields": _field_paths,
            "capture": lambda p, v: table(p, v, {"method": choice(("GET", "HEAD")), **_CALL_KEYS}),
            "related": _related_calls,
            "outcome": _array_of_tables,
        },
    )
    for key in ("name", "method", "path", "outcome"):
        if key not in t:
            raise Invalid(here, f"a rule needs {key}")
    pattern = _pattern((*here, "path"), t["path"])
    variables = pattern.variables
    capture = None
    if "capture" in t:
        capture = _call((*here, "capture"), {"method": "GET", **t["capture"]}, _Scope(variables, False, False))
    related = tuple(
        _call((*here, "related", j), {"method": "GET", **r}, _Scope(variables, False, False))
        for j, r in enumerate(t.get("related", ()))
    )
    if related and capture is None:
        raise Invalid(
            (*here, "related"), "compares what the service answered before the call: the rule needs a capture"
        )
    scope = _Scope(variables, capture is not None, True)
    outcomes = tuple(_outcome((*here, "outcome", j), o, scope) for j, o in enumerate(t["outcome"]))
    if not outcomes:
        raise Invalid((*here, "outcome"), "a rule needs at least one [[rule.outcome]]")
    methods = t["method"] if isinstance(t["method"], list) else [t["method"]]
    ignore = tuple(t.get("ignore_fields", ()))
    no_query = bool(t.get("no_query", False))
    return Rule(t["name"], frozenset(methods), pattern, no_query, capture, outcomes, ignore, related)


def _pattern(here: KeyPath, text: str) -> PathPattern:
    if not text.startswith("/") or "?" in text:
        raise Invalid(here, f"path pattern {text!r} must start with '/' and hold no query")
    segments: list[Segment] = []
    for word in text[1:].split("/"):
        m = _SEGMENT_VAR.match(word)
        if m is not None:
            if m.group(1) in {s.text for s in segments if s.variable}:
                raise Invalid(here, f"variable {{{m.group(1)}}} appears twice")
            segments.append(Segment(m.group(1), variable=True, plus=m.group(2) == "+"))
        elif "{" in word or "}" in word:
            raise Invalid(here, f"{word!r}: a variable is a whole segment, {{name}} or {{name+}}")
        else:
            segments.append(Segment(word))
    if sum(s.plus for s in segments) > 1:
        raise Invalid(here, "at most one {name+} variable")
    return PathPattern(text, tuple(segments))


@dataclass(frozen=True)
class _Scope:
    variables: frozenset[str]
    capture: bool  # capture.* may be referred to
    response: bool  # response.* may be referred to (not in the capture, sent before the call)


def _template(here: KeyPath, text: str, scope: _Scope) -> Template:
    try:
        template = parse_template(text)
    except TemplateError as exc:
        raise Invalid(here, str(exc)) from None
    for ref in template.refs:
        if not ref.source and ref.field not in scope.variables:
            bound = ", ".join(sorted(scope.variables)) or "nothing"
            raise Invalid(here, f"unknown variable {{{ref}}} (the rule's path binds {bound})")
        if ref.source == "capture" and not scope.capture:
            raise Invalid(here, f"{{{ref}}} needs a capture in the rule")
        if ref.source == "response" and not scope.response:
            raise Invalid(here, f"{{{ref}}}: the capture is sent before the call, there is no response yet")
    return template


def _path_template(here: KeyPath, text: str, scope: _Scope) -> Template:
    template = _template(here, text.strip(), scope) if text.strip().startswith("{") else None
    if template is not None and template.exact is not None and template.exact.field == "location":
        return template  # a whole path, resolved and checked when filled in
    if not text.startswith("/") or "?" in text:
        raise Invalid(
            here, f"{text!r} must start with '/' and hold no query (use query = {{ ... }}), or be one location"
        )
    template = _template(here, text, scope)
    if any(ref.field == "location" for ref in template.refs):
        raise Invalid(here, f"{text!r}: a location is a whole path, alone in its template")
    return template


def _templates(here: KeyPath, table: Mapping[str, str], scope: _Scope) -> tuple[tuple[str, Template], ...]:
    return tuple((k, _template((*here, k), v, scope)) for k, v in table.items())


def _call(here: KeyPath, t: dict[str, Any], scope: _Scope) -> CallSpec:
    if "path" not in t:
        raise Invalid(here, "a call needs a path")
    if "body" in t and "json" in t:
        raise Invalid(here, "give body or json, not both")
    headers = _templates((*here, "headers"), t.get("headers", {}), scope)
    return CallSpec(
        method=t["method"],
        path=_path_template((*here, "path"), t["path"], scope),
        query=_templates((*here, "query"), t.get("query", {}), scope),
        headers=tuple((k.lower(), v) for k, v in headers),
        body=_template((*here, "body"), t["body"], scope) if "body" in t else None,
        json=_json_templates((*here, "json"), t["json"], scope) if "json" in t else None,
    )


def _json_templates(here: KeyPath, value: Any, scope: _Scope) -> Any:
    if isinstance(value, str):
        return _template(here, value, scope)
    if isinstance(value, dict):
        return {k: _json_templates((*here, k), v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_templates(here, v, scope) for v in value]
    if not isinstance(value, bool | int | float):
        raise Invalid(here, f"{type(value).__name__} has no JSON form")
    return value


def _outcome(here: KeyPath, t: dict[str, Any], scope: _Scope) -> Outcome:
    table(
        here,
        t,
        {
            "name": nonempty_str,
            "when": _when_keys,
            "class": choice(OUTCOME_CLASSES),
            "inverse": _inverse_keys,
            "verify": _verify_keys,
            "note": nonempty_str,
        },
    )
    if "class" not in t:
        raise Invalid(here, "an outcome needs a class")
    reversibility = ReversibilityClass(t["class"])
    irreversible = reversibility is ReversibilityClass.IRREVERSIBLE
    for key in ("inverse", "verify"):
        if key not in t and not irreversible:
            raise Invalid(here, f"a {t['class']} outcome needs {key}")
    inverse = None
    if isinstance(t.get("inverse"), dict):
        if irreversible:
            raise Invalid((*here, "inverse"), 'an irreversible outcome has inverse = "none"')
        inverse = _call((*here, "inverse"), t["inverse"], scope)
    verify = _verify((*here, "verify"), t.get("verify", "none"), inverse, scope)
    if irreversible and verify.kind is not VerifyKind.NONE:
        raise Invalid((*here, "verify"), 'an irreversible outcome has nothing to verify: verify = "none"')
    when = _when((*here, "when"), t.get("when", {}), scope)
    return Outcome(t.get("name", ""), when, reversibility, inverse, verify, t.get("note", ""))


def _verify(here: KeyPath, value: str | dict[str, Any], inverse: CallSpec | None, scope: _Scope) -> VerifySpec:
    t: dict[str, Any] = {"kind": value} if isinstance(value, str) else value
    if "kind" not in t:
        raise Invalid(here, "verify needs a kind")
    kind = VerifyKind(t["kind"])
    path = _path_template((*here, "path"), t["path"], scope) if "path" in t else None
    query = _templates((*here, "query"), t.get("query", {}), scope)
    if kind in (VerifyKind.STATUS, VerifyKind.NONE) and len(t) > 1:
        raise Invalid(here, f"verify {kind} sends no check: it takes no method, path or query")
    if kind is VerifyKind.STATUS and inverse is None:
        raise Invalid(here, "verify status checks the inverse's answer: this outcome has no inverse")
    if path is None and kind is VerifyKind.PRE_IMAGE and not scope.capture:
        raise Invalid(here, "verify pre-image compares with the capture: the rule has no capture")
    deletes = inverse is not None and inverse.method == "DELETE"
    if path is None and kind is VerifyKind.ABSENT and not scope.capture and not deletes:
        raise Invalid(here, "verify absent needs a path here (no DELETE inverse nor capture to take it from)")
    return VerifySpec(kind, t.get("method", "GET"), path, query)


def _when(here: KeyPath, t: dict[str, Any], scope: _Scope) -> When:
    for key in ("capture_status", "capture_allows"):
        if key in t and not scope.capture:
            raise Invalid((*here, key), "the rule has no capture")
    return When(
        response_status=tuple(_status_range(s) for s in t.get("response_status", ())),
        response_header=tuple(h.lower() for h in _one_or_list(t.get("response_header", ()))),
        response_header_not=tuple((k.lower(), v) for k, v in t.get("response_header_not", {}).items()),
        response_json=tuple(tuple(p.split(".")) for p in _one_or_list(t.get("response_json", ()))),
        capture_status=tuple(_status_range(s) for s in t.get("capture_status", ())),
        capture_allows=tuple(_one_or_list(t.get("capture_allows", ()))),
    )


def _status_range(value: int | str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first = int(value[0]) * 100
    return first, first + 99


def _one_or_list(value: str | Sequence[str]) -> Sequence[str]:
    return [value] if isinstance(value, str) else value


# ---------------------------------------------------------------- key checks


def _ident(path: KeyPath, value: Any) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise Invalid(path, f"use 1 to 64 letters, digits, '_' and '-', not {value!r}")


def _related_calls(path: KeyPath, value: Any) -> None:
    """related: GETs of what else the call changes (a trash, a log), each like a capture: path, query, headers."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise Invalid(path, 'must be a list of tables, as [{ path = "/trash" }]')
    for i, v in enumerate(value):
        table((*path, i), v, {"method": choice(("GET",)), **_CALL_KEYS})
        if "path" not in v:
            raise Invalid((*path, i), "a related call needs a path")


def _field_paths(path: KeyPath, value: Any) -> None:
    """ignore_fields: a list of JSON field paths, dotted through objects ("updated", "meta.etag")."""
    if not isinstance(value, list):
        raise Invalid(path, 'must be a list of JSON field paths, as ["updated", "meta.etag"]')
    for v in value:
        if not isinstance(v, str) or not _FIELD_PATH.match(v):
            raise Invalid(path, f"{v!r} is not a JSON field path (names joined by '.', as \"meta.etag\")")


def _bool(path: KeyPath, value: Any) -> None:
    if not isinstance(value, bool):
        raise Invalid(path, f"must be true or false, not {value!r}")


def _array_of_tables(path: KeyPath, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise Invalid(path, "must be an array of tables")


def _methods(path: KeyPath, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise Invalid(path, "name at least one method")
    for v in values:
        if not isinstance(v, str):
            raise Invalid(path, f"must be a method or a list of methods, not {v!r}")
        http_method(path, v)


def _method_list(path: KeyPath, value: Any) -> None:
    if not isinstance(value, str | list) or not value:
        raise Invalid(path, 'must be a method or a list of methods, as "PUT"')
    _methods(path, value)


def _strings(path: KeyPath, value: Any) -> None:
    if not isinstance(value, str | list) or not all(isinstance(v, str) and v for v in _one_or_list(value)):
        raise Invalid(path, "must be a string or a list of strings")


def _header_table(path: KeyPath, value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(path, "must be a table of header names to strings")
    for k, v in value.items():
        if not _HEADER.match(k):
            raise Invalid((*path, k), "not a header name")
        nonempty_str((*path, k), v)


def _string_table(path: KeyPath, value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(path, "must be a table of names to strings")
    for k, v in value.items():
        _text((*path, k), v)


def _statuses(path: KeyPath, value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise Invalid(path, 'must be a list of statuses, as [200, 201] or ["2xx"]')
    for v in value:
        ok = (isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599) or (
            isinstance(v, str) and _STATUS_CLASS.match(v) is not None
        )
        if not ok:
            raise Invalid(path, f'{v!r} is not a status (100 to 599, or a class as "4xx")')


def _text(path: KeyPath, value: Any) -> None:
    if not isinstance(value, str):
        raise Invalid(path, f"must be a string, not {value!r}")


def _json_value(path: KeyPath, value: Any) -> None:
    pass  # any TOML value; its strings are checked as templates when the outcome is built


_CALL_KEYS: dict[str, Check] = {
    "path": nonempty_str,
    "query": _string_table,
    "headers": _header_table,
}
_INVERSE_KEYS: dict[str, Check] = {"method": http_method, **_CALL_KEYS, "body": _text, "json": _json_value}


def _inverse_keys(path: KeyPath, value: Any) -> None:
    if value == "none":
        return
    if not isinstance(value, dict):
        raise Invalid(path, f'must be "none" or a table {{ method = ..., path = ... }}, not {value!r}')
    table(path, value, _INVERSE_KEYS)
    if "method" not in value:
        raise Invalid(path, "an inverse call needs a method")


def _verify_keys(path: KeyPath, value: Any) -> None:
    kinds = choice(tuple(VerifyKind))
    if isinstance(value, str):
        kinds(path, value)
        return
    table(path, value, {"kind": kinds, "method": choice(("GET", "HEAD")), "path": nonempty_str, "query": _string_table})


def _when_keys(path: KeyPath, value: Any) -> None:
    table(
        path,
        value,
        {
            "response_status": _statuses,
            "response_header": _strings,
            "response_header_not": _string_table,
            "response_json": _strings,
            "capture_status": _statuses,
            "capture_allows": _method_list,
        },
    )
