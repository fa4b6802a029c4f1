"""Where the vault key comes from: a 0600 key file, the OS keyring, or a passphrase.

Key files and keyring entries support a two-phase rotation: the new key is staged
next to the current one, the vault is re-sealed under it, then it is promoted. If the
daemon dies in between, opening finds which of the two keys the vault was sealed with
and completes or discards the rotation, so no crash can leave a vault without its key.
"""

from __future__ import annotations

import base64
import getpass
import os
import stat
import sys
from pathlib import Path
from typing import Protocol

from goexd.domain.errors import SetupError
from goexd.vault.sealed_file import KEY_BYTES, write_atomic

PASSPHRASE_ENV = "GOEX_VAULT_PASSPHRASE"  # noqa: S105 - the variable's name, not a passphrase


class StoredKey(Protocol):
    """A random key kept somewhere outside the vault file, with room for a staged successor."""

    source: str

    def current(self) -> bytes | None: ...
    def staged(self) -> bytes | None: ...
    def create(self) -> bytes: ...
    def stage(self, key: bytes) -> None: ...
    def promote(self) -> None: ...
    def discard_staged(self) -> None: ...


class KeyFile:
    source = "keyfile"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_path = path.with_name(path.name + ".next")

    def _read(self, path: Path) -> bytes | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SetupError(
                f"vault key file {path} is accessible by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        raw = path.read_bytes().strip()
        try:
            key = base64.b64decode(raw, validate=True)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise SetupError(f"vault key file {path} does not hold a base64 {KEY_BYTES}-byte key")
        return key

    def current(self) -> bytes | None:
        return self._read(self.path)

    def staged(self) -> bytes | None:
        return self._read(self.next_path)

    def create(self) -> bytes:
        key = os.urandom(KEY_BYTES)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, base64.b64encode(key) + b"\n")
        return key

    def stage(self, key: bytes) -> None:
        write_atomic(self.next_path, base64.b64encode(key) + b"\n")

    def promote(self) -> None:
        os.replace(self.next_path, self.path)

    def discard_staged(self) -> None:
        self.next_path.unlink(missing_ok=True)


class KeyringKey:
    """The key in the OS keyring (Secret Service, macOS Keychain, ...) via the `keyring` package."""

    source = "keyring"

    def __init__(self, service: str, account: str) -> None:
        import keyring  # noqa: PLC0415 - optional backend, imported only when configured
        from keyring.backends import fail  # noqa: PLC0415

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring):
            raise SetupError(
                f"vault.key_source = keyring, but no usable OS keyring was found (keyring backend: {backend!r}); "
                "use vault.key_source = keyfile or passphrase"
            )
        self._kr = keyring
        self.service = service
        self.account = account

    def _get(self, account: str) -> bytes | None:
        raw = self._kr.get_password(self.service, account)
        if raw is None:
            return None
        key = base64.b64decode(raw)
        if len(key) != KEY_BYTES:
            raise SetupError(f"keyring entry {self.service}/{account} does not hold a {KEY_BYTES}-byte key")
        return key

    def current(self) -> bytes | None:
        return self._get(self.account)

    def staged(self) -> bytes | None:
        return self._get(self.account + ".next")

    def create(self) -> bytes:
        key = os.urandom(KEY_BYTES)
        self._kr.set_password(self.service, self.account, base64.b64encode(key).decode())
        return key

    def stage(self, key: bytes) -> None:
        self._kr.set_password(self.service, self.account + ".next", base64.b64encode(key).decode())

    def promote(self) -> None:
        staged = self.staged()
        if staged is not None:
            self._kr.set_password(self.service, self.account, base64.b64encode(staged).decode())
            self.discard_staged()

    def discard_staged(self) -> None:
        if self.staged() is not None:
            self._kr.delete_password(self.service, self.account + ".next")


def read_passphrase(passphrase_file: Path | None) -> bytes:
    """From the configured file, else $GOEX_VAULT_PASSPHRASE (then removed from the environment), else a prompt."""
    if passphrase_file is not None:
        try:
            value = passphrase_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise SetupError(f"vault.passphrase_file {passphrase_file}: {exc.strerror}") from None
    elif PASSPHRASE_ENV in os.environ:
        # Children (sandboxes, git) must never inherit it.
        value = os.environ.pop(PASSPHRASE_ENV).encode()
    elif sys.stdin.isatty():
        value = getpass.getpass("goexd vault passphrase: ").encode()
    else:
        raise SetupError(
            f"vault.key_source = passphrase, but no passphrase was given: set vault.passphrase_file or "
            f"${PASSPHRASE_ENV}, or start goexd on a terminal"
        )
    if not value:
        raise SetupError("the vault passphrase is empty")
    return value
