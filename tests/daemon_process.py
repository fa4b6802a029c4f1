"""Run goexd as a real subprocess on a temporary socket and state dir, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goex.v1 import actions_pb2_grpc, admin_pb2_grpc, secrets_pb2_grpc, sessions_pb2_grpc


class DaemonProcess:
    def __init__(self, root: Path, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.socket = root / "run" / "goexd.sock"
        self.state_dir = root / "state"
        self.log_path = root / "goexd.log"
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
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
            cfg.write_text("shutdown_grace_s = 1.0\njournal_sync = \"normal\"\n")
        return cfg

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=self.env, start_new_session=True)
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

    @property
    def sessions(self) -> sessions_pb2_grpc.SessionsStub:
        return sessions_pb2_grpc.SessionsStub(self.connect())

    @property
    def actions(self) -> actions_pb2_grpc.ActionsStub:
        return actions_pb2_grpc.ActionsStub(self.connect())

    @property
    def secrets(self) -> secrets_pb2_grpc.SecretsStub:
        return secrets_pb2_grpc.SecretsStub(self.connect())

    @property
    def admin(self) -> admin_pb2_grpc.AdminStub:
        return admin_pb2_grpc.AdminStub(self.connect())

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        self._close_channel()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        self._close_channel()
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
