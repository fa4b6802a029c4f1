"""The loopback redirect target of an authorization flow (RFC 8252 section 7.3).

One small HTTP server per flow on 127.0.0.1 and a port the OS picks, serving only
GET /callback. What a callback means is the flow's business (`on_callback`); this module
parses the query, renders the short page the browser shows, and keeps codes and states out
of the log (the stdlib handler would log the whole request line).
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("goexd.vault.oauth")

CALLBACK_PATH = "/callback"


@dataclass(frozen=True)
class Page:
    status: int
    title: str
    message: str


# (query parameters, the peer's address) -> the page to answer with
OnCallback = Callable[[dict[str, str], str], Page]


class LoopbackListener:
    def __init__(self, on_callback: OnCallback, name: str) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.on_callback = on_callback
        self._name = name
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{CALLBACK_PATH}"

    def start(self) -> None:
        self._thread = threading.Thread(
            # A short poll interval: shutdown() waits up to one interval for the loop to notice.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"oauth-listener-{self._name}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting connections. Idempotent; safe from a request thread (they are not the loop's)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    # Request threads are daemons, so closing never waits for a slow or stuck browser connection.
    daemon_threads = True
    on_callback: OnCallback


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "goexd-oauth"
    sys_version = ""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != CALLBACK_PATH:
            self._send(Page(404, "Not found", "Nothing here."))  # e.g. the browser asking for /favicon.ico
            return
        query = parse_qs(url.query, keep_blank_values=True)
        if any(len(v) > 1 for v in query.values()):
            # RFC 6749 section 3.1: parameters must not repeat; which copy counts would be a guess.
            self._send(Page(400, "Invalid request", "A parameter appears more than once."))
            return
        params = {k: v[0] for k, v in query.items()}
        self._send(self.server.on_callback(params, self.client_address[0]))

    def _send(self, page: Page) -> None:
        body = _render(page).encode()
        self.send_response(page.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        # The page follows a URL holding the authorization code: keep it out of caches and referrers.
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the code and the state in its query: log the path only.
        log.debug("oauth listener: %s %s from %s", self.command, urlsplit(self.path).path, self.client_address[0])


def _render(page: Page) -> str:
    title = html.escape(page.title)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>goex: {title}</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:4em auto;line-height:1.5}</style>"
        f"</head><body><h1>{title}</h1><p>{html.escape(page.message)}</p></body></html>\n"
    )
