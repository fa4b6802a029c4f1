"""`goex secret oauth --service`: the presets are data, fill only what the flags leave out, and refuse the unknown."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from goex.cli._app import UsageError
from goex.cli._oauth_services import services, with_service
from goex.cli.main import main
from tests.unit.test_cli_parsing import parse


def test_the_prototypes_services_are_presets_on_https() -> None:
    catalog = services()
    assert set(catalog) == {"github", "gmail", "slack", "spotify", "dropbox", "discord"}
    for name, preset in catalog.items():
        assert set(preset) == {"authorization_url", "token_url", "scopes", "hosts"}, name
        for url in (preset["authorization_url"], preset["token_url"]):
            assert urlsplit(url).scheme == "https" and urlsplit(url).hostname, (name, url)
        assert preset["scopes"] and preset["hosts"] and all("/" not in h for h in preset["hosts"])


def test_a_service_fills_what_the_flags_left_out() -> None:
    args = parse("secret", "oauth", "gh", "--service", "github", "--client-id", "cid", "--host", "uploads.github.com")
    with_service(args)
    assert args.authorization_url == "https://github.com/login/oauth/authorize"
    assert args.token_url == "https://github.com/login/oauth/access_token"
    assert args.scopes == ["repo", "read:user"] and args.hosts == ["api.github.com", "uploads.github.com"]
    own = parse("secret", "oauth", "s", "--service", "slack", "--client-id", "c", "--scope", "chat:write")
    with_service(own)
    assert own.scopes == ["chat:write"]  # --scope replaces the preset's
    with pytest.raises(UsageError, match="'myspace' is not one of discord, dropbox, github"):
        with_service(parse("secret", "oauth", "m", "--service", "myspace", "--client-id", "c"))


def test_without_a_service_both_urls_are_needed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret", "oauth", "gh", "--token-url", "t", "--client-id", "c"]) == 2
    assert capsys.readouterr().err == "error: give --service SERVICE, or both --auth-url and --token-url\n"
