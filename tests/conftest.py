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


# One private PostgreSQL cluster per test session (tests/services/postgres.py), shared by the
# integration and end-to-end tests: registered here rather than in each package's conftest,
# where each package would start its own.
from tests.services import pg_cluster, pg_database  # noqa: E402, F401
