"""The daemon's kernel session keyring, left behind at start.

Keys an operator's login session holds (`keyctl add ... @s`) would otherwise be the
session keyring of goexd and of every process it starts. Sandboxes cannot call keyctl,
add_key or request_key at all (sandbox/seccomp.py); this is the second line: goexd joins
a new anonymous session keyring, so there is nothing of the operator's to find even in
its own children.
"""

from __future__ import annotations

import ctypes
import logging

import pyseccomp as sc

log = logging.getLogger(__name__)

KEYCTL_JOIN_SESSION_KEYRING = 1


def join_fresh_session_keyring() -> bool:
    """Join a new, empty, anonymous session keyring; False (logged) where the kernel refuses."""
    try:
        number = sc.resolve_syscall(sc.system_arch(), "keyctl")
        libc = ctypes.CDLL(None, use_errno=True)
        serial = libc.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None)
    except (OSError, AttributeError) as e:
        log.warning("could not leave the inherited session keyring: %s", e)
        return False
    if serial < 0:
        log.warning("could not leave the inherited session keyring: errno %d", ctypes.get_errno())
        return False
    return True
