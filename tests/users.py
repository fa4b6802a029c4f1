"""Unprivileged system users the suite runs services as when it runs as root.

PostgreSQL refuses to run as root (`goex-pg`), and the security suite runs goexd as an
unprivileged user too (`goex-sec`). Each is created with useradd the first time and kept.
"""

from __future__ import annotations

import pwd
import subprocess


class UserSetupError(RuntimeError):
    pass


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The system user `name` (no home, no login shell), created with useradd if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    argv = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"]
    r = subprocess.run([*argv, name], capture_output=True, text=True, check=False)
    try:  # another suite may have created it meanwhile (useradd then fails): look again
        return pwd.getpwnam(name)
    except KeyError:
        raise UserSetupError(f"cannot create the system user {name}: {r.stderr.strip()}") from None
