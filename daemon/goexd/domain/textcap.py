"""Bounded text: what goexd writes into records, headers and error details never grows with its input.

A request may carry megabytes in a field that a message quotes back; each quotation is cut to
a fixed size and says how much was left out, so a reader knows it is not the whole text.
"""

from __future__ import annotations

# An error detail (gRPC status message): room for a few quoted fields and a sentence.
DETAIL_CHARS = 4096
# One quoted input inside a message (a name, a host, a template).
QUOTE_CHARS = 120


def capped(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters followed by "… [truncated N bytes]" (N: UTF-8 bytes cut)."""
    if len(text) <= limit:
        return text
    cut = len(text[limit:].encode("utf-8", "surrogateescape"))
    return f"{text[:limit]}… [truncated {cut} bytes]"


def capped_bytes(data: bytes, limit: int) -> bytes:
    """The same for bytes (header values)."""
    if len(data) <= limit:
        return data
    return data[:limit] + f"… [truncated {len(data) - limit} bytes]".encode()


def shown(value: str, limit: int = QUOTE_CHARS) -> str:
    """`value` quoted for a message (repr), cut to `limit` characters of the value."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… [truncated {len(value[limit:].encode('utf-8', 'surrogateescape'))} bytes]"
