"""The proxy CA and its leaves: certificate contents, and real TLS handshakes over socket pairs."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from goexd.egress.tls import CA_COMMON_NAME, CertificateAuthority


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def test_the_ca_is_a_self_signed_p256_ca(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    assert cert.issuer == cert.subject
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    cert.verify_directly_issued_by(cert)
    assert b"PRIVATE" not in ca.cert_pem


def test_every_start_makes_a_new_ca() -> None:
    assert CertificateAuthority().cert_pem != CertificateAuthority().cert_pem


@pytest.mark.parametrize(
    ("host", "san"),
    [
        ("api.example.com", x509.DNSName("api.example.com")),
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("[::1]", x509.IPAddress(ipaddress.ip_address("::1"))),
    ],
)
def test_leaves_name_their_host_and_are_signed_by_the_ca(
    ca: CertificateAuthority, host: str, san: x509.GeneralName
) -> None:
    leaf = ca.issue(host)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == x509.SubjectAlternativeName(
        [san]
    )
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    leaf.verify_directly_issued_by(ca.certificate)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> str | None:
    """A real TLS handshake over a socket pair; the ALPN protocol the client got."""
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=server_hostname) as c:
            proto = c.selected_alpn_protocol()
            c.sendall(b"x")
            return proto
    finally:
        t.join(5)
        a.close()


def test_a_client_trusting_the_ca_accepts_the_leaf_and_gets_http_1_1(ca: CertificateAuthority) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=ca.cert_pem.decode())
    client.set_alpn_protocols(["h2", "http/1.1"])
    assert handshake(ca.server_context("api.example.com"), client, "api.example.com") == "http/1.1"


def test_the_leaf_does_not_pass_for_another_host(ca: CertificateAuthority) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=ca.cert_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(ca.server_context("api.example.com"), client, "other.example.com")


def test_a_client_with_only_the_system_cas_refuses_the_leaf(ca: CertificateAuthority) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(ca.server_context("api.example.com"), ssl.create_default_context(), "api.example.com")


def test_server_contexts_are_cached_per_host(ca: CertificateAuthority) -> None:
    first = ca.server_context("cache.example.com")
    assert ca.server_context("CACHE.example.com") is first
    assert ca.server_context("other.example.com") is not first
