from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess


def _serve(root: Path) -> Iterator[DaemonProcess]:
    root.mkdir(exist_ok=True)
    proc = DaemonProcess(root).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        code = proc.stop()
        assert code == 0, f"goexd exited with {code} on SIGTERM:\n{proc.log()}"
    # An unexpected internal error is logged with its traceback: none may happen in these tests.
    assert "Traceback" not in proc.log(), proc.log()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    yield from _serve(tmp_path / "daemon")


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One goexd for a whole test module: cheaper than `daemon` when each test opens its
    sessions over its own `workspace` (a workspace is held by one open session at a time)."""
    yield from _serve(tmp_path_factory.mktemp("goexd"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "projects" / "ws"  # its parent holds nothing of the daemon's
    ws.mkdir(parents=True)
    (ws / "b.txt").write_text("bee\n")
    (ws / "keep.txt").write_text("keep\n")
    (ws / "sub").mkdir()
    (ws / "sub" / "c.bin").write_bytes(bytes(range(256)))
    return ws


# Real services some end-to-end tests run against (fixtures used by name).
from tests.services import oauth_server, oauth_server_short_tokens  # noqa: E402, F401
