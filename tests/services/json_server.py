"""A generic JSON REST API for the tests and `make demo`: json-server 0.17.4 (npm), a node subprocess on
127.0.0.1 on a free port, serving a JSON file of its own.

`run_json_server(dir, seed)` writes `seed` to dir/db.json, starts json-server on it and yields a
`JsonServer`. The fixture `json_server` starts one per test, from a fresh file seeded with
`json_server_seed` (by default `{"items": [], "users": []}`); a test or module passes its own
seed by defining a `json_server_seed` fixture or with
`@pytest.mark.parametrize("json_server_seed", [{...}])`. Starting takes about 0.3 s.

Each top-level key of the seed is a collection: POST /items → 201 with the created object,
`id` included (max numeric id + 1, starting at 1), and a Location header; GET, PUT (replaces,
keeping the id), PATCH (merges) and DELETE /items/:id, each 404 for a missing id (PUT does not
create); DELETE answers 200 `{}`. A POST with an id already taken is a 500. GET /db answers the
whole state, which is what `JsonServer.db()` returns. Not the file: json-server rewrites it
after each change but asynchronously (lowdb's FileAsync), after it has answered, so right after
a call the file may still hold the state before it.

It runs without `--watch` (the file is read once at start) and from its own directory, so no
json-server.json, public/ or routes file of the repository is picked up.

Installed by `make install` from tests/services/node/package-lock.json into .venv/node
(`npm ci`); node and npm come from scripts/install-system-deps.sh.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.http_service import LoopbackService, node_package_command, serve_http

VERSION = "0.17.4"
DEFAULT_SEED: dict[str, Any] = {"items": [], "users": []}


@dataclass(frozen=True)
class JsonServer(LoopbackService):
    db_path: Path  # the JSON file it serves, rewritten some time after each change
    log_path: Path
    start_s: float  # spawn to first answer

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def client(self) -> httpx.Client:
        """An httpx client on base_url (no proxy from the environment)."""
        return httpx.Client(base_url=self.base_url, trust_env=False, timeout=10)

    def db(self) -> dict[str, Any]:
        """The whole state json-server holds now (GET /db): every collection by name."""
        r = httpx.get(self.url("/db"), trust_env=False, timeout=10)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def json_server_command() -> list[str]:
    """node and json-server's CLI, checked: both there and json-server at VERSION."""
    return node_package_command("json-server", VERSION, "lib/cli/bin.js")


@contextlib.contextmanager
def run_json_server(
    state_dir: Path, seed: dict[str, Any] | None = None, *, timeout: float = 30
) -> Iterator[JsonServer]:
    """Write seed (default DEFAULT_SEED) to state_dir/db.json, serve it, yield, stop. Its output
    goes to state_dir/json-server.log; a failed start raises with the log's tail."""
    state_dir.mkdir(parents=True, exist_ok=True)
    db_path = state_dir / "db.json"
    db_path.write_text(json.dumps(DEFAULT_SEED if seed is None else seed, indent=2))
    log_path = state_dir / "json-server.log"
    command = json_server_command()
    with serve_http(
        "json-server",
        lambda port: [*command, "--host", "127.0.0.1", "--port", str(port), str(db_path)],
        "/db",
        log_path,
        cwd=state_dir,
        timeout=timeout,
    ) as started:
        yield JsonServer(port=started.port, db_path=db_path, log_path=log_path, start_s=started.start_s)


@pytest.fixture
def json_server_seed() -> dict[str, Any]:
    """What `json_server` starts from: override it to seed other data."""
    return copy.deepcopy(DEFAULT_SEED)


@pytest.fixture
def json_server(tmp_path_factory: pytest.TempPathFactory, json_server_seed: dict[str, Any]) -> Iterator[JsonServer]:
    """A json-server of the test's own, from a fresh db file seeded with `json_server_seed`."""
    with run_json_server(tmp_path_factory.mktemp("json-server"), json_server_seed) as server:
        yield server
