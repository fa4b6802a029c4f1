"""Where the container engine answers, and whether it is on this machine: without the docker SDK, so that a
daemon can ask before it pays for importing it (~0.1-0.2 s).

An *endpoint* is `unix:///path` (an engine on this machine), `tcp://host:port` or `ssh://user@host`; the
configured one ([container] endpoint), else $DOCKER_HOST, else Docker's default socket. An engine is *local*
when its endpoint is a Unix socket: it sees this machine's files and mounts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"


def endpoint_from(configured: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return configured or env.get("DOCKER_HOST", "") or DEFAULT_ENDPOINT


def is_local(endpoint: str) -> bool:
    return endpoint.startswith("unix://") or endpoint.startswith("/")


def socket_path(endpoint: str) -> Path | None:
    """The Unix socket of a local endpoint; None for a remote one."""
    if not is_local(endpoint):
        return None
    return Path(endpoint.removeprefix("unix://"))
