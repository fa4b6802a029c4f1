"""httpbin on 127.0.0.1 for the egress tests of the security suite, writing down each request it gets, so a
test can assert that a refused request never arrived."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpbin
from werkzeug.serving import make_server


@dataclass
class Service:
    port: int = 0
    requests: list[str] = field(default_factory=list)  # "METHOD /path" of each request, in order

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving() -> Iterator[Service]:
    service = Service()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        service.requests.append(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}")
        return httpbin.app(environ, start_response)

    wsgi = make_server("127.0.0.1", 0, app, threaded=True)
    service.port = wsgi.server_port
    thread = threading.Thread(target=wsgi.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        wsgi.shutdown()
        thread.join()
