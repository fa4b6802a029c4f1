"""A Linked Data Platform server for the tests of generic HTTP semantics: the Community Solid
Server 7.2 (npm `@solid/community-server`), a node subprocess on 127.0.0.1 on a free port,
storing its resources as files in a directory of its own (its `file-root` configuration: no
accounts, the root container open to everyone).

`run_solid_server(dir)` starts one and yields a `SolidServer`; the fixture `solid_server` starts
one per test module (5 to 12 s here: Components.js loads ~900 components first). `SolidServer.files()`
reads the directory it stores into, which the tests compare before and after an undo.

Its shape, as measured here (tests/integration/test_http_generic_live.py relies on each point):

- Items at any depth, any content type: a PUT answers 201 with a Location header and no body
  when it creates the item (making the containers on its path, `/a/` and `/a/b/` for
  `/a/b/c.json`), 205 with no body when it replaces one. No ETag on those answers.
- POST to a container (`/notes/`, or `/notes` which it treats as the container) creates a
  member with a fresh name: 201, no body, `Location` naming it.
- GET answers the bytes as put with the content type the PUT sent, a strong ETag, and `Allow`
  (`OPTIONS, HEAD, GET, PATCH, PUT, DELETE` for a document); a missing item is a 404 whose Allow
  still lists PUT. PATCH takes N3 or SPARQL Update only (of RDF documents).
- DELETE answers 205; If-Match and If-None-Match are honoured (412).
- It has no option for its address; tests/services/node/listen_loopback.js, preloaded, makes it
  listen on 127.0.0.1 only.

Installed by `make install` from tests/services/node/package-lock.json into .venv/node.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.http_service import LoopbackService, directory_state, node_package_command, serve_http

VERSION = "7.2.0"
PACKAGE = "@solid/community-server"
PRELOAD = Path(__file__).resolve().parent / "node" / "listen_loopback.js"


@dataclass(frozen=True)
class SolidServer(LoopbackService):
    root: Path  # where it stores the resources: its whole state
    log_path: Path
    start_s: float

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, trust_env=False, timeout=10)

    def files(self) -> dict[str, bytes]:
        """Every file it stores by its path from the root (its own .meta and .acl files included,
        not its .internal/ locks and settings), and each directory as "a/" with b""."""
        return directory_state(self.root, skip=(".internal",))


def solid_server_command() -> list[str]:
    return node_package_command(PACKAGE, VERSION, "bin/server.js", "-r", str(PRELOAD))


@contextlib.contextmanager
def run_solid_server(state_dir: Path, *, timeout: float = 60) -> Iterator[SolidServer]:
    """Serve state_dir/data (made empty), yield, stop; output in state_dir/solid.log."""
    root = state_dir / "data"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log_path = state_dir / "solid.log"
    command = solid_server_command()
    with serve_http(
        "community-solid-server",
        lambda port: [
            *command,
            "--port",
            str(port),
            "--baseUrl",
            f"http://127.0.0.1:{port}/",
            "--config",
            "@css:config/file-root.json",
            "--rootFilePath",
            str(root),
            "--loggingLevel",
            "warn",
        ],
        "/",
        log_path,
        cwd=state_dir,
        timeout=timeout,
    ) as started:
        yield SolidServer(port=started.port, root=root, log_path=log_path, start_s=started.start_s)


@pytest.fixture(scope="module")
def solid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SolidServer]:
    """A Solid server per test module; tests use paths of their own on it."""
    with run_solid_server(tmp_path_factory.mktemp("solid")) as server:
        yield server
