"""Fixtures shared by several test packages."""

from __future__ import annotations

import os

import pytest

from goexd.domain.sandbox import SandboxUnavailable
from goexd.sandbox.bwrap import BwrapSandbox

# make test runs the suite in pytest-xdist workers, which find COLUMNS=80 and LINES in their environment
# where a plain run has neither: the CLI would fold its tables at 80 columns, as on a terminal.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def sandbox() -> BwrapSandbox:
    """The real bubblewrap sandbox; its absence fails the suite rather than skipping it."""
    sb = BwrapSandbox()
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
    json_server,
    json_server_seed,
    moto_s3,
    moto_s3_auth,
    pg_cluster,
    pg_database,
    s3_bucket,
    s3_versioned_bucket,
)
