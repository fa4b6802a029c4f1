"""What a secret is: its name, kind, value parts, how it is injected and where it may go.

Values live only in `Secret.values` inside the daemon; every view that leaves the vault
(`SecretInfo`) carries metadata only.
"""

from __future__ import annotations

import base64
import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.textcap import shown

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Redaction needs a value long enough to be told apart from ordinary output.
MIN_VALUE_BYTES = 6
MAX_VALUE_BYTES = 64 * 1024
# Parts that identify rather than authenticate: injected, never redacted.
PUBLIC_PARTS = frozenset({"username"})


class SecretKind(enum.StrEnum):
    API_KEY = "api_key"
    BEARER = "bearer"
    BASIC = "basic"
    OAUTH2 = "oauth2"
    DSN = "dsn"
    GENERIC = "generic"


class InjectionTarget(enum.StrEnum):
    HEADER = "header"
    QUERY = "query"
    ENV = "env"  # explicit opt-in: the value enters the sandboxed process
    DSN_PASSWORD = "dsn_password"  # noqa: S105 - an injection target, not a password


@dataclass(frozen=True)
class Injection:
    target: InjectionTarget
    name: str = ""  # header name, query parameter or environment variable
    template: str = "{value}"

    def describe(self) -> str:
        if self.target is InjectionTarget.HEADER:
            return f"header {self.name}: {self.template}"
        if self.target is InjectionTarget.QUERY:
            return f"query {self.name}={self.template}"
        if self.target is InjectionTarget.ENV:
            return f"env ${self.name}"
        return "dsn password"


@dataclass(frozen=True)
class OAuthState:
    """The non-secret half of an OAuth2 token set; tokens and client secret are value parts."""

    token_url: str
    client_id: str
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    problem: str = ""  # set when a refresh was refused (revoked, expired refresh token)


@dataclass(frozen=True)
class Secret:
    name: str
    kind: SecretKind
    values: Mapping[str, bytes]  # "value", or parts: username/password, access_token/refresh_token/client_secret
    injection: Injection | None
    allowed_hosts: tuple[str, ...]
    created_at: float
    updated_at: float
    oauth: OAuthState | None = None

    @property
    def primary(self) -> bytes:
        """The value `{value}` stands for in a template."""
        for part in ("value", "access_token", "password"):
            if part in self.values:
                return self.values[part]
        raise KeyError(f"secret {self.name} has no primary value")

    def problem(self) -> str:
        """Why the secret cannot be used now ("" when it can)."""
        if self.oauth is not None and self.oauth.problem:
            return self.oauth.problem
        inj = self.injection
        templated = inj is not None and inj.target in (InjectionTarget.HEADER, InjectionTarget.QUERY)
        # A template stored before templates were checked strictly: kept (the daemon starts), never rendered.
        if templated and inj is not None and (why := template_problem(inj.template, self.values)):
            return f"its template {why}; store it again with a plain template such as 'Bearer {{value}}'"
        return ""

    def redactable(self) -> list[bytes]:
        return [v for k, v in self.values.items() if k not in PUBLIC_PARTS]

    def info(self) -> SecretInfo:
        return SecretInfo(
            name=self.name,
            kind=self.kind,
            injection=self.injection,
            allowed_hosts=self.allowed_hosts,
            created_at=self.created_at,
            updated_at=self.updated_at,
            parts=tuple(sorted(self.values)),
            expires_at=self.oauth.expires_at if self.oauth else None,
            refreshable=bool(self.oauth and "refresh_token" in self.values),
            problem=self.problem(),
        )


@dataclass(frozen=True)
class SecretInfo:
    """Metadata only: what List/Put return. There is deliberately no field for a value."""

    name: str
    kind: SecretKind
    injection: Injection | None
    allowed_hosts: tuple[str, ...]
    created_at: float
    updated_at: float
    parts: tuple[str, ...] = ()
    expires_at: float | None = None
    refreshable: bool = False
    problem: str = ""


@dataclass(frozen=True)
class SecretRequest:
    """A put, as the server layer hands it to the vault (already structurally valid)."""

    name: str
    kind: SecretKind
    values: Mapping[str, bytes]
    injection: Injection | None = None
    allowed_hosts: tuple[str, ...] = ()
    overwrite: bool = False
    oauth: OAuthState | None = field(default=None, compare=False)


def check_name(name: str, fld: str = "name") -> str:
    if not name:
        raise InvalidArgument(fld, "a secret name is required")
    if any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(fld, f"{shown(name)} contains a path separator or a control character")
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            fld,
            f"{shown(name)} is not a secret name: 1-64 of letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
        )
    return name


_HOST_RE = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?")
_IPV6_RE = re.compile(r"\[[0-9a-f:.]+\](:[0-9]{1,5})?")


def check_host(host: str, fld: str) -> str:
    """'api.example.com', 'api.example.com:8443', '*.example.com', '127.0.0.1:5000', '[::1]:80'."""
    h = host.strip().lower()
    if not h or not (_HOST_RE.fullmatch(h) or _IPV6_RE.fullmatch(h)):
        raise InvalidArgument(fld, f"{shown(host)} is not a host name (host, host:port or *.domain)")
    return h


def host_matches(pattern: str, host: str, port: int) -> bool:
    """Whether `host`:`port` is covered by an allowed-host pattern (a pattern without a port allows any)."""
    host = host.lower().strip("[]")
    if pattern.startswith("["):
        addr, _, pport = pattern[1:].partition("]")
        return addr == host and (not pport or pport == f":{port}")
    name, _, pport = pattern.partition(":")
    if pport and int(pport) != port:
        return False
    if name.startswith("*."):
        return host.endswith(name[1:]) and host != name[2:]
    return host == name


MAX_TEMPLATE_CHARS = 256
# `{{` and `}}` are literal braces, `{field}` a substitution; any other brace is an error.
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


def template_fields(parts: Mapping[str, bytes] | set[str]) -> frozenset[str]:
    """The fields a template of a secret with these parts may name."""
    allowed = {"value", *parts}
    if "username" in parts and "password" in parts:
        allowed.add("basic")
    return frozenset(allowed)


@functools.lru_cache(maxsize=256)  # rendered on every request that adds a secret; a failure is not kept
def _parse_template(template: str, allowed: frozenset[str]) -> tuple[tuple[bool, str], ...]:
    """(is_field, text) pieces, or ValueError saying what is wrong. Never Python's str.format: a
    format spec such as `{value:>100000000}` once made one header 100 MB."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"is {len(template)} characters long; at most {MAX_TEMPLATE_CHARS} are accepted")
    if any(not (" " <= c <= "~") for c in template):
        raise ValueError(f"{shown(template)} holds a control or non-ASCII character; only printable ASCII is accepted")
    pieces: list[tuple[bool, str]] = []
    at = 0
    for m in _TEMPLATE_TOKEN.finditer(template):
        if m.start() > at:
            pieces.append((False, template[at : m.start()]))
        at = m.end()
        token = m[0]
        if token in ("{{", "}}"):
            pieces.append((False, token[0]))
        elif m[1] is not None:
            if m[1] not in allowed:
                raise ValueError(f"{shown(template)}: field {{{m[1]}}} is not one of {sorted(allowed)}")
            pieces.append((True, m[1]))
        else:
            raise ValueError(
                f"{shown(template)}: {token!r} at position {m.start()} is not part of a field "
                "({value}) or an escaped brace ({{ or }}); nothing else (format specs, conversions) is accepted"
            )
    if at < len(template):
        pieces.append((False, template[at:]))
    if not any(is_field for is_field, _ in pieces):
        raise ValueError(f"{shown(template)} has no {{value}} field")
    return tuple(pieces)


def template_problem(template: str, parts: Mapping[str, bytes] | set[str]) -> str:
    """Why a stored template cannot be used ("" when it can)."""
    try:
        _parse_template(template, template_fields(parts))
    except ValueError as e:
        return str(e)
    return ""


def check_template(template: str, parts: Mapping[str, bytes] | set[str], fld: str) -> str:
    try:
        _parse_template(template, template_fields(parts))
    except ValueError as e:
        raise InvalidArgument(fld, f"template {e}") from None
    return template


def render(template: str, secret: Secret) -> str:
    """Fill a template with the secret's parts; values are decoded as UTF-8 (they travel in headers/URLs).

    FailedPrecondition for a template stored before templates were checked this strictly.
    """
    try:
        pieces = _parse_template(template, template_fields(secret.values))
    except ValueError as e:
        raise FailedPrecondition(f"secret {secret.name!r} cannot be used: its template {e}; store it again") from None
    fields: dict[str, str] = {k: v.decode("utf-8", "surrogateescape") for k, v in secret.values.items()}
    fields["value"] = secret.primary.decode("utf-8", "surrogateescape")
    if "username" in secret.values and "password" in secret.values:
        raw = secret.values["username"] + b":" + secret.values["password"]
        fields["basic"] = base64.b64encode(raw).decode()
    return "".join(fields[text] if is_field else text for is_field, text in pieces)


def default_injection(kind: SecretKind) -> Injection | None:
    if kind in (SecretKind.BEARER, SecretKind.OAUTH2):
        return Injection(InjectionTarget.HEADER, "Authorization", "Bearer {value}")
    if kind is SecretKind.BASIC:
        return Injection(InjectionTarget.HEADER, "Authorization", "Basic {basic}")
    if kind is SecretKind.DSN:
        return Injection(InjectionTarget.DSN_PASSWORD)
    return None
