"""IP networks as goexd's config and rules name them (egress.allowed_addresses): parsed in one place for the
config's check at start and for the address rule that enforces them (egress/addresses.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs ("127.0.0.1/32", "10.1.0.0/16", "::1"); ValueError naming the bad one."""
    out: list[IPNetwork] = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an address or network (like 127.0.0.1/32): {exc}") from None
    return tuple(out)
