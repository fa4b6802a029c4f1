"""The OAuth2 client side of the wire: the authorization URL and the token endpoint, via Authlib.

Authlib builds the requests (PKCE S256, client authentication, grant parameters); this module
turns its answers and failures into a `TokenSet` or one of four errors the vault can act on:
`TokenRejected` (the server said no: invalid_grant and friends), `TokenEndpointDown` (could not
ask: network, timeout, 5xx), `BadTokenResponse` (an answer that is not a usable token) and
`TokenEndpointRefused` (goexd does not connect to the address the endpoint's name resolves to).

Token requests go out through a `Dialer`, the same address rule as all of goexd's own HTTP.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError

with warnings.catch_warnings():
    # Authlib prefers the httpx2 fork and warns when it falls back to httpx, the project's
    # HTTP client. Nothing to act on here, and it would otherwise land in the daemon's log.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

# A token request either answers within this or counts as unreachable.
TOKEN_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_MAX_PROVIDER_TEXT = 300


class TokenEndpointError(Exception):
    """A token request that produced no token. Messages never contain a token or the code."""


class TokenRejected(TokenEndpointError):
    def __init__(self, error: str, description: str) -> None:
        self.error = provider_text(error) or "unknown_error"
        self.description = provider_text(description)
        super().__init__(f"{self.error}: {self.description}" if self.description else self.error)


class TokenEndpointDown(TokenEndpointError):
    pass


class BadTokenResponse(TokenEndpointError):
    pass


class TokenEndpointRefused(TokenEndpointError):
    """The endpoint's name resolved only to addresses goexd may not connect to; nothing was sent."""


@dataclass(frozen=True)
class Dialer:
    """How token requests reach the network: under the rule for every HTTP connection goexd makes (resolve the
    name once, refuse loopback, private, link-local (cloud metadata), ... addresses unless the daemon's
    egress.allowed_addresses holds them, connect to the address checked). main.py builds it from goexd.egress.dial:
    vault/ does not import egress/, which depends on vault/."""

    transport: Callable[[], httpx.BaseTransport]  # a new one per token client (closing a client closes it)
    # (url, field): PermissionDenied naming the field when url's host resolves only to refused addresses
    check: Callable[[str, str], None]
    refused: type[Exception]  # what a transport raises for such a host, before sending anything


@dataclass(frozen=True)
class Client:
    """How to talk to one provider's token endpoint as one registered client."""

    token_url: str
    client_id: str
    client_secret: bytes = b""
    scopes: tuple[str, ...] = ()

    def session(self, redirect_uri: str | None = None, transport: httpx.BaseTransport | None = None) -> Any:
        secret = self.client_secret.decode("utf-8", "surrogateescape") or None
        # Without a secret Authlib authenticates as a public client (client_id in the body);
        # with one, HTTP Basic (client_secret_basic), the method RFC 6749 requires servers to support.
        return OAuth2Client(
            client_id=self.client_id,
            client_secret=secret,
            scope=" ".join(self.scopes) or None,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=TOKEN_TIMEOUT,
            transport=transport,  # also keeps httpx from using a proxy from the environment
        )


@dataclass(frozen=True)
class TokenSet:
    access_token: bytes
    refresh_token: bytes | None
    expires_at: float | None  # None: the server did not say (RFC 6749 makes expires_in optional)
    scopes: tuple[str, ...] | None  # None: the server granted what was asked (scope omitted)

    def values(self) -> dict[str, bytes]:
        out = {"access_token": self.access_token}
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token
        return out


def new_code_verifier() -> str:
    # RFC 7636: 43-128 characters from the unreserved set; 64 gives ~380 bits.
    return str(generate_token(64))


def authorization_url(endpoint: str, client: Client, redirect_uri: str, state: str, code_verifier: str) -> str:
    with client.session(redirect_uri) as session:
        url, _ = session.create_authorization_url(endpoint, state=state, code_verifier=code_verifier)
    return str(url)


def exchange_code(client: Client, code: str, redirect_uri: str, code_verifier: str, dialer: Dialer) -> TokenSet:
    with client.session(redirect_uri, dialer.transport()) as session:
        return _call(lambda: session.fetch_token(client.token_url, code=code, code_verifier=code_verifier), dialer)


def refresh(client: Client, refresh_token: bytes, dialer: Dialer) -> TokenSet:
    # No scope parameter: RFC 6749 section 6 then grants what the refresh token already carries.
    with Client(client.token_url, client.client_id, client.client_secret).session(None, dialer.transport()) as session:
        rt = refresh_token.decode("utf-8", "surrogateescape")
        return _call(lambda: session.refresh_token(client.token_url, refresh_token=rt), dialer)


def provider_text(text: object) -> str:
    """Text the provider chose (error codes, descriptions): printable, one line, bounded."""
    s = "".join(c if c.isprintable() else "?" for c in str(text or ""))
    return s if len(s) <= _MAX_PROVIDER_TEXT else s[: _MAX_PROVIDER_TEXT - 3] + "..."


def _call(request: Callable[[], Mapping[str, Any]], dialer: Dialer) -> TokenSet:
    issued = time.time()  # before the request: an expiry computed from it errs early, never late
    try:
        token = request()
    except dialer.refused as exc:
        raise TokenEndpointRefused(str(exc)) from None
    except OAuthError as exc:
        raise TokenRejected(str(exc.error), str(exc.description or "")) from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status >= 500:
            raise TokenEndpointDown(f"HTTP {status}") from None
        raise BadTokenResponse(f"HTTP {status} without an OAuth2 error in the body") from None
    except httpx.TransportError as exc:
        raise TokenEndpointDown(f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # Authlib: the body is not a JSON object
        raise BadTokenResponse(provider_text(exc)) from None
    return _token_set(token, issued)


def _token_set(token: Mapping[str, Any], issued: float) -> TokenSet:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise BadTokenResponse("the response has no access_token")
    token_type = token.get("token_type", "bearer")
    # The secret is injected as "Authorization: Bearer ..."; another token type would not work.
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise BadTokenResponse(f"token_type {provider_text(token_type)!r} is not bearer")
    refresh_token = token.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise BadTokenResponse("the refresh_token is not a string")
    expires_in = token.get("expires_in")
    try:
        # Authlib also derives an expires_at, but rounded down to whole seconds; keep ours exact.
        expires_at = None if expires_in is None else issued + float(expires_in)
    except (TypeError, ValueError):
        raise BadTokenResponse(f"expires_in {provider_text(expires_in)!r} is not a number") from None
    scope = token.get("scope")
    scopes = tuple(scope.split()) if isinstance(scope, str) else None
    return TokenSet(
        access_token=access.encode(),
        refresh_token=refresh_token.encode() if refresh_token else None,
        expires_at=expires_at,
        scopes=scopes,
    )
