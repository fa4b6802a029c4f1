"""Parse and validate policy TOML; build the daemon's policy from its layers, and a session's on its own.

Every key is checked: an unknown key, a wrong type or a bad value is a PolicyError naming the
key and its line, so a typo never silently loosens (or tightens) confinement. The daemon's own
layers (its `egress.allowed_hosts` setting, then its policy file) merge key by key (tables
recursively, lists replaced, `[[deny]]` rules accumulated) over the built-in defaults. A session's
policy is never merged into the daemon's: it is built alone, with no defaults (what it leaves out
it has no opinion on), and both are checked (policy.check.SessionPolicy), so it can only narrow.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from goexd.domain.errors import InvalidArgument
from goexd.domain.secrets import check_host
from goexd.policy.locate import line_of
from goexd.policy.model import DenyRule, Effect, HttpRules, Policy, RateLimit, SandboxRules
from goexd.tomlcheck import Check, Invalid, KeyPath, choice, http_method, key_name, nonempty_str, table

Path = KeyPath

# The [sql] keys: the statement classes, and "irreversible": an action statement whose effect no inverse takes
# back once it commits (a notification sent), on a database whose strategy commits each action at once.
SQL_CLASSES = ("read", "write", "ddl", "privileged", "other", "irreversible")
REVERSIBILITY_CLASSES = ("reversible", "best_effort", "irreversible", "read_only")
DENY_WHERE = ("url", "headers", "body", "any")
_METHOD = re.compile(r"^[A-Z]{3,10}$")
_RULE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day|s|min|h|d)\s*$")
_RATE_UNITS = {"second": 1, "s": 1, "minute": 60, "min": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
# A policy is a few dozen lines; one sent over the API larger than this is refused before it is parsed.
MAX_POLICY_BYTES = 64 * 1024

# Defaults when no layer says otherwise: privileged SQL is refused, irreversible HTTP calls and SQL
# need an approval; everything else runs (and is undoable, or tested, by its strategy).
DEFAULT_SQL = {
    "read": Effect.ALLOW,
    "write": Effect.ALLOW,
    "ddl": Effect.ALLOW,
    "privileged": Effect.DENY,
    "irreversible": Effect.APPROVAL,
}
DEFAULT_SQL_OTHER = Effect.ALLOW
DEFAULT_HTTP_CLASSES = {
    "read_only": Effect.ALLOW,
    "reversible": Effect.ALLOW,
    "best_effort": Effect.ALLOW,
    "irreversible": Effect.APPROVAL,
}


class PolicyError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def check_size(text: str, fld: str) -> None:
    """A policy sent over the API is at most MAX_POLICY_BYTES (INVALID_ARGUMENT naming the field)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        raise InvalidArgument(fld, f"the policy is {size} bytes; at most {MAX_POLICY_BYTES} are accepted")


def parse(text: str) -> dict[str, Any]:
    """The validated tables of one policy text; PolicyError(line, message) on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise PolicyError(int(m.group(1)) if m else 1, f"invalid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively; thousands of levels exhaust the stack.
        # Nothing was built yet, so nothing is left half done.
        raise PolicyError(1, "invalid TOML: arrays or inline tables are nested too deeply") from None
    try:
        _check_top(data)
    except Invalid as exc:
        raise PolicyError(line_of(text, exc.path), f"{key_name(exc.path)}: {exc.message}") from None
    return data


def merge(base: Mapping[str, Any], over: Mapping[str, Any], path: Path = ()) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if path == () and key == "deny":
            out["deny"] = [*base.get("deny", []), *value]
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value, (*path, key))
        else:
            out[key] = value
    return out


def build(layers: Sequence[Mapping[str, Any]]) -> Policy:
    """The daemon's Policy: validated layers, later ones over earlier ones, over the built-in defaults."""
    data: dict[str, Any] = {}
    for layer in layers:
        data = merge(data, layer)
    return _policy(data, defaults=True)


def build_session(data: Mapping[str, Any]) -> Policy:
    """A session's own Policy: only what it says (no defaults: a key it leaves out restricts nothing).
    It is checked beside the daemon's, never instead of it."""
    return _policy(data, defaults=False)


def _policy(data: Mapping[str, Any], defaults: bool) -> Policy:
    sql_table = data.get("sql", {})
    sql = {**(DEFAULT_SQL if defaults else {}), **{k: Effect(v) for k, v in sql_table.items()}}
    if defaults:
        sql.setdefault("other", DEFAULT_SQL_OTHER)
    http_table = data.get("http", {})
    http = _http_rules(http_table)
    classes = {**DEFAULT_HTTP_CLASSES, **http.classes} if defaults else dict(http.classes)
    http = HttpRules(http.methods, http.paths, http.rate_limit, classes, http.trust_client_inverses)
    sandbox = data.get("sandbox", {})
    egress = data.get("egress", {})
    fs_table = data.get("fs", {})
    return Policy(
        sql=sql,
        http=http,
        http_resources={name: _http_rules(t) for name, t in http_table.get("resources", {}).items()},
        deny=tuple(_deny_rule(d) for d in data.get("deny", [])),
        sandbox=SandboxRules(
            max_timeout_s=float(sandbox["max_timeout_s"]) if "max_timeout_s" in sandbox else None,
            max_memory_bytes=_size(sandbox["max_memory"]) if "max_memory" in sandbox else None,
            max_processes=sandbox.get("max_processes"),
            network=Effect(sandbox.get("network", "allow")),
        ),
        # The daemon reaches no host unless it lists it; a session that lists none narrows nothing.
        egress_hosts=tuple(egress["hosts"]) if "hosts" in egress else (() if defaults else None),
        http_hosts=tuple(http_table["hosts"]) if "hosts" in http_table else None,
        fs_failed_inverse=Effect(fs_table["failed_inverse"])
        if "failed_inverse" in fs_table
        else (Effect.DENY if defaults else None),
    )


def load(text: str, defaults: Sequence[Mapping[str, Any]] = ()) -> Policy:
    """A daemon policy from its text (over `defaults`, the daemon's earlier layers)."""
    return build([*defaults, parse(text)])


# ---------------------------------------------------------------- building


def _http_rules(t: Mapping[str, Any]) -> HttpRules:
    rate = t.get("rate_limit")
    return HttpRules(
        methods=frozenset(t["methods"]) if "methods" in t else None,
        paths=tuple(t["paths"]) if "paths" in t else None,
        rate_limit=_rate(rate) if rate is not None else None,
        classes={c: Effect(t[c]) for c in REVERSIBILITY_CLASSES if c in t},
        trust_client_inverses=t.get("trust_client_inverses"),
    )


def _rate(text: str) -> RateLimit:
    m = _RATE.match(text)
    assert m is not None  # validated
    return RateLimit(int(m.group(1)), float(_RATE_UNITS[m.group(2)]), text.strip())


def _size(value: int | str) -> int:
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    assert m is not None  # validated
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(unit or " "))


def _deny_rule(t: Mapping[str, Any]) -> DenyRule:
    return DenyRule(
        name=t["name"],
        reason=t.get("reason", f"matches deny rule {t['name']!r}"),
        where=t.get("in", "any"),
        contains=t.get("contains"),
        regex=re.compile(t["regex"]) if "regex" in t else None,
        json=tuple(t["json"].split(".")) if "json" in t else None,
        above=float(t["above"]) if "above" in t else None,
        not_matching=re.compile(t["not_matching"]) if "not_matching" in t else None,
        resources=frozenset(t["resources"]) if "resources" in t else None,
        methods=frozenset(t["methods"]) if "methods" in t else None,
    )


# ---------------------------------------------------------------- checking


def _effect(path: Path, value: Any) -> None:
    if value not in ("allow", "deny", "approval"):
        raise Invalid(path, f'must be "allow", "deny" or "approval", not {value!r}')


def _str_list(item: Check) -> Check:
    def check(path: Path, value: Any) -> None:
        if not isinstance(value, list):
            raise Invalid(path, "must be a list of strings")
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise Invalid(path, f"element {i} must be a string, not {type(v).__name__}")
            item(path, v)

    return check


def _path_pattern(path: Path, value: str) -> None:
    if not value.startswith("/"):
        raise Invalid(path, f"path pattern {value!r} must start with '/'")


def _host(path: Path, value: str) -> None:
    try:
        check_host(value, key_name(path))  # one definition of a host pattern, shared with secrets
    except InvalidArgument as exc:
        raise Invalid(path, exc.problem) from None


def _any_str(path: Path, value: str) -> None:
    if not value:
        raise Invalid(path, "must not contain empty strings")


def _rate_check(path: Path, value: Any) -> None:
    m = _RATE.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) < 1:
        raise Invalid(path, f'must be like "30/minute" (a positive count per second|minute|hour|day), not {value!r}')


def _positive_number(path: Path, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise Invalid(path, f"must be a positive number, not {value!r}")


def _positive_int(path: Path, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Invalid(path, f"must be a positive integer, not {value!r}")


def _size_check(path: Path, value: Any) -> None:
    ok = (isinstance(value, int) and value > 0) or (isinstance(value, str) and _SIZE.match(value) is not None)
    if isinstance(value, bool) or not ok:
        raise Invalid(path, f'must be a size in bytes or like "512MiB", not {value!r}')


def _regex(path: Path, value: Any) -> None:
    nonempty_str(path, value)
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(path, f"invalid regular expression: {exc}") from None


def _bool(path: Path, value: Any) -> None:
    if not isinstance(value, bool):
        raise Invalid(path, f"must be true or false, not {value!r}")


def _number(path: Path, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(path, f"must be a number, not {value!r}")


def _http_keys(with_hosts: bool) -> dict[str, Check]:
    keys: dict[str, Check] = {
        "methods": _str_list(http_method),
        "paths": _str_list(_path_pattern),
        "rate_limit": _rate_check,
        **{c: _effect for c in REVERSIBILITY_CLASSES},
        "trust_client_inverses": _bool,
    }
    if with_hosts:
        keys["hosts"] = _str_list(_host)
        keys["resources"] = _http_resources
    return keys


def _http_resources(path: Path, value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(path, "must be a table of resource tables ([http.resources.NAME])")
    for name, resource in value.items():
        table((*path, name), resource, _http_keys(with_hosts=False))


def _deny(path: Path, value: Any) -> None:
    if not isinstance(value, list):
        raise Invalid(path, "must be an array of tables ([[deny]])")
    names: set[str] = set()
    for i, rule in enumerate(value):
        here = (*path, i)
        table(
            here,
            rule,
            {
                "name": nonempty_str,
                "reason": nonempty_str,
                "in": choice(DENY_WHERE),
                "contains": nonempty_str,
                "regex": _regex,
                "json": nonempty_str,
                "above": _number,
                "not_matching": _regex,
                "resources": _str_list(_any_str),
                "methods": _str_list(http_method),
            },
        )
        if "name" not in rule:
            raise Invalid(here, "a deny rule needs a name (it is reported when the rule refuses a request)")
        if not _RULE_NAME.match(rule["name"]):
            raise Invalid((*here, "name"), "use letters, digits, '_', '-' and '.' (at most 64)")
        if rule["name"] in names:
            raise Invalid((*here, "name"), f"deny rule {rule['name']!r} is defined twice")
        names.add(rule["name"])
        matchers = [k for k in ("contains", "regex", "json") if k in rule]
        if len(matchers) != 1:
            raise Invalid(here, "a deny rule needs exactly one of contains, regex or json")
        if "json" in rule:
            tests = [k for k in ("above", "not_matching") if k in rule]
            if len(tests) != 1:
                raise Invalid(here, "a json deny rule needs exactly one of above or not_matching")
            if rule.get("in", "body") != "body":
                raise Invalid((*here, "in"), "a json deny rule looks at the body; leave out `in` or set it to body")
        elif "above" in rule or "not_matching" in rule:
            raise Invalid(here, "above and not_matching go with json")


def _check_top(data: dict[str, Any]) -> None:
    table(
        (),
        data,
        {
            "sql": lambda p, v: table(p, v, {c: _effect for c in SQL_CLASSES}),
            "http": lambda p, v: table(p, v, _http_keys(with_hosts=True)),
            "deny": _deny,
            "sandbox": lambda p, v: table(
                p,
                v,
                {
                    "max_timeout_s": _positive_number,
                    "max_memory": _size_check,
                    "max_processes": _positive_int,
                    "network": choice(("allow", "deny", "approval")),
                },
            ),
            "egress": lambda p, v: table(p, v, {"hosts": _str_list(_host)}),
            "fs": lambda p, v: table(p, v, {"failed_inverse": choice(("allow", "deny", "approval"))}),
        },
    )
