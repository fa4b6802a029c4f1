"""What an action may reach through the egress proxy, and the record of what it did."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Decision(enum.StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"


@dataclass(frozen=True)
class EgressGrant:
    """One action's egress: the secrets it declared and further hosts it may reach.

    The engine checks `hosts` against `EgressConfig.allowed_hosts` before opening a route;
    the proxy honours the grant as given. A declared secret makes its own allowed hosts
    reachable (looked up per request, so an edit to the secret applies at once).
    """

    action_id: str
    secrets: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class EgressRecordData:
    """One exchange; maps 1:1 onto goex.v1.EgressRecord. Never holds a secret value."""

    method: str
    url: str  # as the sandbox sent it (placeholders, not values), redacted
    host: str  # the target host name or IP address, without port
    status: int  # the upstream status; 0 when refused or when the upstream failed
    decision: Decision
    reason: str  # why it was refused, or the upstream error; "" otherwise
    secrets_used: tuple[str, ...]
    request_bytes: int  # request body bytes sent upstream
    response_bytes: int  # response body bytes delivered to the sandbox
    duration_s: float
    at: float  # wall-clock time the request arrived (epoch seconds)
