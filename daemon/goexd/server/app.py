"""Build and bind the gRPC server on the Unix socket (0600 in a 0700 directory)."""

from __future__ import annotations

import os
import socket
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from goex.v1 import actions_pb2, admin_pb2, secrets_pb2, sessions_pb2
from goex.v1 import actions_pb2_grpc as agrpc
from goex.v1 import admin_pb2_grpc as adgrpc
from goex.v1 import secrets_pb2_grpc as sgrpc
from goex.v1 import sessions_pb2_grpc as segrpc
from goexd.admin import Admin
from goexd.domain.errors import SetupError
from goexd.engine.engine import Engine
from goexd.server.errors import ErrorInterceptor
from goexd.server.servicers import ActionsServicer, AdminServicer, SecretsServicer, SessionsServicer
from goexd.vault.oauth import OAuthFlows
from goexd.vault.vault import Vault

SERVICE_NAMES = [
    sessions_pb2.DESCRIPTOR.services_by_name["Sessions"].full_name,
    actions_pb2.DESCRIPTOR.services_by_name["Actions"].full_name,
    secrets_pb2.DESCRIPTOR.services_by_name["Secrets"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
]


def prepare_socket_dir(sock: Path) -> None:
    """Create the socket's directory 0700 (or check an existing one) and clear a stale socket."""
    d = sock.parent
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = d.stat()
    if st.st_uid != os.getuid():
        raise SetupError(f"socket directory {d} belongs to another user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        d.chmod(0o700)
    if sock.exists() or sock.is_symlink():
        if not stat.S_ISSOCK(sock.lstat().st_mode):
            raise SetupError(f"{sock} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock))
        except OSError:
            sock.unlink()  # nobody answers: left behind by a crash
        else:
            raise SetupError(f"another goexd is already serving on {sock}")
        finally:
            probe.close()


def build_server(
    engine: Engine, admin: Admin, vault: Vault, oauth: OAuthFlows, sock: Path, workers: int
) -> tuple[grpc.Server, health.HealthServicer]:
    prepare_socket_dir(sock)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="goexd-rpc"),
        interceptors=[ErrorInterceptor(vault.redact_text)],
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ],
    )
    segrpc.add_SessionsServicer_to_server(SessionsServicer(engine), server)
    agrpc.add_ActionsServicer_to_server(ActionsServicer(engine), server)
    sgrpc.add_SecretsServicer_to_server(SecretsServicer(vault, oauth), server)
    adgrpc.add_AdminServicer_to_server(AdminServicer(admin), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in [*SERVICE_NAMES, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        if server.add_insecure_port(f"unix:{sock}") == 0:
            raise SetupError(f"cannot listen on {sock}")
    finally:
        os.umask(old_umask)
    return server, health_servicer


def set_not_serving(health_servicer: health.HealthServicer) -> None:
    health_servicer.enter_graceful_shutdown()
