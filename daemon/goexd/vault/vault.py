"""The vault: secrets kept encrypted at rest, used by the daemon, never handed out.

`put`, `list`, `delete` and `info` are what the API reaches (metadata out only);
`resolve(name, host, port)` is daemon-internal and the only way to a value, and it
checks that the value may go to that host. Each change re-seals the whole file under
one lock (puts from many clients are serialised, none is lost) and rebuilds the redactor
from every current value and every value retired in the last `retired_values_days`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from goexd.config import Config
from goexd.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SetupError,
)
from goexd.domain.secrets import (
    MAX_VALUE_BYTES,
    MIN_VALUE_BYTES,
    PUBLIC_PARTS,
    Injection,
    InjectionTarget,
    OAuthState,
    Secret,
    SecretInfo,
    SecretKind,
    SecretRequest,
    check_name,
    check_template,
    default_injection,
)
from goexd.domain.textcap import shown
from goexd.vault.destinations import allowed, check_destination
from goexd.vault.keys import KeyFile, KeyringKey, StoredKey, read_passphrase
from goexd.vault.redact import Redactor
from goexd.vault.sealed_file import (
    KEY_BYTES,
    KeySpec,
    VaultKeyError,
    derive_key,
    key_check,
    new_kdf,
    open_sealed,
    read_header,
    seal,
)

log = logging.getLogger("goexd.vault")

_PARTS: dict[SecretKind, tuple[frozenset[str], frozenset[str]]] = {
    # kind -> (required parts, optional parts)
    SecretKind.BASIC: (frozenset({"username", "password"}), frozenset()),
    SecretKind.OAUTH2: (frozenset({"access_token"}), frozenset({"refresh_token", "client_secret"})),
}
_SINGLE: tuple[frozenset[str], frozenset[str]] = (frozenset({"value"}), frozenset())
_HEADER_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# Variables an env-injected secret may not take over: they steer the sandbox itself.
_RESERVED_ENV = frozenset(
    {"PATH", "HOME", "PWD", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"}
)
_PROXY_ENV = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"})
MAX_HOSTS = 64  # host entries per secret
MAX_INJECTION_NAME = 128  # header, query parameter or variable name

Refresher = Callable[[Secret], Secret]


@dataclass(frozen=True)
class _Retired:
    name: str
    value: bytes
    retired_at: float


class Vault:
    def __init__(
        self,
        path: Path,
        key: bytes,
        key_spec: KeySpec,
        stored: StoredKey | None,
        secrets: Mapping[str, Secret],
        retired: list[_Retired],
        retain_retired_s: float,
        kdf_name: str = "argon2id",
    ) -> None:
        self.path = path
        self._key = key
        self._key_spec = key_spec
        self._stored = stored
        self._kdf_name = kdf_name
        self._secrets: dict[str, Secret] = dict(secrets)
        self._retired = retired
        self._retain_s = retain_retired_s
        self._lock = threading.RLock()
        self.refresher: Refresher | None = None  # installed by the OAuth2 module
        self.redactor = Redactor()
        self._rebuild_redactor()

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, cfg: Config) -> Vault:
        """Open the vault named by the config, creating it (and its key) on first start."""
        v = cfg.vault
        path = cfg.vault_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        retain = v.retired_values_days * 86400
        if v.key_source == "passphrase":
            return cls._open_with_passphrase(path, read_passphrase(v.passphrase_file), v.kdf, retain)
        stored: StoredKey = (
            KeyFile(cfg.vault_key_file)
            if v.key_source == "keyfile"
            else KeyringKey(v.keyring_service, f"vault-key:{cfg.state_dir}")
        )
        spec = KeySpec(stored.source)
        if not path.exists():
            key = stored.current() or stored.create()
            vault = cls(path, key, spec, stored, {}, [], retain)
            vault._save()
            log.info("created vault %s (key: %s)", path, stored.source)
            return vault
        header, _, _ = read_header(path)
        if header.key.source != stored.source:
            raise SetupError(
                f"the vault {path} is sealed with a {header.key.source} key, but vault.key_source = {v.key_source}"
            )
        key = cls._settle_rotation(stored, header.check, path)
        secrets, retired = _decode(open_sealed(path, key))
        return cls(path, key, spec, stored, secrets, retired, retain)

    @staticmethod
    def _settle_rotation(stored: StoredKey, check: str, path: Path) -> bytes:
        """Pick whichever of the current and staged keys seals the vault; finish or undo a torn rotation."""
        current, staged = stored.current(), stored.staged()
        if current is not None and key_check(current) == check:
            if staged is not None:
                log.warning("discarding a key rotation that did not reach the vault")
                stored.discard_staged()
            return current
        if staged is not None and key_check(staged) == check:
            log.warning("completing a key rotation interrupted after the vault was re-sealed")
            stored.promote()
            return staged
        if current is None:
            raise VaultKeyError(f"the vault {path} exists but its {stored.source} key is missing; refusing to start")
        raise VaultKeyError(
            f"the {stored.source} key does not open the vault {path} (wrong key); "
            "refusing to start and leaving it untouched"
        )

    @classmethod
    def _open_with_passphrase(cls, path: Path, passphrase: bytes, kdf_name: str, retain: float) -> Vault:
        if not path.exists():
            spec = KeySpec("passphrase", new_kdf(kdf_name))
            vault = cls(path, derive_key(passphrase, spec.kdf), spec, None, {}, [], retain, kdf_name)
            vault._save()
            log.info("created vault %s (key: passphrase, %s)", path, kdf_name)
            return vault
        header, _, _ = read_header(path)
        if header.key.source != "passphrase":
            raise SetupError(f"the vault {path} is sealed with a {header.key.source} key, not a passphrase")
        key = derive_key(passphrase, header.key.kdf)
        secrets, retired = _decode(open_sealed(path, key))
        return cls(path, key, header.key, None, secrets, retired, retain, kdf_name)

    # ------------------------------------------------------------ API-facing (metadata only)

    def put(self, req: SecretRequest) -> SecretInfo:
        name = check_name(req.name, "info.name")
        values = _check_values(req.kind, req.values)
        injection = _check_injection(req.injection or default_injection(req.kind), values)
        hosts = check_destinations(req.allowed_hosts, "info.allowed_hosts")
        with self._lock:
            old = self._secrets.get(name)
            if old is not None and not req.overwrite:
                raise AlreadyExists(f"secret {name!r} already exists; set overwrite (goex: --overwrite) to replace it")
            now = time.time()
            secret = Secret(
                name=name,
                kind=req.kind,
                values=values,
                injection=injection,
                allowed_hosts=hosts,
                created_at=old.created_at if old else now,
                updated_at=now,
                oauth=req.oauth,
            )
            self._commit({**self._secrets, name: secret}, self._retire(old, keep=secret))
            return secret.info()

    def list_info(self) -> list[SecretInfo]:
        with self._lock:
            return [s.info() for _, s in sorted(self._secrets.items())]

    def info(self, name: str) -> SecretInfo:
        return self.get(name).info()

    def delete(self, name: str) -> None:
        check_name(name, "name")
        with self._lock:
            old = self.get(name)
            rest = {k: v for k, v in self._secrets.items() if k != name}
            self._commit(rest, self._retire(old))

    def rotate_key(self, new_passphrase: bytes) -> None:
        """Re-seal under a new key: a new random key for key file/keyring, a new passphrase otherwise."""
        with self._lock:
            if self._stored is None:
                if len(new_passphrase) < 8:
                    raise InvalidArgument("new_passphrase", "the vault uses a passphrase: give a new one of 8+ bytes")
                spec = KeySpec("passphrase", new_kdf(self._key_spec.kdf.get("name", self._kdf_name)))
                key = derive_key(new_passphrase, spec.kdf)
                self._key, self._key_spec = key, spec
                self._save()
                log.warning("vault re-sealed under a new passphrase; give the new one at the next start")
                return
            if new_passphrase:
                raise InvalidArgument(
                    "new_passphrase", f"the vault uses a {self._stored.source} key; rotation makes a new random key"
                )
            key = os.urandom(KEY_BYTES)
            self._stored.stage(key)
            old_key = self._key
            self._key = key
            try:
                self._save()
            except Exception:
                self._key = old_key
                self._stored.discard_staged()
                raise
            self._stored.promote()
            log.info("vault re-sealed under a new %s key", self._stored.source)

    # ------------------------------------------------------------ daemon-internal

    def get(self, name: str) -> Secret:
        with self._lock:
            secret = self._secrets.get(name)
        if secret is None:
            raise NotFound("secret", name)
        return secret

    def redact_text(self, text: str) -> str:
        """Through whichever redactor is current (it is replaced on every change)."""
        return self.redactor.text(text)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._secrets)

    def resolve(self, name: str, scheme: str, host: str, port: int) -> Secret:
        """The secret, if it may be sent to scheme://host:port (destinations.py), with a fresh OAuth2
        token when one is due."""
        secret = self.get(name)
        if not allowed(secret.allowed_hosts, scheme, host, port):
            where = ", ".join(secret.allowed_hosts) or "no host"
            shown_host = f"[{host}]" if ":" in host else host
            raise PermissionDenied(
                f"secret {name!r} may not be sent to {scheme}://{shown_host}:{port}; it is allowed for {where} "
                "(a host without a port means the default port; plain http needs an http:// entry)"
            )
        return self.usable(secret)

    def usable(self, secret: Secret) -> Secret:
        if problem := secret.problem():
            raise FailedPrecondition(f"secret {secret.name!r} cannot be used: {problem}")
        if secret.oauth is not None and self.refresher is not None:
            return self.refresher(secret)
        return secret

    def update_tokens(self, name: str, values: Mapping[str, bytes], oauth: OAuthState) -> Secret:
        """Store a refreshed token set (or a problem) for an OAuth2 secret; old tokens stay redacted."""
        with self._lock:
            old = self.get(name)
            # The same checks as a put: a token from a provider must not smuggle a header either.
            merged = _check_values(old.kind, {**old.values, **values})
            new = replace(old, values=merged, oauth=oauth, updated_at=time.time())
            self._commit({**self._secrets, name: new}, self._retire(old, keep=new))
            return new

    # ------------------------------------------------------------ internals

    def _retire(self, old: Secret | None, keep: Secret | None = None) -> list[_Retired]:
        now = time.time()
        retired = [r for r in self._retired if now - r.retired_at < self._retain_s]
        if old is not None:
            still = set(keep.redactable()) if keep else set()
            retired += [_Retired(old.name, v, now) for v in old.redactable() if v not in still]
        return retired

    def _commit(self, secrets: dict[str, Secret], retired: list[_Retired]) -> None:
        """Persist first; memory (and the redactor) change only once the new file is in place."""
        previous = self._secrets, self._retired
        self._secrets, self._retired = secrets, retired
        try:
            self._save()
        except Exception:
            self._secrets, self._retired = previous
            raise
        self._rebuild_redactor()

    def _save(self) -> None:
        seal(self.path, self._key, self._key_spec, _encode(self._secrets, self._retired))

    def _rebuild_redactor(self) -> None:
        pairs = [(s.name, v) for s in self._secrets.values() for v in s.redactable()]
        pairs += [(r.name, r.value) for r in self._retired]
        self.redactor = Redactor(pairs)


# ---------------------------------------------------------------- validation


def _check_values(kind: SecretKind, values: Mapping[str, bytes]) -> dict[str, bytes]:
    required, optional = _PARTS.get(kind, _SINGLE)
    given = set(values)
    if not given:
        raise InvalidArgument("value", "a secret value is required")
    if missing := required - given:
        raise InvalidArgument("values", f"a {kind.value} secret needs the parts {sorted(missing)}")
    if extra := given - required - optional:
        raise InvalidArgument("values", f"a {kind.value} secret has no parts {sorted(extra)}")
    for part, value in values.items():
        fld = "value" if part == "value" else f"values[{part}]"
        if any(b in value for b in b"\r\n\x00"):
            raise InvalidArgument(fld, "contains a line break or NUL byte, which could smuggle headers")
        if len(value) > MAX_VALUE_BYTES:
            raise InvalidArgument(fld, f"is longer than {MAX_VALUE_BYTES} bytes")
        if part not in PUBLIC_PARTS and len(value) < MIN_VALUE_BYTES:
            raise InvalidArgument(
                fld, f"is shorter than {MIN_VALUE_BYTES} bytes: too short to be redacted reliably from output"
            )
    return dict(values)


def check_destinations(entries: Sequence[str], fld: str) -> tuple[str, ...]:
    """A secret's host entries, checked and without repeats (destinations.py says what each covers)."""
    if len(entries) > MAX_HOSTS:
        raise InvalidArgument(fld, f"{len(entries)} entries; at most {MAX_HOSTS}")
    return tuple(dict.fromkeys(check_destination(h, f"{fld}[{i}]") for i, h in enumerate(entries)))


def _check_injection(injection: Injection | None, values: Mapping[str, bytes]) -> Injection | None:
    if injection is None:
        return None
    t = injection.target
    if len(injection.name) > MAX_INJECTION_NAME:
        fld = {InjectionTarget.HEADER: "header.name", InjectionTarget.QUERY: "query.param"}.get(t, "env.variable")
        raise InvalidArgument(f"info.injection.{fld}", f"is longer than {MAX_INJECTION_NAME} characters")
    if t is InjectionTarget.HEADER:
        if not injection.name or not set(injection.name) <= _HEADER_TOKEN:
            raise InvalidArgument("info.injection.header.name", f"{shown(injection.name)} is not an HTTP header name")
        check_template(injection.template, set(values), "info.injection.header.template")
    elif t is InjectionTarget.QUERY:
        if not injection.name or any(c in injection.name for c in "&=#?% \t"):
            raise InvalidArgument(
                "info.injection.query.param", f"{shown(injection.name)} is not a query parameter name"
            )
        check_template(injection.template, set(values), "info.injection.query.template")
    elif t is InjectionTarget.ENV:
        var = injection.name
        if not var.isidentifier() or not var.isascii():
            raise InvalidArgument("info.injection.env.variable", f"{shown(var)} is not an environment variable name")
        if var.upper() in _RESERVED_ENV | _PROXY_ENV or var.upper().startswith("GOEX"):
            raise InvalidArgument("info.injection.env.variable", f"{var} steers the sandbox itself; pick another name")
    return injection


# ---------------------------------------------------------------- (de)serialisation of the sealed plaintext


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _encode(secrets: Mapping[str, Secret], retired: list[_Retired]) -> bytes:
    def secret_json(s: Secret) -> dict[str, Any]:
        return {
            "kind": s.kind.value,
            "values": {k: _b64(v) for k, v in s.values.items()},
            "injection": None
            if s.injection is None
            else {"target": s.injection.target.value, "name": s.injection.name, "template": s.injection.template},
            "allowed_hosts": list(s.allowed_hosts),
            "created_at": s.created_at,
            "updated_at": s.updated_at,
            "oauth": None
            if s.oauth is None
            else {
                "token_url": s.oauth.token_url,
                "client_id": s.oauth.client_id,
                "scopes": list(s.oauth.scopes),
                "expires_at": s.oauth.expires_at,
                "problem": s.oauth.problem,
            },
        }

    doc = {
        "format": 1,
        "secrets": {n: secret_json(s) for n, s in secrets.items()},
        "retired": [{"name": r.name, "value": _b64(r.value), "retired_at": r.retired_at} for r in retired],
    }
    return json.dumps(doc, sort_keys=True).encode()


def _decode(plaintext: bytes) -> tuple[dict[str, Secret], list[_Retired]]:
    doc = json.loads(plaintext)
    secrets: dict[str, Secret] = {}
    for name, s in doc["secrets"].items():
        inj = s["injection"]
        oauth = s["oauth"]
        secrets[name] = Secret(
            name=name,
            kind=SecretKind(s["kind"]),
            values={k: base64.b64decode(v) for k, v in s["values"].items()},
            injection=None if inj is None else Injection(InjectionTarget(inj["target"]), inj["name"], inj["template"]),
            allowed_hosts=tuple(s["allowed_hosts"]),
            created_at=s["created_at"],
            updated_at=s["updated_at"],
            oauth=None
            if oauth is None
            else OAuthState(
                oauth["token_url"], oauth["client_id"], tuple(oauth["scopes"]), oauth["expires_at"], oauth["problem"]
            ),
        )
    retired = [_Retired(r["name"], base64.b64decode(r["value"]), r["retired_at"]) for r in doc["retired"]]
    return secrets, retired
