"""Running an HTTP service as a subprocess on 127.0.0.1 for the tests: a free port, readiness by
polling a URL, its output in a log file, and a clean stop.

`serve_http` is what tests/services/moto_s3.py and tests/services/json_server.py start their
servers with. The child is started under `setpriv --pdeathsig TERM`, so it goes when the test
process dies, even from SIGKILL, instead of living on with its port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

_ADDRESS_IN_USE = ("Address already in use", "EADDRINUSE")
_ATTEMPTS = 5  # a port found free may be taken before the service binds it: try another


class ServiceStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoopbackService:
    """A service listening on 127.0.0.1:port."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """As an allowed-host entry for a secret."""
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Started:
    port: int
    start_s: float  # from spawning the process to the first good answer on the ready URL
    pid: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def serve_http(
    name: str,
    argv: Callable[[int], Sequence[str]],
    ready_path: str,
    log_path: Path,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Iterator[Started]:
    """Start `argv(port)` on a free port (stdout and stderr appended to log_path), wait until
    GET http://127.0.0.1:PORT{ready_path} answers 200, yield, then stop it (SIGTERM, then SIGKILL).

    Raises ServiceStartError with the log's tail when it exits or does not answer in time."""
    for attempt in range(_ATTEMPTS):
        port = free_port()
        t0 = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "TERM", "--", *argv(port)],
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_ready(proc, f"http://127.0.0.1:{port}{ready_path}", t0 + timeout):
                yield Started(port=port, start_s=time.monotonic() - t0, pid=proc.pid)
                return
            tail = log_tail(log_path)
            if proc.poll() is not None and attempt < _ATTEMPTS - 1 and any(s in tail for s in _ADDRESS_IN_USE):
                continue
            state = f"exited with {proc.returncode}" if proc.poll() is not None else f"did not answer in {timeout}s"
            raise ServiceStartError(f"{name} {state} (port {port}); the end of {log_path}:\n{tail}")
        finally:
            stop_process(proc)
    raise AssertionError("unreachable")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, deadline: float) -> bool:
    with httpx.Client(trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if http.get(url).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    return False


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 10 s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NODE_MODULES = Path(__file__).resolve().parents[2] / ".venv" / "node" / "node_modules"


def node_package_command(package: str, version: str, script: str, *node_options: str) -> list[str]:
    """node (with `node_options`) and `script` of the npm `package` make install put in
    .venv/node, checked: node there and the package at `version`."""
    node = shutil.which("node")
    package_dir = NODE_MODULES / package
    manifest = package_dir / "package.json"
    if node is None or not manifest.is_file():
        missing = "node" if node is None else f"{package} (no {manifest})"
        raise RuntimeError(f"{missing} is not installed: run `make install` (scripts/install-system-deps.sh, npm ci)")
    found = json.loads(manifest.read_text()).get("version")
    if found != version:
        raise RuntimeError(f"{package_dir} is {package} {found}, the tests want {version}: run `make install`")
    return [node, *node_options, str(package_dir / script)]


def directory_state(root: Path, skip: Sequence[str] = ()) -> dict[str, bytes]:
    """Every file under `root` by its path from it ("a/b/c.json") with its bytes, and each
    directory as "a/" with b"", leaving out the top-level names in `skip` and all under them:
    the state of a service that keeps its data as files."""
    state: dict[str, bytes] = {}
    for top, dirs, files in os.walk(root):
        here = Path(top)
        if here == root:  # never descended into: the service changes them as it pleases (Solid's locks come and go)
            dirs[:] = [d for d in dirs if d not in skip]
            files[:] = [f for f in files if f not in skip]
        for d in dirs:
            state[(here / d).relative_to(root).as_posix() + "/"] = b""
        for f in files:
            state[(here / f).relative_to(root).as_posix()] = (here / f).read_bytes()
    return dict(sorted(state.items()))
