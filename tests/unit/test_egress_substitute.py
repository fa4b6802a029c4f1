"""substitute(): placeholders checked and filled in, declared secrets added; against a real vault."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import pytest

from goexd import config
from goexd.egress.substitute import Outgoing, Refused, Request, placeholder, substitute
from goexd.vault.models import Injection, InjectionTarget, OAuthState, Secret, SecretKind, SecretRequest
from goexd.vault.vault import Vault

HOST, PORT = "api.example.com", 443
BEARER = b"bearer-value-1"
QUERY = b"q/value+1 2"  # needs URL-encoding
HDR = b"hdr-value-1"
BASIC_USER, BASIC_PW = b"alice", b"basic-pw-1"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    v = Vault.open(config.load(None, {"state_dir": str(tmp_path)}, {}))
    hosts = (HOST,)
    v.put(SecretRequest("BEARER", SecretKind.BEARER, {"value": BEARER}, allowed_hosts=hosts))
    v.put(
        SecretRequest(
            "QUERY", SecretKind.API_KEY, {"value": QUERY}, Injection(InjectionTarget.QUERY, "key"), allowed_hosts=hosts
        )
    )
    v.put(
        SecretRequest(
            "my.hdr",
            SecretKind.GENERIC,
            {"value": HDR},
            Injection(InjectionTarget.HEADER, "X-Key", "K={value};"),
            hosts,
        )
    )
    v.put(SecretRequest("BASIC", SecretKind.BASIC, {"username": BASIC_USER, "password": BASIC_PW}, allowed_hosts=hosts))
    v.put(SecretRequest("PLAIN", SecretKind.GENERIC, {"value": b"plain-value-1"}, allowed_hosts=hosts))
    v.put(SecretRequest("OTHER", SecretKind.GENERIC, {"value": b"other-value-1"}, allowed_hosts=("other.example",)))
    v.put(
        SecretRequest(
            "REVOKED",
            SecretKind.OAUTH2,
            {"access_token": b"oauth-token-1"},
            allowed_hosts=hosts,
            oauth=OAuthState("https://auth.example/token", "client", problem="the refresh token was revoked"),
        )
    )
    return v


def sub(
    vault: Vault,
    declared: tuple[str, ...],
    url: str = "https://api.example.com/v1/items",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    host: str = HOST,
    port: int = PORT,
) -> Outgoing:
    return substitute(Request("GET", url, headers or [], body), declared, host, port, vault.resolve)


def header(out: Outgoing, name: bytes) -> list[bytes]:
    return [v for k, v in out.headers if k.lower() == name.lower()]


def test_placeholders_in_header_values_become_raw_values(vault: Vault) -> None:
    out = sub(vault, ("PLAIN", "my.hdr"), headers=[(b"X-A", b"a goex-secret:PLAIN b goex-secret:my.hdr")])
    assert header(out, b"X-A") == [b"a plain-value-1 b " + HDR]
    assert out.secrets_used == ("PLAIN", "my.hdr")


def test_declared_header_secrets_are_added_by_template_when_absent(vault: Vault) -> None:
    out = sub(vault, ("BEARER", "my.hdr", "BASIC"))
    # BEARER and BASIC both inject Authorization: the first declared one gets it.
    assert header(out, b"Authorization") == [b"Bearer " + BEARER]
    assert header(out, b"X-Key") == [b"K=" + HDR + b";"]
    assert out.secrets_used == ("BEARER", "my.hdr")


def test_a_header_already_present_is_not_added_again_whatever_its_case(vault: Vault) -> None:
    out = sub(vault, ("BEARER",), headers=[(b"authorization", b"Token mine")])
    assert header(out, b"Authorization") == [b"Token mine"]
    assert out.secrets_used == ()


def test_basic_secrets_render_their_template(vault: Vault) -> None:
    out = sub(vault, ("BASIC",))
    assert header(out, b"Authorization") == [b"Basic " + base64.b64encode(BASIC_USER + b":" + BASIC_PW)]


def test_query_placeholders_are_replaced_url_encoded_for_query_secrets_only(vault: Vault) -> None:
    url = "https://api.example.com/x?key=goex-secret:QUERY&alt=goex-secret%3AQUERY&h=goex-secret:PLAIN#frag"
    out = sub(vault, ("QUERY", "PLAIN"), url=url)
    assert out.url == "https://api.example.com/x?key=q%2Fvalue%2B1%202&alt=q%2Fvalue%2B1%202&h=goex-secret:PLAIN#frag"
    assert out.secrets_used == ("QUERY",)


def test_query_secrets_are_added_when_their_parameter_is_absent(vault: Vault) -> None:
    assert sub(vault, ("QUERY",)).url == "https://api.example.com/v1/items?key=q%2Fvalue%2B1%202"
    assert sub(vault, ("QUERY",), url="https://api.example.com/?a=1").url == (
        "https://api.example.com/?a=1&key=q%2Fvalue%2B1%202"
    )
    kept = sub(vault, ("QUERY",), url="https://api.example.com/?key=mine")
    assert kept.url == "https://api.example.com/?key=mine" and kept.secrets_used == ()


def test_placeholders_in_the_path_and_body_are_checked_but_left_alone(vault: Vault) -> None:
    body = b'{"token": "goex-secret:PLAIN"}'
    out = sub(vault, ("PLAIN",), url="https://api.example.com/goex-secret:PLAIN", body=body)
    assert out.url == "https://api.example.com/goex-secret:PLAIN"
    assert out.secrets_used == ()


@pytest.mark.parametrize(
    ("where", "kwargs"),
    [
        ("header", {"headers": [(b"X-A", b"goex-secret:PLAIN")]}),
        ("query", {"url": "https://api.example.com/?a=goex-secret%3aPLAIN"}),
        ("path", {"url": "https://api.example.com/goex-secret:PLAIN"}),
        ("body", {"body": b"a=goex-secret%3APLAIN"}),
    ],
)
def test_an_undeclared_secret_anywhere_refuses_the_request(vault: Vault, where: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(Refused, match=r"'PLAIN' is not declared .* api\.example\.com:443"):
        sub(vault, ("BEARER",), **kwargs)  # type: ignore[arg-type]


def test_a_secret_not_allowed_for_the_host_refuses_the_request(vault: Vault) -> None:
    with pytest.raises(Refused, match=r"'OTHER' may not be sent to api\.example\.com:443; it is allowed for other"):
        sub(vault, ("OTHER",), headers=[(b"X-A", b"goex-secret:OTHER")])


def test_a_declared_secret_for_another_host_is_simply_not_added(vault: Vault) -> None:
    out = sub(vault, ("BEARER",), host="elsewhere.example")
    assert header(out, b"Authorization") == [] and out.secrets_used == ()


def test_a_missing_secret_refuses_only_when_named_by_a_placeholder(vault: Vault) -> None:
    assert sub(vault, ("GONE",)).secrets_used == ()
    with pytest.raises(Refused, match="'GONE' does not exist"):
        sub(vault, ("GONE",), headers=[(b"X-A", b"goex-secret:GONE")])


def test_an_unusable_secret_meant_for_the_host_refuses_rather_than_going_without(vault: Vault) -> None:
    with pytest.raises(Refused, match="revoked"):
        sub(vault, ("REVOKED",))
    assert sub(vault, ("REVOKED",), host="elsewhere.example").secrets_used == ()


def test_each_secret_is_resolved_once_per_request(vault: Vault) -> None:
    calls: Counter[str] = Counter()

    def counting(name: str, host: str, port: int) -> Secret:
        calls[name] += 1
        return vault.resolve(name, host, port)

    req = Request("GET", "https://api.example.com/?key=goex-secret:QUERY", [(b"A", b"goex-secret:QUERY")], b"")
    substitute(req, ("QUERY", "BEARER"), HOST, PORT, counting)
    assert calls == {"QUERY": 1, "BEARER": 1}


def test_ipv6_targets_are_named_with_brackets(vault: Vault) -> None:
    with pytest.raises(Refused, match=r"\[::1\]:8080"):
        sub(vault, (), headers=[(b"X", b"goex-secret:PLAIN")], host="::1", port=8080)


def test_text_that_is_not_a_placeholder_is_left_alone(vault: Vault) -> None:
    out = sub(vault, (), headers=[(b"X", b"goex-secret: PLAIN"), (b"Y", b"goex-secret:")])
    assert out.headers == ((b"X", b"goex-secret: PLAIN"), (b"Y", b"goex-secret:"))
    assert placeholder("PLAIN") == "goex-secret:PLAIN"
