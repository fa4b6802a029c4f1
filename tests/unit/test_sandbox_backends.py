"""The daemon's set of sandbox backends (sandbox/backends.py): `auto`, names and images checked at session open,
what a session records, closing; over stand-in backends (the real ones are the conformance and e2e suites')."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from goexd.config import Config, ContainerConfig, SandboxConfig
from goexd.domain.errors import FailedPrecondition, InvalidArgument, SetupError
from goexd.domain.sandbox import Sandbox, SandboxUnavailable
from goexd.sandbox import backends
from goexd.sandbox.backends import SandboxHost, SandboxSet


class Stub:
    def __init__(self, name: str, works: bool = True, remote: bool = False) -> None:
        self.name, self.works, self.remote, self.closed = name, works, remote, False
        self.images: list[str] = []

    def check(self) -> None:
        if not self.works:
            raise SandboxUnavailable(f"{self.name} cannot run here")

    def run(self, *a: object) -> object:
        raise AssertionError("not run")

    def close(self) -> None:
        self.closed = True

    def for_image(self, image: str) -> Sandbox:
        if image == "missing":
            raise SandboxUnavailable("no image 'missing'")
        self.images.append(image)
        return self  # type: ignore[return-value]

    def workspace_refusal(self) -> str:
        return "not on this machine" if self.remote else ""


def make_set(monkeypatch: pytest.MonkeyPatch, backend: str, **stubs: Stub) -> SandboxSet:
    for name, stub in stubs.items():
        monkeypatch.setitem(backends.BACKENDS, name, lambda host, s=stub: s)
    cfg = dataclasses.replace(
        Config(), sandbox=SandboxConfig(backend=backend), container=ContainerConfig(image="default-image")
    )
    return SandboxSet(SandboxHost(cfg, []), overlays=lambda sb: Path("/overlays") if sb.name == "bwrap" else None)


def test_auto_takes_bwrap_where_it_works_else_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    works = make_set(monkeypatch, "auto", bwrap=Stub("bwrap"), container=Stub("container"))
    assert works.open_default().name == "bwrap" and works.default_name == "bwrap"
    fallback = make_set(monkeypatch, "auto", bwrap=Stub("bwrap", works=False), container=Stub("container"))
    assert fallback.open_default().name == "container"
    neither = make_set(monkeypatch, "auto", bwrap=Stub("bwrap", works=False), container=Stub("container", works=False))
    with pytest.raises(SetupError, match=r"bwrap cannot run here.*container cannot run here"):
        neither.open_default()
    with pytest.raises(SetupError, match=r"sandbox\.backend"):
        make_set(monkeypatch, "chroot").open_default()


def test_choices_are_checked_at_open_and_recorded_as_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    container = Stub("container")
    s = make_set(monkeypatch, "bwrap", bwrap=Stub("bwrap"), container=container)
    s.open_default()
    assert s.canonical("", "") == ("bwrap", "")
    assert s.canonical("container", "") == ("container", "default-image")
    assert s.choose("", "", "r.fs").overlays == Path("/overlays")
    chosen = s.choose("container", "my-image", "r.fs")
    assert chosen.sandbox is container and chosen.overlays is None and container.images == ["my-image"]
    with pytest.raises(InvalidArgument, match=r"r\.fs\.sandbox.*chroot"):
        s.choose("chroot", "", "r.fs")
    with pytest.raises(InvalidArgument, match=r"r\.fs\.image"):
        s.choose("bwrap", "some-image", "r.fs")
    with pytest.raises(FailedPrecondition, match=r"r\.fs\.image: no image 'missing'"):
        s.choose("container", "missing", "r.fs")
    s.close()
    assert container.closed


def test_a_backend_that_cannot_run_or_cannot_see_a_workspace_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = make_set(monkeypatch, "bwrap", bwrap=Stub("bwrap"), container=Stub("container", works=False))
    broken.open_default()
    with pytest.raises(FailedPrecondition, match=r"r\.fs\.sandbox: the container sandbox cannot run here"):
        broken.choose("container", "", "r.fs")
    remote = make_set(monkeypatch, "bwrap", bwrap=Stub("bwrap"), container=Stub("container", remote=True))
    remote.open_default()
    with pytest.raises(FailedPrecondition, match="not on this machine"):
        remote.choose("container", "", "r.fs")
