"""The Sandbox seam: run one command isolated over a workspace, within limits.

A backend renders a `SandboxSpec` into its own launch plan (bwrap argv, container
create parameters) and carries it out; it never raises for anything the command does
(a limit hit, a non-zero exit, a crash): those are reported in `ExecResult.termination`.
It raises `SandboxUnavailable` only when the backend itself cannot work.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


class SandboxUnavailable(Exception):
    """The backend cannot run here; the message names what to install or change."""


class Network(enum.StrEnum):
    NONE = "none"  # no network at all (own empty network namespace)
    PROXY = "proxy"  # own network namespace whose only way out is the daemon's egress proxy


@dataclass(frozen=True)
class ProxyEndpoint:
    """Where a sandbox with `Network.PROXY` reaches the daemon's egress proxy (host paths).

    `socket_path` is the per-action Unix socket the proxy listens on; `ca_path` the PEM
    certificate of the proxy's CA, the only CA the sandbox is told to trust.
    """

    socket_path: Path
    ca_path: Path


class Termination(enum.StrEnum):
    EXITED = "exited"
    SIGNALED = "signaled"
    TIMEOUT = "timeout"
    OOM = "oom"
    PIDS_LIMIT = "pids_limit"
    CANCELLED = "cancelled"
    SPAWN_FAILED = "spawn_failed"


class Stream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True)
class WorkspaceOverlay:
    """Run over an overlay of the workspace: the command's writes land in `upper` (host dir,
    empty at the start), the workspace itself stays as it was; `work` is overlayfs' own
    scratch dir on the same file system. The upper's root must carry the workspace root's
    owner and mode (a merged directory shows its upper's)."""

    upper: Path
    work: Path


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 60.0
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 256
    output_bytes: int = 1024 * 1024  # per stream


@dataclass(frozen=True)
class SandboxSpec:
    argv: Sequence[str]
    workspace: Path | None  # bound read-write at `workspace_mount`; None = no workspace
    workspace_mount: str = "/workspace"
    workdir: str = ""  # where the command starts, relative to the workspace ("" = its root); checked by the caller
    readonly_subpaths: Sequence[str] = ()  # relative to the workspace, e.g. ".git": bound read-only
    masked_paths: Sequence[Path] = ()  # host paths hidden from the sandbox (state dir, home, ...)
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    limits: Limits = field(default_factory=Limits)
    network: Network = Network.NONE
    proxy: ProxyEndpoint | None = None  # required by, and only allowed with, Network.PROXY
    overlay: WorkspaceOverlay | None = None  # with a workspace: run over an overlay of it


@dataclass(frozen=True)
class ExecResult:
    termination: Termination
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_total: int
    stderr_total: int
    duration_s: float
    limits_enforced_by: str  # "cgroup-v2" | "cgroup-v1" | "rlimit"
    detail: str = ""
    trimmed: str = ""  # set once retention trimmed the output of the resolved action (engine/retention.py)

    @property
    def stdout_truncated(self) -> bool:
        return self.stdout_total > len(self.stdout)

    @property
    def stderr_truncated(self) -> bool:
        return self.stderr_total > len(self.stderr)


OutputSink = Callable[[Stream, bytes], None]


class Sandbox(Protocol):
    """A backend that runs one command confined (sandbox/bwrap.py, sandbox/container.py).

    Rules every backend keeps (tests/conformance/sandbox_suite.py, with goexd as root and as an unprivileged
    user): run() returns an ExecResult and never raises for what the command does (a non-zero exit, a signal,
    a limit, a cancel are terminations, said in `termination`); output is byte-exact, streamed to `on_output`
    as it comes, and capped per stream with the totals counted; the limits end a run as TIMEOUT, OOM or
    PIDS_LIMIT, children included; a cancel ends it; nothing of the host is visible but the allow list, nothing
    writable but the workspace, no network unless through the egress proxy; no process outlives its run.
    check() raises SandboxUnavailable naming the fix, never half-works.
    """

    name: str

    def check(self) -> None:
        """Raise SandboxUnavailable naming the fix when the backend cannot run."""

    def run(
        self,
        spec: SandboxSpec,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run to completion (or limit, or cancel); never raises for the command's own behaviour."""


@dataclass(frozen=True)
class PoolReport:
    """What a backend with a warm pool says of one image's containers (`goex health`, GetStats)."""

    backend: str
    image: str
    warm: int  # started, waiting for a run
    leases: int  # runs that took one
    misses: int  # runs that found none warm and waited for one to be made
    made: int
    failed: int  # containers that could not be made


@runtime_checkable
class ReportsPool(Protocol):
    """A backend that keeps a warm pool (the container backend)."""

    def pool_report(self) -> list[PoolReport]: ...


@dataclass(frozen=True)
class SandboxChoice:
    """The backend a workspace's actions run in, and where they get their overlay dirs (None: over the
    workspace itself, where this backend cannot run over an overlay)."""

    sandbox: Sandbox
    overlays: Path | None


class Sandboxes(Protocol):
    """The backends a daemon runs actions in: its default, and those a session may name for a workspace.

    Words: a *backend* name ("bwrap", "container"; "" = the daemon's default); an *image* (container backends
    only; "" = the backend's default). Rules: `choose` validates at session open, so that an unknown backend or
    an image the engine does not have is refused then (InvalidArgument naming `fld`, FailedPrecondition), never
    at the first action; `canonical` says what a session records, so a restart with another default keeps the
    session on the backend it opened with.
    """

    def choose(self, backend: str, image: str, fld: str) -> SandboxChoice: ...

    def canonical(self, backend: str, image: str) -> tuple[str, str]: ...

    def opened(self) -> Sequence[Sandbox]: ...
