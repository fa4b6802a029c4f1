"""The sandbox backends goexd can run actions in, by name (`[sandbox] backend`): main.py asks here for the
configured one and never names a backend class.

Words: a *backend* is one implementation of the Sandbox seam (domain/sandbox.py); its *factory* builds it
from what the daemon lends every backend (SandboxHost). Rules: adding a backend is its module plus one line
in BACKENDS; a name nobody registered stops the start (SetupError naming the known ones); a factory only
builds: the daemon calls check() on what it returns before serving.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goexd.config import Config
from goexd.domain.errors import SetupError
from goexd.domain.sandbox import Sandbox
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.limits import detect_enforcer
from goexd.sandbox.overlay_mounts import OverlayMounts


@dataclass(frozen=True)
class SandboxHost:
    """What the daemon lends a sandbox backend."""

    cfg: Config
    always_masked: Sequence[Path]  # goexd's own files: hidden from every sandbox where a visible tree holds them
    spawn_env: Mapping[str, str] = field(default_factory=dict)  # the daemon's mark on its sandboxes (reaper.py)
    overlay_mounts: OverlayMounts | None = None  # a root goexd's own overlay mounts (overlay_mounts.py)


def _bwrap(host: SandboxHost) -> Sandbox:
    return BwrapSandbox(
        detect_enforcer(host.cfg.sandbox.cgroup_parent or None),
        always_masked=host.always_masked,
        read_paths=[Path(p) for p in host.cfg.sandbox.read_paths],
        spawn_env=host.spawn_env,
        overlay_mounts=host.overlay_mounts,
    )


BACKENDS: dict[str, Callable[[SandboxHost], Sandbox]] = {
    "bwrap": _bwrap,
}


def open_sandbox(name: str, host: SandboxHost) -> Sandbox:
    factory = BACKENDS.get(name)
    if factory is None:
        raise SetupError(f"config key 'sandbox.backend': {name!r} is not a sandbox backend ({', '.join(BACKENDS)})")
    return factory(host)
