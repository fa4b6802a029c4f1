"""Real services the tests run against, each a subprocess on 127.0.0.1.

OAuth2: `run_oauth_server(dir, access_token_expire_s)` starts django-oauth-toolkit
(tests/services/oauth_server.py) and yields an `OAuthServer`; the fixtures `oauth_server`
(hour-long tokens) and `oauth_server_short_tokens` (3-second tokens, for refresh tests) start one
per test module. `OAuthServer.browser()` plays the user's browser: it logs in at the provider
and follows an authorization URL to wherever the provider redirects (the daemon's listener).

PostgreSQL: `run_pg_cluster()` (tests/services/postgres.py) starts a private cluster and yields a
`PgCluster`; the fixture `pg_cluster` starts one per test session and `pg_database` gives a test
a fresh database owned by the password-protected role `app`. They are registered in
tests/conftest.py, so integration and end-to-end tests share the one cluster.

REST services for the tests of HTTP actions, each a real server in a subprocess on a free port of
127.0.0.1, stopped at the end (tests/services/http_service.py starts them: readiness by polling,
output to a log file whose tail a failed start reports). Registered in tests/conftest.py too.

- S3: moto in server mode (tests/services/moto_s3.py). `run_moto_s3(dir)` yields a `MotoS3`
  (port, base_url, host, log_path, start_s, credentials; `client()` is a fresh boto3 S3 client on
  it: dummy credentials, us-east-1, path-style; `url(bucket, key)`; `new_bucket(versioned=...)`).
  Fixtures: `moto_s3` (one per test module, ~0.4 s to start; checks no signature),
  `s3_bucket` and `s3_versioned_bucket` (a fresh, uniquely named bucket on it per test), and
  `moto_s3_auth` (one per module that verifies SigV4 signatures against an IAM user it makes).
  What moto accepts signed and unsigned is in moto_s3.py's docstring.
- JSON REST: json-server 0.17.4 (tests/services/json_server.py; npm, installed by `make install`
  into .venv/node). `run_json_server(dir, seed)` yields a `JsonServer` (port, base_url, host,
  db_path, log_path, start_s; `client()` an httpx client on it, `db()` its whole state by GET /db). Fixture
  `json_server`: one per test (~0.3 s to start) from a fresh file seeded with the fixture
  `json_server_seed` (`{"items": [], "users": []}` unless a test overrides or parametrizes it).

Generic HTTP semantics (docs/http-rules.md) have two services of other shapes, each with a
module-scoped fixture a test module imports from its file: WsgiDAV, a WebDAV server (PyPI;
tests/services/wsgidav_server.py, fixture `wsgidav`: files at any depth, non-JSON bodies, empty
201/204 answers, ETags), and the Community Solid Server (npm, installed with json-server;
tests/services/solid_server.py, fixture `solid_server`: LDP containers, 201 with Location, 205,
Allow headers). Both keep their state as files, which `files()` reads.

Containers: Podman's Docker-compatible API service (tests/services/container_engine.py), fixture
`container_engine_service`: one per test session on a private socket, with goexd's offline-built image.

httpbin is not here: the egress tests run it in-process (werkzeug), each in its own way.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.services.http_service import LoopbackService, stop_process

OAUTH_SERVER_SCRIPT = Path(__file__).with_name("oauth_server.py")
SHORT_TOKEN_S = 3


@dataclass(frozen=True)
class OAuthServer(LoopbackService):
    public_client_id: str  # public client, consent skipped: the flow needs only a login
    consent_client_id: str  # public client that asks the user to approve (so a test can deny)
    confidential_client_id: str
    confidential_client_secret: str
    username: str
    password: str
    access_token_expire_s: int
    log_path: Path

    @property
    def authorization_url(self) -> str:
        return f"{self.base_url}/o/authorize/"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/o/token/"

    @property
    def revoke_url(self) -> str:
        return f"{self.base_url}/o/revoke_token/"

    @property
    def me_url(self) -> str:
        """A protected resource: 200 {"user": NAME} for a valid bearer token, 403 otherwise."""
        return f"{self.base_url}/api/me"

    @property
    def login_url(self) -> str:
        return f"{self.base_url}/accounts/login/"

    def me(self, access_token: bytes | str) -> httpx.Response:
        token = access_token.decode() if isinstance(access_token, bytes) else access_token
        return httpx.get(self.me_url, headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=10)

    def revoke(self, token: bytes | str, client_id: str, hint: str = "refresh_token") -> None:
        """Revoke a token as its (public) client would (RFC 7009); revoking a refresh token
        revokes its access token too."""
        value = token.decode() if isinstance(token, bytes) else token
        r = httpx.post(
            self.revoke_url,
            data={"token": value, "token_type_hint": hint, "client_id": client_id},
            trust_env=False,
            timeout=10,
        )
        assert r.status_code == 200, r.text

    def browser(self) -> Browser:
        return Browser(self)


class Browser:
    """The user's browser: one cookie jar, logged in at the provider, following redirects."""

    def __init__(self, server: OAuthServer) -> None:
        self.server = server
        self.http = httpx.Client(follow_redirects=True, trust_env=False, timeout=20)
        self._logged_in = False

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def login(self) -> None:
        page = self.http.get(self.server.login_url)
        page.raise_for_status()
        fields = _form_fields(page.text)
        fields.update(username=self.server.username, password=self.server.password)
        r = self.http.post(self.server.login_url, data=fields, follow_redirects=False)
        assert r.status_code == 302, f"login failed: {r.status_code} {r.text[:300]}"
        self._logged_in = True

    def authorize(self, browser_url: str, approve: bool = True) -> httpx.Response:
        """Open the authorization URL; on a consent page press Authorize (or Cancel). Returns the
        last response of the redirect chain: the daemon's callback page when all went well."""
        if not self._logged_in:
            self.login()
        r = self.http.get(browser_url)
        if urlsplit(str(r.url)).path == "/o/authorize/" and r.status_code == 200:
            fields = _form_fields(r.text)
            fields.pop("allow", None)
            if approve:
                fields["allow"] = "Authorize"
            r = self.http.post(str(r.url), data=fields)
        return r

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") != "submit":
            self.fields[a["name"] or ""] = a.get("value") or ""


def _form_fields(html: str) -> dict[str, str]:
    """The named inputs of a page's form (hidden ones included: CSRF token, DOT's grant fields)."""
    p = _Inputs()
    p.feed(html)
    return p.fields


@contextmanager
def run_oauth_server(state_dir: Path, access_token_expire_s: int = 3600, timeout: float = 30) -> Iterator[OAuthServer]:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "oauth_server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(OAUTH_SERVER_SCRIPT),
                "--state-dir",
                str(state_dir),
                "--access-token-expire-s",
                str(access_token_expire_s),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        ready = _ready_line(proc, timeout, log_path)
        yield OAuthServer(
            port=ready["port"],
            public_client_id=ready["public_client_id"],
            consent_client_id=ready["consent_client_id"],
            confidential_client_id=ready["confidential_client_id"],
            confidential_client_secret=ready["confidential_client_secret"],
            username=ready["username"],
            password=ready["password"],
            access_token_expire_s=access_token_expire_s,
            log_path=log_path,
        )
    finally:
        stop_process(proc)
        assert proc.stdout is not None
        proc.stdout.close()


def _ready_line(proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.1)
        if readable:
            line = proc.stdout.readline()
            if line:
                return dict(json.loads(line))
        if proc.poll() is not None:
            break
    raise RuntimeError(f"the OAuth2 test server did not start:\n{log_path.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def oauth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthServer]:
    with run_oauth_server(tmp_path_factory.mktemp("oauth-server")) as server:
        yield server


@pytest.fixture(scope="module")
def oauth_server_short_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthServer]:
    with run_oauth_server(tmp_path_factory.mktemp("oauth-server-short"), SHORT_TOKEN_S) as server:
        yield server


# PostgreSQL and the REST services (moto's S3, json-server): re-exported here like the OAuth fixtures above.
from tests.services.container_engine import container_engine_service  # noqa: E402, F401
from tests.services.json_server import JsonServer, json_server, json_server_seed, run_json_server  # noqa: E402, F401
from tests.services.moto_s3 import (  # noqa: E402, F401
    MotoS3,
    moto_s3,
    moto_s3_auth,
    run_moto_s3,
    s3_bucket,
    s3_versioned_bucket,
)
from tests.services.postgres import PgCluster, pg_cluster, pg_database, run_pg_cluster  # noqa: E402, F401
