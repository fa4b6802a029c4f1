"""The upstream side: one shared httpx client (address-checked connections), and the headers that may cross."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from goexd.config import EgressConfig
from goexd.domain.vault import Redacting
from goexd.egress.addresses import AddressRule
from goexd.egress.dial import GuardedAsyncTransport

# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: they concern one connection.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the proxy itself for the upstream request: Host and framing follow the URL and
# body it sends; 100-continue is handled with the client; encodings, see below.
_SET_UPSTREAM = frozenset({b"host", b"content-length", b"expect", b"accept-encoding"})
# Response bodies are decoded to be redacted, so only encodings the proxy can decode are
# asked for; a response in any other encoding is refused, as it could carry a value unseen.
ACCEPT_ENCODING = b"gzip, deflate"
DECODABLE = frozenset({"identity", "gzip", "deflate", "x-gzip"})
# The body reaches the client decoded and chunked: its upstream framing does not apply.
_DROP_FROM_RESPONSE = frozenset({b"content-encoding", b"content-length"})


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in Connection are hop-by-hop too."""
    return {t.strip().lower() for k, v in headers if k.lower() == b"connection" for t in v.split(b",")}


def request_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    headers = list(headers)
    drop = HOP_BY_HOP | _SET_UPSTREAM | _connection_tokens(headers)
    out = [(k, v) for k, v in headers if k.lower() not in drop]
    out.append((b"accept-encoding", ACCEPT_ENCODING))
    return out


def response_headers(headers: Iterable[tuple[bytes, bytes]], redact: Redacting) -> list[tuple[bytes, bytes]]:
    """Headers for the client, values redacted (an upstream may echo a value in any of them)."""
    headers = list(headers)
    drop = HOP_BY_HOP | _DROP_FROM_RESPONSE | _connection_tokens(headers)
    return [(k, redact(v)) for k, v in headers if k.lower() not in drop]


def undecodable_encoding(response: httpx.Response) -> str | None:
    """The first content-encoding of `response` the proxy cannot decode, if any."""
    for value in response.headers.get_list("content-encoding", split_commas=True):
        if value.strip().lower() not in DECODABLE:
            return value.strip()
    return None


def tls_context(cfg: EgressConfig) -> ssl.SSLContext:
    """The system's CAs, plus `upstream_ca_file` when set (e.g. a corporate or test CA)."""
    ctx = ssl.create_default_context()
    if cfg.upstream_ca_file is not None:
        ctx.load_verify_locations(cafile=str(cfg.upstream_ca_file))
    return ctx


def make_client(cfg: EgressConfig, addresses: AddressRule) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=cfg.connect_timeout_s,
        read=cfg.read_timeout_s,
        write=cfg.read_timeout_s,
        pool=cfg.connect_timeout_s,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        # One client serves every sandbox: a cookie it kept from one response would go out with other
        # agents' requests. Set-Cookie still reaches the sandbox, whose own client may keep it.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        trust_env=False,  # the daemon's own proxy settings must not apply to the sandbox's traffic
        follow_redirects=False,  # the client decides; each hop is checked and recorded
        # Never retries (a request may have side effects upstream, and the sandbox sees the failure); connects
        # only to addresses the daemon's egress.allowed_addresses rule lets through, and only to the one it checked.
        transport=GuardedAsyncTransport(addresses, tls_context(cfg)),
    )
