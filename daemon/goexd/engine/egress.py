"""What the engine checks and prepares before a sandboxed action with egress runs.

An action names the secrets it uses and any further hosts; this module refuses what the
vault does not allow (before anything runs) and gathers the
environment an env-injected secret opts into. The proxy itself is reached through the
`EgressRoutes` protocol so the engine does not depend on how it is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from goexd.domain.egress import EgressGrant, EgressRecordData, Gate
from goexd.domain.errors import InvalidArgument, PermissionDenied
from goexd.domain.models import ActionKind, EgressRequest
from goexd.domain.secrets import InjectionTarget
from goexd.domain.vault import SecretSource

SANDBOXED = frozenset({ActionKind.SHELL, ActionKind.PYTHON})


class EgressRoute(Protocol):
    socket_path: Path

    def records(self) -> list[EgressRecordData]: ...

    def close(self) -> None: ...


class EgressRoutes(Protocol):
    @property
    def ca_path(self) -> Path: ...

    @property
    def running(self) -> bool: ...

    def open_route(self, grant: EgressGrant) -> EgressRoute: ...


def check(req: EgressRequest, kind: ActionKind, vault: SecretSource) -> None:
    """Refuse an egress request the vault does not allow; changes nothing. (Which hosts code may reach
    without a secret is the session policy's call: `[egress] hosts`.)"""
    if kind not in SANDBOXED:
        raise InvalidArgument("spec.egress", f"only shell and python actions use the egress proxy, not {kind.value}")
    for i, name in enumerate(req.secrets):
        secret = vault.get(name)
        env_only = secret.injection is not None and secret.injection.target is InjectionTarget.ENV
        if not secret.allowed_hosts and not env_only:
            raise PermissionDenied(
                f"spec.egress.secrets[{i}]: secret {name!r} is allowed for no host, so no request may carry it; "
                "store it again with the hosts it may be sent to"
            )
        vault.usable(secret)  # an OAuth2 secret whose refresh was refused says so now


def sandbox_env(req: EgressRequest, vault: SecretSource) -> dict[str, str]:
    """Values of declared secrets that opted into env injection (the only way a value enters a sandbox)."""
    env: dict[str, str] = {}
    for name in req.secrets:
        secret = vault.usable(vault.get(name))
        if secret.injection is not None and secret.injection.target is InjectionTarget.ENV:
            env[secret.injection.name] = secret.primary.decode("utf-8", "surrogateescape")
    return env


def grant(action_id: str, req: EgressRequest, gates: Sequence[Gate] = ()) -> EgressGrant:
    return EgressGrant(action_id=action_id, secrets=req.secrets, hosts=req.hosts, gates=tuple(gates))
