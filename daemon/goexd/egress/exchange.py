"""One request through the proxy: decide, forward, stream the redacted response, record."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import h11
import httpx

from goexd.config import EgressConfig
from goexd.domain.egress import (
    Decision,
    EgressGrant,
    EgressRecordData,
    Gate,
    GateResponse,
    RecordedResponse,
    ResourceCall,
)
from goexd.domain.textcap import DETAIL_CHARS, capped
from goexd.domain.vault import SecretSource, StreamRedacting
from goexd.egress.addresses import AddressRefused, AddressRule
from goexd.egress.http11 import H11Stream
from goexd.egress.policy import BadRequest, Target, decide, find_gate, gate_request, parse_url
from goexd.egress.substitute import Refused, Request
from goexd.egress.tls import CertificateAuthority
from goexd.egress.upstream import request_headers, response_headers, undecodable_encoding

log = logging.getLogger("goexd.egress")

REFUSED_PREFIX = "goex egress proxy: refused: "
REFUSED_HEADER = b"X-Goex-Refused"
ERROR_PREFIX = "goex egress proxy: upstream error: "
ERROR_HEADER = b"X-Goex-Error"
_NO_BODY_STATUS = frozenset({204, 304})
# What a failed upstream exchange can raise before the response starts.
UPSTREAM_ERRORS = (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError)
# The sandbox side went away while we were answering (resets, broken pipes).
CLIENT_GONE = ConnectionError
# Failures after which the request cannot have reached the service.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.InvalidURL)
# A record's URL and each header value it keeps, at most (the rest is cut and the cut said).
RECORD_URL_CHARS = 4096
RECORD_HEADER_CHARS = 4096


@dataclass(frozen=True)
class RouteContext:
    """What every exchange of one route shares."""

    grant: EgressGrant
    vault: SecretSource
    cfg: EgressConfig
    addresses: AddressRule  # which addresses the client connects to (egress.allowed_addresses)
    client: httpx.AsyncClient
    ca: CertificateAuthority
    record: Callable[[EgressRecordData], None]


def _header_safe(text: str, limit: int = 500) -> bytes:
    """`text` as a header value: printable ASCII, one line."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:limit].encode("ascii")


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class Exchange:
    """One request and its response. `run` or `refuse` answers it; either records it once."""

    def __init__(self, ctx: RouteContext, stream: H11Stream, head: h11.Request, tunnel: Target | None) -> None:
        self.ctx = ctx
        self.stream = stream
        self.head = head
        self.tunnel = tunnel
        self.method = head.method.decode("ascii", "replace")
        target = head.target.decode("latin-1")
        # Inside a CONNECT tunnel requests are origin-form (/path): the tunnel names the host.
        self.url = f"https://{tunnel.authority}{target}" if tunnel is not None and target.startswith("/") else target
        self.host = tunnel.host if tunnel is not None else ""
        self.status = 0
        self.secrets_used: tuple[str, ...] = ()
        self.request_bytes = 0
        self.response_bytes = 0
        self.at = time.time()
        self.started = time.monotonic()
        self._recorded = False
        self.request_body = b""
        self.response: RecordedResponse | None = None
        # A request to one of the action's http resources: its gate, the admission, what it made of it.
        self.gate: Gate | None = None
        self.ticket: object | None = None
        self.call: ResourceCall | None = None
        self._captured: list[bytes] = []
        self._captured_bytes = 0
        self._capture_limit = ctx.cfg.record_body_bytes
        self._client_gone = False
        self._recorded_data: EgressRecordData | None = None

    # -- answering

    async def refuse(self, status: int, reason: str, close: bool = False) -> None:
        """Answer with a refusal; nothing went upstream. `close`: the connection ends after it."""
        reason = self.ctx.vault.redactor.text(reason)
        self.record(Decision.REFUSED, reason)
        if self.stream.can_respond():
            headers = [(REFUSED_HEADER, _header_safe(reason))]
            if close:
                headers.append((b"Connection", b"close"))
            await self.stream.send_text(status, f"{REFUSED_PREFIX}{reason}\n", headers, head_only=self.method == "HEAD")

    async def run(self, body: bytes) -> None:
        self.request_body = body
        try:
            target = self._target()
        except BadRequest as e:
            await self.refuse(400, str(e))
            return
        self.host = target.host
        if any(k.lower() == b"upgrade" for k, _ in self.head.headers):
            await self.refuse(501, "protocol upgrades (e.g. WebSocket) are not supported by the egress proxy")
            return
        headers = list(self.head.headers.raw_items())
        gate = find_gate(self.ctx.grant, target, self.url)
        if gate is not None and not await self._admit(gate, headers, body):
            return
        request = Request(self.method, self.url, headers, body)
        try:
            # The vault may block (an OAuth2 refresh): never on the event loop.
            outgoing = await asyncio.to_thread(decide, self.ctx.vault, self.ctx.grant, target, request, gate)
        except Refused as e:
            await self._unanswered(str(e), maybe_sent=False)
            await self.refuse(e.status, str(e))
            return
        except Exception:  # a bug, but the call must still be settled and recorded as not sent
            log.exception("egress %s: preparing %s %s failed", self.ctx.grant.action_id, self.method, self.url)
            why = "goexd failed to prepare the request (see its log); nothing was sent"
            await self._unanswered(why, maybe_sent=False)
            await self.refuse(500, why)
            return
        self.secrets_used = outgoing.secrets_used
        framed = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.head.headers)
        try:
            upstream = self.ctx.client.build_request(
                self.method,
                outgoing.url,
                headers=request_headers(outgoing.headers),
                content=body if body or framed else None,
            )
            self.request_bytes = len(body)
            response = await self.ctx.client.send(upstream, stream=True)
        except AddressRefused as e:  # the name resolved to loopback, private, ...: nothing was sent
            await self._unanswered(str(e), maybe_sent=False)
            await self.refuse(403, str(e))
            return
        except Exception as e:  # UPSTREAM_ERRORS, or a bug: either way recorded, as sent unless it cannot have been
            if not isinstance(e, UPSTREAM_ERRORS):
                log.exception("egress %s: sending %s %s failed", self.ctx.grant.action_id, self.method, self.url)
            cause = self.ctx.vault.redactor.text(_error_text(e))
            await self._unanswered(cause, maybe_sent=not isinstance(e, NOT_SENT_ERRORS))
            await self._upstream_failed(cause)
            return
        try:
            await self._relay(response)
        finally:
            await response.aclose()

    async def _admit(self, gate: Gate, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """Hand the request to its resource's gate (policy, pre-image); False once refused."""
        try:
            request = gate_request(gate, self.method, self.url, headers, body)
        except BadRequest as e:
            await self.refuse(400, str(e))
            return False
        try:
            self.ticket = await asyncio.to_thread(gate.admit, request)
        except Refused as e:
            await self.refuse(e.status, str(e))
            return False
        self.gate = gate
        self._capture_limit = max(self._capture_limit, gate.capture_bytes)
        return True

    @property
    def _unsettled(self) -> bool:
        """A gated call was admitted and nothing has been made of it yet."""
        return self.gate is not None and self.ticket is not None and self.call is None

    async def _unanswered(self, why: str, maybe_sent: bool) -> None:
        if self._unsettled and self.gate is not None:
            self.call = await asyncio.to_thread(self.gate.unanswered, self.ticket, why, maybe_sent)

    def abandon(self, why: str) -> None:
        """The exchange ends early (the route closed, the client left): settle and record what is known.

        Blocking on purpose: called while the exchange is being torn down, when awaiting is no longer
        possible; the gate's journal write is short.
        """
        settled_now = self._unsettled
        if settled_now and self.gate is not None:
            self.call = self.gate.unanswered(self.ticket, f"{why}; the service may have carried the call out", True)
        recorded = self._recorded
        self.record(Decision.ALLOWED, why)
        if settled_now or not recorded:
            self._persist_now()

    def _target(self) -> Target:
        if self.tunnel is None:
            if self.url.startswith("/"):
                raise BadRequest("this is a proxy: send absolute-form requests (GET http://host/path)")
            return parse_url(self.url)
        target = parse_url(self.url)
        if (target.host, target.port) != (self.tunnel.host, self.tunnel.port) or target.scheme != "https":
            raise BadRequest(f"a request inside the tunnel to {self.tunnel.authority} names another target")
        return target

    async def _upstream_failed(self, cause: str) -> None:
        cause = self.ctx.vault.redactor.text(cause)  # an error may quote the URL, with a query value in it
        self.status = 0
        self.record(Decision.ALLOWED, cause)
        await self._persist()
        if self.stream.can_respond():
            await self.stream.send_text(
                502, f"{ERROR_PREFIX}{cause}\n", [(ERROR_HEADER, _header_safe(cause))], head_only=self.method == "HEAD"
            )

    async def _relay(self, response: httpx.Response) -> None:
        if (encoding := undecodable_encoding(response)) is not None:
            why = f"response in content-encoding {encoding!r}, which cannot be inspected"
            await self._unanswered(why, maybe_sent=True)
            await self._upstream_failed(why)
            return
        redact = self.ctx.vault.redactor  # one redactor for the whole response, even if secrets change meanwhile
        self.status = response.status_code
        has_body = self.method != "HEAD" and response.status_code not in _NO_BODY_STATUS
        head = h11.Response(
            status_code=response.status_code,
            headers=response_headers(response.headers.raw, redact),
            reason=redact(response.reason_phrase.encode("latin-1", "replace")),
        )
        # Each record is made before the client can have the whole response, so that once a
        # sandboxed command is done with its requests, their records are there.
        if has_body:
            await self._send(head)
            await self._relay_body(response, redact.stream())
            await self._finish(response)
        else:
            await self._finish(response)
            await self._send(head)
        if self._client_gone:
            raise ConnectionResetError("the sandbox closed the connection before the response was complete")
        await self._send(h11.EndOfMessage())

    async def _finish(self, response: httpx.Response) -> None:
        """Record the response; a gated call is settled (its inverse derived) and persisted first."""
        self._record_response(response)
        if self.gate is not None and self.ticket is not None:
            self.call = await asyncio.to_thread(self.gate.settle, self.ticket, self._gate_response(response))
        self.record(Decision.ALLOWED, "the sandbox closed the connection early" if self._client_gone else "")
        await self._persist()

    async def _relay_body(self, response: httpx.Response, redact: StreamRedacting) -> None:
        try:
            async for chunk in response.aiter_bytes():
                self._capture(chunk)
                await self._send_body(redact.feed(chunk))
        except httpx.HTTPError as e:
            # Headers are out: the only way to tell the client is to cut the response short.
            why = self.ctx.vault.redactor.text(f"upstream failed mid-response: {_error_text(e)}")
            await self._unanswered(why, maybe_sent=True)
            self.record(Decision.ALLOWED, why)
            await self._persist()
            raise
        await self._send_body(redact.flush())

    def _capture(self, chunk: bytes) -> None:
        room = self._capture_limit - self._captured_bytes
        if room > 0:
            self._captured.append(chunk[:room])
        self._captured_bytes += len(chunk)

    def _captured_body(self) -> tuple[bytes, bool]:
        return b"".join(self._captured), self._captured_bytes > self._capture_limit

    def _gate_response(self, response: httpx.Response) -> GateResponse:
        body, truncated = self._captured_body()
        headers = {k.lower(): v for k, v in response.headers.items()}
        return GateResponse(response.status_code, headers, body, truncated)

    def _record_response(self, response: httpx.Response) -> None:
        redact = self.ctx.vault.redactor
        cap = self.ctx.cfg.record_body_bytes
        body, truncated = self._captured_body()
        truncated = truncated or len(body) > cap
        self.response = RecordedResponse(
            status=response.status_code,
            headers=tuple(
                (k.lower(), capped(redact.text(v), RECORD_HEADER_CHARS)) for k, v in response.headers.items()
            ),
            body=redact(body[:cap], truncated=truncated),
            body_truncated=truncated,
        )

    async def _send(self, event: h11.Event) -> None:
        """To the sandbox; for a gated call, a sandbox that went away does not stop the recording."""
        if self._client_gone:
            return
        try:
            await self.stream.send(event)
        except CLIENT_GONE:
            if self.gate is None:
                raise
            self._client_gone = True

    async def _send_body(self, data: bytes) -> None:
        if data:
            await self._send(h11.Data(data=data))
            if not self._client_gone:
                self.response_bytes += len(data)

    async def _persist(self) -> None:
        if self.gate is not None and self._recorded_data is not None:
            await asyncio.to_thread(self._persist_now)

    def _persist_now(self) -> None:
        if self.gate is not None and self._recorded_data is not None:
            self.gate.persist(self._recorded_data)

    # -- recording

    def record(self, decision: Decision, reason: str) -> None:
        if self._recorded:
            return
        self._recorded = True
        redact = self.ctx.vault.redactor
        cap = self.ctx.cfg.record_body_bytes
        rec = EgressRecordData(
            method=self.method,
            url=capped(redact.text(self.url), RECORD_URL_CHARS),
            host=self.host,
            status=self.status,
            decision=decision,
            reason=capped(reason, DETAIL_CHARS),
            secrets_used=self.secrets_used,
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            duration_s=time.monotonic() - self.started,
            at=self.at,
            request_headers=tuple(
                (k.decode("latin-1").lower(), capped(redact.text(v.decode("latin-1")), RECORD_HEADER_CHARS))
                for k, v in self.head.headers.raw_items()
            ),
            request_body=redact(self.request_body[:cap], truncated=len(self.request_body) > cap),
            request_body_truncated=len(self.request_body) > cap,
            response=self.response,
            call=self.call,
        )
        self._recorded_data = rec
        self.ctx.record(rec)
        log.info(
            "egress %s: %s %s %s -> %s%s%s (%d B up, %d B down, %.0f ms)",
            self.ctx.grant.action_id,
            decision.value,
            rec.method,
            rec.url,
            rec.status,
            f" [{', '.join(rec.secrets_used)}]" if rec.secrets_used else "",
            f": {reason}" if reason else "",
            rec.request_bytes,
            rec.response_bytes,
            rec.duration_s * 1000,
        )
