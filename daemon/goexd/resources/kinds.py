"""Every resource kind goexd ships, registered in one place: adding a kind adds one line here."""

from __future__ import annotations

from goexd.resources.fs import kind as fs
from goexd.resources.http import kind as http
from goexd.resources.postgres import kind as postgres
from goexd.resources.registry import Host, Registry
from goexd.resources.sqlite import kind as sqlite


def registry(host: Host) -> Registry:
    found = Registry()
    fs.register(found, host)
    sqlite.register(found, host)
    postgres.register(found, host)
    http.register(found, host)
    return found.seal()
