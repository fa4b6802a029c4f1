"""The client side of one proxy connection: h11 over asyncio streams."""

from __future__ import annotations

import asyncio
import http

import h11

READ_CHUNK = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; placeholders make headers a little longer

Event = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


class H11Stream:
    """An h11 server connection bound to a reader/writer pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def next_event(self) -> Event:
        """The next event, reading as needed; never NEED_DATA."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(READ_CHUNK))  # b"" is EOF

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()  # back-pressure: never buffer a whole response

    def can_respond(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    def can_continue(self) -> bool:
        """Whether the connection is ready for another request (keep-alive)."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    async def send_text(
        self, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None, head_only: bool = False
    ) -> None:
        """A complete plain-text response (refusals, errors)."""
        body = text.encode("utf-8")
        await self.send(
            h11.Response(
                status_code=status,
                reason=http.HTTPStatus(status).phrase.encode(),
                headers=[
                    (b"Content-Type", b"text/plain; charset=utf-8"),
                    (b"Content-Length", str(len(body)).encode()),
                    *(headers or []),
                ],
            )
        )
        if not head_only:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
