"""The vault file: encrypted, atomic, refuses wrong keys and tampering without touching the file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from goexd import config
from goexd.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SetupError,
)
from goexd.domain.secrets import Injection, InjectionTarget, Secret, SecretKind, SecretRequest, render
from goexd.vault.keys import PASSPHRASE_ENV, KeyFile
from goexd.vault.sealed_file import MAGIC, VaultCorrupt, VaultKeyError, read_header
from goexd.vault.vault import Vault

TOKEN = b"tok_4f9a8b7c6d5e"


def cfg_for(state: Path, **vault: Any) -> config.Config:
    return config.load(None, {"state_dir": str(state), "vault": vault} if vault else {"state_dir": str(state)}, {})


def bearer(name: str = "gh", value: bytes = TOKEN, **kw: Any) -> SecretRequest:
    return SecretRequest(name, SecretKind.BEARER, {"value": value}, allowed_hosts=("api.github.com",), **kw)


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    return cfg_for(tmp_path / "state")


def test_first_start_creates_a_0600_vault_and_key_and_values_are_never_in_plaintext(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    # A name long enough that random ciphertext cannot contain it by chance ("gh" did, now and then).
    name = "github-deploy-token"
    vault.put(bearer(name))
    for path in (cfg.vault_path, cfg.vault_key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = cfg.vault_path.read_bytes()
    assert blob.startswith(MAGIC)
    assert TOKEN not in blob and name.encode() not in blob  # names are encrypted too
    reopened = Vault.open(cfg)
    assert [i.name for i in reopened.list_info()] == [name]
    assert reopened.get(name).values["value"] == TOKEN


def test_each_write_uses_a_fresh_nonce(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    nonces = set()
    for i in range(5):
        vault.put(bearer(overwrite=True, value=TOKEN + str(i).encode()))
        _, _, sealed = read_header(cfg.vault_path)
        nonces.add(sealed[:12])
    assert len(nonces) == 5


def test_wrong_key_is_refused_and_the_file_is_left_untouched(cfg: config.Config) -> None:
    Vault.open(cfg).put(bearer())
    before = cfg.vault_path.read_bytes()
    KeyFile(cfg.vault_key_file).create()  # a different key
    with pytest.raises(VaultKeyError, match="wrong key"):
        Vault.open(cfg)
    assert cfg.vault_path.read_bytes() == before


@pytest.mark.parametrize(
    ("offset", "error", "words"),
    [
        (-5, VaultCorrupt, "failed authentication"),  # ciphertext / tag
        (len(MAGIC) + 4, VaultCorrupt, "damaged header"),  # header JSON no longer parses
        (b'"format": 1', VaultCorrupt, "failed authentication"),  # header edited: it is authenticated data
        (b'"key_check": "', VaultKeyError, "wrong key"),
        (0, VaultCorrupt, "not a goex vault"),
    ],
)
def test_tampering_is_detected_and_refused(cfg: config.Config, offset: int | bytes, error: type, words: str) -> None:
    Vault.open(cfg).put(bearer())
    blob = bytearray(cfg.vault_path.read_bytes())
    if isinstance(offset, bytes):  # the byte right after a marker in the header
        offset = blob.index(offset) + len(offset) - (1 if offset.endswith(b"1") else -1)
    blob[offset] ^= 0x02
    cfg.vault_path.write_bytes(bytes(blob))
    with pytest.raises(error, match=words):
        Vault.open(cfg)
    assert cfg.vault_path.read_bytes() == bytes(blob)


def test_a_truncated_vault_is_refused(cfg: config.Config) -> None:
    Vault.open(cfg).put(bearer())
    cfg.vault_path.write_bytes(cfg.vault_path.read_bytes()[:40])
    with pytest.raises(VaultCorrupt, match=r"truncated|damaged"):
        Vault.open(cfg)


def test_missing_key_file_for_an_existing_vault_is_refused(cfg: config.Config) -> None:
    Vault.open(cfg)
    cfg.vault_key_file.unlink()
    with pytest.raises(VaultKeyError, match="key is missing"):
        Vault.open(cfg)


def test_a_key_file_readable_by_others_is_refused(cfg: config.Config) -> None:
    Vault.open(cfg)
    cfg.vault_key_file.chmod(0o644)
    with pytest.raises(SetupError, match="chmod 600"):
        Vault.open(cfg)


def test_passphrase_vault_opens_only_with_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for kdf in ("argon2id", "scrypt"):
        state = tmp_path / kdf
        cfg = cfg_for(state, key_source="passphrase", kdf=kdf)
        monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery")
        Vault.open(cfg).put(bearer())
        assert PASSPHRASE_ENV not in os.environ  # taken out so no child inherits it
        header, _, _ = read_header(cfg.vault_path)
        assert header.key.source == "passphrase" and header.key.kdf["name"] == kdf and header.key.kdf["salt"]
        monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
        with pytest.raises(VaultKeyError, match="wrong key or passphrase"):
            Vault.open(cfg)
        pfile = tmp_path / f"{kdf}.pass"
        pfile.write_text("correct horse battery\n")
        assert Vault.open(cfg_for(state, key_source="passphrase", kdf=kdf, passphrase_file=str(pfile))).get("gh")


def test_passphrase_source_without_a_passphrase_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="GOEX_VAULT_PASSPHRASE"):
        Vault.open(cfg_for(tmp_path, key_source="passphrase"))


def test_key_source_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Vault.open(cfg_for(tmp_path))
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery")
    with pytest.raises(SetupError, match="sealed with a keyfile key"):
        Vault.open(cfg_for(tmp_path, key_source="passphrase"))


def test_rotation_to_a_new_key_file(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(bearer())
    old_key = cfg.vault_key_file.read_bytes()
    with pytest.raises(InvalidArgument, match="new random key"):
        vault.rotate_key(b"a passphrase")
    vault.rotate_key(b"")
    assert cfg.vault_key_file.read_bytes() != old_key
    assert not cfg.vault_key_file.with_name("vault.key.next").exists()
    assert Vault.open(cfg).get("gh").values["value"] == TOKEN


def test_a_rotation_torn_before_the_vault_was_resealed_is_discarded(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(bearer())
    kf = KeyFile(cfg.vault_key_file)
    kf.stage(os.urandom(32))  # crash right after staging
    assert Vault.open(cfg).get("gh")
    assert kf.staged() is None


def test_a_rotation_torn_after_the_vault_was_resealed_is_completed(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(bearer())
    kf = KeyFile(cfg.vault_key_file)
    original_promote = KeyFile.promote
    KeyFile.promote = lambda self: None  # type: ignore[method-assign]  # crash before the promotion
    try:
        vault.rotate_key(b"")
    finally:
        KeyFile.promote = original_promote  # type: ignore[method-assign]
    assert kf.staged() is not None
    assert Vault.open(cfg).get("gh").values["value"] == TOKEN
    assert kf.staged() is None


def test_passphrase_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = cfg_for(tmp_path, key_source="passphrase", kdf="scrypt")
    monkeypatch.setenv(PASSPHRASE_ENV, "first passphrase")
    vault = Vault.open(cfg)
    vault.put(bearer())
    with pytest.raises(InvalidArgument, match="new_passphrase"):
        vault.rotate_key(b"short")
    vault.rotate_key(b"second passphrase")
    monkeypatch.setenv(PASSPHRASE_ENV, "first passphrase")
    with pytest.raises(VaultKeyError):
        Vault.open(cfg)
    monkeypatch.setenv(PASSPHRASE_ENV, "second passphrase")
    assert Vault.open(cfg).get("gh")


class DictKeyring(KeyringBackend):
    """A keyring backend through keyring's documented plugin interface (no OS keyring runs here)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.store[(service, username)]


def test_keyring_source(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, key_source="keyring")
    previous = keyring.get_keyring()
    backend = DictKeyring()
    try:
        keyring.set_keyring(fail.Keyring())  # what this machine has (no Secret Service, no Keychain)
        with pytest.raises(SetupError, match="no usable OS keyring"):
            Vault.open(cfg)
        keyring.set_keyring(backend)
        vault = Vault.open(cfg)
        vault.put(bearer())
        assert not cfg.vault_key_file.exists()
        assert [k for k in backend.store] == [("goexd", f"vault-key:{cfg.state_dir}")]
        vault.rotate_key(b"")
        assert len(backend.store) == 1  # staged entry promoted and removed
        assert Vault.open(cfg).get("gh").values["value"] == TOKEN
    finally:
        keyring.set_keyring(previous)


def test_put_rules(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    first = vault.put(bearer())
    assert first.injection == Injection(InjectionTarget.HEADER, "Authorization", "Bearer {value}")
    with pytest.raises(AlreadyExists, match="overwrite"):
        vault.put(bearer(value=b"another-token-value"))
    again = vault.put(bearer(value=b"another-token-value", overwrite=True))
    assert again.created_at == first.created_at and again.updated_at >= first.updated_at
    bad = [
        (bearer(name="a/b"), "info.name", "path separator"),
        (bearer(name="line\nbreak"), "info.name", "control character"),
        (bearer(name=".hidden"), "info.name", "not a secret name"),
        (bearer(value=b"short"), "value", "shorter than 6"),
        (bearer(value=b"tok\r\nX-Evil: 1"), "value", "line break"),
        (SecretRequest("b", SecretKind.BASIC, {"password": b"pw-123456"}), "values", "username"),
        (SecretRequest("b", SecretKind.GENERIC, {"value": TOKEN, "x": TOKEN}), "values", "no parts"),
        (
            SecretRequest("h", SecretKind.API_KEY, {"value": TOKEN}, Injection(InjectionTarget.HEADER, "X Key")),
            "info.injection.header.name",
            "header name",
        ),
        (
            SecretRequest(
                "h", SecretKind.API_KEY, {"value": TOKEN}, Injection(InjectionTarget.HEADER, "X-Key", "{nope}")
            ),
            "info.injection.header.template",
            "{nope}",
        ),
        (
            SecretRequest("e", SecretKind.GENERIC, {"value": TOKEN}, Injection(InjectionTarget.ENV, "LD_PRELOAD")),
            "info.injection.env.variable",
            "steers the sandbox",
        ),
        (
            SecretRequest("h", SecretKind.API_KEY, {"value": TOKEN}, allowed_hosts=("http://x.com/",)),
            "info.allowed_hosts[0]",
            "not scheme://host[:port]",
        ),
        (
            SecretRequest("h", SecretKind.API_KEY, {"value": TOKEN}, allowed_hosts=("x.com", "ftp://x.com")),
            "info.allowed_hosts[1]",
            "the scheme must be one of",
        ),
        (
            SecretRequest("h", SecretKind.API_KEY, {"value": TOKEN}, allowed_hosts=("x.com/path",)),
            "info.allowed_hosts[0]",
            "not a host name",
        ),
        (
            SecretRequest(
                "h", SecretKind.API_KEY, {"value": TOKEN}, allowed_hosts=tuple(f"h{i}.com" for i in range(65))
            ),
            "info.allowed_hosts",
            "at most 64",
        ),
        (
            SecretRequest(
                "h", SecretKind.API_KEY, {"value": TOKEN}, Injection(InjectionTarget.HEADER, "X-" + "k" * 200)
            ),
            "info.injection.header.name",
            "longer than 128",
        ),
    ]
    before = cfg.vault_path.read_bytes()
    for req, fld, words in bad:
        with pytest.raises(InvalidArgument) as exc:
            vault.put(req)
        assert exc.value.field == fld and words in exc.value.problem, (req, exc.value)
    assert cfg.vault_path.read_bytes() == before
    with pytest.raises(NotFound, match="secret 'nope' not found"):
        vault.delete("nope")


def test_resolve_checks_scheme_host_and_port(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(bearer())
    vault.put(SecretRequest("wild", SecretKind.API_KEY, {"value": TOKEN + b"2"}, allowed_hosts=("*.example.com:8443",)))
    vault.put(SecretRequest("nowhere", SecretKind.API_KEY, {"value": TOKEN + b"3"}))
    vault.put(
        SecretRequest(
            "plain",
            SecretKind.API_KEY,
            {"value": TOKEN + b"4"},
            allowed_hosts=("HTTP://127.0.0.1:5000", "http://h.test"),
        )
    )
    vault.put(SecretRequest("db", SecretKind.DSN, {"value": TOKEN + b"5"}, allowed_hosts=("postgres://db.test",)))
    assert vault.info("plain").allowed_hosts == ("http://127.0.0.1:5000", "http://h.test")
    assert vault.info("db").allowed_hosts == ("postgresql://db.test",)
    for name, scheme, host, port in (
        ("gh", "https", "api.github.com", 443),
        ("gh", "postgresql", "api.github.com", 5432),  # a bare entry: https or a database, default ports
        ("wild", "https", "a.example.com", 8443),
        ("plain", "http", "127.0.0.1", 5000),
        ("plain", "http", "h.test", 80),
        ("db", "postgresql", "db.test", 5432),
    ):
        assert vault.resolve(name, scheme, host, port).name == name
    for name, scheme, host, port, words in (
        ("gh", "https", "evil.com", 443, "may not be sent to https://evil.com:443; it is allowed for api.github.com"),
        # A host without a port is the scheme's default port, not any port (values went out in clear text).
        ("gh", "https", "api.github.com", 8443, "https://api.github.com:8443"),
        ("gh", "http", "api.github.com", 80, "plain http needs an http:// entry"),
        ("gh", "http", "api.github.com", 443, "http://api.github.com:443"),
        ("wild", "https", "example.com", 8443, "allowed for *.example.com:8443"),
        ("wild", "https", "a.example.com", 443, "a.example.com:443"),
        ("wild", "http", "a.example.com", 8443, "http://a.example.com:8443"),
        ("plain", "https", "127.0.0.1", 5000, "https://127.0.0.1:5000"),
        ("plain", "http", "127.0.0.1", 5001, "http://127.0.0.1:5001"),
        ("plain", "http", "h.test", 8080, "http://h.test:8080"),
        ("db", "https", "db.test", 443, "https://db.test:443"),
        ("db", "postgresql", "db.test", 5433, "postgresql://db.test:5433"),
        ("nowhere", "https", "api.github.com", 443, "it is allowed for no host"),
    ):
        with pytest.raises(PermissionDenied) as exc:
            vault.resolve(name, scheme, host, port)
        assert words in str(exc.value) and repr(name) in str(exc.value)
    with pytest.raises(NotFound):
        vault.resolve("missing", "https", "api.github.com", 443)


@pytest.mark.parametrize(
    "template",
    [
        "{value:>100000000}",  # a format spec: once made one header 100 MB
        "{",
        "}",
        "Bearer {value",
        "{value!r}",
        "{value.__class__}",
        "{value[0]}",
        "{0}",
        "{}",
        "{ value }",
        "Bearer {value}\r\nX-Evil: 1",
        "Bearer {value}\x00",
        "B\u00e9arer {value}",
        "{value}" + "x" * 300,
        "no field at all",
        "{{value}}",  # escaped braces only: no field
    ],
)
def test_templates_are_literal_text_and_fields_only(cfg: config.Config, template: str) -> None:
    vault = Vault.open(cfg)
    before = cfg.vault_path.read_bytes()
    for target, fld in ((InjectionTarget.HEADER, "header"), (InjectionTarget.QUERY, "query")):
        req = SecretRequest("t", SecretKind.API_KEY, {"value": TOKEN}, Injection(target, "X-Key", template))
        with pytest.raises(InvalidArgument) as exc:
            vault.put(req)
        assert exc.value.field == f"info.injection.{fld}.template"
        assert len(str(exc.value)) < 600  # a long template is quoted cut short
    assert cfg.vault_path.read_bytes() == before and vault.names() == []


def test_good_templates_render_with_escapes_and_basic(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(
        SecretRequest(
            "t",
            SecretKind.API_KEY,
            {"value": TOKEN},
            Injection(InjectionTarget.HEADER, "X-Key", "{{literal}} k={value};v={value}"),
            ("h.test",),
        )
    )
    vault.put(SecretRequest("b", SecretKind.BASIC, {"username": b"ann", "password": b"pw-123456"}, None, ("h.test",)))
    assert (
        render("{{literal}} k={value};v={value}", vault.get("t"))
        == f"{{literal}} k={TOKEN.decode()};v={TOKEN.decode()}"
    )
    assert render("Basic {basic}|{username}", vault.get("b")) == "Basic YW5uOnB3LTEyMzQ1Ng==|ann"


def test_a_stored_bad_template_does_not_stop_the_vault_and_refuses_only_its_secret(cfg: config.Config) -> None:
    """A vault written before templates were checked strictly: it opens; the secret says what is wrong;
    using it is FAILED_PRECONDITION; other secrets work."""
    vault = Vault.open(cfg)
    vault.put(bearer())
    old = Secret(
        "old",
        SecretKind.API_KEY,
        {"value": TOKEN + b"x"},
        Injection(InjectionTarget.HEADER, "X-Key", "{value:>99999999}"),
        ("api.github.com",),
        0.0,
        0.0,
    )
    vault._commit({**vault._secrets, "old": old}, [])  # as an older goexd would have stored it
    reopened = Vault.open(cfg)
    assert "format specs" in reopened.info("old").problem and reopened.info("gh").problem == ""
    with pytest.raises(FailedPrecondition, match=r"secret 'old' cannot be used: its template .*store it again"):
        reopened.resolve("old", "https", "api.github.com", 443)
    with pytest.raises(FailedPrecondition):
        render("{value:>99999999}", reopened.get("old"))
    assert reopened.resolve("gh", "https", "api.github.com", 443).name == "gh"
    assert reopened.redactor(TOKEN + b"x") == b"[secret:old]"  # still redacted


def test_replaced_and_deleted_values_stay_redacted(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(bearer())
    vault.put(bearer(value=b"second-token-value", overwrite=True))
    vault.delete("gh")
    out = vault.redactor(TOKEN + b" " + b"second-token-value")
    assert out == b"[secret:gh] [secret:gh]"
    assert Vault.open(cfg).redactor(TOKEN) == b"[secret:gh]"  # remembered across restarts, encrypted


def test_a_failed_write_changes_nothing(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    vault.put(bearer())
    tmp = cfg.vault_path.with_name(f".{cfg.vault_path.name}.{os.getpid()}.tmp")
    tmp.mkdir()  # the temp file cannot be created
    try:
        with pytest.raises(OSError):
            vault.put(bearer(name="other", value=b"other-token-value"))
    finally:
        tmp.rmdir()
    assert [i.name for i in vault.list_info()] == ["gh"]
    assert vault.redactor(b"other-token-value") == b"other-token-value"
    assert [i.name for i in Vault.open(cfg).list_info()] == ["gh"]


def test_concurrent_puts_lose_no_entry(cfg: config.Config) -> None:
    vault = Vault.open(cfg)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(10):
                vault.put(bearer(name=f"s{t}-{i}", value=f"value-{t}-{i}-xyz".encode()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(Vault.open(cfg).list_info()) == 160
