"""Fixtures shared by several test packages."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.domain.sandbox import SandboxUnavailable
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.overlay_mounts import PREFIX, OverlayMounts, clear_left

# make test runs the suite in pytest-xdist workers, which find COLUMNS=80 and LINES in their environment
# where a plain run has neither: the CLI would fold its tables at 80 columns, as on a terminal.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def overlay_mounts() -> Iterator[OverlayMounts | None]:
    """Where runs' overlays are mounted as a root goexd mounts them (sandbox/overlay_mounts.py); None when the
    suite does not run as root (the launch chain mounts them then, as for an unprivileged goexd)."""
    if os.geteuid() != 0:
        yield None
        return
    for dead in _dead_test_sessions():  # a test run that was killed: its mount dir is cleared as goexd's start does
        clear_left(dead)
    mounts = OverlayMounts.open(f"{TEST_OWNER}{os.getpid()}x{secrets.token_hex(4)}")
    yield mounts
    mounts.close()


TEST_OWNER = "tests"


def _dead_test_sessions() -> set[str]:
    """The owners of the mount dirs of test runs whose process is gone (named after their pid)."""
    found = set()
    for name in os.listdir(tempfile.gettempdir()):
        m = re.fullmatch(rf"{PREFIX}({TEST_OWNER}(\d+)x[0-9a-f]+)-\w+", name)
        if m is not None and not Path(f"/proc/{m[2]}").exists():
            found.add(m[1])
    return found


@pytest.fixture(scope="session")
def sandbox(overlay_mounts: OverlayMounts | None) -> BwrapSandbox:
    """The real bubblewrap sandbox, as goexd sets it up; its absence fails the suite rather than skipping it."""
    sb = BwrapSandbox(overlay_mounts=overlay_mounts)
    try:
        sb.check()
    except SandboxUnavailable as e:
        pytest.fail(f"the sandbox must work where the suite runs (make install provides bwrap): {e}")
    return sb


# The services tests run against (tests/services), registered here rather than in each package's
# conftest: one private PostgreSQL cluster per test session, shared by the integration and
# end-to-end tests (where each package would otherwise start its own), and the REST services for
# HTTP actions (moto's S3 per module, json-server per test).
from tests.services import (  # noqa: E402, F401
    container_engine_service,
    json_server,
    json_server_seed,
    moto_s3,
    moto_s3_auth,
    pg_cluster,
    pg_database,
    s3_bucket,
    s3_versioned_bucket,
)
