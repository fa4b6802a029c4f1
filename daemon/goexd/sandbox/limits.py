"""Resource limits for one sandbox run: memory, process count, and "kill them all".

An `Enforcer` is chosen once at start-up (`detect_enforcer`); each run asks it for a
`RunLimits` handle, which follows one process tree from `attach(pid)` to `close()`:

    cgroup-v2   one cgroup per run (memory.max, pids.max, cgroup.kill, *.events)
    cgroup-v1   one cgroup per run in the memory and the pids hierarchies
    rlimit      RLIMIT_AS / RLIMIT_NPROC on the first process; no accounting, no
                reporting, no kill-all: the caller relies on a pid namespace for that

`attach(pid)` must happen before the process can fork (the bwrap backend spawns bwrap
blocked on reading its own arguments, attaches, then lets it go), so that every
descendant is born inside the limits. A cgroup-v1 run is joined from inside instead
(`joins()`): the first shell of the launch chain moves itself, which the kernel does
without the global lock that moving another process takes (see `_V1Run.joins`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from goexd.diskspace import size
from goexd.domain.sandbox import Limits, Termination

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_PREFIX = "goex-"

# bwrap's own processes live in the run's cgroup too (the outer bwrap and the pid-1
# reaper of the sandbox's pid namespace); they do not count against the user's limit.
BWRAP_OVERHEAD_PIDS = 2
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"
SH = "/bin/sh"
JOIN_FAILED_STATUS = 125
JOIN_FAILED = "goex-limits: cannot join the run's cgroup"
# A POSIX sh fragment that joins the files in its arguments up to "--" (RunLimits.joins), then drops
# them and the "--": `echo` is a builtin, so the shell itself writes "0" (itself) to each file.
JOIN_LOOP = (
    'while [ "$1" != -- ]; do echo 0 > "$1" || '
    f'{{ echo "{JOIN_FAILED} ($1)" >&2; exit {JOIN_FAILED_STATUS}; }}; shift; done; shift'
)


class CgroupUnusable(Exception):
    """This cgroup backend cannot work here; the message says why."""


class RunLimits(Protocol):
    """Limits for one process tree, from attach() to close()."""

    def launcher(self, uid: int, own_userns: bool = False) -> Sequence[str]:
        """An argv prefix that puts the limits on the process it then execs, for limits that
        must be set from inside (rlimits of a process of another uid); () if none.
        `own_userns`: it runs in a user namespace of its own, where `uid` has no other tasks."""

    def joins(self) -> Sequence[str]:
        """Files the launch chain's first shell writes "0" to, to move itself under the limits
        (JOIN_LOOP; `join_prefix`), before anything in the chain forks and with the daemon's
        identity. () if the caller must attach(pid) instead."""

    def attach(self, pid: int) -> None:
        """Put `pid` (not yet forked) under the limits. Raises OSError on failure."""

    def watch_fds(self) -> Sequence[int]:
        """Fds that turn EPOLLPRI-ready when a limit event may have happened (may be empty)."""

    def limit_hit(self) -> Termination | None:
        """OOM or PIDS_LIMIT once a limit was hit in this run, else None. Cheap: poll it."""

    def describe_hit(self) -> str:
        """One line on what was hit, for ExecResult.detail."""

    def kill_all(self) -> None:
        """SIGKILL every process of the run (best effort: never raises)."""

    def close(self) -> None:
        """Release the run's resources (remove its cgroup). Call after the tree is dead."""


class Enforcer(Protocol):
    name: str  # goes into ExecResult.limits_enforced_by

    def start(self, limits: Limits) -> RunLimits:
        """Prepare the limits of one run (e.g. create its cgroup)."""


def join_prefix(files: Sequence[str]) -> list[str]:
    """The argv prefix that joins `files` (RunLimits.joins), then execs what follows it; [] for none."""
    return [SH, "-c", f'{JOIN_LOOP}; exec "$@"', "goex-limits", *files, "--"] if files else []


# --- small file helpers -------------------------------------------------------------


def _write(path: Path, value: str) -> None:
    # One write() call: cgroup files take one value per write.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_keyed(fd: int) -> dict[str, int]:
    """Parse a flat keyed cgroup file ("key value" lines) through an open fd."""
    out: dict[str, int] = {}
    for line in os.pread(fd, 4096, 0).decode().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _rmdir_when_empty(path: Path, kill: RunLimits | None) -> None:
    """rmdir a run cgroup; it stays busy until its last task is released, so retry briefly."""
    delay = 0.0001  # measured: usually free again within 0.3 ms of the last task's exit
    deadline = time.monotonic() + 1.0
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("cannot remove cgroup %s: %s", path, e)
                return
        if kill is not None:
            kill.kill_all()
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _kill_procs_in(procs_file: Path) -> None:
    """SIGKILL every process listed in a cgroup.procs file, safely against pid reuse."""
    for _ in range(50):  # a forking tree can add pids while we kill; loop until empty
        pinned = {pid: fd for pid in _read_pids(procs_file) if (fd := _pidfd(pid)) is not None}
        if not pinned:
            return
        # A pidfd pins one process: if its number was reused before we opened it, the
        # new owner is not listed in the cgroup any more and is left alone.
        members = set(_read_pids(procs_file))
        for pid, fd in pinned.items():
            try:
                if pid in members:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.001)


def _read_pids(procs_file: Path) -> list[int]:
    try:
        return [int(p) for p in procs_file.read_text().split()]
    except OSError:
        return []


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def sweep_stale(parent: Path, min_age_s: float = 60.0) -> int:
    """Remove run cgroups left behind by a daemon that died mid-run; returns how many.

    Only empty ones older than `min_age_s`, so a run another daemon is just setting
    up in the same parent is left alone.
    """
    removed = 0
    now = time.time()
    for path in parent.glob(f"{RUN_PREFIX}*"):
        try:
            if now - path.stat().st_mtime >= min_age_s:
                os.rmdir(path)
                removed += 1
        except OSError:
            continue  # busy (still has processes) or already gone
    return removed


# --- where are we: mounts and our own cgroups ------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str  # the path inside the filesystem that is mounted (mountinfo field 4)
    point: Path
    fstype: str
    super_options: frozenset[str]


def _mounts() -> list[_Mount]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        out.append(_Mount(fields[3], point, rfields[0], frozenset(rfields[2].split(","))))
    return out


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _host_dir(mount: _Mount, cgroup_path: str) -> Path:
    """The directory of `cgroup_path` under `mount` (which may mount a sub-tree)."""
    rel = cgroup_path
    if mount.root != "/" and (rel == mount.root or rel.startswith(mount.root + "/")):
        rel = rel[len(mount.root) :]
    return mount.point / rel.lstrip("/")


def _probe_dir(parent: Path) -> None:
    """Prove we can create and remove a child cgroup under `parent`."""
    probe = parent / f"{RUN_PREFIX}probe-{uuid.uuid4().hex[:12]}"
    try:
        os.mkdir(probe)
    except OSError as e:
        raise CgroupUnusable(f"cannot create a cgroup under {parent}: {e.strerror}") from e
    os.rmdir(probe)


class _CgroupRun:
    """What v1 and v2 runs share: limit hits read from the kernel's event counters."""

    limits: Limits

    def _counts(self) -> tuple[int, int]:
        """(OOM kills, refused forks) so far in this run."""
        raise NotImplementedError

    def limit_hit(self) -> Termination | None:
        oom_kills, pids_max = self._counts()
        if oom_kills:
            return Termination.OOM
        if pids_max:
            return Termination.PIDS_LIMIT
        return None

    def describe_hit(self) -> str:
        oom_kills, pids_max = self._counts()
        parts = []
        if oom_kills:
            memory = self.limits.memory_bytes
            parts.append(f"memory limit of {size(memory)} ({memory} bytes) hit ({oom_kills} OOM kill(s))")
        if pids_max:
            parts.append(f"process limit of {self.limits.max_processes} hit ({pids_max} fork(s) refused)")
        return "; ".join(parts)


# --- cgroup v2 --------------------------------------------------------------------------


class CgroupV2Enforcer:
    """One cgroup per run under `parent`, which must have memory and pids delegated."""

    name = "cgroup-v2"

    def __init__(self, parent: Path) -> None:
        self.parent = parent

    @classmethod
    def detect(cls, parent: Path | None = None) -> CgroupV2Enforcer:
        """`parent`: the directory to create run cgroups in; default: the daemon's own cgroup."""
        mounts = [m for m in _mounts() if m.point == CGROUP_ROOT and m.fstype == "cgroup2"]
        if parent is None:
            if not mounts:
                raise CgroupUnusable(f"{CGROUP_ROOT} is not a cgroup2 mount")
            parent = _host_dir(mounts[-1], _own_cgroups().get("", "/"))
        elif mounts and parent.is_relative_to(CGROUP_ROOT):
            parent.mkdir(parents=True, exist_ok=True)
        if not (parent / "cgroup.controllers").is_file():
            raise CgroupUnusable(f"{parent} is not a cgroup v2 directory")
        available = (parent / "cgroup.controllers").read_text().split()
        missing = {"memory", "pids"} - set(available)
        if missing:
            raise CgroupUnusable(f"cgroup v2: {sorted(missing)} not delegated to {parent}")
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            try:
                _write(parent / "cgroup.subtree_control", "+memory +pids")
            except OSError as e:
                raise CgroupUnusable(
                    f"cgroup v2: cannot enable memory+pids in {parent}/cgroup.subtree_control "
                    f"({e.strerror}); configure a delegated parent cgroup that holds no "
                    "processes itself (systemd: Delegate=yes, daemon in a sub-cgroup)"
                ) from e
        _probe_dir(parent)
        sweep_stale(parent)
        return cls(parent)

    def start(self, limits: Limits) -> RunLimits:
        path = self.parent / f"{RUN_PREFIX}{uuid.uuid4().hex}"
        os.mkdir(path)
        try:
            _write(path / "memory.max", str(limits.memory_bytes))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
            _write(path / "memory.oom.group", "1")  # an OOM kills the whole run, not a random part
            _write(path / "pids.max", str(limits.max_processes + BWRAP_OVERHEAD_PIDS))
            return _V2Run(path, limits)
        except BaseException:
            os.rmdir(path)
            raise


class _V2Run(_CgroupRun):
    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.limits = limits
        self._memory_events = os.open(path / "memory.events", os.O_RDONLY | os.O_CLOEXEC)
        self._pids_events = os.open(path / "pids.events", os.O_RDONLY | os.O_CLOEXEC)

    def launcher(self, uid: int, own_userns: bool = False) -> Sequence[str]:
        return ()

    def joins(self) -> Sequence[str]:
        return ()  # v2 moves whole processes only, under the global lock either way

    def attach(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def watch_fds(self) -> Sequence[int]:
        return (self._memory_events, self._pids_events)

    def _counts(self) -> tuple[int, int]:
        return (
            _read_keyed(self._memory_events).get("oom_kill", 0),
            _read_keyed(self._pids_events).get("max", 0),
        )

    def kill_all(self) -> None:
        try:
            _write(self.path / "cgroup.kill", "1")
        except FileNotFoundError:  # kernels before 5.14
            _kill_procs_in(self.path / "cgroup.procs")
        except OSError as e:
            log.warning("cgroup.kill failed for %s: %s", self.path, e)

    def close(self) -> None:
        os.close(self._memory_events)
        os.close(self._pids_events)
        _rmdir_when_empty(self.path, self)


# --- cgroup v1 --------------------------------------------------------------------------


class CgroupV1Enforcer:
    """One cgroup per run in each of the v1 memory and pids hierarchies."""

    name = "cgroup-v1"

    def __init__(self, memory_parent: Path, pids_parent: Path) -> None:
        self.memory_parent = memory_parent
        self.pids_parent = pids_parent

    @classmethod
    def detect(cls, parent: str | None = None) -> CgroupV1Enforcer:
        """`parent` is a cgroup path (e.g. "/goex") used in both hierarchies; default: ours."""
        own = _own_cgroups()
        dirs: dict[str, Path] = {}
        for controller in ("memory", "pids"):
            mounts = [m for m in _mounts() if m.fstype == "cgroup" and controller in m.super_options]
            if not mounts:
                raise CgroupUnusable(f"cgroup v1: no {controller} hierarchy mounted")
            where = parent if parent is not None else own.get(controller, "/")
            dirs[controller] = _host_dir(mounts[-1], where)
            if parent is not None:
                dirs[controller].mkdir(parents=True, exist_ok=True)
            _probe_dir(dirs[controller])
            sweep_stale(dirs[controller])
        return cls(dirs["memory"], dirs["pids"])

    def start(self, limits: Limits) -> RunLimits:
        name = f"{RUN_PREFIX}{uuid.uuid4().hex}"
        memory, pids = self.memory_parent / name, self.pids_parent / name
        os.mkdir(memory)
        try:
            os.mkdir(pids)
        except BaseException:
            os.rmdir(memory)
            raise
        try:
            # limit_in_bytes first: memsw (memory+swap) may never be below it.
            _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            _write(pids / "pids.max", str(limits.max_processes + BWRAP_OVERHEAD_PIDS))
            return _V1Run(memory, pids, limits)
        except BaseException:
            os.rmdir(memory)
            os.rmdir(pids)
            raise


class _V1Run(_CgroupRun):
    def __init__(self, memory: Path, pids: Path, limits: Limits) -> None:
        self.memory = memory
        self.pids = pids
        self.limits = limits
        self._oom_control = os.open(memory / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        self._pids_events = os.open(pids / "pids.events", os.O_RDONLY | os.O_CLOEXEC)

    def launcher(self, uid: int, own_userns: bool = False) -> Sequence[str]:
        return ()

    def joins(self) -> Sequence[str]:
        # Moving another process (attach) write-locks the kernel's cgroup_threadgroup_rwsem, which
        # waits for an RCU grace period: 4-11 ms on a busy 2-core machine with HZ=250, measured. A
        # thread that writes "0" to a v1 `tasks` file moves only itself, without that lock (~0.1 ms);
        # a single-threaded process (the shell) moves whole, and all it forks after is born inside.
        return (str(self.memory / "tasks"), str(self.pids / "tasks"))

    def attach(self, pid: int) -> None:
        _write(self.memory / "cgroup.procs", str(pid))
        _write(self.pids / "cgroup.procs", str(pid))

    def watch_fds(self) -> Sequence[int]:
        # v1 does not notify on these files (measured on 6.18): the caller polls.
        return ()

    def _counts(self) -> tuple[int, int]:
        oom = _read_keyed(self._oom_control)
        # oom_kill exists since 4.13; before that a hit limit is all we can see.
        oom_kills = oom["oom_kill"] if "oom_kill" in oom else self._failcnt()
        return oom_kills, _read_keyed(self._pids_events).get("max", 0)

    def _failcnt(self) -> int:
        return int((self.memory / "memory.failcnt").read_text().strip() or 0)

    def kill_all(self) -> None:
        _kill_procs_in(self.pids / "cgroup.procs")

    def close(self) -> None:
        os.close(self._oom_control)
        os.close(self._pids_events)
        _rmdir_when_empty(self.pids, self)
        _rmdir_when_empty(self.memory, None)


# --- rlimit fallback --------------------------------------------------------------------


class RlimitEnforcer:
    """Per-process rlimits, for daemons without cgroup delegation.

    Weaker than cgroups:
    - RLIMIT_AS caps address space (not RSS) per process: N processes may use N times
      the limit, and programs that reserve big mappings (JVMs, Go, glibc thread arenas)
      can fail early. tmpfs writes are not counted (the bwrap plan sizes its tmpfs).
    - RLIMIT_NPROC counts every thread of the real uid, so the limit is their current
      count plus max_processes (racy with the user's other processes); root ignores it.
    - Hits are not reported: the command just sees ENOMEM / EAGAIN, so an OOM shows as
      a failed exit and a fork bomb as a TIMEOUT.
    - kill_all only kills the attached process: the bwrap backend's pid namespace
      takes the rest with it.
    """

    name = "rlimit"

    def __init__(self, reasons: Sequence[str] = ()) -> None:
        self.reasons = tuple(reasons)  # why no cgroup backend was usable, for logs

    def start(self, limits: Limits) -> RunLimits:
        return _RlimitRun(limits)


class _RlimitRun:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pid: int | None = None

    def launcher(self, uid: int, own_userns: bool = False) -> Sequence[str]:
        # util-linux prlimit sets them on itself, then execs bwrap: set from outside, they would
        # need CAP_SYS_RESOURCE once the run has another uid than the daemon (a root daemon
        # switching to the workspace's owner), which root in a container may not hold.
        # In a user namespace of its own, RLIMIT_NPROC counts the tasks of that namespace's
        # uid (kernel ucounts): the run's alone, so the limit is exact there.
        mem = self.limits.memory_bytes
        others = 0 if own_userns else _tasks_of_uid(uid)
        nproc = others + self.limits.max_processes + BWRAP_OVERHEAD_PIDS
        return (PRLIMIT, f"--as={mem}:{mem}", f"--nproc={nproc}:{nproc}", "--")

    def joins(self) -> Sequence[str]:
        return ()

    def attach(self, pid: int) -> None:
        self.pid = pid

    def watch_fds(self) -> Sequence[int]:
        return ()

    def limit_hit(self) -> Termination | None:
        return None

    def describe_hit(self) -> str:
        return ""

    def kill_all(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        self.pid = None


def _tasks_of_uid(uid: int) -> int:
    """Threads of all processes of `uid`: what RLIMIT_NPROC actually counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            count += int(fields[17])  # num_threads (field 20; comm may contain spaces)
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return count


# --- choosing ---------------------------------------------------------------------------


def detect_enforcer(cgroup_parent: str | None = None) -> Enforcer:
    """The best backend usable here: cgroup v2, else cgroup v1, else rlimits.

    `cgroup_parent` is the cgroup path (as in /proc/self/cgroup, e.g. "/goex") to
    create run cgroups under; default: the daemon's own cgroup.
    """
    reasons: list[str] = []
    v2_parent = None
    if cgroup_parent is not None:
        v2_parent = CGROUP_ROOT / cgroup_parent.lstrip("/")
    try:
        return CgroupV2Enforcer.detect(v2_parent)
    except (CgroupUnusable, OSError) as e:
        reasons.append(f"cgroup-v2: {e}")
    try:
        return CgroupV1Enforcer.detect(cgroup_parent)
    except (CgroupUnusable, OSError) as e:
        reasons.append(f"cgroup-v1: {e}")
    log.warning("no usable cgroup backend, falling back to rlimits: %s", "; ".join(reasons))
    return RlimitEnforcer(reasons)
