"""Which IP addresses goexd connects out to: public ones, and special ones only where its own config says.

Everything that leaves goexd over HTTP (the egress proxy for sandboxed code, declarative http
resources, their pre-images, inverses and checks) resolves a host name once, here, refuses the
special-purpose addresses below unless the daemon's `egress.allowed_addresses` holds a network
that contains them, and then connects to an address it checked (goexd.egress.dial), so a name
cannot resolve to something else between the check and the connection (DNS rebinding).

An IPv6 address that embeds an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged by
the IPv4 address it carries, so `[::ffff:127.0.0.1]` is loopback. Numeric forms a resolver accepts
(`127.1`, `2130706433`, `0x7f000001`) reach the check as the address they stand for.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from goexd.domain.networks import IPNetwork, parse_networks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(n), what) for n, what in pairs)


# Special-purpose ranges (IANA registries, RFC 6890) goexd does not connect to on its own accord.
SPECIAL_V4 = _nets(
    ("0.0.0.0/8", "unspecified / this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (incl. the cloud metadata address 169.254.169.254)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved / broadcast"),
)
SPECIAL_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo (carries an IPv4 address)"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
# IPv6 forms that carry an IPv4 address in their low or middle bits.
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_COMPAT = ipaddress.ip_network("::/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class AddressRefused(Exception):
    """A host resolved only to addresses goexd may not connect to; nothing was sent."""


def embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, if it carries one."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _MAPPED or (ip in _COMPAT and int(ip) > 1):  # ::ffff:a.b.c.d, ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in n for n in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def normalize(ip: IPAddress) -> IPAddress:
    """The IPv4 address for an IPv4-mapped one (what the kernel connects to); otherwise `ip`."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def special(ip: IPAddress) -> str | None:
    """What kind of special-purpose address `ip` is, or None for an ordinary (public) one."""
    v4 = embedded_v4(ip)
    if v4 is not None:
        what = special(v4)
        return f"{what}, as {ip}" if what is not None else None
    table = SPECIAL_V4 if isinstance(ip, ipaddress.IPv4Address) else SPECIAL_V6
    return next((what for net, what in table if ip in net), None)


@dataclass(frozen=True)
class AddressRule:
    """The daemon's `egress.allowed_addresses`: special addresses it may connect to after all."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, items: Sequence[str]) -> AddressRule:
        return cls(parse_networks(items))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why goexd does not connect to `ip`, or None when it may."""
        ip = normalize(ip)
        what = special(ip)
        if what is None or any(ip.version == n.version and ip in n for n in self.allowed):
            return None
        return f"{ip} is {what}"


def _address(sockaddr: tuple[object, ...]) -> IPAddress:
    host = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone ("fe80::1%eth0") is not part of the address
    return ipaddress.ip_address(host)


def permitted(rule: AddressRule, host: str, port: int, infos: Sequence[tuple[object, ...]]) -> list[str]:
    """The addresses of getaddrinfo's answer goexd may connect to, in its order; AddressRefused if none."""
    out: list[str] = []
    refused: list[str] = []
    for info in infos:
        sockaddr = info[4]
        assert isinstance(sockaddr, tuple)
        ip = _address(sockaddr)
        why = rule.refusal(ip)
        if why is not None:
            refused.append(why)
        elif (text := str(normalize(ip))) not in out:
            out.append(text)
    if not out:
        reasons = "; ".join(dict.fromkeys(refused)) or "it has no address"
        raise AddressRefused(
            f"{host}:{port} resolves to no address goexd may connect to ({reasons}); special-purpose addresses "
            "(loopback, private, link-local, ...) are reached only when the daemon's egress.allowed_addresses "
            "holds them"
        )
    return out


def lookup(host: str, port: int) -> list[tuple[object, ...]]:
    """getaddrinfo for a TCP connection (blocking); OSError when the name does not resolve."""
    return list(socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))
