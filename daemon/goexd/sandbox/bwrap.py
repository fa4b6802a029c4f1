"""The bubblewrap sandbox backend.

Two steps, the bubblewrap way:

1. `probe_host` gathers the few host facts the plan depends on (which paths exist,
   which are directories, the live Unix sockets), then `render_plan` turns spec + facts
   into a `Plan`: an ordered, declarative list of mount operations plus env, cwd and
   flags. It is pure, so it is unit-tested and logged as is.
2. `BwrapSandbox.run` carries the plan out: bwrap is started blocked on reading its
   options from a pipe (`--args FD`), put into the run's cgroup while it cannot fork
   yet, then released; one epoll loop on the caller's thread streams output, feeds
   stdin and enforces the timeout, cancellation and the limits.

Everything in the sandbox lives in its own pid namespace whose init is a child of the
outer bwrap, with --die-with-parent: killing the outer bwrap (or the daemon) kills the
whole tree at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import os
import posixpath
import re
import select
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from goexd.sandbox import egress_forwarder as forwarder
from goexd.sandbox.base import (
    ExecResult,
    Limits,
    Network,
    OutputSink,
    ProxyEndpoint,
    SandboxSpec,
    SandboxUnavailable,
    Stream,
    Termination,
)
from goexd.sandbox.limits import Enforcer, RunLimits, detect_enforcer

log = logging.getLogger(__name__)

MISSING_BWRAP = "bubblewrap (bwrap) not found: install the 'bubblewrap' package (apt-get install bubblewrap)"
MIN_BWRAP_VERSION = (0, 8)  # --disable-userns and --size

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "TERM": "dumb"}

# Hidden in every sandbox. The sandbox keeps the daemon's uid without capabilities; when
# that uid is root it can still read root-only files, so hide the usual secrets too.
ALWAYS_MASKED: tuple[Path, ...] = (
    Path("/root"),
    Path("/run"),
    Path("/etc/shadow"),
    Path("/etc/shadow-"),
    Path("/etc/gshadow"),
    Path("/etc/gshadow-"),
    Path("/etc/ssh/ssh_host_rsa_key"),
    Path("/etc/ssh/ssh_host_ecdsa_key"),
    Path("/etc/ssh/ssh_host_ed25519_key"),
    Path("/etc/ssh/ssh_host_dsa_key"),
)
# Replaced wholesale by fresh mounts, so nothing below them needs masking.
FRESH_MOUNTS = ("/dev", "/proc", "/tmp")

# Network.PROXY: the command runs behind the egress forwarder (egress_forwarder.py), with
# the system python3 (the daemon's own interpreter may live in a masked directory).
FORWARDER_PYTHON = "/usr/bin/python3"
EGRESS_DIR = posixpath.dirname(forwarder.SOCKET_PATH)  # /run/goex, on the /run mask's tmpfs
_CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")
PROXY_ENV: dict[str, str] = {
    **{k: forwarder.PROXY_URL for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    # Empty, so that nothing (not even localhost) bypasses the proxy by default.
    "NO_PROXY": "",
    "no_proxy": "",
    **dict.fromkeys(_CA_ENV, forwarder.CA_PATH),
}

READ_CHUNK = 64 * 1024
POLL_TICK_S = 0.01  # how often cancel and the (v1, unnotified) limit counters are checked
DRAIN_GRACE_S = 2.0  # after the process is gone, how long to wait for output EOF


# --- the plan -------------------------------------------------------------------------


class Op(enum.StrEnum):
    RO_BIND = "--ro-bind"
    RO_BIND_TRY = "--ro-bind-try"
    BIND = "--bind"
    DEV = "--dev"
    PROC = "--proc"
    TMPFS = "--tmpfs"
    REMOUNT_RO = "--remount-ro"
    SYMLINK = "--symlink"  # source is the link's target
    DIR = "--dir"


@dataclass(frozen=True)
class MountOp:
    op: Op
    dest: str
    source: str | None = None
    size: int | None = None  # tmpfs only
    why: str = ""  # for logs and tests: "workspace", "mask", "socket", ...

    def args(self) -> list[str]:
        out = ["--size", str(self.size)] if self.size is not None else []
        out.append(self.op.value)
        if self.source is not None:
            out.append(self.source)
        out.append(self.dest)
        return out

    def __str__(self) -> str:
        src = f"{self.source} -> " if self.source is not None else ""
        size = f" size={self.size}" if self.size is not None else ""
        return f"{self.op.value} {src}{self.dest}{size}  # {self.why}"


# Namespaces, privileges and lifetime. --cap-drop ALL matters when the daemon is root:
# bwrap then keeps every capability inside the user namespace by default, enough to
# remount / read-write (measured with bwrap 0.8).
SECURITY_FLAGS = (
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--cap-drop",
    "ALL",
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "sandbox",
)


@dataclass(frozen=True)
class Plan:
    mounts: tuple[MountOp, ...]
    env: tuple[tuple[str, str], ...]
    chdir: str
    argv: tuple[str, ...]
    flags: tuple[str, ...] = SECURITY_FLAGS

    def bwrap_options(self) -> list[str]:
        """Everything but the command, in order (bwrap applies mounts in this order)."""
        out = list(self.flags)
        for m in self.mounts:
            out += m.args()
        out.append("--clearenv")
        for key, value in self.env:
            out += ["--setenv", key, value]
        out += ["--chdir", self.chdir]
        # The options travel NUL-separated (--args): a NUL inside one would inject others.
        if any("\0" in a for a in out):
            raise ValueError("sandbox options must not contain NUL bytes")
        return out

    def describe(self) -> str:
        lines = [" ".join(self.flags), *map(str, self.mounts)]
        lines += [f"env {k}={v}" for k, v in self.env]
        argv = ["<egress forwarder source>" if a == forwarder.SOURCE else a for a in self.argv]
        lines += [f"chdir {self.chdir}", f"exec {argv}"]
        return "\n".join(lines)


class Entry(NamedTuple):
    """One entry of a directory rebuilt on tmpfs."""

    name: str
    symlink: str | None = None  # the link's target, if it is a symlink
    empty_dir: bool = False  # recreated with --dir: no mount needed (each bind costs ~0.15 ms)


@dataclass(frozen=True)
class HostView:
    """The host facts a plan depends on, gathered at spawn by `probe_host`.

    Paths are real paths (symlinks resolved): bwrap resolves the sources of binds but
    not their destinations, so masks must name the real location.
    """

    masked_dirs: tuple[str, ...] = ()  # existing directories to hide
    masked_files: tuple[str, ...] = ()  # existing non-directories to hide
    unix_sockets: tuple[str, ...] = ()  # live filesystem sockets
    workspace: str | None = None
    readonly_subpaths: tuple[str, ...] = ()  # the spec's subpaths that exist, normalised
    # When the workspace mount point does not exist on the host, it cannot be created in
    # a read-only view of it: `anchor` is its nearest existing ancestor, rebuilt from its
    # `anchor_entries` on a fresh tmpfs instead.
    anchor: str | None = None
    anchor_entries: tuple[Entry, ...] = ()
    fresh_mounts: tuple[str, ...] = FRESH_MOUNTS


def render_plan(spec: SandboxSpec, host: HostView) -> Plan:
    """Spec + host facts -> the ordered mount plan. Pure.

    Order matters (bwrap applies mounts in sequence, later ones on top): the system
    read-only, fresh /dev /proc /tmp, masks, the workspace, its read-only subpaths,
    masks of things inside the workspace, the egress socket and CA (Network.PROXY),
    and last the remounts that make the masks read-only (last, so that nothing later
    needs to create a mount point in them).
    """
    if not spec.argv:
        raise ValueError("SandboxSpec.argv is empty")
    mount = _check_mount_point(spec.workspace_mount)
    proxy = _check_network(spec, mount)
    if proxy is not None and not _is_under_any(EGRESS_DIR, host.masked_dirs):
        # The egress socket's mount point is made on the tmpfs that masks /run.
        host = dataclasses.replace(host, masked_dirs=(*host.masked_dirs, "/run"))
    masks, hidden = _host_masks(host)
    anchor = host.anchor if host.workspace is not None and not _is_under_any(mount, hidden) else None
    mounts = [*_root_mounts(host, anchor, hidden), *_fresh_mounts(spec.limits.memory_bytes), *masks]
    if host.workspace is not None:
        mounts.append(MountOp(Op.BIND, mount, host.workspace, why="workspace"))
        mounts += [
            MountOp(Op.RO_BIND, posixpath.join(mount, rel), posixpath.join(host.workspace, rel), why="read-only")
            for rel in host.readonly_subpaths
        ]
        inner = _workspace_masks(host, mount)
        mounts += inner
        masks += inner
    if proxy is not None:
        # After every mask: the route's socket is a live socket, masked at its host path like
        # any other; this bind is its one way in. Read-only: connect() needs no write access.
        mounts.append(MountOp(Op.RO_BIND, forwarder.SOCKET_PATH, str(proxy.socket_path), why="egress socket"))
        mounts.append(MountOp(Op.RO_BIND, forwarder.CA_PATH, str(proxy.ca_path), why="egress CA"))
    mounts += [MountOp(Op.REMOUNT_RO, m.dest, why="mask read-only") for m in masks if m.op is Op.TMPFS]
    if anchor is not None:
        mounts.append(MountOp(Op.REMOUNT_RO, anchor, why="rebuilt dir read-only"))
    # The proxy settings win over the spec's: with no other way out, bypassing them only breaks requests.
    env = {**BASE_ENV, **spec.env, **(PROXY_ENV if proxy is not None else {})}
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment variable {key!r}: no '=' in names, no NUL anywhere")
    chdir = mount if host.workspace is not None else "/tmp"
    argv = tuple(spec.argv)
    if proxy is not None:
        # -I: no user site or PYTHON* variables; -S: no site module (faster start, stdlib only).
        argv = (FORWARDER_PYTHON, "-I", "-S", "-c", forwarder.SOURCE, *argv)
    return Plan(tuple(mounts), tuple(env.items()), chdir, argv)


def _check_network(spec: SandboxSpec, mount: str) -> ProxyEndpoint | None:
    """The proxy endpoint to wire in, if any; refuses inconsistent specs."""
    if spec.network is Network.NONE:
        if spec.proxy is not None:
            raise ValueError("SandboxSpec.proxy is set but network is none: use Network.PROXY")
        return None
    if spec.proxy is None:
        raise ValueError("network=proxy needs SandboxSpec.proxy (the egress proxy's socket and CA)")
    for path in (spec.proxy.socket_path, spec.proxy.ca_path):
        if not path.is_absolute():
            raise ValueError(f"bad proxy path {str(path)!r}: need an absolute host path")
    if _is_under(EGRESS_DIR, mount) or _is_under(mount, EGRESS_DIR):
        raise ValueError(f"bad workspace_mount {mount!r}: it overlaps {EGRESS_DIR}, where the egress proxy goes")
    return spec.proxy


def _root_mounts(host: HostView, anchor: str | None, hidden: Sequence[str]) -> list[MountOp]:
    """The host system, read-only; `anchor` rebuilt entry by entry so it can take a mount point."""
    if anchor is None:
        return [MountOp(Op.RO_BIND, "/", "/", why="system read-only")]
    # bwrap's own root is a fresh tmpfs: for anchor "/" just fill it instead of covering it.
    out = [] if anchor == "/" else [MountOp(Op.RO_BIND, "/", "/", why="system read-only")]
    if anchor != "/":
        out.append(MountOp(Op.TMPFS, anchor, size=4096, why="rebuilt dir"))
    for entry in host.anchor_entries:
        path = posixpath.join(anchor, entry.name)
        if entry.symlink is not None:
            out.append(MountOp(Op.SYMLINK, path, entry.symlink, why="rebuilt dir"))
        elif entry.empty_dir:
            out.append(MountOp(Op.DIR, path, why="rebuilt dir (empty)"))
        elif path not in hidden:  # a masked or fresh dir gets its own mount point
            out.append(MountOp(Op.RO_BIND, path, path, why="system read-only"))
    return out


def _fresh_mounts(tmpfs_size: int) -> list[MountOp]:
    return [
        MountOp(Op.DEV, "/dev", why="minimal /dev"),
        MountOp(Op.TMPFS, "/dev/shm", size=tmpfs_size, why="fresh /dev/shm"),
        MountOp(Op.PROC, "/proc", why="own /proc"),
        # bwrap covers these only when they look writable to it, which misses root:
        # a capability-less uid 0 could otherwise write sysctls and sysrq-trigger.
        MountOp(Op.RO_BIND, "/proc/sys", "/proc/sys", why="sysctls read-only"),
        MountOp(Op.RO_BIND_TRY, "/proc/sysrq-trigger", "/proc/sysrq-trigger", why="sysrq read-only"),
        MountOp(Op.TMPFS, "/tmp", size=tmpfs_size, why="fresh /tmp"),
    ]


def _mask_candidates(host: HostView) -> list[tuple[str, bool]]:
    """(path, is_dir) of everything to hide, parents first, without duplicates."""
    candidates = {p: True for p in host.masked_dirs}
    for p in [*host.masked_files, *host.unix_sockets]:
        candidates.setdefault(p, False)
    return sorted(candidates.items())


def _host_masks(host: HostView) -> tuple[list[MountOp], list[str]]:
    """Masks at the host paths, and every dir hidden as a whole (fresh or masked)."""
    hidden = list(host.fresh_mounts)
    masks = []
    for path, is_dir in _mask_candidates(host):
        if _is_under_any(path, hidden):
            continue
        masks.append(_mask(path, is_dir))
        if is_dir:
            hidden.append(path)
    return masks, hidden


def _workspace_masks(host: HostView, mount: str) -> list[MountOp]:
    """Masked paths and sockets inside the workspace are visible through its mount too."""
    assert host.workspace is not None
    out: list[MountOp] = []
    hidden: list[str] = []
    for path, is_dir in _mask_candidates(host):
        if path == host.workspace or not _is_under(path, host.workspace):
            continue  # masking must never hide the workspace itself
        dest = posixpath.join(mount, posixpath.relpath(path, host.workspace))
        if _is_under_any(dest, hidden):
            continue
        out.append(_mask(dest, is_dir))
        if is_dir:
            hidden.append(dest)
    return out


def _mask(path: str, is_dir: bool) -> MountOp:
    if is_dir:
        return MountOp(Op.TMPFS, path, size=4096, why="mask")
    return MountOp(Op.RO_BIND, path, "/dev/null", why="mask")


def _check_mount_point(path: str) -> str:
    norm = posixpath.normpath(path)
    if not posixpath.isabs(norm) or norm == "/" or _is_under_any(norm, ("/proc", "/dev")):
        raise ValueError(f"bad workspace_mount {path!r}: need an absolute path outside /, /proc and /dev")
    return norm


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _is_under_any(path: str, parents: Iterable[str]) -> bool:
    return any(_is_under(path, p) for p in parents)


# --- probing the host -------------------------------------------------------------------


def probe_host(spec: SandboxSpec, always_masked: Sequence[Path] = ALWAYS_MASKED) -> HostView:
    """Look at the host now: what to hide, what the workspace holds, where it can go."""
    realpath = _RealPaths()
    dirs: list[str] = []
    files: list[str] = []
    homes = [Path(h) for h in (os.environ.get("HOME"), "/root") if h]
    for p in [*always_masked, *homes, *spec.masked_paths]:
        real = realpath(str(p))
        if real == "/":
            continue  # never "mask" the whole system (e.g. HOME=/)
        try:
            is_dir = stat.S_ISDIR(os.stat(real).st_mode)
        except OSError:
            continue  # nothing there to hide
        (dirs if is_dir else files).append(real)
    workspace = realpath(str(spec.workspace)) if spec.workspace is not None else None
    subpaths = _readonly_subpaths(workspace, spec.readonly_subpaths)
    anchor = _anchor(posixpath.normpath(spec.workspace_mount)) if workspace is not None else None
    return HostView(
        masked_dirs=tuple(dirs),
        masked_files=tuple(files),
        unix_sockets=tuple(_unix_sockets(realpath)),
        workspace=workspace,
        readonly_subpaths=subpaths,
        anchor=anchor,
        anchor_entries=_entries(anchor) if anchor is not None else (),
    )


def _anchor(mount: str) -> str | None:
    """The nearest existing ancestor of `mount` if `mount` does not exist on the host."""
    if os.path.lexists(mount):
        return None  # bind onto it (if it is not a directory, bwrap's error says so)
    parent = posixpath.dirname(mount)
    while not os.path.isdir(parent):
        parent = posixpath.dirname(parent)
    if os.path.realpath(parent) != parent:
        raise ValueError(f"workspace_mount {mount!r} goes through a symlink on the host")
    return parent


def _entries(directory: str) -> tuple[Entry, ...]:
    out = []
    with os.scandir(directory) as it:
        for e in it:
            if e.is_symlink():
                out.append(Entry(e.name, symlink=os.readlink(e.path)))
            else:
                out.append(Entry(e.name, empty_dir=e.is_dir() and _is_empty_dir(e.path)))
    return tuple(sorted(out))


def _is_empty_dir(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False  # unreadable (e.g. lost+found): bind it, whatever is in there


def _readonly_subpaths(workspace: str | None, subpaths: Sequence[str]) -> tuple[str, ...]:
    out = []
    for rel in subpaths:
        norm = posixpath.normpath(rel)
        if posixpath.isabs(norm) or norm == "." or norm.split("/")[0] == "..":
            raise ValueError(f"bad readonly subpath {rel!r}: need a path inside the workspace")
        if workspace is not None and os.path.lexists(posixpath.join(workspace, norm)):
            out.append(norm)
    return tuple(out)


class _RealPaths:
    """os.path.realpath with the parent directories cached (sockets share few dirs)."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        parent, name = posixpath.split(posixpath.normpath(path))
        if parent not in self._dirs:
            self._dirs[parent] = os.path.realpath(parent)
        joined = posixpath.join(self._dirs[parent], name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined


def _unix_sockets(realpath: _RealPaths) -> list[str]:
    """Filesystem Unix sockets bound in this network namespace, that exist right now.

    Abstract sockets (@name) need nothing: the sandbox has its own network namespace.
    """
    out = []
    with open("/proc/net/unix", "rb") as f:
        next(f, None)  # header
        for line in f:
            fields = line.split(maxsplit=7)
            if len(fields) < 8 or not fields[7].startswith(b"/"):
                continue
            path = realpath(os.fsdecode(fields[7].rstrip(b"\n")))
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    out.append(path)
            except OSError:
                continue  # a stale entry: the file is gone
    return sorted(set(out))


# --- running ----------------------------------------------------------------------------


class BwrapSandbox:
    """Runs commands under bubblewrap; limits through `enforcer` (default: best detected)."""

    name = "bwrap"

    def __init__(
        self,
        enforcer: Enforcer | None = None,
        bwrap_path: str | None = None,
        always_masked: Sequence[Path] = ALWAYS_MASKED,
    ) -> None:
        self.enforcer = enforcer if enforcer is not None else detect_enforcer()
        self.bwrap_path = bwrap_path if bwrap_path is not None else shutil.which("bwrap")
        self.always_masked = tuple(always_masked)

    def check(self) -> None:
        if self.bwrap_path is None or not os.access(self.bwrap_path, os.X_OK):
            raise SandboxUnavailable(MISSING_BWRAP)
        _check_version(self.bwrap_path)
        probe = SandboxSpec(argv=["true"], workspace=None, limits=Limits(timeout_s=10.0))
        result = self.run(probe)
        if result.termination is not Termination.EXITED or result.exit_code != 0:
            why = result.detail or result.stderr.decode(errors="replace").strip()
            raise SandboxUnavailable(
                f"bubblewrap cannot create a sandbox here ({result.termination.value}: {why}); "
                "user namespaces may be disabled (sysctls user.max_user_namespaces, "
                "kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
            )

    def probe(self, spec: SandboxSpec) -> HostView:
        return probe_host(spec, self.always_masked)

    def plan(self, spec: SandboxSpec) -> Plan:
        """The plan `run(spec)` would carry out now (for logs and debugging)."""
        return render_plan(spec, self.probe(spec))

    def run(
        self,
        spec: SandboxSpec,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        started = time.monotonic()
        host = self.probe(spec)
        result = self._run_once(spec, host, on_output, cancel, started)
        if result.termination is Termination.SPAWN_FAILED and (fresh := self.probe(spec)) != host:
            # The host changed under the plan (a socket or masked path vanished between
            # probing and bwrap's setup): one retry with fresh facts.
            log.info("sandbox setup failed on a changed host, retrying: %s", result.detail)
            result = self._run_once(spec, fresh, on_output, cancel, started)
        return result

    def _run_once(
        self,
        spec: SandboxSpec,
        host: HostView,
        on_output: OutputSink | None,
        cancel: threading.Event | None,
        started: float,
    ) -> ExecResult:
        plan = render_plan(spec, host)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sandbox plan:\n%s", plan.describe())
        if self.bwrap_path is None:
            return _failed(started, self.enforcer.name, MISSING_BWRAP)
        if spec.network is Network.PROXY and not os.access(FORWARDER_PYTHON, os.X_OK):
            detail = f"network=proxy runs the egress forwarder with {FORWARDER_PYTHON}: install python3"
            return _failed(started, self.enforcer.name, detail)
        try:
            limits = self.enforcer.start(spec.limits)
        except OSError as e:
            return _failed(started, self.enforcer.name, f"cannot set up resource limits: {e}")
        try:
            run = _Execution(self.bwrap_path, plan, spec, limits, on_output, cancel, started)
            return run.execute(self.enforcer.name)
        finally:
            limits.close()


def _check_version(bwrap: str) -> None:
    out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    if version < MIN_BWRAP_VERSION:
        want = ".".join(map(str, MIN_BWRAP_VERSION))
        raise SandboxUnavailable(f"bubblewrap >= {want} is required, found {out.strip() or 'unknown'}")


def _failed(started: float, enforced_by: str, detail: str) -> ExecResult:
    return ExecResult(
        Termination.SPAWN_FAILED, None, None, b"", b"", 0, 0, time.monotonic() - started, enforced_by, detail
    )


@dataclass
class _Capture:
    """One output stream: the first `cap` bytes kept, everything counted."""

    stream: Stream
    fd: int
    cap: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0
    open: bool = True

    def feed(self, chunk: bytes) -> bytes:
        """Record a chunk; return the part that fits under the cap."""
        self.total += len(chunk)
        kept = chunk[: max(0, self.cap - len(self.data))]
        self.data += kept
        return kept


class _Execution:
    """One run of one plan: spawn, event loop, result."""

    def __init__(
        self,
        bwrap: str,
        plan: Plan,
        spec: SandboxSpec,
        limits: RunLimits,
        on_output: OutputSink | None,
        cancel: threading.Event | None,
        started: float,
    ) -> None:
        self.bwrap = bwrap
        self.plan = plan
        self.spec = spec
        self.limits = limits
        self.on_output = on_output
        self.cancel = cancel
        self.started = started
        self.deadline = started + spec.limits.timeout_s
        self.cause: Termination | None = None  # why we killed it, if we did
        self.cause_detail = ""
        self.exited_at: float | None = None
        self.stdin_left = memoryview(spec.stdin)

    def execute(self, enforced_by: str) -> ExecResult:
        try:
            proc, status_fd = self._spawn()
        except OSError as e:
            return _failed(self.started, enforced_by, f"cannot start bwrap: {e}")
        try:
            self._loop(proc)
            proc.wait()
            status = _read_status(status_fd)
        finally:
            if proc.poll() is None:  # only on an exception (e.g. from on_output)
                self._kill(Termination.CANCELLED, "aborted")
                proc.kill()
                proc.wait()
            os.close(status_fd)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        return self._result(proc.returncode, status, enforced_by)

    # -- spawn

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        args_r, args_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            # bwrap reads --args before doing anything else, so it waits there until
            # it is inside the run's cgroup: all its descendants are born limited.
            argv = [self.bwrap, "--args", str(args_r), "--json-status-fd", str(status_w), "--", *self.plan.argv]
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if self.spec.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(args_r, status_w),
                start_new_session=True,  # keep terminal signals for the daemon away from it
            )
        except BaseException:
            for fd in (args_w, status_r):
                os.close(fd)
            raise
        finally:
            os.close(args_r)
            os.close(status_w)
        try:
            self.limits.attach(proc.pid)
            self._send_options(args_w)
        except OSError:
            proc.kill()
            proc.wait()
            os.close(status_r)
            raise
        return proc, status_r

    def _send_options(self, fd: int) -> None:
        blob = os.fsencode("\0".join(self.plan.bwrap_options()) + "\0")
        try:
            with open(fd, "wb", closefd=True) as f:
                f.write(blob)
        except BrokenPipeError:
            pass  # bwrap died first; its exit status tells why

    # -- event loop

    def _loop(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        caps = self.spec.limits.output_bytes
        self.captures = [
            _Capture(Stream.STDOUT, proc.stdout.fileno(), caps),
            _Capture(Stream.STDERR, proc.stderr.fileno(), caps),
        ]
        pidfd = os.pidfd_open(proc.pid)  # readable once bwrap exits: no SIGCHLD games
        try:
            with select.epoll() as ep:
                for c in self.captures:
                    ep.register(c.fd, select.EPOLLIN)
                ep.register(pidfd, select.EPOLLIN)
                for fd in self.limits.watch_fds():
                    # Edge-triggered: one wake-up per change, even once we stop reading them.
                    ep.register(fd, select.EPOLLPRI | select.EPOLLET)
                self._pump(proc, ep, pidfd)
        finally:
            os.close(pidfd)

    def _pump(self, proc: subprocess.Popen[bytes], ep: select.epoll, pidfd: int) -> None:
        """Until bwrap has exited and both outputs hit EOF: move bytes, enforce limits."""
        outputs = {c.fd: c for c in self.captures}
        stdin_fd = self._setup_stdin(proc, ep)
        while any(c.open for c in self.captures) or self.exited_at is None:
            for fd, _ in ep.poll(self._poll_timeout()):
                if fd in outputs:
                    self._read(outputs[fd], ep)
                elif fd == pidfd:
                    self.exited_at = time.monotonic()
                    ep.unregister(pidfd)
                elif fd == stdin_fd:
                    stdin_fd = self._write_stdin(proc, ep)
            self._enforce(proc)
            if self.exited_at is not None and time.monotonic() - self.exited_at > DRAIN_GRACE_S:
                log.warning("sandbox output still open %.1fs after exit; giving up", DRAIN_GRACE_S)
                return

    def _poll_timeout(self) -> float:
        if self.cause is not None or self.exited_at is not None:
            return POLL_TICK_S
        return max(0.0, min(POLL_TICK_S, self.deadline - time.monotonic()))

    def _read(self, capture: _Capture, ep: select.epoll) -> None:
        chunk = os.read(capture.fd, READ_CHUNK)
        if not chunk:
            capture.open = False
            ep.unregister(capture.fd)
            return
        kept = capture.feed(chunk)
        if kept and self.on_output is not None:
            self.on_output(capture.stream, kept)

    def _setup_stdin(self, proc: subprocess.Popen[bytes], ep: select.epoll) -> int | None:
        if proc.stdin is None:
            return None
        fd = proc.stdin.fileno()
        os.set_blocking(fd, False)  # never block the loop on a child that does not read
        ep.register(fd, select.EPOLLOUT)
        return fd

    def _write_stdin(self, proc: subprocess.Popen[bytes], ep: select.epoll) -> int | None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        try:
            written = os.write(fd, self.stdin_left[:READ_CHUNK])
            self.stdin_left = self.stdin_left[written:]
        except BlockingIOError:
            return fd
        except OSError:  # EPIPE: the command closed its stdin; the rest is dropped
            self.stdin_left = memoryview(b"")
        if self.stdin_left:
            return fd
        ep.unregister(fd)
        proc.stdin.close()  # EOF for the command
        return None

    def _enforce(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill everything on cancel, timeout or a limit hit (the first cause wins)."""
        if self.cause is not None or self.exited_at is not None:
            return
        if self.cancel is not None and self.cancel.is_set():
            self._kill(Termination.CANCELLED, "cancelled")
        elif time.monotonic() >= self.deadline:
            self._kill(Termination.TIMEOUT, f"wall-clock timeout of {self.spec.limits.timeout_s:g} s")
        elif (hit := self.limits.limit_hit()) is not None:
            self._kill(hit, self.limits.describe_hit())
        if self.cause is not None:
            proc.kill()  # the outer bwrap: its pid-namespace init dies with it, and so does the rest

    def _kill(self, cause: Termination, detail: str) -> None:
        self.cause, self.cause_detail = cause, detail
        self.limits.kill_all()

    # -- result

    def _result(self, returncode: int, status: dict[str, int], enforced_by: str) -> ExecResult:
        out, err = self.captures
        termination, exit_code, signo, detail = self._classify(returncode, status, bytes(err.data))
        return ExecResult(
            termination=termination,
            exit_code=exit_code,
            signal=signo,
            stdout=bytes(out.data),
            stderr=bytes(err.data),
            stdout_total=out.total,
            stderr_total=err.total,
            duration_s=time.monotonic() - self.started,
            limits_enforced_by=enforced_by,
            detail=detail,
        )

    def _classify(
        self, returncode: int, status: dict[str, int], stderr: bytes
    ) -> tuple[Termination, int | None, int | None, str]:
        if self.cause is None and (hit := self.limits.limit_hit()) is not None:
            self.cause, self.cause_detail = hit, self.limits.describe_hit()
        if self.cause is not None:
            return self.cause, None, None, self.cause_detail
        if returncode < 0:  # the outer bwrap itself was killed, not by us
            return Termination.SIGNALED, None, -returncode, f"bwrap killed by signal {-returncode}"
        message = stderr.decode(errors="replace").strip()
        if "exit-code" not in status:  # bwrap reports it only once the command was exec'd
            return Termination.SPAWN_FAILED, None, None, message[-2000:] or f"bwrap exited {returncode}"
        code = status["exit-code"]
        if code == 1 and stderr.startswith(b"bwrap: execvp "):
            return Termination.SPAWN_FAILED, None, None, message[-2000:]
        if (
            self.spec.network is Network.PROXY
            and code == forwarder.EXEC_FAILED_STATUS
            and stderr.startswith(forwarder.EXEC_FAILED.encode())
        ):
            return Termination.SPAWN_FAILED, None, None, message[-2000:]
        # bwrap turns "killed by signal N" into exit status 128+N, like a shell does.
        if 128 < code < 128 + signal.NSIG:
            return Termination.SIGNALED, None, code - 128, f"exit status {code}: killed by signal {code - 128}"
        return Termination.EXITED, code, None, ""


def _read_status(fd: int) -> dict[str, int]:
    """Merge bwrap's --json-status-fd documents ({"child-pid": ..} then {"exit-code": ..})."""
    os.set_blocking(fd, False)
    raw = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            raw += chunk
    out: dict[str, int] = {}
    decoder, text, pos = json.JSONDecoder(), raw.decode(errors="replace"), 0
    while (start := text.find("{", pos)) != -1:
        try:
            doc, pos = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            break
        if isinstance(doc, dict):
            out.update({k: v for k, v in doc.items() if isinstance(v, int)})
    return out
