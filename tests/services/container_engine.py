"""A real container engine for the tests: Podman's Docker-compatible API service, one per test session.

`podman system service` on a private socket, with a containers.conf of its own: the `runc` runtime and
default ulimits (nofile 1024, nproc 4096), as the machines the suite runs on need (crun and podman's
default limits fail there). The image is goexd's own, built offline from this machine's packages
(goexd/sandbox/container_image.py) and found by its content tag when an earlier session built it already.
The socket is given to the unprivileged user `goex-sec` too: the security suite runs goexd as that user
against the same engine (an engine's socket is as good as root: a user who may open it is trusted).

A machine without podman fails the container tests (make install provides it), never skips them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from goexd.sandbox import container_engine, container_image, container_slots
from tests.services.http_service import stop_process
from tests.users import ensure_system_user

CONTAINERS_CONF = """\
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
"""
IMAGE_LOCK = Path(tempfile.gettempdir()) / "goex-test-image.lock"  # one build at a time across workers


UNPRIVILEGED = "goex-sec"
TEST_OWNER = "goex-tests"  # the label owner of containers the tests make without a daemon


@dataclass(frozen=True)
class Engine:
    endpoint: str
    socket: Path
    image: str
    conf: Path
    process: subprocess.Popen[bytes]

    def api(self) -> docker.APIClient:
        return container_engine.connect(self.endpoint)

    def environment(self) -> dict[str, str]:
        """The [container] config as goexd reads it from the environment: for a process a test starts with it
        (never set in the tests' own environment: every goexd they start would inherit it, over its config)."""
        return {"GOEXD_CONTAINER__ENDPOINT": self.endpoint, "GOEXD_CONTAINER__IMAGE": self.image}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The podman CLI on the same storage and configuration (not through the API)."""
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, check=False)


def start_service(scratch: Path, conf: Path, endpoint: str = "") -> tuple[subprocess.Popen[bytes], Path]:
    """`podman system service` on `scratch`/podman.sock (or `endpoint`, tcp:// say), answering; its socket path."""
    sock = scratch / "podman.sock"
    endpoint = endpoint or f"unix://{sock}"
    log = open(scratch / "service.log", "wb")  # noqa: SIM115 - the service's, closed with it
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", endpoint],
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"podman system service exited: {(scratch / 'service.log').read_text()[-2000:]}")
        if sock.exists() or not endpoint.startswith("unix://"):
            try:
                container_engine.connect(endpoint, 5).ping()
                return proc, sock
            except container_engine.ENGINE_ERRORS:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("podman system service did not answer within 30 s")


SHELL_ONLY = "localhost/goex-test-shell-only:1"


def shell_only_image(api: docker.APIClient) -> str:
    """An image of /bin/sh (this machine's dash and the libraries it loads) and nothing else: no python3."""
    if api.images(name=SHELL_ONLY, quiet=True):
        return SHELL_ONLY
    libs = subprocess.run(["ldd", "/usr/bin/dash"], capture_output=True, text=True, check=True).stdout
    files = ["/usr/bin/dash", *(w for w in libs.split() if w.startswith("/"))]
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        tar = Path(scratch) / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            for f in files:
                t.add(os.path.realpath(f), arcname=f.lstrip("/"))
            link = tarfile.TarInfo("bin/sh")
            link.type, link.linkname = tarfile.SYMTYPE, "/usr/bin/dash"
            t.addfile(link)
        api.import_image(src=str(tar), repository=SHELL_ONLY)
    return SHELL_ONLY


def remove_orphans(api: docker.APIClient) -> int:
    """Remove the containers whose goexd (io.goex.pid) is gone: what a test's daemon left when it was killed or
    failed (a goexd removes its own at stop, and an earlier start's when its state dir starts again, but a test's
    state dir is never started again). Live goexds' containers (another test worker's) are left alone."""
    removed = 0
    for c in api.containers(all=True, filters={"label": [container_engine.LABEL_PID]}):
        pid = (c.get("Labels") or {}).get(container_engine.LABEL_PID, "")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(*container_engine.ENGINE_ERRORS):
                api.remove_container(c["Id"], force=True)
                removed += 1
    return removed


def remove_orphan_slots() -> None:
    """Unmount and remove the container slot dirs of goexds that are gone (their pid is in the name): a killed
    test daemon's state dir never starts again to clear them (container_slots.clear_left)."""
    pattern = re.compile(rf"{container_slots.PREFIX}\w+-(\d+)-\w+")
    for entry in Path(tempfile.gettempdir()).iterdir():
        m = pattern.fullmatch(entry.name)
        if m is not None and not Path(f"/proc/{m[1]}").exists():
            container_slots.Slots(entry).close()  # that dir alone: what is mounted below it, then it


@pytest.fixture(scope="session")
def container_engine_service() -> Iterator[Engine]:
    """The session's engine and goexd's image in it (see the module doc)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.fail("the container tests need podman and runc (make install provides them)")
    scratch = Path(tempfile.mkdtemp(prefix="goex-engine-", dir="/var/tmp"))
    scratch.chmod(0o755)
    conf = scratch / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    proc, sock = start_service(scratch, conf)
    endpoint = f"unix://{sock}"
    try:
        if os.geteuid() == 0:
            user = ensure_system_user(UNPRIVILEGED)
            os.chown(sock, user.pw_uid, user.pw_gid)
        api = container_engine.connect(endpoint)
        remove_orphans(api)  # an earlier session's, killed
        if os.geteuid() == 0:
            remove_orphan_slots()
        with open(IMAGE_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            image = container_image.ensure_image(api)
        yield Engine(endpoint, sock, image, conf, proc)
        remove_orphans(api)
        if os.geteuid() == 0:
            remove_orphan_slots()
    finally:
        stop_process(proc)
        shutil.rmtree(scratch, ignore_errors=True)
