"""What an action may reach through the egress proxy, and the record of what it did."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Decision(enum.StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GateRequest:
    """A request to a gated base URL, as the sandbox sent it (placeholders, never values)."""

    method: str
    path: str  # relative to the gate's base URL, percent-encoded as sent, starting with "/"
    query: tuple[tuple[str, str], ...]
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class GateResponse:
    """What came back, decoded, unredacted (the gate derives an inverse from it, then forgets it)."""

    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    truncated: bool  # the body was longer than the gate's capture limit


@dataclass(frozen=True)
class RecordedCall:
    """A request as goexd would send it to a resource: an inverse."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Headers = ()
    body: bytes = b""


@dataclass(frozen=True)
class ResourceCall:
    """What a gate made of one request: the class, the inverse, and what an undo needs (journal only)."""

    resource: str
    reversibility: str  # a ReversibilityClass value
    note: str  # why that class (redacted)
    inverse: RecordedCall | None
    undo_state: Mapping[str, str]  # the resource's checkpoint for this call
    verdict: str = "untested"  # a Verdict value: passed/failed once the call was undone
    undo_detail: str = ""  # what the undo's check found


class Gate(Protocol):
    """One of the session's http resources, as the proxy sees it: a base URL whose requests it hands over.

    `admit` and `settle` block (a pre-image is fetched, the journal written): the proxy calls them
    off its event loop. `admit` raises `Refused` (with `status`) for what the resource's policy
    refuses; nothing has been sent then.
    """

    resource: str
    base_url: str  # scheme://host[:port][/prefix], no trailing "/"
    secret: str  # the resource's vault secret, added to the requests it admits ("" = none)
    capture_bytes: int  # how much of a response body `settle` wants to see

    def admit(self, request: GateRequest) -> object: ...

    def settle(self, ticket: object, response: GateResponse) -> ResourceCall: ...

    def unanswered(self, ticket: object, why: str, maybe_sent: bool) -> ResourceCall: ...

    def persist(self, record: EgressRecordData) -> None:
        """Called with each record of an admitted request as soon as it exists (the journal keeps it)."""


@dataclass(frozen=True)
class EgressGrant:
    """One action's egress: the secrets it declared and further hosts it may reach.

    The engine checks `hosts` against both policies' `[egress] hosts` (the daemon's comes from
    `EgressConfig.allowed_hosts`) before opening a route; the proxy honours the grant as given, and
    connects only to addresses `EgressConfig.allowed_addresses` allows (egress/addresses.py). A declared
    secret makes its own allowed hosts reachable (looked up per request, so an edit to the secret applies
    at once).
    """

    action_id: str
    secrets: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    gates: Sequence[Gate] = ()  # the session's http resources the action may call


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    headers: Headers  # names lower-cased; redacted
    body: bytes  # redacted, capped
    body_truncated: bool


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
    request_headers: Headers = ()  # as the sandbox sent them; redacted
    request_body: bytes = b""  # redacted, capped
    request_body_truncated: bool = False
    response: RecordedResponse | None = None  # None when nothing came back (refused, upstream failed)
    call: ResourceCall | None = field(default=None)  # set when the request went to a gated resource
