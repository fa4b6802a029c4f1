"""The vault's on-disk format: one AES-256-GCM sealed file, replaced atomically.

    MAGIC | u32 header length | header (JSON) | 12-byte nonce | ciphertext + 16-byte tag

The header (authenticated as associated data, not encrypted) says how the key is obtained
(key file, keyring, or a passphrase with its KDF parameters) and carries a key check value,
so that a wrong key and a tampered file are told apart in the error. A fresh random nonce is
used for every write. Writes go to a temporary file that is fsynced and renamed over the old
one, and the directory is fsynced, so a crash leaves either the old or the new vault.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from goexd.domain.errors import SetupError

MAGIC = b"GOEX-VAULT\x00\x01"
KEY_BYTES = 32
NONCE_BYTES = 12
# ~75 ms (Argon2id) / ~110 ms (scrypt) on the reference machine; above OWASP's minimums.
ARGON2ID_DEFAULTS = {"iterations": 2, "memory_kib": 32 * 1024, "lanes": 1}
SCRYPT_DEFAULTS = {"n": 2**15, "r": 8, "p": 1}


class VaultKeyError(SetupError):
    """The key or passphrase does not open this vault."""


class VaultCorrupt(SetupError):
    """The file is not a vault, or it failed authentication (modified or damaged)."""


@dataclass(frozen=True)
class KeySpec:
    """How the key of a vault file is obtained; stored in its header."""

    source: str  # "keyfile" | "keyring" | "passphrase"
    kdf: dict[str, Any] = field(default_factory=dict)  # passphrase only: name, salt (b64) and parameters

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "kdf": self.kdf} if self.kdf else {"source": self.source}


def new_kdf(name: str) -> dict[str, Any]:
    salt = base64.b64encode(os.urandom(16)).decode()
    params = ARGON2ID_DEFAULTS if name == "argon2id" else SCRYPT_DEFAULTS
    return {"name": name, "salt": salt, **params}


def derive_key(passphrase: bytes, kdf: dict[str, Any]) -> bytes:
    salt = base64.b64decode(kdf["salt"])
    if kdf["name"] == "argon2id":
        return Argon2id(
            salt=salt,
            length=KEY_BYTES,
            iterations=int(kdf["iterations"]),
            lanes=int(kdf["lanes"]),
            memory_cost=int(kdf["memory_kib"]),
        ).derive(passphrase)
    if kdf["name"] == "scrypt":
        return Scrypt(salt=salt, length=KEY_BYTES, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])).derive(passphrase)
    raise VaultCorrupt(f"unknown key derivation function {kdf['name']!r} in the vault header")


def key_check(key: bytes) -> str:
    return base64.b64encode(hmac.new(key, b"goex vault key check", hashlib.sha256).digest()[:16]).decode()


@dataclass(frozen=True)
class Header:
    key: KeySpec
    check: str

    def encode(self) -> bytes:
        return json.dumps({"format": 1, "key": self.key.to_json(), "key_check": self.check}, sort_keys=True).encode()


def read_header(path: Path) -> tuple[Header, bytes, bytes]:
    """-> (header, associated data, nonce + ciphertext). Raises VaultCorrupt for anything not a vault."""
    blob = path.read_bytes()
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise VaultCorrupt(f"{path} is not a goex vault file (bad magic); refusing to start and leaving it untouched")
    (hlen,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    hend = len(MAGIC) + 4 + hlen
    if hend + NONCE_BYTES + 16 > len(blob):
        raise VaultCorrupt(f"{path} is truncated; refusing to start and leaving it untouched")
    try:
        raw = json.loads(blob[len(MAGIC) + 4 : hend])
        header = Header(KeySpec(raw["key"]["source"], raw["key"].get("kdf", {})), raw["key_check"])
    except (ValueError, KeyError, TypeError):
        raise VaultCorrupt(f"{path} has a damaged header; refusing to start and leaving it untouched") from None
    return header, blob[:hend], blob[hend:]


def open_sealed(path: Path, key: bytes) -> bytes:
    """Decrypt and authenticate the vault at `path`; never modifies it."""
    header, aad, sealed = read_header(path)
    if not hmac.compare_digest(header.check, key_check(key)):
        raise VaultKeyError(
            f"the {header.key.source} key does not open the vault {path} (wrong key or passphrase); "
            "refusing to start and leaving it untouched"
        )
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise VaultCorrupt(
            f"the vault {path} failed authentication: it was modified or damaged; "
            "refusing to start and leaving it untouched"
        ) from None


def seal(path: Path, key: bytes, key_spec: KeySpec, plaintext: bytes) -> None:
    """Encrypt `plaintext` under `key` with a fresh nonce and atomically replace `path` (0600)."""
    header = Header(key_spec, key_check(key)).encode()
    aad = MAGIC + struct.pack(">I", len(header)) + header
    nonce = os.urandom(NONCE_BYTES)
    blob = aad + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)
    write_atomic(path, blob)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
