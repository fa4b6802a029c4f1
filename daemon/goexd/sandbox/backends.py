"""The sandbox backends goexd can run actions in, by name (`[sandbox] backend`, or a session's `sandbox`):
main.py asks here for the configured one and never names a backend class.

Words: a *backend* is one implementation of the Sandbox seam (domain/sandbox.py); its *factory* builds it
from what the daemon lends every backend (SandboxHost). `auto` is not a backend: it picks bwrap where it
works here, else the container engine. The *set* (SandboxSet, the domain's `Sandboxes`) holds the default
backend, opened at start, and opens another the first time a session names it.

Rules: adding a backend is its module plus one line in BACKENDS; a name nobody registered stops the start
(SetupError naming the known ones), or is refused at session open (InvalidArgument naming the field); a
factory only builds: the set calls check() on what it returns before using it; an image is a container
backend's choice only (bwrap runs the host's own tools); the set closes what it opened at stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goexd.config import Config
from goexd.domain.errors import FailedPrecondition, InvalidArgument, SetupError
from goexd.domain.sandbox import Sandbox, SandboxChoice, SandboxUnavailable
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.limits import detect_enforcer
from goexd.sandbox.overlay_mounts import OverlayMounts

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass(frozen=True)
class SandboxHost:
    """What the daemon lends a sandbox backend."""

    cfg: Config
    always_masked: Sequence[Path]  # goexd's own files: hidden from every sandbox where a visible tree holds them
    spawn_env: Mapping[str, str] = field(default_factory=dict)  # the daemon's mark on its sandboxes (reaper.py)
    overlay_mounts: OverlayMounts | None = None  # a root goexd's own overlay mounts (overlay_mounts.py)
    owner: str = "goexd"  # the state dir's key (reaper.py): the label on the engine's containers
    instance: str = "0"  # this start of goexd


def _bwrap(host: SandboxHost) -> Sandbox:
    return BwrapSandbox(
        detect_enforcer(host.cfg.sandbox.cgroup_parent or None),
        always_masked=host.always_masked,
        read_paths=[Path(p) for p in host.cfg.sandbox.read_paths],
        spawn_env=host.spawn_env,
        overlay_mounts=host.overlay_mounts,
    )


def _container(host: SandboxHost) -> Sandbox:
    # Imported here: the docker SDK (and requests) cost a daemon that never uses containers ~0.1-0.2 s of start.
    from goexd.sandbox.container import ContainerSandbox  # noqa: PLC0415
    from goexd.sandbox.container_endpoint import endpoint_from, is_local  # noqa: PLC0415
    from goexd.sandbox.container_engine import EngineUnavailable  # noqa: PLC0415
    from goexd.sandbox.container_slots import Slots  # noqa: PLC0415

    settings = host.cfg.container
    slots = None
    if os.geteuid() == 0 and is_local(endpoint_from(settings.endpoint)):
        try:
            slots = Slots.open(host.owner)
        except OSError as e:  # then each container is made with its run's workspace bound
            log.warning("cannot make the containers' slot dir (%s): workspaces are bound at create time", e)
    try:
        sandbox = ContainerSandbox(
            settings, host.owner, host.instance, slots=slots, alive=host.cfg.state_dir / "containers.alive"
        )
    except (EngineUnavailable, OSError) as e:
        if slots is not None:
            slots.close()
        raise SandboxUnavailable(str(e)) from None
    sandbox.reap_left()  # an engine unreachable at goexd's start may be there now
    return sandbox


BACKENDS: dict[str, Callable[[SandboxHost], Sandbox]] = {
    "bwrap": _bwrap,
    "container": _container,
}


def open_sandbox(name: str, host: SandboxHost) -> Sandbox:
    factory = BACKENDS.get(name)
    if factory is None:
        raise SetupError(f"config key 'sandbox.backend': {name!r} is not a sandbox backend ({', '.join(BACKENDS)})")
    return factory(host)


def close_sandbox(sandbox: Sandbox) -> None:
    """What a backend holds beyond its runs (the container backend's pool and slots), let go at stop."""
    close = getattr(sandbox, "close", None)
    if close is not None:
        close()


class SandboxSet:
    """The daemon's backends (the domain's `Sandboxes`; see the module doc). `overlays` says where fs actions in
    a backend get their overlay dirs (main.py probes it; None: over the workspace itself)."""

    def __init__(self, host: SandboxHost, overlays: Callable[[Sandbox], Path | None]) -> None:
        self.host = host
        self._overlays_of = overlays
        self._lock = threading.Lock()
        self._opened: dict[str, SandboxChoice] = {}
        self.default_name = ""

    def open_default(self) -> Sandbox:
        """The configured backend, checked (`auto`: bwrap where it works, else the container engine);
        SetupError naming the fix when it cannot run."""
        name = self.host.cfg.sandbox.backend
        if name not in BACKENDS and name != AUTO:
            raise SetupError(
                f"config key 'sandbox.backend': {name!r} is not a sandbox backend ({', '.join([*BACKENDS, AUTO])})"
            )
        tried: list[str] = []
        for candidate in ("bwrap", "container") if name == AUTO else (name,):
            try:
                sandbox = self._open(candidate)
            except SandboxUnavailable as e:
                tried.append(f"{candidate}: {e}")
                continue
            self.default_name = candidate
            if name == AUTO:
                log.info("sandbox.backend = auto: %s", candidate)
            return sandbox.sandbox
        raise SetupError("; ".join(tried) if name != AUTO else "no sandbox backend works here: " + "; ".join(tried))

    @property
    def default(self) -> Sandbox:
        return self._opened[self.default_name].sandbox

    def overlays(self) -> Path | None:
        return self._opened[self.default_name].overlays

    def _open(self, name: str) -> SandboxChoice:
        with self._lock:
            if name in self._opened:
                return self._opened[name]
            sandbox = open_sandbox(name, self.host)
            try:
                sandbox.check()
            except SandboxUnavailable:
                close_sandbox(sandbox)
                raise
            choice = SandboxChoice(sandbox, self._overlays_of(sandbox))
            self._opened[name] = choice
            return choice

    def canonical(self, backend: str, image: str) -> tuple[str, str]:
        name = backend or self.default_name
        if name == "container":
            return name, image or self.host.cfg.container.image
        return name, image

    def choose(self, backend: str, image: str, fld: str) -> SandboxChoice:
        name, image = self.canonical(backend, image)
        if name not in BACKENDS:
            raise InvalidArgument(f"{fld}.sandbox", f"{name!r} is not a sandbox backend ({', '.join(BACKENDS)})")
        if image and name != "container":
            raise InvalidArgument(
                f"{fld}.image", f"the {name} sandbox runs this machine's own tools: an image needs sandbox = container"
            )
        try:
            choice = self._open(name)
        except SandboxUnavailable as e:
            raise FailedPrecondition(f"{fld}.sandbox: the {name} sandbox cannot run here: {e}") from None
        refusal = getattr(choice.sandbox, "workspace_refusal", None)  # a container backend on a remote engine
        if refusal is not None and (why := refusal()):
            raise FailedPrecondition(f"{fld}.sandbox: {why}")
        if not image:
            return choice
        for_image = getattr(choice.sandbox, "for_image", None)
        assert for_image is not None, "only the container backend takes an image"
        try:
            return SandboxChoice(for_image(image), choice.overlays)
        except SandboxUnavailable as e:
            raise FailedPrecondition(f"{fld}.image: {e}") from None

    def opened(self) -> Sequence[Sandbox]:
        with self._lock:
            return [c.sandbox for c in self._opened.values()]

    def close(self) -> None:
        for sandbox in self.opened():
            with contextlib.suppress(Exception):
                close_sandbox(sandbox)
