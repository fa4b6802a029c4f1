"""What goexd does at start before it serves anything: claim its state dir, clear what an
earlier start of it left behind when it was killed.

- The state dir is held by one goexd at a time (an flock on `goexd.lock` in it, released by
  the kernel when the daemon dies, however it dies). That is what makes the clean-up below
  safe: whatever an earlier start of this state dir left is nobody's any more.
- Sandbox processes marked by an earlier start (sandbox/reaper.py) are killed, before the
  journal's recovery looks at any workspace: a leftover must not write while recovery restores.
- The egress proxy's run dir (Unix sockets must have short paths, so it lives in $TMPDIR) is
  `goexd-egress-<owner>-XXXXXXXX`, named after the state dir, with a lock file inside held for
  the daemon's life. A start removes every such dir of its user whose lock nobody holds (a goexd
  killed, whose state dir may be gone too), never a live goexd's.
- Containers, volumes and networks labelled as this state dir's goexd's on the container engine (an earlier
  start's) are removed, and the container slots' mounts it left unmounted (`reap_containers`).
- A root goexd mounts its runs' overlays in a mount dir of its own (sandbox/overlay_mounts.py): a
  start first unmounts what an earlier one left there, before recovery or the overlay probe looks at
  any workspace or upper dir; the dir is unmounted and removed when goexd exits.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from goexd.config import Config
from goexd.domain.errors import SetupError
from goexd.engine.journal_repair import RepairFailed, repair_journal
from goexd.sandbox import container_slots, reaper
from goexd.sandbox.container_endpoint import endpoint_from, socket_path
from goexd.sandbox.overlay_mounts import OverlayMounts
from goexd.sandbox.reaper import SandboxMark

log = logging.getLogger("goexd")

LOCK_FILE = "goexd.lock"
EGRESS_PREFIX = "goexd-egress-"
EGRESS_LOCK = ".goexd-egress.lock"
_held: list[int] = []  # descriptors holding locks for the daemon's life


@dataclass(frozen=True)
class StateDirClaim:
    """The held state dir: `lock_fd` stays open (and locked) for the daemon's life."""

    state_dir: Path
    lock_fd: int
    mark: SandboxMark


def claim_state_dir(state_dir: Path) -> StateDirClaim:
    """Create the state dir (0700) and lock it; SetupError when another goexd holds it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise SetupError(
                f"the state dir {state_dir} is in use by another goexd (pid {holder}): one goexd per state dir"
            ) from None
        raise SetupError(f"cannot lock the state dir {state_dir}: {e.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message above, seen by the next one
    return StateDirClaim(state_dir, fd, SandboxMark.for_state_dir(state_dir))


def reap_sandboxes(claim: StateDirClaim) -> int:
    """Kill the sandbox processes an earlier start of this daemon left; returns how many."""
    killed = reaper.reap(claim.mark)
    for r in killed:
        log.warning("killed sandbox process %d (%s) left by an earlier goexd run (%s)", r.pid, r.argv0, r.instance)
    return len(killed)


def reap_containers(claim: StateDirClaim, cfg: Config) -> int:
    """Remove what an earlier start of this daemon left on its container engine (containers, volumes and networks
    labelled with its owner: sandbox/container_engine.py) and the container slots' mounts it left (a root goexd's,
    sandbox/container_slots.py), before recovery looks at any workspace. An engine that is not there (no socket)
    holds nothing of ours; one that does not answer is logged and the start goes on (the container backend tries
    again when it opens); returns how many were removed."""
    if os.geteuid() == 0:
        container_slots.clear_left(claim.mark.owner)
    endpoint = endpoint_from(cfg.container.endpoint)
    sock = socket_path(endpoint)
    if sock is not None and not sock.exists():
        return 0
    # The docker SDK only where an engine may be: it costs ~0.1-0.2 s of start.
    from goexd.sandbox import container_engine  # noqa: PLC0415

    try:
        api = container_engine.connect(endpoint, timeout_s=10)
        with container_engine.engine_errors(endpoint, "removing what an earlier goexd left"):
            found = container_engine.reap(api, claim.mark.owner, keep_instance=claim.mark.instance)
    except container_engine.EngineUnavailable as e:
        level = logging.WARNING if cfg.sandbox.backend != "bwrap" else logging.DEBUG
        log.log(level, "%s", e)
        return 0
    for r in found:
        log.warning("removed %s %s left by an earlier goexd run (%s)", r.kind, r.name, r.instance)
    return len(found)


def overlay_mounts(claim: StateDirClaim) -> OverlayMounts | None:
    """A root goexd's mount dir for its runs' overlays, made after unmounting what an earlier start of this
    state dir left mounted, and removed at exit; None for an unprivileged goexd (its launch chain mounts
    them) or where this root may not mount (the launch chain tries then, and the overlay probe decides)."""
    if os.geteuid() != 0:
        return None
    try:
        mounts = OverlayMounts.open(claim.mark.owner)
    except OSError as e:
        log.warning("cannot make a mount dir for the runs' overlays (%s): the launch chain mounts them", e)
        return None
    atexit.register(mounts.close)  # a kill skips it: the next start unmounts what is left
    return mounts


def egress_run_dir(claim: StateDirClaim) -> Path:
    """A fresh private dir for the egress proxy's sockets, locked for the daemon's life; the dead
    ones of any goexd of this user are removed first (see the module doc)."""
    tmp = Path(tempfile.gettempdir())
    ours = f"{EGRESS_PREFIX}{claim.mark.owner}-"
    with contextlib.suppress(OSError):
        for entry in os.scandir(tmp):
            if entry.name.startswith(EGRESS_PREFIX):
                _remove_if_dead(Path(entry.path), entry.name.startswith(ours))
    path = Path(tempfile.mkdtemp(prefix=ours, dir=tmp))
    # The lock file is locked under another name, then renamed: no other goexd sees it unlocked
    # (and a dir of another goexd's without one is left alone).
    staging = path / f"{EGRESS_LOCK}.{os.getpid()}"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.append(fd)  # open until the daemon exits: the kernel releases the lock however it ends
    staging.rename(path / EGRESS_LOCK)
    return path


def _remove_if_dead(path: Path, ours: bool) -> None:
    """rm -r an egress run dir whose goexd is gone: a real directory of our user whose lock nobody
    holds (or, without a lock file, one of this state dir's, which we hold). A world-writable $TMPDIR
    may hold look-alikes of another user's, symbolic links, or dirs of goexd versions before the lock:
    those are left alone."""
    try:
        st = path.lstat()
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return
    try:
        fd = os.open(path / EGRESS_LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not ours:
            return
    except OSError:
        return
    else:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # held: a live goexd's
        finally:
            os.close(fd)
    shutil.rmtree(path, ignore_errors=True)
    log.info("removed the egress run dir %s left by a goexd that is gone", path)


def repair_journal_command(state_dir: Path, journal: Path) -> int:
    """`goexd --repair-journal`: with the state dir held (no goexd may run on it meanwhile)."""
    claim_state_dir(state_dir)
    try:
        report = repair_journal(journal)
    except (RepairFailed, OSError) as e:
        print(f"goexd: cannot repair the journal {journal}: {e}", file=sys.stderr)
        return 1
    if report is None:
        print(f"the journal {journal} is sound: nothing to repair")
        return 0
    print(f"rebuilt the journal {journal}\n{report.describe()}")
    return 0
