"""A prompt action's plan: what the planner asked the model, what it answered and what came of it.

Journaled with the action it became (its `plan` column), so `goex show` tells how a sentence became a command.
Plain data and its JSON form, no I/O. Every text here was redacted by the vault before it was stored.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any


class PlanMode(enum.StrEnum):
    CHAT = "chat"  # the model writes the action and its inverse (the paper's chat completion)
    FUNCTIONS = "functions"  # the model picks one of a user-defined set of functions and fills its arguments


class Transport(enum.StrEnum):
    """How the answer's shape was asked for, strongest first (the planner probes what the endpoint supports)."""

    JSON_SCHEMA = "json_schema"  # structured output: the endpoint constrains the answer to the schema
    TOOLS = "tools"  # tool calls: the endpoint returns a function name and its arguments
    JSON = "json"  # only asked for JSON in words; the answer is validated (and retried) by goexd


@dataclass(frozen=True)
class PlanAttempt:
    """One answer of the model: its text as received (redacted, capped) and why goexd refused it ("" = taken)."""

    answer: str
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


@dataclass(frozen=True)
class PlanExchange:
    prompt: str
    mode: PlanMode
    endpoint: str  # the base URL (never with credentials), or "embedded: <model file>"
    model: str
    transport: Transport
    request: str = ""  # what was sent first: the system and user messages, redacted, capped
    request_tokens: int = 0  # goexd's estimate of the request's size (docs/architecture.md, "Planner")
    attempts: tuple[PlanAttempt, ...] = ()
    plan: str = ""  # the validated plan as JSON; "" when none was
    function: str = ""  # functions mode: "<set>.<function>" chosen
    error: str = ""  # why no plan was made (the endpoint's error, the last answer's fault)
    started_at: float = 0.0

    @property
    def latency_s(self) -> float:
        return sum(a.latency_s for a in self.attempts)

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens of every attempt, as the endpoint counted them."""
        return sum(a.prompt_tokens for a in self.attempts), sum(a.completion_tokens for a in self.attempts)


@dataclass(frozen=True)
class PromptRequest:
    """What a prompt action asks for: the sentence, and in functions mode the set the model chooses from."""

    prompt: str
    functions: str = ""  # a function set's name; "" = chat mode
    resource: str = ""  # the resource to act on; "" = any of the session's (the model chooses)


def exchange_to_json(e: PlanExchange) -> dict[str, Any]:
    return {
        "prompt": e.prompt,
        "mode": e.mode.value,
        "endpoint": e.endpoint,
        "model": e.model,
        "transport": e.transport.value,
        "request": e.request,
        "request_tokens": e.request_tokens,
        "attempts": [
            {
                "answer": a.answer,
                "error": a.error,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "latency_s": a.latency_s,
            }
            for a in e.attempts
        ],
        "plan": e.plan,
        "function": e.function,
        "error": e.error,
        "started_at": e.started_at,
    }


def exchange_from_json(d: dict[str, Any]) -> PlanExchange:
    return PlanExchange(
        prompt=d["prompt"],
        mode=PlanMode(d["mode"]),
        endpoint=d["endpoint"],
        model=d["model"],
        transport=Transport(d["transport"]),
        request=d.get("request", ""),
        request_tokens=int(d.get("request_tokens", 0)),
        attempts=tuple(
            PlanAttempt(
                a["answer"], a["error"], int(a["prompt_tokens"]), int(a["completion_tokens"]), float(a["latency_s"])
            )
            for a in d.get("attempts", [])
        ),
        plan=d.get("plan", ""),
        function=d.get("function", ""),
        error=d.get("error", ""),
        started_at=float(d.get("started_at", 0.0)),
    )


def dumps(e: PlanExchange) -> str:
    return json.dumps(exchange_to_json(e), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> PlanExchange:
    return exchange_from_json(json.loads(text))
