"""The systemd user units `goex install-service` writes: goexd.socket, goexd.service, goexd-gc.service/.timer.

goexd.socket listens on the CLI's default socket path ($XDG_RUNTIME_DIR/goex/goexd.sock, %t in a user
unit) and starts goexd.service on the first connection, passing it the socket (LISTEN_FDS); goexd says
READY=1 once it serves (Type=notify). The gc timer runs `goex gc`, which connects to that socket: it
starts goexd when goexd is not running.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from goex._version import __version__

MARKER = "# Written by goex install-service"  # the first line: uninstall-service removes only such files
SOCKET_IN_UNIT = "%t/goex/goexd.sock"  # what goex connects to by default: $XDG_RUNTIME_DIR/goex/goexd.sock
UNIT_NAMES = ("goexd.socket", "goexd.service", "goexd-gc.service", "goexd-gc.timer")
ENABLE = ("goexd.socket", "goexd-gc.timer")  # what `systemctl --user enable --now` needs


@dataclass(frozen=True)
class Binaries:
    goex: Path
    goexd: Path


def user_unit_dir() -> Path:
    """Where systemd looks for a user's own units: $XDG_CONFIG_HOME/systemd/user."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def default_state_dir() -> Path:
    """goexd's default state dir as this shell sees it ($XDG_STATE_HOME/goex): written into the unit, since
    the user manager's environment may not set XDG_STATE_HOME as the shell does."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "goex"


def _quote(path: Path) -> str:
    """A path as one word of a unit's command line (systemd unquotes like a shell; % must be doubled)."""
    return shlex.quote(str(path)).replace("%", "%%")


def render(binaries: Binaries, state_dir: Path) -> dict[str, str]:
    """Each unit's file name and text."""
    head = f"{MARKER} (goex {__version__}); `goex uninstall-service` removes it.\n"
    return {
        "goexd.socket": head
        + "[Unit]\n"
        + "Description=goex runtime daemon socket (goexd starts on its first connection)\n"
        + "\n[Socket]\n"
        + f"ListenStream={SOCKET_IN_UNIT}\n"
        + "SocketMode=0600\n"
        + "DirectoryMode=0700\n"
        + "\n[Install]\n"
        + "WantedBy=sockets.target\n",
        "goexd.service": head
        + "[Unit]\n"
        + "Description=goex runtime daemon (undoable, sandboxed actions for LLM agents)\n"
        + "Requires=goexd.socket\n"
        + "After=goexd.socket\n"
        + "\n[Service]\n"
        + "# goexd says READY=1 once it serves on the socket goexd.socket passes it (LISTEN_FDS).\n"
        + "Type=notify\n"
        + f"ExecStart={_quote(binaries.goexd)} --state-dir {_quote(state_dir)}\n"
        + "# Recovery of a large journal runs before READY=1; clients wait on the socket meanwhile.\n"
        + "TimeoutStartSec=300\n"
        + "Restart=on-failure\n"
        + "RestartSec=2\n"
        + "# Exit status 3: the journal is damaged (goexd says what to do: `goexd --repair-journal`);\n"
        + "# restarting would only fail again.\n"
        + "RestartPreventExitStatus=3\n"
        + "# goexd finishes or interrupts running actions on SIGTERM and rolls interrupted ones back.\n"
        + "KillSignal=SIGTERM\n"
        + "TimeoutStopSec=60\n"
        + "# Sandboxed children must not outlive the daemon.\n"
        + "KillMode=control-group\n"
        + "# A cgroup subtree of its own: each action gets a cgroup with memory and pids limits\n"
        + "# (without it goexd falls back to per-process rlimits).\n"
        + "Delegate=memory pids\n"
        + "# bwrap runs unprivileged here (user namespaces, no set-uid bit), so no_new_privs costs nothing.\n"
        + "# ProtectHome/ProtectSystem are left out: workspaces are anywhere in the home, and in a user\n"
        + "# unit they would put goexd in a user namespace of systemd's.\n"
        + "NoNewPrivileges=yes\n"
        + "UMask=0077\n"
        + "\n[Install]\n"
        + "Also=goexd.socket\n",
        "goexd-gc.service": head
        + "[Unit]\n"
        + "Description=goex garbage collection (snapshots, outputs and journal space past retention)\n"
        + "# `goex gc` asks goexd over its socket, which starts goexd if it is not running.\n"
        + "Requires=goexd.socket\n"
        + "After=goexd.socket\n"
        + "\n[Service]\n"
        + "Type=oneshot\n"
        + f"Environment=GOEX_SOCKET={SOCKET_IN_UNIT}\n"
        + f"ExecStart={_quote(binaries.goex)} gc\n",
        "goexd-gc.timer": head
        + "[Unit]\n"
        + "Description=Daily goex garbage collection (goexd also runs it hourly while it runs)\n"
        + "\n[Timer]\n"
        + "OnCalendar=daily\n"
        + "Persistent=true\n"
        + "RandomizedDelaySec=30min\n"
        + "\n[Install]\n"
        + "WantedBy=timers.target\n",
    }


def written_by_us(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(MARKER)
    except FileNotFoundError:
        return False
