"""Finding what a killed goexd left behind: its sandbox processes, by the mark goexd puts in
their environment (sandbox/reaper.py), not by their argv; and its egress run dirs."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

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
