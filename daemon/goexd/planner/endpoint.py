"""One OpenAI-compatible endpoint, through the `openai` package: chat completions, and what the endpoint supports.

Rules: the client is built with everything explicit (base URL, key, timeout) and never retries by itself (goexd
counts its own attempts, and a retry of a timed-out request would double its cost); an endpoint's failure is a
GoexError that says which (unreachable, refused key, rate limit, timeout, a request it rejects) and never carries
the key; the key is asked of the vault for the endpoint's own host, so a secret not allowed there is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpx  # openai's own HTTP client (a dependency of it; openai < 3: see pyproject.toml)
import openai

from goexd.domain.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    GoexError,
    ResourceExhausted,
    Unavailable,
)

Message = Mapping[str, str]
NO_KEY = "no-key"  # what is sent as the bearer token where no key is configured (the client needs one)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as the endpoint gave it


@dataclass(frozen=True)
class Answer:
    text: str  # the message's content ("" when it only called a tool)
    tool_calls: tuple[ToolCall, ...]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str


class Endpoint:
    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        timeout_s: float,
        shown_as: str = "",
        trust_env: bool = True,
    ) -> None:
        """`api_key` is asked for on each request (a vault value may be rotated); `shown_as` names the endpoint in
        messages and records (the base URL by default); `trust_env`: follow the proxy variables of goexd's env."""
        self.base_url = base_url.rstrip("/")
        self.shown_as = shown_as or self.base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self._key,
            timeout=timeout_s,
            max_retries=0,
            organization=None,
            project=None,
            http_client=httpx.Client(trust_env=trust_env, timeout=timeout_s),
        )

    def _key(self) -> str:
        return self._api_key() or NO_KEY

    def close(self) -> None:
        self._client.close()

    def models(self) -> list[str]:
        """The ids the endpoint lists (GET /models)."""
        try:
            return [m.id for m in self._client.models.list()]
        except openai.OpenAIError as exc:
            raise self._translated(exc, "listing its models") from None

    def chat(
        self,
        model: str,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        response_format: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
    ) -> Answer:
        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format
        if tools is not None:
            extra["tools"] = list(tools)
            if tool_choice is not None:
                extra["tool_choice"] = tool_choice
        started = time.monotonic()
        try:
            reply = self._client.chat.completions.create(
                model=model,
                messages=cast(Any, list(messages)),
                max_tokens=max_tokens,
                temperature=temperature,
                **extra,
            )
        except openai.OpenAIError as exc:
            raise self._translated(exc, "asking it for a plan") from None
        latency = time.monotonic() - started
        if not reply.choices:
            raise Unavailable(f"the planner endpoint {self.shown_as} answered no choice")
        choice = reply.choices[0]
        calls = tuple(
            ToolCall(c.function.name, c.function.arguments or "")
            for c in (choice.message.tool_calls or ())
            if getattr(c, "function", None) is not None
        )
        usage = reply.usage
        return Answer(
            text=choice.message.content or "",
            tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
            finish_reason=str(choice.finish_reason or ""),
        )

    def _translated(self, exc: openai.OpenAIError, doing: str) -> GoexError:
        """openai's exception as goexd's: which failure, where, never the key (the vault's redactor runs later too)."""
        where = f"the planner endpoint {self.shown_as}"
        if isinstance(exc, openai.APITimeoutError):
            limit = f"{self._timeout_s:g} s"
            return DeadlineExceeded(f"{where} did not answer within {limit} ({doing}; [planner] timeout_s)")
        if isinstance(exc, openai.APIConnectionError):
            return Unavailable(f"{where} cannot be reached ({doing}): {_cause(exc)}")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return FailedPrecondition(
                f"{where} refused the API key ({_status(exc)}; {doing}): check [planner] api_key_secret"
            )
        if isinstance(exc, openai.RateLimitError):
            return ResourceExhausted(f"{where} is rate limiting goexd ({_status(exc)}): {_message(exc)}")
        if isinstance(exc, openai.APIStatusError):
            return FailedPrecondition(f"{where} refused the request ({_status(exc)}; {doing}): {_message(exc)}")
        return Unavailable(f"{where} failed ({doing}): {type(exc).__name__}: {_message(exc)}")


def _status(exc: openai.APIStatusError) -> str:
    return f"HTTP {exc.status_code}"


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, Mapping) else inner
        if text:
            return str(text)[:300]
    return str(exc)[:300]


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return str(cause)[:200] if cause is not None else str(exc)[:200]


def host_of(base_url: str) -> tuple[str, str, int]:
    """(scheme, host, port) the key is asked for."""
    parts = urlsplit(base_url)
    return parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def answer_json(answer: Answer) -> str:
    """The answer as one text for the record: its content, or its tool calls as JSON."""
    if answer.tool_calls:
        return json.dumps([{"name": c.name, "arguments": c.arguments} for c in answer.tool_calls], ensure_ascii=False)
    return answer.text
