"""Secret placeholders in a request: check them, put values in, add declared secrets. Pure.

The sandbox never holds a secret value, only the placeholder text `goex-secret:NAME`
(NAME as `vault.models.NAME_RE`). For one request to host:port:

1. Every placeholder anywhere (URL, headers, body; also with the colon URL-encoded as
   `%3A`) must name a secret the action declared and that may be sent to that host
   (`resolve`, i.e. `Vault.resolve`); otherwise the whole request is refused, naming the
   secret and the host.
2. A placeholder in a header value becomes the secret's raw value; one in the query string
   becomes its URL-encoded value, but only for a secret injected as a query parameter
   (others stay as they are). Placeholders in the path and in the body are never replaced:
   the body is forwarded byte for byte (a value there would be out of reach of the
   injection rules, and rewriting bodies would break signatures and lengths).
3. Each declared secret allowed for this host and injected as a header or query parameter
   is added, rendered with its template, when the request does not carry that header or
   parameter already.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from goexd.errors import GoexError, NotFound, PermissionDenied
from goexd.vault.models import NAME_RE, InjectionTarget, Secret, render

PLACEHOLDER_PREFIX = "goex-secret:"

# A name cannot contain ':' or '%', so the match ends where the name does.
_NAME = NAME_RE.pattern
_TEXT = re.compile(rb"goex-secret:(" + _NAME.encode() + rb")")
_ANY = re.compile(rb"goex-secret(?::|%3[aA])(" + _NAME.encode() + rb")")
_ANY_STR = re.compile(r"goex-secret(?::|%3[aA])(" + _NAME + r")")

Resolve = Callable[[str, str, int], Secret]


class Refused(Exception):
    """The request may not go out; the message says why (never a value). `status`: the answer's status."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    url: str  # absolute
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Outgoing:
    url: str
    headers: tuple[tuple[bytes, bytes], ...]
    secrets_used: tuple[str, ...]


def placeholder(name: str) -> str:
    return PLACEHOLDER_PREFIX + name


def substitute(req: Request, declared: Sequence[str], host: str, port: int, resolve: Resolve) -> Outgoing:
    """The request as it goes upstream, or `Refused`. `resolve` may block (OAuth2 refresh)."""
    lookup = _Lookup(declared, host, port, resolve)
    for name in _placeholders(req):
        lookup.required(name)  # rule 1, before anything is filled in

    used: dict[str, None] = {}  # insertion-ordered set

    def header_value(m: re.Match[bytes]) -> bytes:
        name = m[1].decode()
        used[name] = None
        return lookup.required(name).primary

    def query_value(m: re.Match[str]) -> str:
        secret = lookup.required(m[1])
        if secret.injection is None or secret.injection.target is not InjectionTarget.QUERY:
            return m[0]
        used[secret.name] = None
        return urllib.parse.quote(secret.primary, safe="")

    headers = [(k, _TEXT.sub(header_value, v)) for k, v in req.headers]
    parts = urllib.parse.urlsplit(req.url)
    query = _ANY_STR.sub(query_value, parts.query)

    present_headers = {k.lower() for k, _ in headers}
    present_params = {k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    added: list[str] = []
    for name in dict.fromkeys(declared):
        secret = lookup.optional(name)
        if secret is None or secret.injection is None:
            continue
        inj = secret.injection
        # Two declared secrets may inject the same header or parameter: the first declared wins.
        if inj.target is InjectionTarget.HEADER and inj.name.lower().encode() not in present_headers:
            headers.append((inj.name.encode(), render(inj.template, secret).encode("utf-8", "surrogateescape")))
            present_headers.add(inj.name.lower().encode())
        elif inj.target is InjectionTarget.QUERY and inj.name not in present_params:
            value = render(inj.template, secret).encode("utf-8", "surrogateescape")
            added.append(f"{urllib.parse.quote(inj.name, safe='')}={urllib.parse.quote(value, safe='')}")
            present_params.add(inj.name)
        else:
            continue
        used[name] = None
    if added:
        query = "&".join([query, *added]) if query else "&".join(added)
    url = urllib.parse.urlunsplit(parts._replace(query=query))
    return Outgoing(url, tuple(headers), tuple(used))


def _placeholders(req: Request) -> list[str]:
    found: dict[str, None] = {}
    blobs = [req.url.encode("utf-8", "surrogateescape"), req.body]
    blobs += [k + b": " + v for k, v in req.headers]
    for blob in blobs:
        for m in _ANY.finditer(blob):
            found[m[1].decode()] = None
    return list(found)


class _Lookup:
    """Resolves each name at most once per request, turning refusals into `Refused`."""

    def __init__(self, declared: Sequence[str], host: str, port: int, resolve: Resolve) -> None:
        self.declared = frozenset(declared)
        self.host, self.port = host, port
        self.resolve = resolve
        self.target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self._seen: dict[str, Secret | GoexError] = {}

    def _get(self, name: str) -> Secret | GoexError:
        if name not in self._seen:
            try:
                self._seen[name] = self.resolve(name, self.host, self.port)
            except GoexError as e:
                self._seen[name] = e
        return self._seen[name]

    def required(self, name: str) -> Secret:
        """A secret a placeholder names: declared, existing, allowed for this host, usable."""
        if name not in self.declared:
            raise Refused(f"secret {name!r} is not declared by this action, so it may not be sent to {self.target}")
        got = self._get(name)
        if isinstance(got, NotFound):
            raise Refused(f"secret {name!r} does not exist (placeholder in a request to {self.target})")
        if isinstance(got, PermissionDenied):
            raise Refused(str(got))  # the vault's words name the secret, the host and where it may go
        if isinstance(got, GoexError):
            raise Refused(f"{got} (placeholder in a request to {self.target})")
        return got

    def optional(self, name: str) -> Secret | None:
        """A declared secret to add if allowed for this host; one that is meant for it but unusable refuses."""
        got = self._get(name)
        if isinstance(got, NotFound | PermissionDenied):
            return None
        if isinstance(got, GoexError):
            raise Refused(f"{got} (needed for the request to {self.target})")
        return got
