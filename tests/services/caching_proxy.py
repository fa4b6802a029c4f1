"""A caching reverse proxy in front of a service, for the tests: a real process on 127.0.0.1.

It behaves like a CDN or a shared cache that honours the request's cache directives: a GET's
answer is kept per path and query and served again for 60 s, unless the request says
`Cache-Control: no-cache` (or `Pragma: no-cache`), which goes to the service and refreshes what
is kept. Every other method goes straight through. So a check that reads without the bypass can
see a stale answer, as behind a real cache (trial 2, H8).

Run as `python caching_proxy.py PORT UPSTREAM_BASE_URL`; `run_caching_proxy` starts one on a free
port for a test.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.services.http_service import LoopbackService, serve_http

TTL_S = 60.0
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _serve(port: int, upstream: str) -> None:
    kept: dict[str, tuple[float, int, list[tuple[str, str]], bytes]] = {}
    client = httpx.Client(base_url=upstream, trust_env=False, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
            bypass = "no-cache" in f"{self.headers.get('Cache-Control', '')} {self.headers.get('Pragma', '')}"
            hit = kept.get(self.path)
            if self.command == "GET" and not bypass and hit is not None and time.time() - hit[0] < TTL_S:
                self._answer(*hit[1:], cached=True)
                return
            r = client.request(self.command, self.path, headers=headers, content=body)
            answer = (r.status_code, [(k, v) for k, v in r.headers.items() if k.lower() not in _HOP], r.content)
            if self.command == "GET":
                kept[self.path] = (time.time(), *answer)
            self._answer(*answer, cached=False)

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, cached: bool) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("X-Cache", "HIT" if cached else "MISS")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.command} {self.path} {self.headers.get('Cache-Control', '')}\n")

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def run_caching_proxy(upstream: str, log_dir: Path, ready_path: str = "/") -> Iterator[LoopbackService]:
    """A caching proxy for `upstream` on a free loopback port, stopped on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with serve_http(
        "caching proxy",
        lambda port: [sys.executable, str(Path(__file__).resolve()), str(port), upstream],
        ready_path,
        log_dir / "caching_proxy.log",
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    ) as started:
        yield LoopbackService(started.port)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
