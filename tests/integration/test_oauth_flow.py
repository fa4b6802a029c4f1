"""OAuth2 authorization-code flows (PKCE + state) into the vault, against django-oauth-toolkit.

The provider issues 3-second access tokens (and rotates refresh tokens), so expiry and refresh
are real: an expired token is refused by its /api/me, a refreshed one is accepted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from goexd import config
from goexd.config import Config
from goexd.domain.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from goexd.domain.secrets import Injection, InjectionTarget, OAuthState, SecretInfo, SecretKind, SecretRequest
from goexd.main import token_dialer
from goexd.vault import oauth_tokens
from goexd.vault.oauth import OAuthFlows, OAuthStart
from goexd.vault.vault import Vault
from tests.daemon_process import LOOPBACK
from tests.services import OAuthServer

MARGIN_S = 1.0
LOGGER = "goexd.vault.oauth"


@pytest.fixture
def server(oauth_server_short_tokens: OAuthServer) -> OAuthServer:
    return oauth_server_short_tokens


def _config(tmp: Path, allowed_addresses: tuple[str, ...] = LOOPBACK, **vault: Any) -> Config:
    """The provider runs on loopback, which goexd reaches only where egress.allowed_addresses says so."""
    settings = {"oauth_refresh_margin_s": MARGIN_S, "oauth_flow_timeout_s": 30.0, **vault}
    egress = {"allowed_addresses": list(allowed_addresses)}
    return config.load(None, {"state_dir": str(tmp / "state"), "vault": settings, "egress": egress}, {})


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return _config(tmp_path)


@pytest.fixture
def vault(cfg: Config) -> Vault:
    return Vault.open(cfg)


@pytest.fixture
def flows(vault: Vault, cfg: Config) -> Iterator[OAuthFlows]:
    f = OAuthFlows(vault, cfg.vault, token_dialer(cfg))
    yield f
    f.close()


def _start(server: OAuthServer, name: str, **kw: Any) -> OAuthStart:
    args: dict[str, Any] = {
        "name": name,
        "authorization_url": server.authorization_url,
        "token_url": server.token_url,
        "client_id": server.public_client_id,
        "scopes": ("read",),
        "allowed_hosts": (f"http://{server.host}",),
    }
    return OAuthStart(**{**args, **kw})


def _authorize(server: OAuthServer, flows: OAuthFlows, name: str, **kw: Any) -> SecretInfo:
    started = flows.start(_start(server, name, **kw))
    with server.browser() as browser:
        page = browser.authorize(started.browser_url)
    assert page.status_code == 200, page.text
    return flows.wait(name, 10)


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _port_closed(url: str) -> bool:
    try:
        httpx.get(url, trust_env=False, timeout=2)
    except httpx.ConnectError:
        return True
    return False


# ---------------------------------------------------------------- the flow


def test_full_flow_stores_the_secret_and_its_token_works(
    server: OAuthServer, flows: OAuthFlows, vault: Vault, cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="goexd")
    before = time.time()
    started = flows.start(_start(server, "dot"))

    redirect = urlsplit(started.redirect_uri)
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port
    assert before + 29 < started.expires_at < time.time() + 31
    query = parse_qs(urlsplit(started.browser_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url(sha256), unpadded
    assert len(query["state"][0]) >= 32
    assert query["redirect_uri"] == [started.redirect_uri]
    assert query["client_id"] == [server.public_client_id]
    assert "code_verifier" not in query

    with server.browser() as browser:
        page = browser.authorize(started.browser_url)
    assert page.status_code == 200
    assert "Authorization complete" in page.text
    info = flows.wait("dot", 10)

    assert info.kind is SecretKind.OAUTH2
    assert info.parts == ("access_token", "refresh_token")
    assert info.refreshable and not info.problem
    assert info.allowed_hosts == (f"http://{server.host}",)
    assert info.injection == Injection(InjectionTarget.HEADER, "Authorization", "Bearer {value}")
    assert info.expires_at is not None
    assert before + server.access_token_expire_s - 1 < info.expires_at <= time.time() + server.access_token_expire_s

    secret = vault.get("dot")
    assert secret.oauth == OAuthState(server.token_url, server.public_client_id, ("read",), info.expires_at)
    access, refresh = secret.values["access_token"], secret.values["refresh_token"]
    me = server.me(access)
    assert me.status_code == 200 and me.json()["user"] == server.username

    # Tokens live only inside the vault: not in the browser's page, the file on disk or the log.
    on_disk = cfg.vault_path.read_bytes()
    for token in (access, refresh):
        assert token not in page.content
        assert token not in on_disk
        assert token.decode() not in caplog.text
    # The listener took its one callback and is gone.
    assert _port_closed(started.redirect_uri)
    # Sealed and reopened: the same secret.
    assert Vault.open(cfg).info("dot") == vault.info("dot")
    # Used through the vault: fresh, so returned as is, and only for the allowed host.
    assert vault.resolve("dot", "http", "127.0.0.1", server.port).values["access_token"] == access
    with pytest.raises(PermissionDenied):
        vault.resolve("dot", "https", "example.com", 443)


def test_confidential_client_keeps_its_secret_and_refreshes_with_it(
    server: OAuthServer, flows: OAuthFlows, vault: Vault
) -> None:
    client_secret = server.confidential_client_secret.encode()
    info = _authorize(server, flows, "conf", client_id=server.confidential_client_id, client_secret=client_secret)
    assert info.parts == ("access_token", "client_secret", "refresh_token")
    old = vault.get("conf")
    assert old.values["client_secret"] == client_secret

    new = flows.refresh(old, force=True)  # the token endpoint authenticates the client by its secret

    assert new.values["access_token"] != old.values["access_token"]
    assert new.values["client_secret"] == client_secret
    assert server.me(new.values["access_token"]).status_code == 200


# ---------------------------------------------------------------- refresh


def test_expired_token_is_refreshed_on_resolve(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    info = _authorize(server, flows, "dot")
    old = vault.get("dot")
    assert info.expires_at is not None
    _sleep_until(info.expires_at + 0.2)
    assert server.me(old.values["access_token"]).status_code == 403  # the provider agrees it expired

    new = vault.resolve("dot", "http", "127.0.0.1", server.port)

    assert new.values["access_token"] != old.values["access_token"]
    assert new.values["refresh_token"] != old.values["refresh_token"]  # DOT rotates refresh tokens
    assert server.me(new.values["access_token"]).status_code == 200
    now_info = vault.info("dot")
    assert now_info.expires_at is not None and now_info.expires_at > time.time() + 1
    assert not now_info.problem
    # The replaced tokens stay known to the redactor: they may still be live somewhere.
    assert vault.redactor.found(old.values["access_token"]) == ["dot"]


def test_concurrent_resolves_refresh_once(
    server: OAuthServer, flows: OAuthFlows, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    info = _authorize(server, flows, "dot")
    old = vault.get("dot").values["access_token"]
    assert info.expires_at is not None
    _sleep_until(info.expires_at - MARGIN_S + 0.1)  # due, not yet expired

    barrier = threading.Barrier(8)
    tokens: list[bytes] = []
    errors: list[BaseException] = []

    def use() -> None:
        barrier.wait()
        try:
            tokens.append(vault.resolve("dot", "http", "127.0.0.1", server.port).values["access_token"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)

    # A second refresh would have presented the rotated-away refresh token and been refused.
    assert errors == []
    assert len(set(tokens)) == 1 and tokens[0] != old
    assert [r.getMessage() for r in caplog.records].count("secret 'dot': OAuth2 access token refreshed") == 1
    assert server.me(tokens[0]).status_code == 200


def test_revoked_refresh_token_marks_the_secret(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    _authorize(server, flows, "dot")
    secret = vault.get("dot")
    server.revoke(secret.values["refresh_token"], server.public_client_id)

    with pytest.raises(FailedPrecondition, match=r"secret 'dot'.*invalid_grant") as exc:
        flows.refresh(secret, force=True)

    problem = vault.info("dot").problem
    assert "invalid_grant" in problem and "goex secret oauth dot" in problem
    with pytest.raises(FailedPrecondition, match=r"secret 'dot' cannot be used: refresh token was rejected"):
        vault.resolve("dot", "http", "127.0.0.1", server.port)
    for token in secret.values.values():
        assert token.decode() not in str(exc.value)
    assert flows.refresh_due() == []  # a marked secret waits for a new authorization


def test_refresh_due_refreshes_only_what_is_due(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    a = _authorize(server, flows, "a")
    assert a.expires_at is not None
    _sleep_until(a.expires_at - MARGIN_S + 0.1)
    _authorize(server, flows, "b")  # fresh: due only in ~2 s
    before = {n: vault.get(n).values["access_token"] for n in ("a", "b")}

    assert flows.refresh_due() == ["a"]

    assert vault.get("a").values["access_token"] != before["a"]
    assert vault.get("b").values["access_token"] == before["b"]
    assert server.me(vault.get("a").values["access_token"]).status_code == 200
    assert flows.refresh_due() == []


def test_unreachable_token_endpoint(
    server: OAuthServer, flows: OAuthFlows, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    _authorize(server, flows, "dot")
    secret = vault.get("dot")
    assert secret.oauth is not None
    dead = replace(secret.oauth, token_url="http://127.0.0.1:9/o/token/")  # discard port: nothing listens
    secret = vault.update_tokens("dot", {}, dead)

    # Still valid: used as is, with a warning.
    assert flows.refresh(secret, force=True) == secret
    assert "is unreachable" in caplog.text and "using the current access token" in caplog.text
    # Expired (as far as the vault knows): nothing usable.
    vault.update_tokens("dot", {}, replace(dead, expires_at=time.time() - 1))
    with pytest.raises(Unavailable, match=r"secret 'dot'.*unreachable.*expired"):
        vault.resolve("dot", "http", "127.0.0.1", server.port)
    assert not vault.info("dot").problem  # a passing outage is not a revocation


def test_expired_token_without_refresh_token(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    oauth = OAuthState(server.token_url, server.public_client_id, expires_at=time.time() + 0.5)
    vault.put(
        SecretRequest(
            "norefresh", SecretKind.OAUTH2, {"access_token": b"A" * 20}, None, (f"http://{server.host}",), oauth=oauth
        )
    )
    # Due but not expired: still usable, nothing to refresh it with.
    assert vault.resolve("norefresh", "http", "127.0.0.1", server.port).values["access_token"] == b"A" * 20
    vault.update_tokens("norefresh", {}, replace(oauth, expires_at=time.time() - 1))
    with pytest.raises(FailedPrecondition, match=r"secret 'norefresh'.*no refresh token"):
        vault.resolve("norefresh", "http", "127.0.0.1", server.port)


# ---------------------------------------------------------------- callbacks that are not the one


def test_wrong_state_is_rejected_and_the_flow_still_completes(
    server: OAuthServer, flows: OAuthFlows, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = flows.start(_start(server, "dot"))
    cb = started.redirect_uri
    for query in ("code=stolen&state=guess", "code=stolen", "error=access_denied&state=guess", "state=&code=x"):
        r = httpx.get(f"{cb}?{query}", trust_env=False, timeout=5)
        assert r.status_code == 400, query
        assert "stolen" not in caplog.text
    assert httpx.get(cb.replace("/callback", "/favicon.ico"), trust_env=False).status_code == 404
    assert "ignored a callback" in caplog.text and "wrong state" in caplog.text and "missing state" in caplog.text
    with pytest.raises(DeadlineExceeded, match="has not finished yet"):
        flows.wait("dot", 0.2)

    with server.browser() as browser:
        page = browser.authorize(started.browser_url)

    assert page.status_code == 200
    assert flows.wait("dot", 10).kind is SecretKind.OAUTH2
    assert server.me(vault.get("dot").values["access_token"]).status_code == 200


def test_access_denied_fails_the_flow_and_stores_nothing(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    started = flows.start(_start(server, "dot", client_id=server.consent_client_id))
    with server.browser() as browser:
        page = browser.authorize(started.browser_url, approve=False)

    assert page.status_code == 403 and "access_denied" in page.text
    with pytest.raises(PermissionDenied, match=r"'dot' was denied.*access_denied"):
        flows.wait("dot", 10)
    assert "dot" not in vault.names()
    assert _port_closed(started.redirect_uri)
    # The flow is over: the same name can start again (and this time the user approves).
    again = flows.start(_start(server, "dot", client_id=server.consent_client_id))
    with server.browser() as browser:
        assert browser.authorize(again.browser_url, approve=True).status_code == 200
    assert flows.wait("dot", 10).name == "dot"


def test_flow_timeout(server: OAuthServer, tmp_path: Path) -> None:
    cfg = _config(tmp_path, oauth_flow_timeout_s=0.6)
    vault = Vault.open(cfg)
    flows = OAuthFlows(vault, cfg.vault, token_dialer(cfg))
    try:
        started = flows.start(_start(server, "dot"))
        with pytest.raises(DeadlineExceeded, match="has not finished yet"):
            flows.wait("dot", 0.1)
        with pytest.raises(DeadlineExceeded, match=r"expired after 0\.6s"):
            flows.wait("dot", None)  # until the flow itself ends
        assert _port_closed(started.redirect_uri)
        with pytest.raises(DeadlineExceeded, match="expired"):
            flows.wait("dot", 0)  # the outcome is kept for a late waiter
        assert vault.names() == []
        again = flows.start(_start(server, "dot"))  # no longer waiting: may start over
        assert again.redirect_uri != started.redirect_uri
    finally:
        flows.close()


def test_close_fails_waiting_flows(server: OAuthServer, flows: OAuthFlows) -> None:
    started = flows.start(_start(server, "dot"))
    flows.close()
    with pytest.raises(Unavailable, match="stopped"):
        flows.wait("dot", 1)
    assert _port_closed(started.redirect_uri)
    with pytest.raises(Unavailable):
        flows.start(_start(server, "other"))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"authorization_url": "http://example.com/o/authorize/"}, "authorization_url"),
        ({"authorization_url": "not a url"}, "authorization_url"),
        ({"token_url": "ftp://127.0.0.1/token"}, "token_url"),
        ({"token_url": "http://10.0.0.1/o/token/"}, "token_url"),
        ({"token_url": "https://user:pw@example.com/token"}, "token_url"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": "  "}, "client_id"),
        ({"scopes": ("read write",)}, "scopes[0]"),
        ({"allowed_hosts": ("api.example.com", "not a host")}, "allowed_hosts[1]"),
        ({"client_secret": b"short"}, "client_secret"),
        ({"client_secret": b"line\nbreak-secret"}, "client_secret"),
    ],
)
def test_bad_input_names_the_field(
    server: OAuthServer, flows: OAuthFlows, vault: Vault, change: dict[str, Any], field: str
) -> None:
    req = replace(_start(server, "dot"), **change)
    with pytest.raises(InvalidArgument) as exc:
        flows.start(req)
    assert exc.value.field == field
    assert vault.names() == []
    with pytest.raises(NotFound):
        flows.wait(req.name or "dot", 0)


def test_existing_secret_and_waiting_flow(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    vault.put(SecretRequest("dot", SecretKind.BEARER, {"value": b"bearer-value"}, None, (f"http://{server.host}",)))
    with pytest.raises(AlreadyExists, match="'dot'"):
        flows.start(_start(server, "dot"))
    with pytest.raises(NotFound, match="oauth flow"):
        flows.wait("dot", 0)

    started = flows.start(_start(server, "dot", overwrite=True))
    with pytest.raises(FailedPrecondition, match="already waiting"):
        flows.start(_start(server, "dot", overwrite=True))
    with server.browser() as browser:
        assert browser.authorize(started.browser_url).status_code == 200
    assert flows.wait("dot", 10).kind is SecretKind.OAUTH2  # replaced the bearer secret
    assert vault.get("dot").values.keys() == {"access_token", "refresh_token"}


def test_plain_http_to_loopback_is_allowed(server: OAuthServer, flows: OAuthFlows) -> None:
    for host in ("localhost", "[::1]", "127.0.0.2"):
        url = f"http://{host}:{server.port}/o/authorize/"
        flows.start(_start(server, f"ok-{host.strip('[]').replace(':', '')}", authorization_url=url))


def test_token_endpoint_down_during_the_exchange(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    # The user authorizes at the real provider; the code then goes to a token endpoint that is not there.
    started = flows.start(_start(server, "dot", token_url="http://127.0.0.1:9/o/token/"))
    with server.browser() as browser:
        page = browser.authorize(started.browser_url)
    assert page.status_code == 502 and "could not be reached" in page.text
    with pytest.raises(Unavailable, match=r"token endpoint http://127\.0\.0\.1:9/o/token/ could not be reached"):
        flows.wait("dot", 10)
    assert vault.names() == []


def test_refreshed_tokens_pass_the_vault_checks(server: OAuthServer, flows: OAuthFlows, vault: Vault) -> None:
    _authorize(server, flows, "dot")
    secret = vault.get("dot")
    assert secret.oauth is not None
    with pytest.raises(InvalidArgument, match="line break"):
        vault.update_tokens("dot", {"access_token": b"token\r\nX-Injected: 1"}, secret.oauth)
    assert vault.get("dot") == secret


# ---------------------------------------------------------------- addresses goexd does not connect to


@pytest.fixture
def strict(vault: Vault, tmp_path: Path) -> Iterator[OAuthFlows]:
    """Flows over the same vault in a daemon that allows no special-purpose address (the default)."""
    f = OAuthFlows(vault, _config(tmp_path).vault, token_dialer(_config(tmp_path, allowed_addresses=())))
    yield f
    f.close()


def test_token_url_on_a_refused_address_is_refused_at_start(
    server: OAuthServer, flows: OAuthFlows, strict: OAuthFlows, vault: Vault
) -> None:
    refused = {
        server.token_url: "127.0.0.1 is loopback",
        f"http://localhost:{server.port}/o/token/": "is loopback",  # a name resolving to loopback
        "https://169.254.169.254/latest/api/token": "cloud metadata",
        "https://[::ffff:10.0.0.1]/token": "private",
    }
    for url, why in refused.items():
        with pytest.raises(PermissionDenied, match=rf"^token_url: .*{why}.*egress\.allowed_addresses"):
            strict.start(_start(server, "dot", token_url=url))
        with pytest.raises(NotFound):  # nothing kept: no flow, no listener
            strict.wait("dot", 0)
    assert vault.names() == []
    # Control: the loopback provider is refused for its address alone; allowed, the same request starts.
    flows.start(_start(server, "dot"))


def test_refresh_to_a_refused_address_marks_the_secret_and_sends_nothing(
    server: OAuthServer, flows: OAuthFlows, strict: OAuthFlows, vault: Vault, cfg: Config
) -> None:
    _authorize(server, flows, "dot")
    secret = vault.get("dot")

    with pytest.raises(FailedPrecondition, match=r"secret 'dot' cannot be used: goexd does not send token requests"):
        strict.refresh(secret, force=True)

    problem = vault.info("dot").problem
    assert "127.0.0.1 is loopback" in problem and "goex secret oauth dot" in problem
    with pytest.raises(FailedPrecondition, match="cannot be used"):
        vault.resolve("dot", "http", "127.0.0.1", server.port)
    assert strict.refresh_due() == []  # marked: not tried again on a schedule
    # Nothing reached the provider: the refresh token (rotated on use) is still good.
    client = oauth_tokens.Client(server.token_url, server.public_client_id)
    refresh_token = secret.values["refresh_token"]
    assert oauth_tokens.refresh(client, refresh_token, token_dialer(cfg)).access_token != secret.values["access_token"]


def test_token_url_that_resolves_elsewhere_at_the_exchange(server: OAuthServer, vault: Vault, tmp_path: Path) -> None:
    """A name checked at start can resolve to a refused address by the time the code is exchanged: the
    connection is checked again, and the flow fails with PERMISSION_DENIED, storing nothing."""
    loose, strict = token_dialer(_config(tmp_path)), token_dialer(_config(tmp_path, allowed_addresses=()))
    rebinding = oauth_tokens.Dialer(transport=strict.transport, check=loose.check, refused=strict.refused)
    flows = OAuthFlows(vault, _config(tmp_path).vault, rebinding)
    try:
        started = flows.start(_start(server, "dot"))
        with server.browser() as browser:
            page = browser.authorize(started.browser_url)
        assert page.status_code == 403 and "127.0.0.1 is loopback" in page.text
        with pytest.raises(PermissionDenied, match=r"^token_url: .*127\.0\.0\.1 is loopback"):
            flows.wait("dot", 10)
        assert vault.names() == []
    finally:
        flows.close()
