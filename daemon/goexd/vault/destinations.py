"""Where a secret may be sent: its host entries, `[scheme://]host[:port]`, and what each one covers.

A value crosses the network in clear text unless the connection is encrypted, so an entry is
read narrowly:

- `api.example.com` covers https to port 443 and a PostgreSQL connection (a DSN secret) to port
  5432: the protocol's default port, never "any port" (a value once went in clear text to
  every port of a host stored without one).
- `api.example.com:8443` covers https (or PostgreSQL) on port 8443.
- `http://host[:port]` is the only way to allow plain http (port 80 by default): a bare entry
  never does.
- `https://host[:port]`, `postgresql://host[:port]` cover that one protocol.

Host patterns are those of `models.check_host` (a name, `*.domain`, an IPv4 or `[IPv6]` address).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from goexd.domain.errors import InvalidArgument
from goexd.domain.secrets import check_host, host_matches
from goexd.domain.textcap import shown

DEFAULT_PORTS = {"https": 443, "http": 80, "postgresql": 5432}
# What an entry without a scheme covers: the encrypted web, and the database protocol of DSN secrets.
BARE_SCHEMES = frozenset({"https", "postgresql"})
_ALIASES = {"postgres": "postgresql"}
MAX_ENTRY_CHARS = 300  # a DNS name is at most 253 characters; a scheme and a port fit in the rest


@dataclass(frozen=True)
class Destination:
    scheme: str | None  # None: a bare entry (BARE_SCHEMES)
    host: str  # the host pattern as `host_matches` reads it, without a port
    port: int | None  # None: the protocol's default port

    def allows(self, scheme: str, host: str, port: int) -> bool:
        if scheme not in DEFAULT_PORTS:
            return False
        if scheme != self.scheme and not (self.scheme is None and scheme in BARE_SCHEMES):
            return False
        want = self.port if self.port is not None else DEFAULT_PORTS[scheme]
        return want == port and host_matches(f"{self.host}:{want}", host, port)


def check_destination(entry: str, fld: str) -> str:
    """The entry in its stored form (lower case, `postgres://` spelled `postgresql://`), or InvalidArgument."""
    text = entry.strip().lower()
    if len(text) > MAX_ENTRY_CHARS:
        raise InvalidArgument(fld, f"{shown(entry)} is longer than {MAX_ENTRY_CHARS} characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return check_host(text, fld)
    scheme = _ALIASES.get(scheme, scheme)
    if scheme not in DEFAULT_PORTS:
        raise InvalidArgument(
            fld, f"{shown(entry)}: the scheme must be one of {sorted(DEFAULT_PORTS)} (or none: https/postgresql)"
        )
    if not rest or any(c in rest for c in "/?#@"):
        raise InvalidArgument(fld, f"{shown(entry)} is not scheme://host[:port] (no path, query or credentials)")
    return f"{scheme}://{check_host(rest, fld)}"


@functools.lru_cache(maxsize=1024)
def parse_destination(entry: str) -> Destination:
    """A stored entry (as `check_destination` returned it) taken apart."""
    scheme, sep, rest = entry.partition("://")
    if not sep:
        scheme, rest = "", entry
    if rest.startswith("["):
        addr, _, tail = rest.partition("]")
        host, port = addr + "]", tail[1:]
    else:
        host, _, port = rest.partition(":")
    return Destination(scheme or None, host, int(port) if port else None)


def allowed(entries: tuple[str, ...], scheme: str, host: str, port: int) -> bool:
    """Whether any of a secret's entries covers `scheme://host:port`."""
    return any(parse_destination(e).allows(scheme, host, port) for e in entries)
