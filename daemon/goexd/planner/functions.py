"""Function sets for the functions mode: data a user writes (TOML or JSON), one set per file.

A function has a name, a description, the JSON Schema of its arguments and its implementation: an HTTP call
template against an http resource of the session. The model picks one and fills its arguments; goexd checks them
against the schema before anything runs and fills the template. The call is then an http action like any other:
the policy decides on it, and its undo is derived from the recorded response by the resource's rule set (a set
ships the rule set its inverses need; `inverse` names the function that undoes one, for people and the model).

    name = "slack"                      # the set's name: goex prompt --functions slack
    description = "..."
    rules = "slack"                     # the rule set deriving its calls' undo (docs/http-rules.md), if any
    [[function]]
    name = "send_message"
    description = "Post a message to a channel"
    parameters = { type = "object", properties = { channel = { type = "string" } }, required = ["channel"] }
    inverse = "delete_message"          # optional
    [function.http]
    method = "POST"
    path = "/api/chat.postMessage"      # {arg} in a path is percent-encoded
    query = { limit = "{limit}" }       # optional
    json = { channel = "{channel}" }    # optional; a string that is exactly "{arg}" keeps the argument's JSON type

Templates refer only to declared parameters (checked at load); an optional argument left out drops the query
parameter or JSON member it fills.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema

from goexd.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, SetupError

SHIPPED = Path(__file__).parent / "function_sets"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_ABSENT = object()


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: Mapping[str, Any]
    method: str
    path: str
    query: Mapping[str, str]
    json: Any  # a template (None: no body)
    inverse: str = ""
    code: str = ""  # a python function: its code, run in the sandbox over the session's workspace ("" = http)
    egress: tuple[str, ...] = ()  # a python function: the session's http resources its code may call

    @property
    def kind(self) -> str:
        return "python" if self.code else "http"

    def call(self, args: Mapping[str, Any]) -> tuple[str, str, tuple[tuple[str, str], ...], Any]:
        """(method, path, query, body) with the arguments filled in."""
        path = _REF.sub(lambda m: quote(_text(args.get(m.group(1), "")), safe=""), self.path)
        query = []
        for name, template in self.query.items():
            value = _fill(template, args)
            if value is not _ABSENT:
                query.append((name, _text(value)))
        body = None if self.json is None else _fill(self.json, args)
        return self.method, path, tuple(sorted(query)), None if body is _ABSENT else body


@dataclass(frozen=True)
class FunctionSet:
    name: str
    description: str
    functions: Mapping[str, Function]
    rules: str = ""
    source: str = ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _fill(template: Any, args: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _REF.fullmatch(template)
        if whole:
            return args.get(whole.group(1), _ABSENT)
        return _REF.sub(lambda m: _text(args.get(m.group(1), "")), template)
    if isinstance(template, list):
        items = [_fill(t, args) for t in template]
        return [i for i in items if i is not _ABSENT]
    if isinstance(template, dict):
        filled = {k: _fill(v, args) for k, v in template.items()}
        return {k: v for k, v in filled.items() if v is not _ABSENT}
    return template


def load_sets(dirs: Sequence[Path]) -> dict[str, FunctionSet]:
    """The shipped sets, then each directory's *.toml and *.json (a set of the same name replaces the earlier)."""
    found: dict[str, FunctionSet] = {}
    for d in [SHIPPED, *dirs]:
        try:
            if not d.is_dir():
                if d == SHIPPED:
                    continue
                raise SetupError(f"[planner] functions_dirs: {d} is not a directory")
            files = sorted([*d.glob("*.toml"), *d.glob("*.json")])
        except OSError as exc:  # unreadable: said, as a broken file is, and goexd does not start
            raise SetupError(f"[planner] functions_dirs: {d}: {exc.strerror or exc}") from None
        for path in files:
            fset = load_set(path)
            found[fset.name] = fset
    return found


def load_set(path: Path, source: str = "") -> FunctionSet:
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SetupError(f"function set {path}: {exc}") from None
    try:
        return _parse_set(data, source or ("shipped" if path.parent == SHIPPED else str(path)))
    except ValueError as exc:
        raise SetupError(f"function set {path}: {exc}") from None


MAX_PUT_BYTES = 256 * 1024
PUT = "put"  # the source of a set put over the API


def parse_put(text: str) -> FunctionSet:
    """A set given over the API (PutFunctionSet): INVALID_ARGUMENT naming what is wrong."""
    if len(text.encode()) > MAX_PUT_BYTES:
        raise InvalidArgument("toml", f"at most {MAX_PUT_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument("toml", f"not TOML: {exc}") from None
    try:
        return _parse_set(data, PUT)
    except ValueError as exc:
        raise InvalidArgument("toml", str(exc)) from None


class FunctionSets:
    """The sets prompts may name: the shipped ones, [planner] functions_dirs', then those put over the API (kept in
    `put_dir`, one file each, and read again at start). Thread-safe; a put or delete is on disk before it counts."""

    def __init__(self, dirs: Sequence[Path], put_dir: Path) -> None:
        self._lock = threading.Lock()
        self._put_dir = put_dir
        self._sets = load_sets(dirs)  # SetupError: goexd does not start with a broken set
        if put_dir.is_dir():
            for path in sorted(put_dir.glob("*.toml")):
                fset = load_set(path, PUT)
                self._sets[fset.name] = fset

    def get(self, name: str, fld: str) -> FunctionSet:
        with self._lock:
            return pick(self._sets, name, fld)

    def listed(self) -> list[FunctionSet]:
        with self._lock:
            return [self._sets[n] for n in sorted(self._sets)]

    def put(self, text: str, overwrite: bool) -> FunctionSet:
        fset = parse_put(text)
        with self._lock:
            if fset.name in self._sets and not overwrite:
                raise AlreadyExists(f"function set {fset.name!r} exists ({self._sets[fset.name].source}): overwrite")
            self._put_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = self._put_dir / f"{fset.name}.toml"
            part = target.with_suffix(".toml.part")
            part.write_text(text)
            os.chmod(part, 0o600)
            os.replace(part, target)
            self._sets[fset.name] = fset
        return fset

    def delete(self, name: str) -> None:
        with self._lock:
            fset = pick(self._sets, name, "name")
            if fset.source != PUT:
                raise FailedPrecondition(f"function set {name!r} is not one put over the API ({fset.source})")
            (self._put_dir / f"{name}.toml").unlink(missing_ok=True)
            del self._sets[name]


def _parse_set(data: Any, source: str) -> FunctionSet:
    if not isinstance(data, dict):
        raise ValueError("must be a table")
    unknown = set(data) - {"name", "description", "rules", "function"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError("name: 1-64 characters of A-Z a-z 0-9 _ -")
    functions: dict[str, Function] = {}
    for i, f in enumerate(data.get("function") or []):
        fn = _parse_function(f, f"function[{i}]")
        if fn.name in functions:
            raise ValueError(f"function[{i}].name: {fn.name!r} is defined twice")
        functions[fn.name] = fn
    if not functions:
        raise ValueError("function: define at least one [[function]]")
    for fn in functions.values():
        if fn.inverse and fn.inverse not in functions:
            raise ValueError(f"function {fn.name!r}: inverse {fn.inverse!r} is not a function of the set")
    rules = data.get("rules", "")
    if not isinstance(rules, str):
        raise ValueError("rules: a rule set's name")
    return FunctionSet(name, str(data.get("description", "")), functions, rules, source)


def _parse_function(f: Any, here: str) -> Function:
    if not isinstance(f, dict):
        raise ValueError(f"{here}: must be a table")
    unknown = set(f) - {"name", "description", "parameters", "http", "python", "inverse"}
    if unknown:
        raise ValueError(f"{here}: unknown key(s) {sorted(unknown)}")
    name = f.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{here}.name: 1-64 characters of A-Z a-z 0-9 _ -")
    params = f.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type") != "object":
        raise ValueError(f"{here}.parameters: a JSON Schema of type object")
    try:
        jsonschema.Draft202012Validator.check_schema(params)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"{here}.parameters: not a valid JSON Schema: {exc.message}") from None
    declared = set(params.get("properties", {}))
    inverse = str(f.get("inverse", ""))
    if ("http" in f) == ("python" in f):
        raise ValueError(f"{here}: give one implementation, http or python")
    if "python" in f:
        return _python_function(f, here, str(name), params, inverse)
    http = f.get("http")
    if not isinstance(http, dict) or set(http) - {"method", "path", "query", "json"}:
        raise ValueError(f"{here}.http: a table of method, path, query, json")
    method = str(http.get("method", "")).upper()
    if method not in _METHODS:
        raise ValueError(f"{here}.http.method: one of {', '.join(_METHODS)}")
    path = http.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "?" in path:
        raise ValueError(f"{here}.http.path: a path starting with '/', no query (use http.query)")
    query = http.get("query", {})
    if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
        raise ValueError(f"{here}.http.query: a table of strings")
    refs = set(_REF.findall(path)) | {r for v in query.values() for r in _REF.findall(v)}
    refs |= set(_REF.findall(json.dumps(http.get("json"))))
    if refs - declared:
        raise ValueError(f"{here}.http: refers to {sorted(refs - declared)}, not in parameters.properties")
    return Function(name, str(f.get("description", "")), params, method, path, query, http.get("json"), inverse)


def _python_function(f: dict[str, Any], here: str, name: str, params: dict[str, Any], inverse: str) -> Function:
    """`[function.python] code = "..."` (and `egress = ["api"]`): the code reads its arguments as JSON on stdin,
    so no argument is ever pasted into code."""
    py = f["python"]
    if not isinstance(py, dict) or set(py) - {"code", "egress"}:
        raise ValueError(f"{here}.python: a table of code and egress")
    code = py.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"{here}.python.code: the code (it reads its arguments as JSON on stdin)")
    egress = py.get("egress", [])
    if not isinstance(egress, list) or not all(isinstance(e, str) and _NAME.match(e) for e in egress):
        raise ValueError(f"{here}.python.egress: names of the session's http resources")
    description = str(f.get("description", ""))
    return Function(name, description, params, "", "", {}, None, inverse, code, tuple(egress))


def pick(sets: Mapping[str, FunctionSet], name: str, fld: str) -> FunctionSet:
    if not _NAME.match(name):
        raise InvalidArgument(fld, f"{name!r} is not a function set's name")
    if name not in sets:
        raise NotFound("function set", f"{name} (known: {', '.join(sorted(sets)) or 'none'})")
    return sets[name]


def choice_schema(fset: FunctionSet) -> dict[str, Any]:
    """The answer when the endpoint has no tool calls: {"function": name, "arguments": its parameters}."""
    options = [
        {
            "type": "object",
            "properties": {"function": {"type": "string", "enum": [fn.name]}, "arguments": dict(fn.parameters)},
            "required": ["function", "arguments"],
            "additionalProperties": False,
        }
        for fn in fset.functions.values()
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools(fset: FunctionSet) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": fn.name, "description": _described(fn), "parameters": dict(fn.parameters)},
        }
        for fn in fset.functions.values()
    ]


def _described(fn: Function) -> str:
    return fn.description + (f" (undone by {fn.inverse})" if fn.inverse else "")


def kinds_needed(fset: FunctionSet) -> set[str]:
    """What resources a set's functions run on: "http" (an http resource), "python" (a workspace)."""
    return {fn.kind for fn in fset.functions.values()}


def catalogue(fset: FunctionSet) -> list[str]:
    """One line per function, for the system message."""
    return [f"{fn.name}: {_described(fn)}; arguments: {json.dumps(fn.parameters)}" for fn in fset.functions.values()]
