"""One client connection: HTTP/1.1 requests with keep-alive, and CONNECT tunnels terminated with TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import h11
import httpx

from goexd.egress.addresses import AddressRefused
from goexd.egress.dial import resolve_checked
from goexd.egress.exchange import CLIENT_GONE, Exchange, RouteContext
from goexd.egress.http11 import READ_CHUNK, H11Stream
from goexd.egress.policy import BadRequest, Target, check_reachable, parse_authority
from goexd.egress.substitute import Refused

log = logging.getLogger("goexd.egress")

TLS_HANDSHAKE_TIMEOUT_S = 10.0
LINGER_S = 5.0  # how long a refused request's remaining body is read and discarded


async def serve(ctx: RouteContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve requests until the client closes, an error ends the connection, or the route closes."""
    try:
        await _serve(ctx, H11Stream(reader, writer), tunnel=None)
    except (CLIENT_GONE, ssl.SSLError, h11.ProtocolError, httpx.HTTPError) as e:
        # Recorded where it happened, if during an exchange; the connection just ends.
        log.debug("egress %s: connection ended: %r", ctx.grant.action_id, e)
    except Exception:
        log.exception("egress %s: connection failed", ctx.grant.action_id)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _serve(ctx: RouteContext, stream: H11Stream, tunnel: Target | None) -> None:
    while True:
        try:
            event = await stream.next_event()
        except h11.RemoteProtocolError as e:
            if stream.can_respond():
                await stream.send_text(e.error_status_hint, f"goex egress proxy: bad request: {e}\n")
            return
        if not isinstance(event, h11.Request):
            return  # ConnectionClosed: the client is done
        if event.method == b"CONNECT":
            if tunnel is None:
                await _tunnel(ctx, stream, event)
            else:
                await Exchange(ctx, stream, event, tunnel).refuse(405, "CONNECT inside a tunnel is not supported")
            return
        exchange = Exchange(ctx, stream, event, tunnel)
        body = await _read_body(ctx, stream, exchange)
        if body is None:
            return
        try:
            await exchange.run(body)
        except CLIENT_GONE:
            exchange.abandon("the sandbox closed the connection before the response was complete")
            raise
        except asyncio.CancelledError:
            exchange.abandon("the route was closed during the exchange")
            raise
        if not stream.can_continue():
            return
        stream.conn.start_next_cycle()


async def _read_body(ctx: RouteContext, stream: H11Stream, exchange: Exchange) -> bytes | None:
    """The whole request body (placeholders anywhere in it are checked), or None once answered 413."""
    limit = ctx.cfg.max_request_bytes
    too_large = f"the request body is larger than the limit of {limit} bytes"
    # h11 has checked the header (digits only) and lower-cased names.
    length = next((v for k, v in exchange.head.headers if k == b"content-length"), None)
    if length is not None and int(length) > limit:
        await exchange.refuse(413, too_large, close=True)
        await _drain_until_eof(stream)
        return None
    if stream.conn.they_are_waiting_for_100_continue:
        await stream.send(h11.InformationalResponse(status_code=100, headers=[]))
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await stream.next_event()
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                await exchange.refuse(413, too_large, close=True)
                await _drain_until_eof(stream)
                return None
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            return None  # the client went away mid-body


async def _drain_until_eof(stream: H11Stream) -> None:
    """After answering a request whose body is still coming: end our side, discard theirs.

    Closing a socket with unread data in it resets the connection, and a client still
    sending its body would then see the reset instead of the answer (nginx's "lingering
    close" does the same). Bounded in time: a client that keeps sending is cut off.
    """
    if stream.writer.can_write_eof():
        stream.writer.write_eof()
    with contextlib.suppress(TimeoutError, CLIENT_GONE):
        async with asyncio.timeout(LINGER_S):
            while await stream.reader.read(READ_CHUNK):
                pass


async def _tunnel(ctx: RouteContext, stream: H11Stream, head: h11.Request) -> None:
    """CONNECT host:port: check the host, answer 200, then speak TLS as that host."""
    exchange = Exchange(ctx, stream, head, None)
    if not isinstance(await stream.next_event(), h11.EndOfMessage):
        return
    try:
        target = parse_authority(head.target.decode("latin-1"))
    except BadRequest as e:
        await exchange.refuse(400, str(e))
        return
    exchange.host = target.host
    try:
        await asyncio.to_thread(check_reachable, ctx.vault, ctx.grant, target, True)
        # Refused here already for a clear answer to the CONNECT; each connection made for a request inside the
        # tunnel resolves and checks the name again and connects to what it checked (goexd.egress.dial).
        await resolve_checked(ctx.addresses, target.host, target.port, ctx.cfg.connect_timeout_s)
    except (Refused, AddressRefused) as e:
        await exchange.refuse(403, str(e))
        return
    except OSError:  # TimeoutError too
        pass  # a name that does not resolve now fails each request inside, as an upstream error, as before
    await stream.send(h11.Response(status_code=200, headers=[], reason=b"Connection established"))
    early, _ = stream.conn.trailing_data
    if early:
        # Bytes sent before our answer cannot be fed into the TLS layer; clients wait for the 200.
        log.info("egress %s: client spoke before the CONNECT answer; closing", ctx.grant.action_id)
        return
    try:
        await stream.writer.start_tls(ctx.ca.server_context(target.host), ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
    except (ssl.SSLError, CLIENT_GONE, TimeoutError) as e:
        # Typically a client that does not trust the proxy's CA (SSL_CERT_FILE overridden).
        log.info("egress %s: TLS with the sandbox for %s failed: %s", ctx.grant.action_id, target.authority, e)
        return
    await _serve(ctx, H11Stream(stream.reader, stream.writer), tunnel=target)
