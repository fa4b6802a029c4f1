"""A local HTTP service shaped like the subset of Slack's Web API the `slack` function set calls.

Real HTTP on 127.0.0.1, in-memory state: channels, messages, reactions and files. Like Slack it wants a bearer
token, answers 200 with {"ok": false, "error": ...} for what fails, names channels by id ("C1") or name
("general", "#general"), and gives each message a timestamp id ("ts"). `chat.deleteLatest` stands for the
prototype's "delete the latest message" (Slack itself needs a history read, then chat.delete).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.services.loopback_http import JsonHandler, LoopbackHttp


@dataclass
class SlackState:
    channels: dict[str, str] = field(default_factory=lambda: {"C1": "general", "C2": "random"})
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"C1": [], "C2": []})
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # "POST /api/chat.postMessage", in order

    def channel(self, ref: str) -> str | None:
        ref = ref.lstrip("#")
        if ref in self.channels:
            return ref
        return next((cid for cid, name in self.channels.items() if name == ref), None)

    def texts(self, ref: str) -> list[str]:
        cid = self.channel(ref)
        return [m["text"] for m in self.messages.get(cid or "", [])]


class SlackApi(LoopbackHttp):
    def __init__(self, token: str) -> None:
        self.token = token
        self.state = SlackState()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        outer = self

        class Handler(JsonHandler):
            def _answer(self, payload: dict[str, Any]) -> None:
                self.send_json(200, payload, "application/json; charset=utf-8")  # Slack: 200 whatever happened

            def _handle(self, body: dict[str, Any]) -> None:
                parts = urlsplit(self.path)
                outer.state.calls.append(f"{self.command} {parts.path}")
                if self.headers.get("authorization") != f"Bearer {outer.token}":
                    self._answer({"ok": False, "error": "not_authed"})
                    return
                args = {**{k: v[0] for k, v in parse_qs(parts.query).items()}, **body}
                with outer._lock:
                    self._answer(outer.call(parts.path.removeprefix("/api/"), args))

            def do_GET(self) -> None:
                self._handle({})

            def do_POST(self) -> None:
                raw = self.body()
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    body = None
                if not isinstance(body, dict):
                    self._answer({"ok": False, "error": "invalid_json"})
                    return
                self._handle(body)

        self.handler = Handler

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        if method == "conversations.list":
            return {"ok": True, "channels": [{"id": c, "name": n} for c, n in s.channels.items()]}
        if method == "files.delete":
            if s.files.pop(str(args.get("file")), None) is None:
                return {"ok": False, "error": "file_not_found"}
            return {"ok": True}
        if method == "files.upload":
            fid = f"F{next(self._ids)}"
            s.files[fid] = {"id": fid, "name": args.get("filename"), "content": args.get("content")}
            return {"ok": True, "file": {"id": fid, "name": args.get("filename")}}
        cid = s.channel(str(args.get("channel", "")))
        if cid is None:
            return {"ok": False, "error": "channel_not_found"}
        messages = s.messages[cid]
        if method == "conversations.history":
            limit = int(args.get("limit") or 100)
            return {"ok": True, "messages": list(reversed(messages))[:limit]}
        if method == "chat.postMessage":
            if not args.get("text"):
                return {"ok": False, "error": "no_text"}
            message = {"ts": f"1700000000.{next(self._ids):06d}", "text": str(args["text"]), "reactions": []}
            messages.append(message)
            return {"ok": True, "channel": cid, "ts": message["ts"], "message": message}
        if method in ("chat.delete", "chat.deleteLatest"):
            found = [m for m in messages if m["ts"] == args.get("ts")] if method == "chat.delete" else messages[-1:]
            if not found:
                return {"ok": False, "error": "message_not_found"}
            messages.remove(found[0])
            return {"ok": True, "channel": cid, "ts": found[0]["ts"]}
        if method in ("reactions.add", "reactions.remove"):
            message = next((m for m in messages if m["ts"] == args.get("timestamp")), None)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            name = str(args.get("name"))
            if method == "reactions.add":
                message["reactions"].append(name)
            elif name in message["reactions"]:
                message["reactions"].remove(name)
            else:
                return {"ok": False, "error": "no_reaction"}
            return {"ok": True}
        return {"ok": False, "error": "unknown_method"}
