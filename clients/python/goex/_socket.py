"""Where the clients find goexd."""

from __future__ import annotations

import os

__all__ = ["SOCKET_ENV", "default_socket_path", "resolve_target"]

SOCKET_ENV = "GOEX_SOCKET"


def default_socket_path() -> str:
    """$GOEX_SOCKET, else $XDG_RUNTIME_DIR/goex/goexd.sock, else /tmp/goex-<uid>/goexd.sock."""
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return explicit
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return os.path.join(runtime_dir, "goex", "goexd.sock")
    return f"/tmp/goex-{os.getuid()}/goexd.sock"


def resolve_target(socket_path: str | os.PathLike[str] | None, target: str | None) -> tuple[str, str | None]:
    """The gRPC target to dial and the socket path behind it (None for a non-Unix target)."""
    if target is not None:
        if socket_path is not None:
            raise ValueError("give socket_path or target, not both")
        if target.startswith("unix://"):
            return target, target.removeprefix("unix://")
        if target.startswith("unix:"):
            return target, target.removeprefix("unix:")
        return target, None
    path = os.path.abspath(os.fspath(socket_path)) if socket_path else default_socket_path()
    # unix:///abs/path is the form every gRPC implementation accepts.
    return f"unix://{os.path.abspath(path)}", os.path.abspath(path)
