"""Secret placeholders in a request: check them, put values in, add declared secrets. Pure.

The sandbox never holds a secret value, only the placeholder text `goex-secret:NAME`
(NAME as `vault.models.NAME_RE`; also found with the colon URL-encoded as `%3A`). For one
request to scheme://host:port (the scheme is the request URL's):

1. Every placeholder must name a secret the action declared and that may be sent there
   (`resolve`, i.e. `Vault.resolve`: scheme, host and port, see vault/destinations.py);
   otherwise the whole request is refused, naming the secret and the target.
2. A value is inserted only where its secret says, and a placeholder anywhere else refuses
   the whole request (an upstream that echoes what it gets, such as httpbin's /anything,
   would hand the value back in a form the redactor may not know: reversed, re-encoded,
   compressed):
   - in a value of the header its secret is injected as (name compared without case): the
     raw value;
   - in the value of the query parameter its secret is injected as: the URL-encoded value;
   - anywhere else (another header, a header name, the path, another parameter, the body):
     refused. A secret injected as an environment variable or as a DSN password has no
     place in a request at all.
3. Each declared secret allowed for this target and injected as a header or query
   parameter is added, rendered with its template, when the request does not carry that
   header or parameter already.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from goexd.domain.errors import GoexError, NotFound, PermissionDenied
from goexd.domain.secrets import NAME_RE, InjectionTarget, Secret, render

PLACEHOLDER_PREFIX = "goex-secret:"

# A name cannot contain ':' or '%', so the match ends where the name does.
_NAME = NAME_RE.pattern
_ANY = re.compile(rb"goex-secret(?::|%3[aA])(" + _NAME.encode() + rb")")
_ANY_STR = re.compile(r"goex-secret(?::|%3[aA])(" + _NAME + r")")
_PREFIX_STR = "goex-secret"
_PREFIX = _PREFIX_STR.encode()

# (name, scheme, host, port) -> the secret, or NotFound / PermissionDenied / another GoexError
Resolve = Callable[[str, str, str, int], Secret]


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
    parts = urllib.parse.urlsplit(req.url)
    lookup = _Lookup(declared, parts.scheme, host, port, resolve)
    used: dict[str, None] = {}  # insertion-ordered set

    # Most requests carry no placeholder at all: each part is looked at only if it holds the prefix.
    headers = [
        (k, _header_value(lookup, k, v, used)) if _PREFIX in k or _PREFIX in v else (k, v) for k, v in req.headers
    ]
    query = parts.query
    if _PREFIX_STR in req.url:
        for m in _ANY_STR.finditer(urllib.parse.urlunsplit(parts._replace(query=""))):
            lookup.misplaced(m[1], "the URL path")
        query = "&".join(_query_field(lookup, f, used) for f in query.split("&")) if query else ""
    if (m_body := _ANY.search(req.body)) is not None:
        lookup.misplaced(m_body[1].decode(), "the request body")

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
            headers.append((inj.name.encode(), lookup.rendered(secret).encode("utf-8", "surrogateescape")))
            present_headers.add(inj.name.lower().encode())
        elif inj.target is InjectionTarget.QUERY and inj.name not in present_params:
            value = lookup.rendered(secret).encode("utf-8", "surrogateescape")
            added.append(f"{urllib.parse.quote(inj.name, safe='')}={urllib.parse.quote(value, safe='')}")
            present_params.add(inj.name)
        else:
            continue
        used[name] = None
    if added:
        query = "&".join([query, *added]) if query else "&".join(added)
    url = urllib.parse.urlunsplit(parts._replace(query=query))
    return Outgoing(url, tuple(headers), tuple(used))


def _header_value(lookup: _Lookup, name: bytes, value: bytes, used: dict[str, None]) -> bytes:
    """`value` with the placeholders of secrets injected as header `name` filled in; Refused for any other."""
    for m in _ANY.finditer(name):
        lookup.misplaced(m[1].decode(), "a header name")
    header = name.decode("latin-1")

    def fill(m: re.Match[bytes]) -> bytes:
        secret = lookup.placed(m[1].decode(), InjectionTarget.HEADER, header, f"header {header}")
        used[secret.name] = None
        return secret.primary

    return _ANY.sub(fill, value)


def _query_field(lookup: _Lookup, field: str, used: dict[str, None]) -> str:
    """One `name=value` of the query string, as sent; a placeholder is filled in only in the value of
    the parameter its secret is injected as."""
    raw_name, eq, raw_value = field.partition("=")
    for m in _ANY_STR.finditer(raw_name):
        lookup.misplaced(m[1], "a query parameter name")
    param = urllib.parse.unquote_plus(raw_name)

    def fill(m: re.Match[str]) -> str:
        secret = lookup.placed(m[1], InjectionTarget.QUERY, param, f"query parameter {param}")
        used[secret.name] = None
        return urllib.parse.quote(secret.primary, safe="")

    return raw_name + eq + _ANY_STR.sub(fill, raw_value)


def _where(secret: Secret) -> str:
    """Where a secret's value goes, in words."""
    inj = secret.injection
    if inj is None:
        return "nowhere in a request: it has no injection (store it again with a header or query injection)"
    if inj.target is InjectionTarget.HEADER:
        return f"only into header {inj.name}"
    if inj.target is InjectionTarget.QUERY:
        return f"only into query parameter {inj.name}"
    if inj.target is InjectionTarget.ENV:
        return f"into the environment variable {inj.name}, never into a request"
    return "into a database connection, never into an http request"


class _Lookup:
    """Resolves each name at most once per request, turning refusals into `Refused`."""

    def __init__(self, declared: Sequence[str], scheme: str, host: str, port: int, resolve: Resolve) -> None:
        self.declared = frozenset(declared)
        self.scheme, self.host, self.port = scheme, host, port
        self.resolve = resolve
        self.target = f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"
        self._seen: dict[str, Secret | GoexError] = {}

    def _get(self, name: str) -> Secret | GoexError:
        if name not in self._seen:
            try:
                self._seen[name] = self.resolve(name, self.scheme, self.host, self.port)
            except GoexError as e:
                self._seen[name] = e
        return self._seen[name]

    def required(self, name: str) -> Secret:
        """A secret a placeholder names: declared, existing, allowed for this target, usable."""
        if name not in self.declared:
            raise Refused(f"secret {name!r} is not declared by this action, so it may not be sent to {self.target}")
        got = self._get(name)
        if isinstance(got, NotFound):
            raise Refused(f"secret {name!r} does not exist (placeholder in a request to {self.target})")
        if isinstance(got, PermissionDenied):
            raise Refused(str(got))  # the vault's words name the secret, the target and where it may go
        if isinstance(got, GoexError):
            raise Refused(f"{got} (placeholder in a request to {self.target})")
        return got

    def placed(self, name: str, target: InjectionTarget, key: str, where: str) -> Secret:
        """The secret whose placeholder stands in header / query parameter `key`, if that is where it goes."""
        secret = self.required(name)
        inj = secret.injection
        # Header names are case-insensitive (RFC 9110); query parameter names are not.
        same = inj is not None and (
            inj.name.lower() == key.lower() if target is InjectionTarget.HEADER else inj.name == key
        )
        if inj is None or inj.target is not target or not same:
            self._refuse(secret, where)
        return secret

    def misplaced(self, name: str, where: str) -> None:
        """A placeholder where no value is ever inserted."""
        self._refuse(self.required(name), where)

    def _refuse(self, secret: Secret, where: str) -> None:
        raise Refused(
            f"a placeholder of secret {secret.name!r} in {where} is refused: its value goes {_where(secret)} "
            f"(request to {self.target})"
        )

    def optional(self, name: str) -> Secret | None:
        """A declared secret to add if allowed for this target; one that is meant for it but unusable refuses."""
        got = self._get(name)
        if isinstance(got, NotFound | PermissionDenied):
            return None
        if isinstance(got, GoexError):
            raise Refused(f"{got} (needed for the request to {self.target})")
        return got

    def rendered(self, secret: Secret) -> str:
        try:
            return render(secret.injection.template if secret.injection else "{value}", secret)
        except GoexError as e:  # a template stored before templates were checked strictly
            raise Refused(f"{e} (needed for the request to {self.target})") from None
