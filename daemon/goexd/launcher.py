"""Start goexd as a subprocess on its own socket and state dir and wait until it is healthy.

Used by the end-to-end tests, the benchmark and the demo. Started by root, it can run goexd
as another (unprivileged) user: the security suite runs it both ways."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The caller's per-user variables, which must not follow goexd to another user.
_PER_USER_ENV = ("HOME", "USER", "LOGNAME", "MAIL", "TMPDIR", "KRB5CCNAME", "SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS")


def user_env(base: dict[str, str], user: pwd.struct_passwd) -> dict[str, str]:
    """`base` as `user` would have it: their HOME, USER and LOGNAME, none of the caller's XDG_* dirs."""
    env = {k: v for k, v in base.items() if k not in _PER_USER_ENV and not k.startswith("XDG_")}
    env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


class DaemonProcess:
    """One goexd process; `root` holds its socket dir, state dir, config and log.

    `user`: run goexd as this user (the caller must be root); `root` is then made theirs, and
    it needs every directory above it searchable by them (not under a 0700 temp dir).
    `env` is applied last, over the user's environment."""

    def __init__(
        self,
        root: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        config_toml: str = "",
        user: str | None = None,
    ) -> None:
        self.root = root
        self.socket = root / "run" / "goexd.sock"
        self.state_dir = root / "state"
        self.log_path = root / "goexd.log"
        self.extra_args = list(extra_args)
        self.config_toml = config_toml
        self.user = pwd.getpwnam(user) if user is not None else None
        base = dict(os.environ) if self.user is None else user_env(dict(os.environ), self.user)
        self.env = {**base, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "goexd.main",
            "--socket",
            str(self.socket),
            "--state-dir",
            str(self.state_dir),
            "--config",
            str(self._config_file()),
            *self.extra_args,
        ]

    def _config_file(self) -> Path:
        cfg = self.root / "goexd.toml"
        if not cfg.exists():
            cfg.write_text(self.config_toml)
        return cfg

    @property
    def uid(self) -> int:
        return self.user.pw_uid if self.user is not None else os.geteuid()

    @property
    def gid(self) -> int:
        return self.user.pw_gid if self.user is not None else os.getegid()

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        uid, gid = (self.user.pw_uid, self.user.pw_gid) if self.user is not None else (None, None)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=log,
                env=self.env,
                start_new_session=True,
                cwd=self.root if self.user is not None else None,  # the caller's cwd may be out of their reach
                user=uid,
                group=gid,
                extra_groups=[] if self.user is not None else None,  # none of the caller's groups
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"goexd exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists() and self._healthy():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"goexd did not become healthy:\n{self.log()}")

    def _healthy(self) -> bool:
        ch = grpc.insecure_channel(f"unix:{self.socket}")
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:
            return False
        finally:
            ch.close()

    def connect(self) -> grpc.Channel:
        if self.channel is None:
            self.channel = grpc.insecure_channel(f"unix:{self.socket}")
        return self.channel

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        self._close_channel()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # goexd's faulthandler writes every thread's stack to its log on SIGABRT: say where it hung.
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            raise RuntimeError(
                f"goexd did not stop within {timeout:.0f} s of SIGTERM:\n{self.log()[-20000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        self._close_channel()
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
