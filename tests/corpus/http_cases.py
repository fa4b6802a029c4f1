"""The HTTP client-inverse cases of the inverse corpus (http.toml): data, read here, run by
tests/e2e/test_http_client_inverses.py."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES_FILE = Path(__file__).with_name("http.toml")
VERDICTS = ("verified", "not verified", "unverified")


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str
    json: str | None = None  # the JSON body, as text


@dataclass(frozen=True)
class HttpCase:
    name: str
    action: HttpCall
    right: HttpCall
    wrong: HttpCall
    right_verdict: str
    wrong_verdict: str
    rules: str  # the session's rule set
    approval: str


def _call(d: dict[str, Any]) -> HttpCall:
    return HttpCall(d["method"], d["path"], d.get("json"))


def load() -> tuple[dict[str, Any], list[HttpCase]]:
    """The seed every case starts from, and the cases (each verdict checked to be one of VERDICTS)."""
    data = tomllib.loads(CASES_FILE.read_text())
    cases = []
    for c in data["case"]:
        case = HttpCase(
            name=c["name"],
            action=_call(c["action"]),
            right=_call(c["right"]),
            wrong=_call(c["wrong"]),
            right_verdict=c.get("right_verdict", "verified"),
            wrong_verdict=c["wrong_verdict"],
            rules=c.get("rules", "rest"),
            approval=c.get("approval", ""),
        )
        assert {case.right_verdict, case.wrong_verdict} <= set(VERDICTS), case
        cases.append(case)
    return data["seed"], cases
