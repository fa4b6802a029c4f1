"""goexd as a subprocess for end-to-end tests, with the raw generated stubs at hand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from goex.v1 import actions_pb2_grpc, admin_pb2_grpc, secrets_pb2_grpc, sessions_pb2_grpc
from goexd.launcher import DaemonProcess as _Launcher

TEST_CONFIG = 'shutdown_grace_s = 1.0\njournal_sync = "normal"\n'
# The services the tests run (json-server, httpbin, moto, OAuth) listen on loopback, which goexd's HTTP
# reaches only where its config allows that address explicitly (egress.allowed_addresses).
LOOPBACK = ("127.0.0.1/32", "::1/128")


class DaemonProcess(_Launcher):
    """`config_toml` is added to the tests' config; `user`: run goexd as that user (we must be root).

    `allowed_addresses`: the daemon's egress.allowed_addresses (set through the environment, so it
    composes with any `config_toml`); LOOPBACK by default, () for a daemon that reaches no special address.
    """

    def __init__(
        self,
        root: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        config_toml: str = "",
        user: str | None = None,
        allowed_addresses: Sequence[str] = LOOPBACK,
    ) -> None:
        env = {"GOEXD_EGRESS__ALLOWED_ADDRESSES": ",".join(allowed_addresses), **(env or {})}
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
