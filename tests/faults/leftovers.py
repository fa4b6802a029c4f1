"""Finding what a killed goexd left behind: its sandbox processes, by the mark goexd puts in
their environment (sandbox/reaper.py), not by their argv; its egress run dirs; its runs' overlay mounts."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from goexd.sandbox.overlay_mounts import PREFIX, mount_points
from goexd.sandbox.reaper import MARK_ENV, owner_key
from goexd.startup import EGRESS_PREFIX


def marked(owner: str) -> dict[int, str]:
    """pid -> the mark's value, for every live process marked by the goexd of `owner` (we are root:
    every environment is readable). Zombies have none, so they are not counted: they hold nothing."""
    prefix = f"{MARK_ENV}={owner}.".encode()
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(prefix):
                found[int(entry.name)] = var[len(MARK_ENV) + 1 :].decode()
    return found


def with_tag(tag: str) -> list[int]:
    """Processes whose argv holds `tag` (a command's own processes carry no mark: a second look)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if tag.encode() in f.read():
                    out.append(int(entry.name))
        except OSError:
            continue
    return out


def owner_of(state_dir: Path) -> str:
    return owner_key(state_dir)


def egress_dirs(owner: str) -> list[str]:
    prefix = f"{EGRESS_PREFIX}{owner}-"
    return sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefix))


def settle(owner: str, timeout: float = 3.0) -> dict[int, str]:
    """The marked processes still there once those dying have had `timeout` s to go."""
    deadline = time.monotonic() + timeout
    while (left := marked(owner)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def overlay_mounts(state_dir: Path) -> list[str]:
    """Every overlay mounted over an upper dir in `state_dir`, in any process's mount namespace: a run's, live
    or left behind ("<mount ns> <mount point>"; we are root: every mount table is readable). An unprivileged
    goexd's are in namespaces of the run's own; a root goexd's in its own, below its mount dir."""
    upper = f"upperdir={state_dir}/".encode()
    found: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry.name}/ns/mnt")
            with open(f"/proc/{entry.name}/mountinfo", "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            continue  # gone meanwhile
        for line in lines:
            fields, _, tail = line.partition(b" - ")
            if tail.startswith(b"overlay ") and upper in tail:
                found.add(f"{ns} {fields.split(b' ')[4].decode(errors='replace')}")
    return sorted(found)


def goexd_mount_points(owner: str) -> list[str]:
    """The mount points of this mount namespace in a root goexd's mount dirs (sandbox/overlay_mounts.py) of
    the state dir `owner` names: its live mount dir itself (a private tmpfs) and anything below it."""
    name = f"/{PREFIX}{owner}-"
    return [os.fsdecode(p) for p in mount_points() if name in os.fsdecode(p)]


def mounted_on(path: Path) -> bool:
    """Whether something is mounted on `path` itself in this mount namespace (a workspace must never be)."""
    return os.fsencode(path) in mount_points()
