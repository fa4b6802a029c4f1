"""OAuth2 authorization-code flows (PKCE S256 + state) that end with a secret in the vault.

`start` opens a loopback redirect listener and returns the URL the user opens in a browser;
the provider redirects the browser back to the listener with a code, which is exchanged for
tokens and stored (kind oauth2, injected as "Authorization: Bearer"); `wait` reports how the
flow ended. A flow accepts exactly one callback carrying its state: a request without it may
be anyone on the machine (or a web page poking at local ports), so it gets a 400 and the flow
keeps waiting for the real one. A flow is abandoned, and its listener closed, at expiry.
At most `vault.oauth_max_open_flows` flows wait at once; one more is RESOURCE_EXHAUSTED.

Finished flows are kept for a while, so a client that awaits after the browser has already
come back still learns the outcome.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from goexd.config import VaultConfig
from goexd.domain.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    GoexError,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from goexd.domain.secrets import (
    MAX_VALUE_BYTES,
    MIN_VALUE_BYTES,
    OAuthState,
    Secret,
    SecretInfo,
    SecretKind,
    SecretRequest,
    check_name,
)
from goexd.vault import oauth_tokens
from goexd.vault.oauth_listener import LoopbackListener, Page
from goexd.vault.oauth_refresh import TokenRefresher
from goexd.vault.vault import Vault, check_destinations

log = logging.getLogger("goexd.vault.oauth")

# How long the outcome of a finished flow stays available to `wait`, and for how many flows at most.
FINISHED_RETAIN_S = 600.0
FINISHED_RETAIN_MAX = 64
# `wait` without a timeout also covers a code exchange still running when the flow expires.
_EXCHANGE_GRACE_S = oauth_tokens.TOKEN_TIMEOUT.read or 15.0
_LOOPBACK_NAMES = frozenset({"localhost"})
_MESSAGE_ERRORS = (AlreadyExists, FailedPrecondition, PermissionDenied, Unavailable, InternalError)


@dataclass(frozen=True)
class OAuthStart:
    """What StartOAuthRequest carries."""

    name: str
    authorization_url: str
    token_url: str
    client_id: str
    scopes: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    client_secret: bytes = field(default=b"", repr=False)
    overwrite: bool = False


@dataclass(frozen=True)
class StartedFlow:
    browser_url: str
    redirect_uri: str
    expires_at: float


@dataclass
class _Flow:
    req: OAuthStart
    state: str = field(repr=False)
    verifier: str = field(repr=False)
    listener: LoopbackListener
    expires_at: float
    timer: threading.Timer
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    claimed: bool = False  # a callback with the right state is being handled
    ended: bool = False  # an outcome is being recorded; `done` is set once it is
    info: SecretInfo | None = None
    error: tuple[type[GoexError], str] | None = None
    finished_at: float = 0.0

    def outcome(self) -> SecretInfo:
        if self.error is not None:
            cls, message = self.error
            raise cls(message)  # a fresh exception per waiter: they may be on several threads
        assert self.info is not None
        return self.info


class OAuthFlows:
    def __init__(self, vault: Vault, cfg: VaultConfig, dialer: oauth_tokens.Dialer) -> None:
        """`dialer`: how token requests reach the network (the daemon's address rule; see oauth_tokens.Dialer)."""
        self._vault = vault
        self._cfg = cfg
        self._dialer = dialer
        self._refresher = TokenRefresher(vault, cfg.oauth_refresh_margin_s, dialer)
        self._lock = threading.Lock()
        self._flows: dict[str, _Flow] = {}
        self._closed = False
        vault.refresher = self.refresh

    # ------------------------------------------------------------ flows

    def start(self, req: OAuthStart) -> StartedFlow:
        name = check_name(req.name, "name")
        _check_endpoint(req.authorization_url, "authorization_url")
        _check_endpoint(req.token_url, "token_url")
        client_id = _check_client_id(req.client_id)
        scopes = tuple(_check_scope(s, f"scopes[{i}]") for i, s in enumerate(req.scopes))
        hosts = check_destinations(req.allowed_hosts, "allowed_hosts")
        _check_client_secret(req.client_secret)
        # Before anything is kept: a token endpoint on loopback, a private network or the cloud metadata
        # address is refused now (as an http resource's base URL is), not after the user has logged in.
        self._dialer.check(req.token_url, "token_url")
        req = replace(req, client_id=client_id, scopes=scopes, allowed_hosts=hosts)
        with self._lock:
            if self._closed:
                raise Unavailable("goexd is stopping; no new authorization flows")
            self._prune()
            old = self._flows.get(name)
            if old is not None and not old.done.is_set():
                raise FailedPrecondition(
                    f"an authorization flow for {name!r} is already waiting (until {_iso(old.expires_at)}); "
                    "finish it in the browser or let it expire"
                )
            if not req.overwrite and name in self._vault.names():
                raise AlreadyExists(f"secret {name!r} already exists; set overwrite (goex: --overwrite) to replace it")
            self._check_room()
            flow = self._new_flow(req)
            try:
                client = oauth_tokens.Client(req.token_url, client_id, req.client_secret, scopes)
                url = oauth_tokens.authorization_url(
                    req.authorization_url, client, flow.listener.redirect_uri, flow.state, flow.verifier
                )
            except Exception:
                flow.listener.close()
                raise
            self._flows[name] = flow
            flow.listener.start()
            flow.timer.start()
        log.info(
            "oauth flow %r started; redirect %s, expires %s", name, flow.listener.redirect_uri, _iso(flow.expires_at)
        )
        return StartedFlow(browser_url=url, redirect_uri=flow.listener.redirect_uri, expires_at=flow.expires_at)

    def wait(self, name: str, timeout_s: float | None) -> SecretInfo:
        """The stored secret's metadata once the flow succeeds. `timeout_s` None: until the flow ends."""
        if timeout_s is not None and timeout_s < 0:
            raise InvalidArgument("timeout", "must not be negative")
        with self._lock:
            self._prune()
            flow = self._flows.get(name)
        if flow is None:
            raise NotFound("oauth flow", name)
        limit = timeout_s if timeout_s is not None else max(0.0, flow.expires_at - time.time()) + _EXCHANGE_GRACE_S
        if not flow.done.wait(limit):
            raise DeadlineExceeded(
                f"the authorization flow for {name!r} has not finished yet; it waits for the browser "
                f"until {_iso(flow.expires_at)}"
            )
        return flow.outcome()

    def close(self) -> None:
        """Stop every listener; waiting flows fail with Unavailable."""
        with self._lock:
            self._closed = True
            flows = list(self._flows.values())
        for flow in flows:
            self._settle(
                flow, error=(Unavailable, f"goexd stopped before the authorization of {flow.req.name!r} ended")
            )

    # ------------------------------------------------------------ refresh

    def refresh(self, secret: Secret, force: bool = False) -> Secret:
        return self._refresher.refresh(secret, force)

    def refresh_due(self) -> list[str]:
        return self._refresher.refresh_due()

    # ------------------------------------------------------------ internals

    def _new_flow(self, req: OAuthStart) -> _Flow:
        def on_callback(params: dict[str, str], peer: str) -> Page:
            return self._on_callback(flow, params, peer)  # `flow` is bound below, before any callback

        timeout = self._cfg.oauth_flow_timeout_s
        flow = _Flow(
            req=req,
            state=secrets.token_urlsafe(32),
            verifier=oauth_tokens.new_code_verifier(),
            listener=LoopbackListener(on_callback, req.name),
            expires_at=time.time() + timeout,
            timer=threading.Timer(timeout, lambda: self._expire(flow)),
        )
        flow.timer.daemon = True
        return flow

    def _on_callback(self, flow: _Flow, params: dict[str, str], peer: str) -> Page:
        name = flow.req.name
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), flow.state.encode()):
            log.warning(
                "oauth flow %r: ignored a callback from %s with a %s state; still waiting",
                name,
                peer,
                "wrong" if state else "missing",
            )
            return Page(400, "Invalid request", "This request does not belong to a waiting goex authorization.")
        with flow.lock:
            if flow.claimed or flow.ended:
                return Page(400, "Already finished", f"The authorization of {name} has already ended.")
            flow.claimed = True
        try:
            info = self._complete(flow, params)
        except GoexError as exc:
            # Re-raised per waiter as cls(message): only classes built from a message qualify.
            cls = type(exc) if isinstance(exc, _MESSAGE_ERRORS) else FailedPrecondition
            self._settle(flow, error=(cls, str(exc)))
            # The status is for scripts; a person reads the page.
            return Page(403 if isinstance(exc, PermissionDenied) else 502, "Authorization failed", str(exc))
        except Exception:
            log.exception("oauth flow %r: unexpected failure while completing", name)
            self._settle(flow, error=(InternalError, f"completing the authorization of {name!r} failed; see the log"))
            return Page(500, "Authorization failed", "goexd could not complete it; see its log.")
        self._settle(flow, info=info)
        return Page(200, "Authorization complete", f"goex stored the credentials for {name}. You can close this tab.")

    def _complete(self, flow: _Flow, params: dict[str, str]) -> SecretInfo:
        """Callback with the right state -> stored secret, or a GoexError saying why not."""
        req = flow.req
        if "error" in params:
            error = oauth_tokens.provider_text(params["error"]) or "unknown_error"
            desc = oauth_tokens.provider_text(params.get("error_description", ""))
            text = f"{error}: {desc}" if desc else error
            if error == "access_denied":
                raise PermissionDenied(f"the authorization of {req.name!r} was denied at the provider ({text})")
            raise FailedPrecondition(f"the provider refused the authorization of {req.name!r} ({text})")
        code = params.get("code", "")
        if not code:
            raise FailedPrecondition(f"the provider redirected back without a code for {req.name!r}")
        client = oauth_tokens.Client(req.token_url, req.client_id, req.client_secret, req.scopes)
        try:
            tokens = oauth_tokens.exchange_code(client, code, flow.listener.redirect_uri, flow.verifier, self._dialer)
        except oauth_tokens.TokenEndpointRefused as exc:  # resolves elsewhere than at start: nothing was sent
            raise PermissionDenied(f"token_url: {exc}") from None
        except oauth_tokens.TokenEndpointDown as exc:
            raise Unavailable(f"the token endpoint {req.token_url} could not be reached ({exc})") from None
        except oauth_tokens.TokenEndpointError as exc:
            raise FailedPrecondition(f"the token endpoint did not issue tokens for {req.name!r} ({exc})") from None
        values = tokens.values()
        if req.client_secret:
            values["client_secret"] = req.client_secret
        oauth = OAuthState(req.token_url, req.client_id, tokens.scopes or req.scopes, tokens.expires_at)
        if flow.ended:  # closed while the code was being exchanged: store nothing
            raise Unavailable(f"goexd stopped before the authorization of {req.name!r} ended")
        try:
            info = self._vault.put(
                SecretRequest(
                    name=req.name,
                    kind=SecretKind.OAUTH2,
                    values=values,
                    injection=None,  # the oauth2 default: Authorization: Bearer {value}
                    allowed_hosts=req.allowed_hosts,
                    overwrite=req.overwrite,
                    oauth=oauth,
                )
            )
        except InvalidArgument as exc:  # the request was checked at start: it is the tokens
            raise FailedPrecondition(f"the provider's tokens cannot be stored ({exc.problem})") from None
        log.info("oauth flow %r: tokens stored (refreshable: %s)", req.name, info.refreshable)
        return info

    def _expire(self, flow: _Flow) -> None:
        message = (
            f"the authorization flow for {flow.req.name!r} expired after "
            f"{self._cfg.oauth_flow_timeout_s:g}s without the browser coming back"
        )
        if self._settle(flow, error=(DeadlineExceeded, message), unless_claimed=True):
            log.info("oauth flow %r expired", flow.req.name)

    def _settle(
        self,
        flow: _Flow,
        info: SecretInfo | None = None,
        error: tuple[type[GoexError], str] | None = None,
        unless_claimed: bool = False,
    ) -> bool:
        """Record the outcome once and close the listener; False when the flow had already ended."""
        with flow.lock:
            if flow.ended or (unless_claimed and flow.claimed):
                return False
            flow.ended = True
        flow.timer.cancel()
        # Closed before waiters wake: whoever learns the outcome can count on the port being shut.
        flow.listener.close()
        flow.info, flow.error, flow.finished_at = info, error, time.time()
        flow.done.set()
        if error is not None:
            log.info("oauth flow %r failed: %s", flow.req.name, error[1])
        return True

    def _check_room(self) -> None:
        """ResourceExhausted when the open flows are at the cap: each holds a listener (a thread and a
        port) until the browser comes back or it expires, and 300 unfinished ones once added 600 threads.
        Caller holds self._lock."""
        waiting = [f for f in self._flows.values() if not f.done.is_set()]
        cap = self._cfg.oauth_max_open_flows
        if len(waiting) >= cap:
            first = min(f.expires_at for f in waiting)
            raise ResourceExhausted(
                f"{len(waiting)} authorization flows are already waiting for a browser, the most goexd keeps open "
                f"(vault.oauth_max_open_flows = {cap}); finish one, or start again after {_iso(first)}, "
                "when the oldest expires"
            )

    def _prune(self) -> None:
        """Expire flows past their time (should a timer be late), forget flows that ended long ago, and
        keep at most FINISHED_RETAIN_MAX ended ones. Caller holds self._lock."""
        now = time.time()
        for flow in [f for f in self._flows.values() if not f.done.is_set() and f.expires_at <= now]:
            self._expire(flow)
        ended = sorted((f.finished_at, n) for n, f in self._flows.items() if f.done.is_set())
        cutoff = now - FINISHED_RETAIN_S
        for i, (finished_at, name) in enumerate(ended):
            if finished_at < cutoff or i < len(ended) - FINISHED_RETAIN_MAX:
                del self._flows[name]


# ---------------------------------------------------------------- validation


def _check_endpoint(url: str, fld: str) -> str:
    """https, or http to this machine (a provider under development, or a test server)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidArgument(fld, f"{url!r} is not a URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument(fld, f"{url!r} is not an https URL")
    if "@" in parts.netloc or parts.fragment:
        raise InvalidArgument(fld, f"{url!r} must not carry credentials or a fragment")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidArgument(fld, f"{url!r} contains a space or a control character")
    if parts.scheme == "http" and not _is_loopback(host):
        raise InvalidArgument(fld, f"{url!r} must use https (plain http is allowed only to a loopback host)")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_client_id(client_id: str) -> str:
    if not client_id.strip():
        raise InvalidArgument("client_id", "a client id is required")
    if not client_id.isprintable() or client_id != client_id.strip():
        raise InvalidArgument("client_id", "contains whitespace at its ends or a control character")
    return client_id


def _check_scope(scope: str, fld: str) -> str:
    # RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    if not scope or any(not (0x21 <= ord(c) <= 0x7E) or c in '"\\' for c in scope):
        raise InvalidArgument(fld, f"{scope!r} is not a scope (printable ASCII without spaces, quotes or backslashes)")
    return scope


def _check_client_secret(secret: bytes) -> None:
    # The vault's own rules for a value part, checked now rather than after the user has logged in.
    if not secret:
        return
    if any(b in secret for b in b"\r\n\x00"):
        raise InvalidArgument("client_secret", "contains a line break or NUL byte")
    if not MIN_VALUE_BYTES <= len(secret) <= MAX_VALUE_BYTES:
        raise InvalidArgument("client_secret", f"must be {MIN_VALUE_BYTES} to {MAX_VALUE_BYTES} bytes")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
