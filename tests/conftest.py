"""Fixtures shared by several test packages."""

from __future__ import annotations

import pytest

from goexd.sandbox.base import SandboxUnavailable
from goexd.sandbox.bwrap import BwrapSandbox


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
