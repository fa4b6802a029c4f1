"""A small JSON service (Flask, from the venv) whose items carry fields the service manages itself, for the
tests of HTTP rule sets' ignore_fields (issue 15, trial 15b H30/H29), run on 127.0.0.1 by serve_http.

- GET/PUT/PATCH/DELETE /stamped/<id>: a JSON object; every write sets the server-managed `updated` (a counter
  of writes) and `meta.etag`, whatever the request says; PUT creates (201) or replaces (200), DELETE 204.
- The store soft-deletes: a DELETE keeps the item in a trash (GET /_trash lists it).
- GET /_state: every item and the trash, for the tests' own checks; GET /_ready: 200.

The app is stamped_app.py (run as `python stamped_app.py PORT`; seeded with items 1 {"text": "a"} and 2
{"text": "b"}).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.services.http_service import LoopbackService, serve_http

APP = Path(__file__).resolve().with_name("stamped_app.py")  # run as a script: Flask only, no test imports


@dataclass(frozen=True)
class StampedService(LoopbackService):
    log_path: Path


@contextmanager
def run_stamped_service(state_dir: Path) -> Iterator[StampedService]:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stamped.log"
    with serve_http(
        "stamped service", lambda port: [sys.executable, str(APP), str(port)], "/_ready", log_path, cwd=state_dir
    ) as started:
        yield StampedService(port=started.port, log_path=log_path)
