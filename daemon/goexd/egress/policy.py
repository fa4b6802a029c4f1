"""Where a request goes and whether it may: the target, the reachable hosts, the substitution."""

from __future__ import annotations

import functools
import urllib.parse
from dataclasses import dataclass

from goexd.domain.egress import EgressGrant, Gate, GateRequest
from goexd.domain.errors import GoexError, NotFound
from goexd.domain.secrets import host_matches
from goexd.domain.vault import SecretSource
from goexd.egress.substitute import Outgoing, Refused, Request, substitute
from goexd.vault.destinations import allowed

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


def check_reachable(vault: SecretSource, grant: EgressGrant, target: Target, tunnel: bool = False) -> None:
    """Refuse a host that is neither granted nor allowed for one of the declared secrets.

    Secrets are looked up per request, so a change to a secret's hosts applies at once.
    `tunnel`: a CONNECT, which may also go to a gate's host (each request inside is matched then).
    """
    if any(host_matches(p, target.host, target.port) for p in grant.hosts):
        return
    if tunnel and any(_gate_target(g) == target for g in grant.gates):
        return
    for name in grant.secrets:
        try:
            secret = vault.get(name)
        except NotFound:
            continue
        if allowed(secret.allowed_hosts, target.scheme, target.host, target.port):  # vault/destinations.py
            return
    declared = ", ".join(grant.secrets) or "none"
    raise Refused(
        f"host {target.authority} is not reachable for this action: it is not among its egress hosts "
        f"and no declared secret (declared: {declared}) is allowed for it"
    )


def decide(vault: SecretSource, grant: EgressGrant, target: Target, req: Request, gate: Gate | None = None) -> Outgoing:
    """The request as it goes upstream, or `Refused`. Blocking (the vault may refresh a token).

    A gated request is reachable through its gate and carries the gate's secret too.
    """
    if gate is None:
        check_reachable(vault, grant, target)
        return substitute(req, grant.secrets, target.host, target.port, vault.resolve)
    if gate.secret:
        # A resource's calls carry its secret or do not go out (substitute skips a declared secret
        # the host may not have, which for a resource would send the call unauthenticated).
        try:
            vault.resolve(gate.secret, target.scheme, target.host, target.port)
        except GoexError as e:
            raise Refused(f"resource {gate.resource!r}: its secret {gate.secret!r} cannot be used: {e}") from None
    secrets = (*grant.secrets, gate.secret) if gate.secret else grant.secrets
    return substitute(req, secrets, target.host, target.port, vault.resolve)


@functools.lru_cache(maxsize=256)
def _base(base_url: str) -> tuple[Target, str]:
    """A gate's target and path prefix (without a trailing "/"), parsed once per base URL."""
    return parse_url(base_url), urllib.parse.urlsplit(base_url).path.rstrip("/")


def _gate_target(gate: Gate) -> Target:
    return _base(gate.base_url)[0]


def _prefix(gate: Gate) -> str:
    return _base(gate.base_url)[1]


def find_gate(grant: EgressGrant, target: Target, url: str) -> Gate | None:
    """The gate whose base URL holds `url`: same scheme, host and port, and a path under its prefix."""
    path = urllib.parse.urlsplit(url).path or "/"
    for gate in grant.gates:
        if _gate_target(gate) != target:
            continue
        prefix = _prefix(gate)
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return gate
    return None


def _climbs(segment: str) -> bool:
    """Whether a path segment is, or may be read by some server as, a dot segment: percent-decoded,
    with `;params` dropped (`..;x`, which Tomcat reads as `..`), and split at encoded slashes or
    backslashes (`%2e%2e%2f`)."""
    decoded = urllib.parse.unquote(segment.split(";", 1)[0])
    return any(part in (".", "..") for part in decoded.replace("\\", "/").split("/"))


def gate_request(gate: Gate, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> GateRequest:
    """`url` relative to the gate's base URL; BadRequest for dot segments, which could climb out of it
    after the policy saw the path (the service resolves them, the policy's globs do not)."""
    parts = urllib.parse.urlsplit(url)
    segments = (parts.path or "/").split("/")[1:]
    if any(not s for s in segments[:-1]) or any(_climbs(s) for s in segments):
        raise BadRequest(f"dot segments and empty segments in the path are refused for resource {gate.resource!r}")
    relative = (parts.path or "/")[len(_prefix(gate)) :] or "/"
    return GateRequest(
        method=method,
        path=relative,
        query=tuple(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
        headers=tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers),
        body=body,
    )
