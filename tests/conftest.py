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
