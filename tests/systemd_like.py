"""systemd's side of a socket-activated Type=notify service, for tests: the listening socket a socket unit
makes, the datagram socket sd_notify(3) talks to, and the service's start (sd_listen_fds(3): the socket as
fd 3, LISTEN_FDS=1, LISTEN_PID=<the service's pid>) under no_new_privs (NoNewPrivileges=yes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.daemon_process import TEST_CONFIG

# What systemd does between fork and exec for a socket-activated Type=notify service.
WRAPPER = r"""
import ctypes, os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
PR_SET_NO_NEW_PRIVS = 38
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
os.environ.update(LISTEN_FDS=sys.argv[2], LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="goexd.socket")
os.execv(sys.argv[3], sys.argv[3:])
"""


class Systemd:
    """The sockets a socket unit and Type=notify give a service, and the service's process."""

    def __init__(self, root: Path, goexd: Sequence[str] | None = None) -> None:
        """`goexd`: the service's command line (default: this interpreter's goexd on a state dir in `root`)."""
        self.root = root
        self.runtime = root / "rt"  # XDG_RUNTIME_DIR (%t): ListenStream=%t/goex/goexd.sock
        (self.runtime / "goex").mkdir(parents=True, mode=0o700)
        self.socket_path = self.runtime / "goex" / "goexd.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.socket_path))
        self.socket_path.chmod(0o600)  # SocketMode=0600
        self.listener.listen(128)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path = root / "notify.sock"
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(90)
        (root / "goexd.toml").write_text(TEST_CONFIG)
        self.goexd = (
            list(goexd)
            if goexd is not None
            else [sys.executable, "-m", "goexd.main", "--state-dir", str(root / "state")]
        )
        self.log = root / "goexd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "GOEX_SOCKET": str(self.socket_path),
            "GOEX_CLI_STATE": str(self.root / "cli.json"),
        }

    def start(self, fds: str = "1", listener: socket.socket | None = None, pid: str | None = None) -> None:
        sock = listener or self.listener
        env = {**self.env(), "NOTIFY_SOCKET": str(self.notify_path)}
        goexd = [*self.goexd, "--config", str(self.root / "goexd.toml")]
        argv = [sys.executable, "-c", WRAPPER, str(sock.fileno()), fds, *goexd]
        if pid is not None:  # LISTEN_PID naming another process: the wrapper's own assignment undone
            argv = [sys.executable, "-c", WRAPPER.replace("str(os.getpid())", repr(pid)), *argv[3:]]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=log, pass_fds=[sock.fileno()], start_new_session=True
            )

    def states(self) -> list[str]:
        """The next notification datagram's KEY=value lines."""
        return self.notify.recv(4096).decode().splitlines()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.listener.close()
        self.notify.close()
