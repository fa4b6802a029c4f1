"""Where a request goes and whether it may: the target, the reachable hosts, the substitution."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from goexd.egress.models import EgressGrant
from goexd.egress.substitute import Outgoing, Refused, Request, substitute
from goexd.errors import NotFound
from goexd.vault.models import host_matches
from goexd.vault.vault import Vault

DEFAULT_PORTS = {"http": 80, "https": 443}


class BadRequest(Exception):
    """The request is not one the proxy can forward (answered 400)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """The target of an absolute-form request URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BadRequest(f"cannot parse the URL: {e}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise BadRequest("send absolute-form requests (http://host/path) or use CONNECT for https")
    if parts.username is not None or parts.password is not None:
        raise BadRequest("credentials in the URL are not forwarded; declare a secret instead")
    return Target(parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme])


def parse_authority(authority: str, scheme: str = "https") -> Target:
    """The target of `CONNECT host:port`."""
    try:
        parts = urllib.parse.urlsplit(f"//{authority}")
        port = parts.port
    except ValueError as e:
        raise BadRequest(f"cannot parse the CONNECT target: {e}") from None
    if not parts.hostname or port is None or parts.path or parts.username is not None:
        raise BadRequest("CONNECT needs host:port")
    return Target(scheme, parts.hostname, port)


def check_reachable(vault: Vault, grant: EgressGrant, target: Target) -> None:
    """Refuse a host that is neither granted nor allowed for one of the declared secrets.

    Secrets are looked up per request, so a change to a secret's hosts applies at once.
    """
    if any(host_matches(p, target.host, target.port) for p in grant.hosts):
        return
    for name in grant.secrets:
        try:
            secret = vault.get(name)
        except NotFound:
            continue
        if any(host_matches(p, target.host, target.port) for p in secret.allowed_hosts):
            return
    declared = ", ".join(grant.secrets) or "none"
    raise Refused(
        f"host {target.authority} is not reachable for this action: it is not among its egress hosts "
        f"and no declared secret (declared: {declared}) is allowed for it"
    )


def decide(vault: Vault, grant: EgressGrant, target: Target, req: Request) -> Outgoing:
    """The request as it goes upstream, or `Refused`. Blocking (the vault may refresh a token)."""
    check_reachable(vault, grant, target)
    return substitute(req, grant.secrets, target.host, target.port, vault.resolve)
