"""Keeping OAuth2 access tokens fresh: on use (the vault's refresher hook) and on a schedule.

A refresh holds a per-secret lock and re-reads the secret once it has it, so many actions that
find the same token due at once send one refresh request (with rotating refresh tokens a second
request would even be refused and look like a revocation). Failures are told apart: a rejected
refresh token (invalid_grant) marks the secret unusable until it is authorized again; an
unreachable or misbehaving token endpoint leaves the secret alone and the current access token
is used while it lasts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import NoReturn

from goexd.domain.errors import FailedPrecondition, GoexError, InvalidArgument, NotFound, Unavailable
from goexd.domain.secrets import Secret
from goexd.vault import oauth_tokens
from goexd.vault.vault import Vault

log = logging.getLogger("goexd.vault.oauth")


def reauthorize_hint(name: str) -> str:
    # Re-authorizing replaces the stored secret, hence --overwrite.
    return f"run: goex secret oauth {name} --overwrite ... to authorize again"


class TokenRefresher:
    def __init__(self, vault: Vault, margin_s: float, dialer: oauth_tokens.Dialer) -> None:
        self._vault = vault
        self._margin_s = margin_s
        self._dialer = dialer
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}  # one per secret name; a handful, never pruned

    def due(self, secret: Secret, now: float | None = None) -> bool:
        """Whether the access token expires within the margin (a token without an expiry never is)."""
        exp = secret.oauth.expires_at if secret.oauth else None
        return exp is not None and exp - (time.time() if now is None else now) <= self._margin_s

    def refresh(self, secret: Secret, force: bool = False) -> Secret:
        """The secret with a usable access token, refreshed first when due (or when forced)."""
        if secret.oauth is None or not (force or self.due(secret)):
            return secret
        with self._lock_for(secret.name):
            current = self._vault.get(secret.name)
            if current.oauth is None:  # replaced by a secret of another kind meanwhile
                return current
            if current.oauth.problem:
                raise FailedPrecondition(f"secret {current.name!r} cannot be used: {current.oauth.problem}")
            if current.values.get("access_token") != secret.values.get("access_token"):
                # Refreshed (or re-authorized) by someone else while this caller waited for the lock.
                return current
            if not (force or self.due(current)):
                return current
            return self._refresh_locked(current, force)

    def refresh_due(self) -> list[str]:
        """Refresh every refreshable token that is due; one failure does not stop the others."""
        refreshed: list[str] = []
        for name in self._vault.names():
            try:
                secret = self._vault.get(name)
            except NotFound:  # deleted since names() was read
                continue
            if secret.oauth is None or secret.oauth.problem or "refresh_token" not in secret.values:
                continue
            if not self.due(secret):
                continue
            try:
                new = self.refresh(secret)
            except GoexError as exc:  # already logged with its cause; keep going with the rest
                log.warning("scheduled refresh of secret %r failed: %s", name, exc)
                continue
            if new.values.get("access_token") != secret.values.get("access_token"):
                refreshed.append(name)
        return refreshed

    # ------------------------------------------------------------ internals

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _refresh_locked(self, secret: Secret, force: bool) -> Secret:
        assert secret.oauth is not None
        name, oauth = secret.name, secret.oauth
        refresh_token = secret.values.get("refresh_token")
        if refresh_token is None:
            if force or _expired(secret):
                raise FailedPrecondition(
                    f"secret {name!r}: the access token {'cannot be refreshed' if force else 'has expired'} "
                    f"and there is no refresh token; {reauthorize_hint(name)}"
                )
            return secret
        client = oauth_tokens.Client(oauth.token_url, oauth.client_id, secret.values.get("client_secret", b""))
        try:
            tokens = oauth_tokens.refresh(client, refresh_token, self._dialer)
        except oauth_tokens.TokenRejected as exc:
            if exc.error == "invalid_grant":
                self._mark(secret, f"refresh token was rejected (invalid_grant); {reauthorize_hint(name)}")
            return self._keep_current(secret, FailedPrecondition, f"the token endpoint refused the refresh ({exc})")
        except oauth_tokens.TokenEndpointDown as exc:
            return self._keep_current(
                secret, Unavailable, f"the token endpoint {oauth.token_url} is unreachable ({exc})"
            )
        except oauth_tokens.TokenEndpointRefused as exc:
            # The daemon's address rule, not an outage: retrying on every use or schedule would not help.
            refused = f"goexd does not send token requests to {oauth.token_url}: {exc}"
            self._mark(secret, f"{refused}; {reauthorize_hint(name)}")
        except oauth_tokens.BadTokenResponse as exc:
            return self._keep_current(secret, FailedPrecondition, f"the token endpoint answered badly ({exc})")
        new_oauth = replace(oauth, expires_at=tokens.expires_at, scopes=tokens.scopes or oauth.scopes, problem="")
        try:
            # The server may not rotate the refresh token; update_tokens keeps the old one then.
            new = self._vault.update_tokens(name, tokens.values(), new_oauth)
        except InvalidArgument as exc:  # e.g. a token with a line break: never let it near a header
            return self._keep_current(secret, FailedPrecondition, f"the refreshed token is unusable ({exc.problem})")
        log.info("secret %r: OAuth2 access token refreshed", name)
        return new

    def _mark(self, secret: Secret, problem: str) -> NoReturn:
        """Record why the secret cannot be used until it is authorized again, and say so."""
        assert secret.oauth is not None
        self._vault.update_tokens(secret.name, {}, replace(secret.oauth, problem=problem))
        log.warning("secret %r: unusable until authorized again: %s", secret.name, problem)
        raise FailedPrecondition(f"secret {secret.name!r} cannot be used: {problem}") from None

    def _keep_current(self, secret: Secret, error: type[GoexError], why: str) -> Secret:
        """A refresh that failed for a reason that may pass: use the current token while it lasts."""
        if not _expired(secret):
            log.warning("secret %r: %s; using the current access token until it expires", secret.name, why)
            return secret
        log.warning("secret %r: %s, and the access token has expired", secret.name, why)
        raise error(f"secret {secret.name!r}: {why}, and its access token has expired")


def _expired(secret: Secret) -> bool:
    exp = secret.oauth.expires_at if secret.oauth else None
    return exp is not None and exp <= time.time()
