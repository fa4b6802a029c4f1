"""goexd as a subprocess for end-to-end tests, with the raw generated stubs at hand."""

from __future__ import annotations

from pathlib import Path

from goex.v1 import actions_pb2_grpc, admin_pb2_grpc, secrets_pb2_grpc, sessions_pb2_grpc
from goexd.launcher import DaemonProcess as _Launcher

TEST_CONFIG = 'shutdown_grace_s = 1.0\njournal_sync = "normal"\n'


class DaemonProcess(_Launcher):
    """`config_toml` is added to the tests' config; `user`: run goexd as that user (we must be root)."""

    def __init__(
        self,
        root: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        config_toml: str = "",
        user: str | None = None,
    ) -> None:
        super().__init__(root, *extra_args, env=env, config_toml=TEST_CONFIG + config_toml, user=user)

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        super().start(timeout)
        return self

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
