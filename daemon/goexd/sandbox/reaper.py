"""Sandbox processes that outlive their goexd: marked at spawn, reaped at the next start.

Every process goexd starts for a sandbox (setpriv, the limits launcher, any mount prefix,
bwrap and bwrap's own forks: the pid-1 of the sandbox's pid namespace, or the child bwrap
clones) inherits one environment variable, `GOEXD_SANDBOX=<owner>.<instance>`: `owner`
names the daemon's state dir (one live goexd per state dir, held by a lock), `instance`
one start of it. The command in the sandbox gets its own environment from the plan, so it
carries no mark, but it lives in a pid namespace whose init does: killing that init takes
the whole namespace with it.

Why a leftover can exist at all: bwrap clones its child, then tells it to go on by writing
an eventfd (after writing {"child-pid"} to --json-status-fd). When the outer bwrap dies in
between (the daemon died: parent-death signal, or SIGPIPE on the status pipe), the child
blocks on that eventfd for ever, with whatever privileges it had (uid 0 with every
capability in the host's namespaces when the daemon died before bwrap had its options).
Nothing wakes it; only a kill ends it, and this module is what kills it.

The environment is the mark, not the argv: any process may put anything in its argv (and
an environment is readable only by its owner and by root), and the mark survives every exec
of the launch chain. A process that forges a mark of ours only gets itself killed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARK_ENV = "GOEXD_SANDBOX"
ROUNDS = 5  # scans until no marked process is left (a kill never makes new ones; a spare or two)
EXIT_WAIT_S = 5.0  # for the killed processes to be gone


@dataclass(frozen=True)
class SandboxMark:
    """What one goexd start writes into the environment of its sandbox processes."""

    owner: str  # from the state dir: stable across restarts of the same daemon
    instance: str  # this start

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> SandboxMark:
        return cls(owner_key(state_dir), secrets.token_hex(8))

    @property
    def value(self) -> str:
        return f"{self.owner}.{self.instance}"

    def env(self) -> dict[str, str]:
        return {MARK_ENV: self.value}


def owner_key(state_dir: Path) -> str:
    """A short key for a state dir: from its device and inode, so it names the directory
    itself (not a path to it) and tells nothing about where it is."""
    st = os.stat(state_dir)
    return hashlib.sha256(f"goexd-state:{st.st_dev}:{st.st_ino}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Reaped:
    pid: int
    instance: str
    argv0: str


def reap(mark: SandboxMark) -> list[Reaped]:
    """SIGKILL every process marked by an earlier start of this daemon (any instance but
    `mark`'s) and wait until they are gone; returns what was killed."""
    killed: list[Reaped] = []
    for _ in range(ROUNDS):
        found = list(_marked(mark))
        if not found:
            break
        for pidfd, reaped in found:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed.append(reaped)
            except ProcessLookupError:
                pass  # gone by itself meanwhile
        _wait_gone([fd for fd, _ in found])
    return killed


def _marked(mark: SandboxMark) -> Iterator[tuple[int, Reaped]]:
    """Processes carrying an earlier instance's mark, each pinned by a pidfd (the caller closes
    none: _wait_gone does). The pidfd is opened before the environment is read, so a pid reused
    in between is never signalled: the pidfd still names the process that was read or a dead one."""
    prefix = f"{MARK_ENV}={mark.owner}.".encode()
    me = f"{MARK_ENV}={mark.value}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        found = None
        try:
            for var in _environ(pid):
                if var.startswith(prefix) and var != me:
                    found = Reaped(pid, var[len(prefix) :].decode(errors="replace"), _argv0(pid))
                    break
        except OSError:  # not ours to read (another user's), or gone
            pass
        if found is None:
            os.close(pidfd)
        else:
            yield pidfd, found


def _environ(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


def _argv0(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(4096).split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return "?"


def _wait_gone(pidfds: list[int]) -> None:
    """Until every pidfd reports its process's exit (a pidfd turns readable then), or a timeout."""
    deadline = time.monotonic() + EXIT_WAIT_S
    try:
        with select.epoll() as ep:
            for fd in pidfds:
                ep.register(fd, select.EPOLLIN)
            left = len(pidfds)
            while left and (remaining := deadline - time.monotonic()) > 0:
                for fd, _ in ep.poll(remaining):
                    ep.unregister(fd)
                    left -= 1
            if left:
                log.warning("%d killed sandbox process(es) still not gone after %.0f s", left, EXIT_WAIT_S)
    finally:
        for fd in pidfds:
            os.close(fd)
