"""sd_notify(3): tell a service manager (systemd, Type=notify) that goexd is ready or stopping.

The protocol is one datagram of "KEY=value" lines to the Unix socket named by $NOTIFY_SOCKET (a path,
or "@name" for an abstract socket); the stdlib does it in a few lines, so no library (sdnotify is
unmaintained since 2017; systemd-python needs libsystemd's headers to build).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import MutableMapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends states to $NOTIFY_SOCKET; does nothing when goexd was not started by a service manager."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        # Taken out of the environment: no child (a sandbox, git, psql) should talk to systemd as goexd.
        raw = environ.pop("NOTIFY_SOCKET", "")
        self.address = "\0" + raw[1:] if raw.startswith("@") else raw
        if raw and not raw.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%s ignored: only a path or an @abstract name is supported", raw)
            self.address = ""

    def notify(self, *states: str) -> bool:
        """Send `states` ("READY=1", "STATUS=...") as one datagram; False if there is nobody to tell."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(states).encode())
        except OSError as exc:
            log.warning("could not notify the service manager (%s): %s", states[0], exc)
            return False
        return True
