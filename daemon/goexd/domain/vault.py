"""The vault's daemon-internal seam: how the rest of goexd reaches a secret's value, and keeps values out
of everything it shows.

Words: a *secret* (domain/secrets.py Secret) is a named value (or parts: username/password, OAuth2 tokens)
with the hosts it may be sent to and how it is injected; *resolving* a secret names where it is going
(scheme, host, port); *redacting* replaces every stored value (and its common encodings) in text or bytes
goexd is about to show, journal or log, with its name.

Rules:
- a value is only ever obtained by resolve() for a destination its allowed hosts admit (PERMISSION_DENIED
  otherwise, naming the hosts it may go to); get() is for checks that read no value out (a session's
  resource naming a secret: NOT_FOUND at open, not at the first action);
- usable() refreshes an OAuth2 token that is due and refuses (FAILED_PRECONDITION, with why) a secret
  that cannot be used now; resolve() includes it;
- redaction is total and current: the redactor changes with every put, rotation or refresh, so callers
  ask for it each time (`redactor`), never keep one; a stream's redactor (`redactor.stream()`) catches a
  value split across chunks;
- nothing here ever returns a value to an API caller: the API-facing half (put, list, delete, rotate) is
  the concrete vault's (vault/vault.py) and deals in metadata only.
"""

from __future__ import annotations

from typing import Protocol

from goexd.domain.secrets import Secret


class StreamRedacting(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """The chunk with values redacted; a tail that may begin a value is held back for the next feed."""

    def flush(self, truncated: bool = False) -> bytes:
        """What was held back, redacted (`truncated`: the stream was cut, a partial value is redacted too)."""


class Redacting(Protocol):
    def __call__(self, data: bytes, truncated: bool = False) -> bytes: ...

    def text(self, text: str) -> str: ...

    def stream(self) -> StreamRedacting: ...


class SecretSource(Protocol):
    """What the daemon's parts use of the vault (resources, engine, egress proxy)."""

    @property
    def redactor(self) -> Redacting: ...

    def get(self, name: str) -> Secret: ...

    def resolve(self, name: str, scheme: str, host: str, port: int) -> Secret: ...

    def usable(self, secret: Secret) -> Secret: ...

    def names(self) -> list[str]: ...

    def redact_text(self, text: str) -> str: ...
