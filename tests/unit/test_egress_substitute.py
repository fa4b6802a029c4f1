"""substitute(): placeholders checked and filled in, declared secrets added; against a real vault."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import pytest

from goexd import config
from goexd.domain.secrets import Injection, InjectionTarget, OAuthState, Secret, SecretKind, SecretRequest
from goexd.egress.substitute import Outgoing, Refused, Request, placeholder, substitute
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
            "ENV", SecretKind.API_KEY, {"value": b"env-value-1"}, Injection(InjectionTarget.ENV, "ENV_TOKEN"), hosts
        )
    )
    v.put(SecretRequest("DSN", SecretKind.DSN, {"value": b"dsn-value-1"}, allowed_hosts=hosts))
    v.put(
        SecretRequest(
            "PLAINHTTP",
            SecretKind.BEARER,
            {"value": b"plainhttp-value-1"},
            allowed_hosts=("http://api.example.com:8080",),
        )
    )
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


def test_a_placeholder_in_its_own_header_becomes_the_raw_value(vault: Vault) -> None:
    out = sub(
        vault,
        ("BEARER", "my.hdr"),
        headers=[
            (b"x-key", b"a goex-secret:my.hdr b goex-secret%3Amy.hdr"),
            (b"Authorization", b"Bearer goex-secret:BEARER"),
        ],
    )
    assert header(out, b"X-Key") == [b"a " + HDR + b" b " + HDR]  # header names compare without case
    assert header(out, b"Authorization") == [b"Bearer " + BEARER]
    assert out.secrets_used == ("my.hdr", "BEARER")


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


def test_a_placeholder_in_its_own_query_parameter_becomes_the_url_encoded_value(vault: Vault) -> None:
    url = "https://api.example.com/x?a=1&key=goex-secret:QUERY&b=&k%65y=goex-secret%3AQUERY#frag"
    out = sub(vault, ("QUERY",), url=url)
    assert out.url == "https://api.example.com/x?a=1&key=q%2Fvalue%2B1%202&b=&k%65y=q%2Fvalue%2B1%202#frag"
    assert out.secrets_used == ("QUERY",)


def test_query_secrets_are_added_when_their_parameter_is_absent(vault: Vault) -> None:
    assert sub(vault, ("QUERY",)).url == "https://api.example.com/v1/items?key=q%2Fvalue%2B1%202"
    assert sub(vault, ("QUERY",), url="https://api.example.com/?a=1").url == (
        "https://api.example.com/?a=1&key=q%2Fvalue%2B1%202"
    )
    kept = sub(vault, ("QUERY",), url="https://api.example.com/?key=mine")
    assert kept.url == "https://api.example.com/?key=mine" and kept.secrets_used == ()


@pytest.mark.parametrize(
    ("secret", "where", "kwargs", "goes"),
    [
        # A header an upstream echoes (httpbin's /headers, /anything) would hand the value back.
        (
            "BEARER",
            "header X-Other",
            {"headers": [(b"X-Other", b"goex-secret:BEARER")]},
            "only into header Authorization",
        ),
        ("my.hdr", "header Authorization", {"headers": [(b"Authorization", b"goex-secret:my.hdr")]}, "header X-Key"),
        ("BEARER", "a header name", {"headers": [(b"goex-secret%3ABEARER", b"x")]}, "header Authorization"),
        ("BEARER", "the URL path", {"url": "https://api.example.com/anything/goex-secret:BEARER"}, "Authorization"),
        ("BEARER", "the URL path", {"url": "https://api.example.com/a/goex-secret%3aBEARER/b"}, "Authorization"),
        ("BEARER", "the request body", {"body": b'{"t": "goex-secret:BEARER"}'}, "Authorization"),
        ("QUERY", "the request body", {"body": b"a=goex-secret%3AQUERY"}, "only into query parameter key"),
        ("QUERY", "query parameter other", {"url": "https://api.example.com/?other=goex-secret:QUERY"}, "key"),
        ("QUERY", "query parameter KEY", {"url": "https://api.example.com/?KEY=goex-secret:QUERY"}, "key"),
        # `;` is no separator here, so this is a value of x (a server that splits at `;` would see key).
        ("QUERY", "query parameter x", {"url": "https://api.example.com/?x=1;key=goex-secret:QUERY"}, "key"),
        ("QUERY", "a query parameter name", {"url": "https://api.example.com/?goex-secret:QUERY=1"}, "key"),
        ("QUERY", "header X-Key", {"headers": [(b"X-Key", b"goex-secret:QUERY")]}, "query parameter key"),
        ("BEARER", "query parameter key", {"url": "https://api.example.com/?key=goex-secret:BEARER"}, "Authorization"),
        ("PLAIN", "header X-A", {"headers": [(b"X-A", b"goex-secret:PLAIN")]}, "nowhere in a request"),
        ("ENV", "header X-Env", {"headers": [(b"X-Env", b"goex-secret:ENV")]}, "environment variable ENV_TOKEN"),
        ("DSN", "header Authorization", {"headers": [(b"Authorization", b"goex-secret:DSN")]}, "database connection"),
    ],
)
def test_a_placeholder_anywhere_else_refuses_the_request(
    vault: Vault, secret: str, where: str, kwargs: dict[str, object], goes: str
) -> None:
    with pytest.raises(Refused) as exc:
        sub(vault, ("BEARER", "QUERY", "my.hdr", "PLAIN", "ENV", "DSN"), **kwargs)  # type: ignore[arg-type]
    message = str(exc.value)
    assert f"placeholder of secret {secret!r} in {where} is refused" in message, message
    assert goes in message and "https://api.example.com:443" in message and exc.value.status == 403


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
    with pytest.raises(Refused, match=r"'PLAIN' is not declared .* https://api\.example\.com:443"):
        sub(vault, ("BEARER",), **kwargs)  # type: ignore[arg-type]


def test_a_secret_not_allowed_for_the_host_refuses_the_request(vault: Vault) -> None:
    with pytest.raises(
        Refused, match=r"'OTHER' may not be sent to https://api\.example\.com:443; it is allowed for other"
    ):
        sub(vault, ("OTHER",), headers=[(b"X-A", b"goex-secret:OTHER")])
    # Its own header, towards a host it is not meant for: refused just the same.
    with pytest.raises(Refused, match=r"'BEARER' may not be sent to https://elsewhere\.example:443"):
        sub(vault, ("BEARER",), headers=[(b"Authorization", b"Bearer goex-secret:BEARER")], host="elsewhere.example")


def test_scheme_and_port_decide_as_much_as_the_host(vault: Vault) -> None:
    """A bare entry is https on 443; plain http needs its http:// entry (and its port)."""
    plain = "http://api.example.com/x"
    with pytest.raises(Refused, match=r"may not be sent to http://api\.example\.com:80.*http:// entry"):
        sub(vault, ("BEARER",), url=plain, headers=[(b"Authorization", b"goex-secret:BEARER")], port=80)
    assert sub(vault, ("BEARER",), url=plain, port=80).secrets_used == ()  # not added either
    assert sub(vault, ("BEARER",), port=8443).secrets_used == ()  # another port of an https host
    out = sub(vault, ("PLAINHTTP",), url="http://api.example.com:8080/x", port=8080)
    assert header(out, b"Authorization") == [b"Bearer plainhttp-value-1"]
    assert sub(vault, ("PLAINHTTP",), url="http://api.example.com:8081/x", port=8081).secrets_used == ()
    assert sub(vault, ("PLAINHTTP",), url="https://api.example.com:8080/x", port=8080).secrets_used == ()


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

    def counting(name: str, scheme: str, host: str, port: int) -> Secret:
        calls[name] += 1
        return vault.resolve(name, scheme, host, port)

    req = Request("GET", "https://api.example.com/?key=goex-secret:QUERY&key=goex-secret:QUERY", [], b"")
    substitute(req, ("QUERY", "BEARER"), HOST, PORT, counting)
    assert calls == {"QUERY": 1, "BEARER": 1}


def test_ipv6_targets_are_named_with_brackets(vault: Vault) -> None:
    with pytest.raises(Refused, match=r"https://\[::1\]:8080"):
        sub(vault, (), headers=[(b"X", b"goex-secret:PLAIN")], host="::1", port=8080)


def test_text_that_is_not_a_placeholder_is_left_alone(vault: Vault) -> None:
    out = sub(vault, (), headers=[(b"X", b"goex-secret: PLAIN"), (b"Y", b"goex-secret:")])
    assert out.headers == ((b"X", b"goex-secret: PLAIN"), (b"Y", b"goex-secret:"))
    assert placeholder("PLAIN") == "goex-secret:PLAIN"
