"""The proxy's own CA, made in memory at start, and the leaf certificates it issues.

CONNECT tunnels are terminated by the proxy (it must see requests to inject secrets and
refuse what is not allowed), so it presents a certificate for the requested host signed
by this CA, which is the only CA the sandbox trusts. The CA key never leaves the
process: only its public certificate is written out (for the sandbox). A new CA per
daemon start means a leaked certificate is useless after a restart.

`ssl` loads certificates only from files; leaf keys go through an anonymous memory file
(memfd), never the disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
import time
from collections import OrderedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "goexd egress CA"
CA_VALIDITY = datetime.timedelta(days=3650)  # lives only as long as the daemon process anyway
LEAF_VALIDITY = datetime.timedelta(days=7)
LEAF_REISSUE_S = 86400.0  # well before expiry, so a long-running daemon never serves a stale leaf
CLOCK_SKEW = datetime.timedelta(hours=1)
MAX_CACHED_LEAVES = 512


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class CertificateAuthority:
    """An EC P-256 CA held in memory; issues cached per-host TLS server contexts."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        now = _now()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        # One key for every leaf: all of them live in this process only, like the CA key.
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key_pem = self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._contexts: OrderedDict[str, tuple[float, ssl.SSLContext]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, host: str) -> x509.Certificate:
        """A server certificate for `host` (a DNS name or an IP address)."""
        host = host.lower().strip("[]")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(self._aki, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._leaf_key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a leaf for `host`; cached, re-issued daily."""
        key = host.lower().strip("[]")
        with self._lock:
            cached = self._contexts.get(key)
            if cached is not None and time.monotonic() - cached[0] < LEAF_REISSUE_S:
                self._contexts.move_to_end(key)
                return cached[1]
        ctx = self._context_for(self.issue(key))
        with self._lock:
            self._contexts[key] = (time.monotonic(), ctx)
            self._contexts.move_to_end(key)
            while len(self._contexts) > MAX_CACHED_LEAVES:
                self._contexts.popitem(last=False)
        return ctx

    def _context_for(self, leaf: x509.Certificate) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # The proxy speaks HTTP/1.1 only: a client offering h2 must not get it.
        ctx.set_alpn_protocols(["http/1.1"])
        fd = os.memfd_create("goex-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, leaf.public_bytes(serialization.Encoding.PEM) + self._leaf_key_pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return ctx
