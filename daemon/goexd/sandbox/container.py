"""The container sandbox backend: each run in a container of its own, on the Docker Engine API (Docker, or
Podman's compatible service), taken from a warm pool (container_pool.py).

A container is made with everything that cannot change later (container_pool.Shape): the image, the run's
user (the workspace's owner, identity.py, as under bubblewrap), the memory and process limits (the
engine's cgroup: `Memory` = `MemorySwap`, `PidsLimit`), no network (`none`: a loopback only), every
capability dropped, `no-new-privileges`, a read-only root file system with a fresh tmpfs /tmp, and the
engine's default seccomp profile. Its main process is the runner (container_runner.py), attached over
the container's stdio; it waits for one request (the run itself: container_run.py).

A run then: takes a warm container of its shape (or makes one: a miss), gives it the workspace (root goexd
and a local engine: mounted on the container's slot, container_slots.py; otherwise the container was made
with the workspace bound, and its shape says which), sends the request (argv, environment, directory,
stdin, output cap, and goexd's own seccomp programs, sandbox/seccomp.py, which the runner loads on the
command before exec, stacked on the engine's profile), relays output as it comes, and enforces the wall
clock and cancel by killing the container (its runner's host pid through a pidfd where the engine is
local, the engine's kill otherwise). The runner reports the end: exit status, a pids-limit hit (it kills
everything at once), OOM kills. Then the slot is emptied and the container removed in the background.

Network.PROXY: the command runs behind the egress forwarder (egress_forwarder.py), as under bubblewrap;
the route's socket is bound into the container at /run/goex/egress.sock and the CA copied beside it.

What is refused (SPAWN_FAILED naming it): a workspace with a remote engine (it cannot see this
machine's files); a run over an overlay where goexd cannot mount one on a slot (not root, or the engine
not local): goexd then runs fs actions over the workspace itself (fs.isolation auto).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import posixpath
import select
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goexd.config import ContainerConfig, load_environment
from goexd.domain.sandbox import (
    ExecResult,
    Limits,
    Network,
    OutputSink,
    PoolReport,
    Sandbox,
    SandboxSpec,
    SandboxUnavailable,
    Termination,
)
from goexd.sandbox import container_runner as runner
from goexd.sandbox import egress_forwarder as forwarder
from goexd.sandbox.bwrap_plan import BASE_ENV
from goexd.sandbox.container_endpoint import endpoint_from, is_local
from goexd.sandbox.container_engine import (
    ENGINE_ERRORS,
    Attached,
    EngineUnavailable,
    StreamClosed,
    connect,
    engine_errors,
    labels,
    reap,
)
from goexd.sandbox.container_pool import Pool, PoolStats, Shape, readable_now
from goexd.sandbox.container_run import PYTHON, RUN_DIR, WORKSPACE, Execution
from goexd.sandbox.container_slots import EGRESS_SOCKET, Slot, Slots
from goexd.sandbox.identity import RunAs, run_as_for

log = logging.getLogger(__name__)

RUNNER_MEMORY_BYTES = 16 * 1024 * 1024  # the runner's own share of the container's memory limit
RUNNER_PROCESSES = 2  # the runner and its watchdog
READY_TIMEOUT_S = 30.0  # for a new container's runner to say it is ready
EXIT_WAIT_S = 5.0  # for the runner to be gone after its end frame (or after a kill)
REMOVE_ATTEMPTS = 4
TMP_BYTES = 256 * 1024 * 1024
# A fresh /tmp; /var/tmp and /run read-only (Podman makes them writable tmpfs under a read-only root otherwise):
# nothing but the workspace and /tmp can be written, as under bubblewrap.
TMPFS = {
    "/tmp": f"rw,nosuid,nodev,size={TMP_BYTES}",
    "/var/tmp": "ro,nosuid,nodev,noexec,size=4k",
    "/run": "ro,nosuid,nodev,noexec,size=64k",
}


@dataclass
class _Warm:
    """One started container: its runner is waiting for a request on `attached`."""

    shape: Shape
    id: str
    attached: Attached
    slot: Slot | None
    pidfd: int | None  # the runner's process on this host (a local engine), pinned
    made_at: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        return not self.attached.eof and not readable_now(self.attached.fileno())


class ContainerSandbox:
    """Runs commands in containers from a warm pool (see the module doc)."""

    name = "container"

    def __init__(
        self,
        settings: ContainerConfig,
        owner: str,
        instance: str,
        slots: Slots | None = None,
        api: Any = None,
        remove_in_background: bool = True,
        alive: Path | None = None,
    ) -> None:
        """`alive`: a file of goexd's that it holds locked for its life and binds into every container, whose
        runner ends the container once the lock is free (container_runner._start_watchdog); None: no such file
        (containers then outlive a goexd killed -9 until its next start removes them)."""
        self.settings = settings
        self.endpoint = endpoint_from(settings.endpoint)
        self.local = is_local(self.endpoint)
        self.owner, self.instance = owner, instance
        self.slots = slots if self.local else None
        self.api = api if api is not None else connect(self.endpoint, settings.api_timeout_s)
        self._enforced_by = ""  # "cgroup-v1" | "cgroup-v2", from the engine's info (once)
        self.pool: Pool[_Warm] = Pool(
            self._make, self._remove, settings.pool_size, settings.pool_idle_s, remove_in_background
        )
        self._checked_images: set[str] = set()
        self._tried_images: set[str] = set()
        self.alive = alive if alive is not None and self.local else None
        if self.alive is not None:
            self._alive_fd = os.open(self.alive, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            os.fchmod(self._alive_fd, 0o644)  # any container user may read it (and wait for the lock)
            fcntl.flock(self._alive_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one goexd per state dir holds it

    # -- setup

    def check(self) -> None:
        """The engine answers, the image is there, and a container runs `true` (slots included)."""
        try:
            self._enforced_by = self._cgroup_version()
        except EngineUnavailable as e:
            raise SandboxUnavailable(str(e)) from None
        self.check_image(self.settings.image)
        self.try_image(self.settings.image)

    def try_image(self, image: str) -> None:
        """SandboxUnavailable unless a container of `image` runs `true` (goexd's runner in it included)."""
        spec = SandboxSpec(argv=["true"], workspace=None, limits=Limits(timeout_s=30.0))
        result = self.run_image(image, spec)
        if result.termination is not Termination.EXITED or result.exit_code != 0:
            why = result.detail or result.stderr.decode(errors="replace").strip()
            hint = " (goexd's runner needs python3 >= 3.10 on the image's PATH)" if "python3" in why else ""
            raise SandboxUnavailable(
                f"the container engine at {self.endpoint} cannot run a goexd container of {image} "
                f"({result.termination.value}: {why}){hint}"
            )

    def _cgroup_version(self) -> str:
        with engine_errors(self.endpoint, "asking for its information"):
            info = self.api.info()
        return "cgroup-v2" if str(info.get("CgroupVersion", "")) == "2" else "cgroup-v1"

    @property
    def enforced_by(self) -> str:
        """How the limits are held (ExecResult.limits_enforced_by): the engine's cgroup version."""
        if not self._enforced_by:
            with contextlib.suppress(EngineUnavailable):
                self._enforced_by = self._cgroup_version()
        return self._enforced_by or "cgroup"

    def reap_left(self) -> int:
        """Remove what earlier starts of this daemon left on the engine (its owner's labels, another instance's)."""
        try:
            with engine_errors(self.endpoint, "removing what an earlier goexd left"):
                found = reap(self.api, self.owner, keep_instance=self.instance)
        except EngineUnavailable as e:
            log.warning("%s", e)
            return 0
        for r in found:
            log.warning("removed %s %s left by an earlier goexd run (%s)", r.kind, r.name, r.instance)
        return len(found)

    def check_image(self, image: str) -> None:
        """SandboxUnavailable unless the engine has `image` (goexd never pulls one)."""
        if image in self._checked_images:
            return
        try:
            with engine_errors(self.endpoint, f"looking for the image {image}"):
                self.api.inspect_image(image)
        except EngineUnavailable as e:
            if "No such image" in str(e) or "not found" in str(e) or "404" in str(e):
                raise SandboxUnavailable(
                    f"the container engine at {self.endpoint} has no image {image!r}: pull it (docker pull {image}) "
                    "or build one offline (goexd --build-image)"
                ) from None
            raise SandboxUnavailable(str(e)) from None
        self._checked_images.add(image)

    def close(self) -> None:
        """Remove every container of the pool, stop its workers and give up the slot dir (at daemon stop)."""
        self.pool.close()
        if self.slots is not None:
            self.slots.close()
        if self.alive is not None:
            os.close(self._alive_fd)  # what the stop could not remove ends itself now

    def stats(self) -> PoolStats:
        return self.pool.stats()

    def pool_report(self) -> list[PoolReport]:
        stats = self.pool.stats()
        return [
            PoolReport(self.name, image, warm, leases, misses, made, failed)
            for image, (warm, leases, misses, made, failed) in sorted(stats.per_image.items())
        ]

    def for_image(self, image: str) -> Sandbox:
        """This backend running `image` (its pool, engine and slots shared); SandboxUnavailable when the engine
        has no such image or cannot run goexd's runner in it."""
        if image == self.settings.image:
            return self
        if image not in self._tried_images:  # once per image: a session naming it is told now, not at its action
            self.check_image(image)
            self.try_image(image)
            self._tried_images.add(image)
        return _ImageView(self, image)

    # -- a run

    def run(
        self,
        spec: SandboxSpec,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        return self.run_image(self.settings.image, spec, on_output, cancel)

    def run_image(
        self,
        image: str,
        spec: SandboxSpec,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        started = time.monotonic()
        refused = self._refused(spec)
        if refused:
            return self._failed(started, refused)
        try:
            run_as = run_as_for(spec.workspace)
        except OSError as e:
            return self._failed(started, f"cannot look at the workspace {spec.workspace}: {e}")
        shape = self._shape(image, spec, run_as)
        try:
            warm, _hit = self.pool.lease(shape)
        except EngineUnavailable as e:
            return self._failed(started, str(e))
        except StreamClosed as e:
            return self._failed(started, f"a new container of {shape.image} ended before it was ready: {e}")
        execution = Execution(self, warm, spec, on_output, cancel, started)
        try:
            if warm.slot is not None:
                try:
                    warm.slot.attach(spec, run_as)
                except OSError as e:
                    return self._failed(started, f"cannot give the container its workspace: {e}")
            return execution.run()
        finally:
            self._end(warm, execution.ended)

    def workspace_refusal(self) -> str:
        """Why this backend cannot run actions over a workspace of this machine ("" when it can)."""
        if self.local:
            return ""
        return (
            f"the container engine at {self.endpoint} is not on this machine: it cannot see a workspace here "
            "(a remote engine runs actions without a workspace only)"
        )

    def _refused(self, spec: SandboxSpec) -> str:
        if spec.network is Network.PROXY and spec.proxy is None:
            raise ValueError("Network.PROXY needs SandboxSpec.proxy")
        if spec.proxy is not None and spec.network is not Network.PROXY:
            raise ValueError("SandboxSpec.proxy is only allowed with Network.PROXY")
        if spec.workspace is not None and not self.local:
            return self.workspace_refusal()
        if spec.overlay is not None and spec.workspace is not None and self.slots is None:
            return (
                "a run over an overlay of the workspace needs a root goexd and an engine on this machine (the "
                "overlay is mounted on the container's slot); run over the workspace itself (fs.isolation = direct)"
            )
        if spec.workspace_mount != WORKSPACE:
            return f"the container backend shows the workspace at {WORKSPACE} only, not {spec.workspace_mount}"
        return ""

    def _shape(self, image: str, spec: SandboxSpec, run_as: RunAs) -> Shape:
        binds: tuple[str, ...] = ()
        if self.slots is None:
            binds = tuple(_binds(spec))
        return Shape(
            image=image,
            user=f"{run_as.uid}:{run_as.gid}",
            memory_bytes=spec.limits.memory_bytes,
            max_processes=spec.limits.max_processes,
            workspace=spec.workspace is not None,
            binds=binds,
        )

    def _failed(self, started: float, detail: str) -> ExecResult:
        return _failed(started, self.enforced_by, detail)

    # -- making and removing containers (the pool calls these)

    def _make(self, shape: Shape) -> _Warm:
        slot = self.slots.new() if self.slots is not None else None
        container_id = ""
        try:
            with engine_errors(self.endpoint, f"creating a container of {shape.image}"):
                container_id = self._create(shape, slot)
                # Started first, then attached (Podman answers an attach to a running container at once, one to a
                # created container only after ~100 ms); the runner says nothing before our first byte.
                self.api.start(container_id)
                attached = Attached(
                    self.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
                )
                attached.send(runner.HELLO)
            pidfd = self._pin(container_id) if self.local else None
            warm = _Warm(shape, container_id, attached, slot, pidfd)
            self._await_ready(warm)
            return warm
        except BaseException:
            if container_id:
                with contextlib.suppress(*ENGINE_ERRORS):
                    self.api.remove_container(container_id, force=True)
            if slot is not None:
                slot.remove()
            raise

    def _create(self, shape: Shape, slot: Slot | None) -> str:
        binds = list(shape.binds)
        if self.alive is not None:
            binds.append(f"{self.alive}:{runner.ALIVE}:ro")
        if slot is not None:
            if shape.workspace:
                binds.append(f"{slot.workspace}:{WORKSPACE}:rw,rslave")
            binds.append(f"{slot.run}:{RUN_DIR}:ro,rslave")
        host_config = self.api.create_host_config(
            binds=binds,
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs=TMPFS,
            mem_limit=shape.memory_bytes + RUNNER_MEMORY_BYTES,
            memswap_limit=shape.memory_bytes + RUNNER_MEMORY_BYTES,
            pids_limit=shape.max_processes + RUNNER_PROCESSES,
            nano_cpus=int(self.settings.cpus * 1e9) or None,
            init=False,
        )
        created = self.api.create_container(
            shape.image,
            command=[PYTHON, "-I", "-S", "-c", runner.SOURCE],
            user=shape.user,
            stdin_open=True,
            stop_signal="SIGKILL",
            environment={"PATH": BASE_ENV["PATH"]},
            working_dir="/",
            hostname="sandbox",
            labels=labels(self.owner, self.instance),
            host_config=host_config,
        )
        return str(created["Id"])

    def _pin(self, container_id: str) -> int | None:
        """A pidfd of the runner on this host (the engine shares our pid namespace), or None."""
        with engine_errors(self.endpoint, "inspecting a new container"):
            pid = int(self.api.inspect_container(container_id)["State"].get("Pid") or 0)
        if pid <= 0:
            return None
        try:
            pidfd = os.pidfd_open(pid)
            with open(f"/proc/{pid}/cgroup", "rb") as f:
                ours = container_id.encode() in f.read()
        except OSError:
            return None  # another pid namespace (the engine runs elsewhere): kills go through the engine
        if not ours:
            os.close(pidfd)
            return None
        return pidfd

    def _await_ready(self, warm: _Warm) -> None:
        kind, payload = _read_frame(warm.attached, time.monotonic() + READY_TIMEOUT_S)
        if kind != runner.READY:
            said = warm.attached.stderr.decode(errors="replace").strip()
            raise StreamClosed(f"the runner did not start: {payload.decode(errors='replace')} {said}".strip())

    def _remove(self, warm: _Warm) -> None:
        """A leased or dead container: killed, removed, its slot unmounted and gone. EngineUnavailable when the
        engine would not remove it (the pool tries again later)."""
        self.kill(warm)
        warm.attached.close()
        if warm.pidfd is not None:
            os.close(warm.pidfd)
            warm.pidfd = None
        if warm.slot is not None:
            warm.slot.remove()  # nothing mounted on it any more (the run's end detached it): only the dirs
        for attempt in range(REMOVE_ATTEMPTS):
            try:
                with engine_errors(self.endpoint, f"removing the container {warm.id[:12]}"):
                    self.api.remove_container(warm.id, force=True)
                return
            except EngineUnavailable as e:
                if "no such container" in str(e).lower():
                    return
                if attempt == REMOVE_ATTEMPTS - 1:
                    raise
                # Podman may not have seen its container's main process die yet ("state improper"): again.
                time.sleep(0.2 * (attempt + 1))

    def kill(self, warm: _Warm) -> None:
        """SIGKILL the container's runner (pid 1: the whole container goes with it)."""
        if warm.pidfd is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(warm.pidfd, signal.SIGKILL)
            return
        with contextlib.suppress(*ENGINE_ERRORS):
            self.api.kill(warm.id, "SIGKILL")

    def wait_gone(self, warm: _Warm, timeout: float = EXIT_WAIT_S) -> bool:
        """Until the runner has exited (every process of the container with it); whether it has."""
        if warm.pidfd is not None:
            ready, _, _ = select.select([warm.pidfd], [], [], timeout)
            return bool(ready)
        with contextlib.suppress(*ENGINE_ERRORS):
            self.api.wait(warm.id, timeout=timeout)
            return True
        return False

    def _end(self, warm: _Warm, ended: bool) -> None:
        """After a run: nothing of it is left running, the workspace is off the slot; removal in the background.
        A runner that sent its end frame exits by itself (having killed the rest); any other is killed."""
        if not ended:
            self.kill(warm)
        if not self.wait_gone(warm):
            self.kill(warm)
            if not self.wait_gone(warm):
                log.error("container %s did not stop after SIGKILL", warm.id[:12])
        if warm.slot is not None:
            warm.slot.detach()
        self.pool.discard(warm)


class _ImageView:
    """A ContainerSandbox running another image than its configured one (a session's choice)."""

    name = ContainerSandbox.name

    def __init__(self, base: ContainerSandbox, image: str) -> None:
        self.base, self.image = base, image

    def check(self) -> None:
        self.base.check_image(self.image)

    def run(
        self,
        spec: SandboxSpec,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        return self.base.run_image(self.image, spec, on_output, cancel)


def from_environment() -> ContainerSandbox:
    """The backend from the `[container]` settings in the environment (GOEXD_CONTAINER__*), without slots or a
    warm pool: what a process that runs a single action uses (tests run one as an unprivileged user)."""
    settings = dataclasses.replace(load_environment().container, pool_size=0)
    # Its containers are removed before run() returns: the process may end right after.
    return ContainerSandbox(settings, "goexd-oneshot", f"{os.getpid()}", remove_in_background=False)


def _binds(spec: SandboxSpec) -> list[str]:
    """The binds of a container made for this run's workspace (an engine without slots)."""
    out: list[str] = []
    if spec.workspace is not None:
        out.append(f"{spec.workspace}:{WORKSPACE}:rw")
        for rel in spec.readonly_subpaths:
            inside = spec.workspace / rel
            if inside.is_dir() and not inside.is_symlink():
                out.append(f"{inside}:{posixpath.join(WORKSPACE, rel)}:ro")
    if spec.proxy is not None:
        out.append(f"{spec.proxy.socket_path}:{posixpath.join(RUN_DIR, EGRESS_SOCKET)}:rw")
        out.append(f"{spec.proxy.ca_path}:{forwarder.CA_PATH}:ro")
    return out


def _read_frame(attached: Attached, deadline: float) -> tuple[bytes, bytes]:
    kind, size = runner.FRAME.unpack(attached.read_exactly(runner.FRAME.size, deadline))
    return kind, attached.read_exactly(size, deadline)


def _failed(started: float, enforced_by: str, detail: str) -> ExecResult:
    return ExecResult(
        Termination.SPAWN_FAILED, None, None, b"", b"", 0, 0, time.monotonic() - started, enforced_by, detail
    )
