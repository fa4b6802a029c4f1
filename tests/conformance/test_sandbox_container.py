"""The container sandbox plugged into the Sandbox suite, on a real engine (Podman's Docker-compatible service,
tests/services/container_engine.py) and goexd's own offline-built image: as a root goexd runs it, its warm
containers given their workspace on a slot (mount propagation), directly and over an overlay, over a root-owned
workspace and over an unprivileged user's; and as an unprivileged goexd runs it, in a process of the user
`goex-sec`, each container made with the run's workspace bound (the way of an engine goexd cannot mount into:
no slots, no warm pool in a process that lives for one run)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.config import ContainerConfig
from goexd.sandbox.container import ContainerSandbox
from goexd.sandbox.container_slots import Slots
from tests.conformance.as_user import AsUser
from tests.conformance.sandbox_suite import SandboxBackend, SandboxCaps, SandboxContract
from tests.conformance.test_sandbox_bwrap import direct, dirs, open_dir, over_overlay, user_ids  # noqa: F401
from tests.services.container_engine import TEST_OWNER, Engine

CAPS = SandboxCaps(enforced_by=frozenset({"cgroup-v1", "cgroup-v2"}))


def make(engine: Engine, slots: Slots | None, pool_size: int = 1) -> ContainerSandbox:
    settings = ContainerConfig(engine.endpoint, engine.image, pool_size=pool_size, pool_idle_s=60)
    return ContainerSandbox(settings, TEST_OWNER, secrets.token_hex(4), slots=slots)


@pytest.fixture(scope="module")
def slots() -> Iterator[Slots]:
    made = Slots.open(f"{TEST_OWNER}-{os.getpid()}")
    yield made
    made.close()


@pytest.fixture(scope="module")
def with_slots(container_engine_service: Engine, slots: Slots) -> Iterator[ContainerSandbox]:
    sandbox = make(container_engine_service, slots)
    sandbox.check()
    yield sandbox
    sandbox.close()


class TestContainerSlots(SandboxContract):
    """A root goexd, a local engine: warm containers, the workspace mounted on the leased one's slot."""

    caps = CAPS

    @pytest.fixture
    def backend(self, with_slots: ContainerSandbox, tmp_path: Path) -> SandboxBackend:
        return direct(with_slots, tmp_path)


class TestContainerSlotsOverlay(SandboxContract):
    """As above, over an overlay of the workspace that goexd mounts on the slot."""

    caps = CAPS

    @pytest.fixture
    def backend(self, with_slots: ContainerSandbox, tmp_path: Path) -> SandboxBackend:
        return over_overlay(with_slots, tmp_path)


class TestContainerSlotsOverlayOfAUser(SandboxContract):
    """A root goexd over an unprivileged user's workspace: the container runs as them."""

    caps = CAPS

    @pytest.fixture
    def backend(self, with_slots: ContainerSandbox, open_dir: Path, user_ids: tuple[int, int]) -> SandboxBackend:  # noqa: F811
        return over_overlay(with_slots, open_dir, user_ids)


class TestContainerUnprivileged(SandboxContract):
    """An unprivileged goexd (the user `goex-sec`, who may open the engine's socket) over a workspace of theirs."""

    caps = CAPS

    @pytest.fixture
    def backend(
        self,
        container_engine_service: Engine,
        open_dir: Path,  # noqa: F811
        user_ids: tuple[int, int],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> SandboxBackend:
        # Built in a process of that user from the [container] config its environment gives (GOEXD_CONTAINER__*,
        # which the child inherits: set for this test only): no slots, a cold container a run.
        for key, value in container_engine_service.environment().items():
            monkeypatch.setenv(key, value)
        sandbox = AsUser("goexd.sandbox.container:from_environment", *user_ids)
        return direct(sandbox, open_dir, user_ids)
