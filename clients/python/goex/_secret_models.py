"""What the daemon returns about vault secrets, as frozen dataclasses (as goex._models; apart so that a
command that never touches the vault does not build these classes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from goex._enums import SecretKind
from goex._models import _Model
from goex._protoutil import timestamp
from goex._specs import Injection
from goex.v1 import secrets_pb2

__all__ = ["OAuthStart", "SecretInfo"]


@dataclass(frozen=True)
class SecretInfo(_Model[secrets_pb2.SecretInfo]):
    """A secret's metadata; no RPC ever returns a value."""

    name: str
    kind: SecretKind
    injection: Injection | None
    allowed_hosts: tuple[str, ...]
    created_at: datetime | None
    updated_at: datetime | None
    expires_at: datetime | None  # oauth2: when the access token expires
    refreshable: bool  # oauth2: a refresh token is held
    problem: str  # why the secret cannot be used now (e.g. revoked); empty if usable
    parts: tuple[str, ...]  # names of the value parts held ("username", "password"), never values

    @property
    def usable(self) -> bool:
        return not self.problem

    @classmethod
    def from_proto(cls, msg: secrets_pb2.SecretInfo) -> SecretInfo:
        return cls(
            name=msg.name,
            kind=SecretKind.from_proto(msg.kind),
            injection=Injection.from_proto(msg.injection) if msg.HasField("injection") else None,
            allowed_hosts=tuple(msg.allowed_hosts),
            created_at=timestamp(msg, "created_at"),
            updated_at=timestamp(msg, "updated_at"),
            expires_at=timestamp(msg, "expires_at"),
            refreshable=msg.refreshable,
            problem=msg.problem,
            parts=tuple(msg.parts),
            proto=msg,
        )


@dataclass(frozen=True)
class OAuthStart(_Model[secrets_pb2.StartOAuthResponse]):
    browser_url: str  # open this to authorize
    redirect_uri: str  # the daemon's loopback listener the provider sends the browser back to
    expires_at: datetime | None  # the flow is abandoned after this

    @classmethod
    def from_proto(cls, msg: secrets_pb2.StartOAuthResponse) -> OAuthStart:
        return cls(
            browser_url=msg.browser_url,
            redirect_uri=msg.redirect_uri,
            expires_at=timestamp(msg, "expires_at"),
            proto=msg,
        )
