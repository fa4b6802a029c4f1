"""Send one call to an http resource with its credential put in by goexd, never retried.

The resource's secret is resolved from the vault for the base URL's host:port on every call
(Vault.resolve refuses a host the secret is not allowed for, and refreshes a due OAuth2 token)
and injected as its header or query parameter says. What comes back is raw: the caller redacts
what it records. A call is sent once: a timeout or a dropped connection is reported, never
retried, because a retry could repeat a side effect. At most the caller's `max_body` bytes of an
answer are read: a service cannot make goexd hold a body of any size.

Requests go straight to an httpx transport, not through an httpx.Client: a client keeps a
cookie jar, and a cookie one response set would ride along on later calls (other agents'
included) without being in what the journal records as sent. What goes out is the recorded
request, the credential, and the framing headers (Host, Content-Length), plus a User-Agent
and Accept when the caller gave none.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from goexd import __version__
from goexd.domain.errors import InvalidArgument, PermissionDenied, Unavailable
from goexd.domain.secrets import InjectionTarget, Secret, render
from goexd.egress.addresses import AddressRefused, AddressRule
from goexd.egress.dial import GuardedTransport, connect
from goexd.resources.http.rules import Exchange, HttpCall

Resolve = Callable[[str, str, str, int], Secret]  # (name, scheme, host, port): Vault.resolve

# Headers goexd sets itself (or that would change how the request is framed).
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"})
# Sent unless the call has its own: some services refuse a request without a User-Agent.
DEFAULT_HEADERS = (("user-agent", f"goexd/{__version__}"), ("accept", "*/*"))


class CallFailed(Exception):
    """No response: the cause, and whether the service may have received the request."""

    def __init__(self, why: str, maybe_sent: bool) -> None:
        super().__init__(why)
        self.why = why
        self.maybe_sent = maybe_sent


def check_secret_injection(secret: Secret, fld: str) -> None:
    """An http resource's secret must go in a header or a query parameter."""
    inj = secret.injection
    if inj is None or inj.target not in (InjectionTarget.HEADER, InjectionTarget.QUERY):
        where = "no injection" if inj is None else inj.describe()
        raise InvalidArgument(
            fld,
            f"secret {secret.name!r} has {where}; an http resource needs one injected as a header or query parameter",
        )


class HttpSender:
    def __init__(
        self,
        base_url: str,
        secret: str,
        resolve: Resolve,
        connect_timeout_s: float = 10.0,
        verify: ssl.SSLContext | None = None,
        addresses: AddressRule | None = None,
    ) -> None:
        """`verify`: the CAs trusted for https (the daemon passes the egress proxy's: the system's plus
        `egress.upstream_ca_file`, so a call from code and goexd's own calls trust the same services).
        `addresses`: the special-purpose addresses it may connect to (the daemon's `egress.allowed_addresses`);
        none when not given, so a base URL on loopback or a private network is refused."""
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.secret = secret
        self._resolve = resolve
        self.connect_timeout_s = connect_timeout_s
        self.addresses = addresses if addresses is not None else AddressRule()
        # No retries; no redirects are followed (a redirect could leave the base URL: the caller sees
        # the 3xx), no environment proxies (a transport has none), no cookie jar (see above); connections
        # only to addresses the rule allows, to the one it checked (no second look-up between).
        self._transport = GuardedTransport(
            self.addresses, verify if verify is not None else ssl.create_default_context()
        )

    def url(self, call: HttpCall) -> str:
        return self.base_url + call.path

    def send(self, call: HttpCall, timeout_s: float, *, max_body: int) -> Exchange:
        """The answer, its body cut after `max_body` bytes (the rest is not read: the connection is closed)."""
        headers = [(k, v) for k, v in call.headers]
        params: list[tuple[str, str | int | float | bool | None]] = list(call.query)
        if self.secret:
            secret = self._resolve(self.secret, self.scheme, self.host, self.port)  # refuses a host it may not go to
            inj = secret.injection
            assert inj is not None  # checked at session open
            value = render(inj.template, secret)
            if inj.target is InjectionTarget.HEADER:
                headers = [(k, v) for k, v in headers if k.lower() != inj.name.lower()] + [(inj.name, value)]
            else:
                params = [(k, v) for k, v in params if k != inj.name] + [(inj.name, value)]
        named = {k.lower() for k, _ in headers}
        headers += [(k, v) for k, v in DEFAULT_HEADERS if k not in named]
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, self.connect_timeout_s))
        request = httpx.Request(
            call.method,
            self.url(call),
            params=params,
            headers=headers,
            content=call.body,
            extensions={"timeout": timeout.as_dict()},
        )
        try:
            response = self._transport.handle_request(request)
            try:
                body, truncated = _read_at_most(response, max_body)
            finally:
                response.close()
        except AddressRefused as exc:
            raise CallFailed(f"refused: {exc}", maybe_sent=False) from None
        except httpx.ConnectError as exc:
            raise CallFailed(f"cannot connect to {self.host}:{self.port}: {exc}", maybe_sent=False) from None
        except httpx.ConnectTimeout:
            raise CallFailed(f"connecting to {self.host}:{self.port} timed out", maybe_sent=False) from None
        except httpx.TimeoutException:
            raise CallFailed(
                f"no answer from {self.host}:{self.port} within {timeout_s:g} s; the service may still act on it",
                maybe_sent=True,
            ) from None
        except httpx.HTTPError as exc:
            raise CallFailed(f"the call to {self.host}:{self.port} failed: {exc}", maybe_sent=True) from None
        return Exchange(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=body,
            truncated=truncated,
        )

    def reachable(self) -> None:
        """UNAVAILABLE when nothing listens at the base URL (a TCP connect, no request is sent); PERMISSION_DENIED
        when its host resolves only to addresses goexd may not connect to (never tried, so no port is probed)."""
        try:
            connect(self.addresses, self.host, self.port, timeout=5).close()
        except AddressRefused as exc:
            raise PermissionDenied(f"{self.base_url}: {exc}") from None
        except OSError as exc:
            raise Unavailable(f"{self.host}:{self.port} is not reachable: {exc.strerror or exc}") from None

    def close(self) -> None:
        self._transport.close()


def _read_at_most(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The (decoded) body up to `limit` bytes, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False
