"""Proto <-> domain for the Secrets service. Values only ever travel inwards."""

from __future__ import annotations

from typing import cast

from goex.v1 import secrets_pb2 as spb
from goexd.domain.errors import InvalidArgument
from goexd.domain.secrets import Injection, InjectionTarget, SecretInfo, SecretKind, SecretRequest
from goexd.server.convert import ts
from goexd.vault.oauth import OAuthStart

_KIND_TO_PB = {k: cast(spb.SecretKind, spb.SecretKind.Value(f"SECRET_KIND_{k.name}")) for k in SecretKind}
_KIND_FROM_PB: dict[int, SecretKind] = {v: k for k, v in _KIND_TO_PB.items()}


def kind(value: int, fld: str) -> SecretKind:
    if value == spb.SECRET_KIND_UNSPECIFIED:
        return SecretKind.GENERIC
    if value not in _KIND_FROM_PB:
        raise InvalidArgument(fld, f"unknown secret kind {value}")
    return _KIND_FROM_PB[value]


def injection(msg: spb.Injection, fld: str) -> Injection | None:
    which = msg.WhichOneof("target")
    if which is None:
        return None
    if which == "header":
        return Injection(InjectionTarget.HEADER, msg.header.name, msg.header.template or "{value}")
    if which == "query":
        return Injection(InjectionTarget.QUERY, msg.query.param, msg.query.template or "{value}")
    if which == "env":
        return Injection(InjectionTarget.ENV, msg.env.variable)
    return Injection(InjectionTarget.DSN_PASSWORD)


def put_request(msg: spb.PutSecretRequest) -> SecretRequest:
    if msg.value and msg.values:
        raise InvalidArgument("values", "give either value or values, not both")
    values = dict(msg.values) if msg.values else {"value": msg.value} if msg.value else {}
    return SecretRequest(
        name=msg.info.name,
        kind=kind(msg.info.kind, "info.kind"),
        values=values,
        injection=injection(msg.info.injection, "info.injection") if msg.info.HasField("injection") else None,
        allowed_hosts=tuple(msg.info.allowed_hosts),
        overwrite=msg.overwrite,
    )


def oauth_start(msg: spb.StartOAuthRequest) -> OAuthStart:
    return OAuthStart(
        name=msg.name,
        authorization_url=msg.authorization_url,
        token_url=msg.token_url,
        client_id=msg.client_id,
        scopes=tuple(msg.scopes),
        allowed_hosts=tuple(msg.allowed_hosts),
        client_secret=msg.client_secret,
        overwrite=msg.overwrite,
    )


def injection_pb(inj: Injection | None) -> spb.Injection | None:
    if inj is None:
        return None
    if inj.target is InjectionTarget.HEADER:
        return spb.Injection(header=spb.HeaderInjection(name=inj.name, template=inj.template))
    if inj.target is InjectionTarget.QUERY:
        return spb.Injection(query=spb.QueryInjection(param=inj.name, template=inj.template))
    if inj.target is InjectionTarget.ENV:
        return spb.Injection(env=spb.EnvInjection(variable=inj.name))
    return spb.Injection(dsn_password=spb.DsnPasswordInjection())


def info_pb(info: SecretInfo) -> spb.SecretInfo:
    return spb.SecretInfo(
        name=info.name,
        kind=_KIND_TO_PB[info.kind],
        injection=injection_pb(info.injection),
        allowed_hosts=list(info.allowed_hosts),
        created_at=ts(info.created_at),
        updated_at=ts(info.updated_at),
        expires_at=ts(info.expires_at),
        refreshable=info.refreshable,
        problem=info.problem,
        parts=list(info.parts),
    )
