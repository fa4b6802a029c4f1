"""A local OpenAI-compatible endpoint that replays scripted answers and records every request it gets.

The only test double of the planner's tests, for what a real model cannot be made to do on purpose: a given
wrong inverse, a malformed answer then a good one, 401/429/a timeout, a given bad argument. It is a real HTTP
server on 127.0.0.1 that goexd's planner reaches through the `openai` package like any endpoint; with
`upstream` it forwards what it has no script for to a real server (the embedded model), so a test can capture
every request the planner sends to a real model too.

    llm = ScriptedLLM().start()
    llm.reply({"action": {...}})                      # the next chat completion's content (JSON-encoded)
    llm.reply_text("not json")                        # content as it is
    llm.reply_tool("send_message", {"channel": "x"})  # a tool call
    llm.fail(429, "slow down")                        # an error answer
    llm.hang(5.0)                                     # answer after 5 s (the client's timeout fires first)
    llm.requests                                      # every request: method, path, headers, body
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.daemon_process import DaemonProcess
from tests.services.loopback_http import JsonHandler, LoopbackHttp

MODEL = "scripted-model"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class _Reply:
    status: int = 200
    content: str | None = None
    tool: tuple[str, str] | None = None
    error: str = ""
    delay_s: float = 0.0


class ScriptedLLM(LoopbackHttp):
    def __init__(self, upstream: str = "", capabilities: tuple[str, ...] | None = ("json_schema",)):
        """`capabilities`: what the probe finds ("json_schema", "tools"): a probe request for one not listed is
        refused with a 400, as an endpoint without it does; "no_bounds": a structured output request whose schema
        holds a length bound is refused (as some hosted APIs' strict mode does); None: probes go upstream too.
        `upstream`: a real endpoint's base URL (…/v1), sent what has no script, with the caller's Authorization."""
        self.requests: list[Recorded] = []
        self.script: deque[_Reply] = deque()
        self.upstream = upstream.rstrip("/")
        self.capabilities = capabilities
        self._lock = threading.Lock()
        outer = self

        class Handler(JsonHandler):
            def _record(self) -> Recorded:
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.body())
                with outer._lock:
                    outer.requests.append(rec)
                return rec

            def _send(self, status: int, payload: Any) -> None:
                self.send_json(status, payload)

            def do_GET(self) -> None:
                rec = self._record()
                if outer.upstream:
                    self._send(*outer._forward(rec))
                elif rec.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "t"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                rec = self._record()
                if not rec.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                request = rec.json or {}
                bounded = "maxLength" in json.dumps(request.get("response_format"))
                if bounded and "no_bounds" in (outer.capabilities or ()):
                    self._send(400, {"error": {"message": "Invalid schema: 'maxLength' is not permitted"}})
                    return
                probe = outer._probe(request)
                if probe is not None:
                    self._send(*probe)
                    return
                with outer._lock:
                    reply = outer.script.popleft() if outer.script else None
                if reply is None:
                    if outer.upstream:
                        self._send(*outer._forward(rec))
                    else:
                        self._send(500, {"error": {"message": "the test scripted no more answers"}})
                    return
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.error, "type": "scripted"}})
                    return
                self._send(200, _completion(reply))

        self.handler = Handler

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------ the script

    def reply(self, value: Any) -> None:
        self.script.append(_Reply(content=json.dumps(value)))

    def reply_text(self, text: str) -> None:
        self.script.append(_Reply(content=text))

    def reply_tool(self, name: str, arguments: Any) -> None:
        self.script.append(_Reply(tool=(name, json.dumps(arguments))))

    def fail(self, status: int, message: str) -> None:
        self.script.append(_Reply(status=status, error=message))

    def hang(self, seconds: float) -> None:
        self.script.append(_Reply(content="{}", delay_s=seconds))

    def chats(self) -> list[Recorded]:
        """The chat completion requests that were not probes."""
        return [r for r in self.requests if r.path.endswith("/chat/completions") and not _is_probe(r.json or {})]

    # ------------------------------------------------------------ internals

    def _probe(self, request: dict[str, Any]) -> tuple[int, Any] | None:
        if self.capabilities is None or not _is_probe(request):
            return None
        if "tools" in request:
            if "tools" not in self.capabilities:
                return 400, {"error": {"message": "tools are not supported"}}
            return 200, _completion(_Reply(tool=("ok", '{"ok": true}')))
        if "json_schema" not in self.capabilities:
            return 400, {"error": {"message": "response_format json_schema is not supported"}}
        return 200, _completion(_Reply(content='{"ok": true}'))

    def _forward(self, rec: Recorded) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.upstream + rec.path.removeprefix("/v1"),
            data=rec.body if rec.method == "POST" else None,
            method=rec.method,
            headers={"content-type": "application/json", "authorization": rec.headers.get("authorization", "")},
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:  # loopback: the test's own server
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def _is_probe(request: dict[str, Any]) -> bool:
    """goexd's capability probe: one user message asking for {"ok": true} (planner/planner.py)."""
    messages = request.get("messages") or []
    return len(messages) == 1 and '{"ok": true}' in str(messages[0].get("content", ""))


def _completion(reply: _Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    finish = "stop"
    if reply.tool is not None:
        name, args = reply.tool
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def scripted_endpoint() -> Iterator[ScriptedLLM]:
    """A started endpoint with structured output and tool calls, stopped after: a module fixture's body."""
    server = ScriptedLLM(capabilities=("json_schema", "tools")).start()
    yield server
    server.stop()


@contextmanager
def planner_daemon(root: Path, base_url: str, config: str = "") -> Iterator[DaemonProcess]:
    """A goexd whose planner is `base_url`, with `config` added to its [planner] table; it must log no traceback."""
    (root / "d").mkdir(parents=True)
    d = DaemonProcess(root / "d", config_toml=f'[planner]\nbase_url = "{base_url}"\n{config}')
    d.start()
    try:
        yield d
    finally:
        d.stop()
    assert "Traceback" not in d.log(), d.log()
