"""OAuth2 through goexd and the `goex` CLI against a real authorization server (django-oauth-toolkit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import goex
from tests.daemon_process import DaemonProcess
from tests.services import OAuthServer

GOEX = Path(sys.executable).with_name("goex")


def test_cli_oauth_flow_stores_a_refreshable_token_that_never_leaves_the_daemon(
    daemon: DaemonProcess, oauth_server: OAuthServer
) -> None:
    env = {**os.environ, "GOEX_SOCKET": str(daemon.socket)}
    proc = subprocess.Popen(
        [
            str(GOEX),
            "--json",
            "secret",
            "oauth",
            "dot",
            "--auth-url",
            oauth_server.authorization_url,
            "--token-url",
            oauth_server.token_url,
            "--client-id",
            oauth_server.public_client_id,
            "--scope",
            "read",
            "--host",
            f"http://{oauth_server.host}",
            "--no-browser",
            "--timeout",
            "60",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        started = json.loads(proc.stderr.readline())  # the CLI says where to go before it waits
        assert started["redirect_uri"].startswith("http://127.0.0.1:")
        browser_url = started["browser_url"]
        assert "code_challenge=" in browser_url and "state=" in browser_url
        with oauth_server.browser() as browser:
            page = browser.authorize(browser_url)
        assert page.status_code == 200
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    info = json.loads(out)["info"]
    assert info["name"] == "dot" and info["kind"] == "oauth2"
    assert info["refreshable"] is True and info["expires_at"] and info["problem"] == ""
    assert "refresh_token" in info["parts"] and "access_token" in info["parts"]

    with goex.Client(daemon.socket) as client:
        [listed] = client.list_secrets()
        assert listed.name == "dot" and listed.usable and listed.refreshable
        # The token is usable by the daemon (it answers the provider's protected endpoint) ...
        token = _vault_value(daemon, "dot")
        assert oauth_server.me(token).json()["user"] == oauth_server.username
    # ... and is in no file the daemon writes in plaintext, nor in what the CLI printed.
    for blob in (
        (daemon.state_dir / "vault.bin").read_bytes(),
        (daemon.state_dir / "journal.sqlite3").read_bytes(),
        daemon.log().encode(),
        out,
        err,
    ):
        assert token not in blob


def _vault_value(daemon: DaemonProcess, name: str) -> bytes:
    """Read the access token the way only the daemon can: by opening the vault with its key (test-only)."""
    from goexd import config
    from goexd.vault.vault import Vault

    cfg = config.load(None, {"state_dir": str(daemon.state_dir)}, {})
    return Vault.open(cfg).get(name).values["access_token"]


def test_await_without_a_flow_is_not_found_and_bad_start_names_the_field(
    daemon: DaemonProcess, oauth_server: OAuthServer
) -> None:
    with goex.Client(daemon.socket) as client:
        with pytest.raises(goex.NotFound, match="oauth flow"):
            client.await_oauth("nothing", timeout=1)
        with pytest.raises(goex.InvalidArgument, match=r"^token_url: "):
            client.start_oauth(
                "x", authorization_url=oauth_server.authorization_url, token_url="http://evil.example/t", client_id="c"
            )
        with pytest.raises(goex.InvalidArgument, match=r"^name: "):
            client.start_oauth(
                "a/b",
                authorization_url=oauth_server.authorization_url,
                token_url=oauth_server.token_url,
                client_id="c",
            )
        started = client.start_oauth(
            "later",
            authorization_url=oauth_server.authorization_url,
            token_url=oauth_server.token_url,
            client_id=oauth_server.public_client_id,
            allowed_hosts=[f"http://{oauth_server.host}"],
        )
        with pytest.raises(goex.DeadlineExceeded):
            client.await_oauth("later", timeout=0.5)  # the flow keeps waiting for the user
        with oauth_server.browser() as browser:
            assert browser.authorize(started.browser_url).status_code == 200
        assert client.await_oauth("later", timeout=10).name == "later"
        assert [s.name for s in client.list_secrets()] == ["later"]


def test_await_outlives_the_clients_own_timeout(daemon: DaemonProcess, oauth_server: OAuthServer) -> None:
    with goex.Client(daemon.socket, timeout=0.5) as client:
        client.start_oauth(
            "slow",
            authorization_url=oauth_server.authorization_url,
            token_url=oauth_server.token_url,
            client_id=oauth_server.public_client_id,
            allowed_hosts=[f"http://{oauth_server.host}"],
        )
        started = time.monotonic()
        with pytest.raises(goex.DeadlineExceeded, match="not finished"):
            client.await_oauth("slow", timeout=2)  # the daemon answers after 2 s, past the client's 0.5 s
        assert time.monotonic() - started >= 1.9


def _threads(d: DaemonProcess) -> int:
    assert d.proc is not None
    status = Path(f"/proc/{d.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_open_flows_are_capped_and_expire(tmp_path: Path, oauth_server: OAuthServer) -> None:
    """300 unfinished flows once added 600 threads (37 -> 637): the cap refuses the rest."""
    config = "[vault]\noauth_max_open_flows = 4\noauth_flow_timeout_s = 3.0\n"
    (tmp_path / "d").mkdir()
    d = DaemonProcess(tmp_path / "d", config_toml=config).start()
    try:
        with goex.Client(d.socket) as client:

            def start(name: str) -> goex.OAuthStart:
                return client.start_oauth(
                    name,
                    authorization_url=oauth_server.authorization_url,
                    token_url=oauth_server.token_url,
                    client_id=oauth_server.public_client_id,
                    allowed_hosts=[f"http://{oauth_server.host}"],
                )

            for i in range(4):
                start(f"f{i}")
            threads = _threads(d)
            for i in range(300):
                with pytest.raises(
                    goex.ResourceExhausted, match=r"4 authorization flows .*vault\.oauth_max_open_flows = 4"
                ):
                    start(f"g{i}")
            assert _threads(d) <= threads + 2  # no thread, no listener for a refused flow
            with pytest.raises(goex.NotFound):
                client.await_oauth("g0", timeout=1)  # nothing of a refused flow is kept
            with pytest.raises(goex.DeadlineExceeded, match="expired"):
                client.await_oauth("f0")  # waits until the flow's expiry
            time.sleep(0.5)
            started = start("after")  # expired flows make room again
            with oauth_server.browser() as browser:
                assert browser.authorize(started.browser_url).status_code == 200
            assert client.await_oauth("after", timeout=10).name == "after"
    finally:
        assert d.stop() == 0
    assert "Traceback" not in d.log()


# ---------------------------------------------------------------- addresses goexd does not connect to


def _start_oauth(client: goex.Client, oauth_server: OAuthServer, name: str, token_url: str) -> goex.OAuthStart:
    return client.start_oauth(
        name,
        authorization_url=oauth_server.authorization_url,
        token_url=token_url,
        client_id=oauth_server.public_client_id,
        allowed_hosts=[f"http://{oauth_server.host}"],
    )


def test_start_oauth_to_a_refused_address_is_permission_denied(tmp_path: Path, oauth_server: OAuthServer) -> None:
    """goexd POSTs the code to token_url: a daemon that allows no special-purpose address refuses one on
    loopback (by IP or by name) or the cloud metadata address, before anything is kept."""
    (tmp_path / "d").mkdir()
    d = DaemonProcess(tmp_path / "d", allowed_addresses=()).start()
    try:
        with goex.Client(d.socket) as client:
            threads = 0
            for _ in range(3):  # a flow kept would hold two threads (listener, expiry timer) per start
                for url, why in (
                    (oauth_server.token_url, "127.0.0.1 is loopback"),
                    (f"http://localhost:{oauth_server.port}/o/token/", "is loopback"),
                    ("https://169.254.169.254/latest/api/token", "cloud metadata"),
                ):
                    with pytest.raises(goex.PermissionDenied, match=rf"^token_url: .*{why}.*allowed_addresses"):
                        _start_oauth(client, oauth_server, "dot", url)
                    with pytest.raises(goex.NotFound):
                        client.await_oauth("dot", timeout=1)
                threads = threads or _threads(d)  # after the first round: gRPC's pool grows on demand
            assert client.list_secrets() == []
            assert _threads(d) <= threads + 2
    finally:
        assert d.stop() == 0
    assert "Traceback" not in d.log()


def test_allowing_loopback_does_not_allow_the_metadata_address(
    daemon: DaemonProcess, oauth_server: OAuthServer
) -> None:
    with goex.Client(daemon.socket) as client:
        with pytest.raises(goex.PermissionDenied, match=r"^token_url: .*169\.254\.169\.254 is link-local"):
            _start_oauth(client, oauth_server, "dot", "https://169.254.169.254/latest/api/token")
        _start_oauth(client, oauth_server, "dot", oauth_server.token_url)  # control: loopback is allowed here


def test_refresh_to_a_refused_address_is_recorded_on_the_secret(
    tmp_path: Path, oauth_server_short_tokens: OAuthServer
) -> None:
    """Authorized while loopback was allowed; the daemon restarted without it refreshes the (due) token on its
    schedule, is refused, and records why on the secret instead of retrying."""
    server, root = oauth_server_short_tokens, tmp_path / "d"
    root.mkdir()
    config = "[vault]\noauth_refresh_margin_s = 15.0\n"  # 3-second tokens: due at once; refreshed every 5 s
    first = DaemonProcess(root, config_toml=config).start()
    try:
        with goex.Client(first.socket) as client:
            started = _start_oauth(client, server, "dot", server.token_url)
            with server.browser() as browser:
                assert browser.authorize(started.browser_url).status_code == 200
            assert client.await_oauth("dot", timeout=10).problem == ""
    finally:
        assert first.stop() == 0
    second = DaemonProcess(root, config_toml=config, allowed_addresses=()).start()
    try:
        with goex.Client(second.socket) as client:
            deadline = time.monotonic() + 20
            while (problem := client.list_secrets()[0].problem) == "" and time.monotonic() < deadline:
                time.sleep(0.5)
        assert problem.startswith(f"goexd does not send token requests to {server.token_url}: ")
        assert "127.0.0.1 is loopback" in problem and "goex secret oauth dot" in problem
    finally:
        assert second.stop() == 0
    log = second.log()
    assert "Traceback" not in log and "unusable until authorized again" in log
