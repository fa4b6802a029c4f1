"""Checking TOML data against a schema of check functions, with errors that name the key path.

Shared by the files goexd reads from users (policies, HTTP rule sets): an unknown key or a bad
value raises `Invalid(path, message)`; the caller turns the path into a line with
`policy.locate.line_of` and reports "line N: key.path: message".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

KeyPath = tuple[str | int, ...]
Check = Callable[[KeyPath, Any], None]

_METHOD = re.compile(r"^[A-Z]{3,10}$")


class Invalid(Exception):
    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def key_name(path: KeyPath) -> str:
    """("deny", 2, "regex") -> "deny[2].regex"."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def table(path: KeyPath, value: Any, keys: Mapping[str, Check]) -> None:
    if not isinstance(value, dict):
        raise Invalid(path, "must be a table")
    for key, item in value.items():
        check = keys.get(key)
        if check is None:
            raise Invalid((*path, key), f"unknown key (known here: {', '.join(sorted(keys))})")
        check((*path, key), item)


def nonempty_str(path: KeyPath, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise Invalid(path, "must be a non-empty string")


def http_method(path: KeyPath, value: str) -> None:
    if not _METHOD.match(value):
        raise Invalid(path, f"{value!r} is not an HTTP method in capitals (GET, POST, ...)")


def choice(options: Sequence[str]) -> Check:
    def check(path: KeyPath, value: Any) -> None:
        if value not in options:
            raise Invalid(path, f"must be one of {', '.join(options)}, not {value!r}")

    return check
