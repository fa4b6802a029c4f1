"""A WebDAV server for the tests of generic HTTP semantics: WsgiDAV 4 (PyPI) on cheroot, a
subprocess on 127.0.0.1 on a free port, sharing a directory of its own read-write, anonymously.

`run_wsgidav(dir)` starts one and yields a `WsgiDav`; the fixture `wsgidav` starts one per test
module (~1 s). Its state is the shared directory itself: `WsgiDav.files()` reads every file there,
which is what the tests compare before and after an undo (the server writes a file before it
answers, so the directory is current when a call returns).

Its shape, as measured here (tests/integration/test_http_generic_live.py relies on each point):

- Items at any depth: `/report.txt`, `/a/b/c.json` are files of the share. A PUT answers 201 with
  a small HTML body when it creates the file, 204 with no body when it replaces it; both carry
  the new strong ETag. A PUT below a collection that does not exist is a 409; MKCOL makes one.
- GET answers the file's bytes exactly as put, with a Content-Type taken from the name's
  extension (not the one the PUT sent), and its ETag; a missing file is a 404 with an HTML body.
- DELETE answers 204; a collection (`/a`) is deleted with all it holds. GET of a collection
  without its trailing slash redirects (301) to it with one; with it, an HTML listing.
- If-Match and If-None-Match are honoured on PUT and DELETE (412 when they fail).
- PATCH and POST are not WebDAV methods: 405.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.http_service import LoopbackService, directory_state, serve_http


@dataclass(frozen=True)
class WsgiDav(LoopbackService):
    root: Path  # the shared directory: the server's whole state
    log_path: Path
    start_s: float

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, trust_env=False, timeout=10)

    def files(self) -> dict[str, bytes]:
        """Every file under the share by its path from the root ("a/b/c.json"), and each
        directory as "a/" with b"": the whole state a call may change."""
        return directory_state(self.root)


def wsgidav_command() -> list[str]:
    script = Path(sys.executable).parent / "wsgidav"
    if not script.is_file():
        raise RuntimeError(f"wsgidav is not installed ({script}): run `make install` (pyproject's dev extras)")
    return [str(script)]


@contextlib.contextmanager
def run_wsgidav(state_dir: Path, *, timeout: float = 30) -> Iterator[WsgiDav]:
    """Serve state_dir/share (made empty) over WebDAV, yield, stop; output in state_dir/wsgidav.log."""
    root = state_dir / "share"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log_path = state_dir / "wsgidav.log"
    command = wsgidav_command()
    with serve_http(
        "wsgidav",
        lambda port: [
            *command,
            "--host=127.0.0.1",
            f"--port={port}",
            f"--root={root}",
            "--auth=anonymous",
            "--no-config",
            "--server=cheroot",
        ],
        "/",
        log_path,
        cwd=state_dir,
        timeout=timeout,
    ) as started:
        yield WsgiDav(port=started.port, root=root, log_path=log_path, start_s=started.start_s)


@pytest.fixture(scope="module")
def wsgidav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsgiDav]:
    """A WebDAV server per test module; tests use paths of their own on it."""
    with run_wsgidav(tmp_path_factory.mktemp("wsgidav")) as server:
        yield server
