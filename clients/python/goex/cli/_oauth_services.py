"""`goex secret oauth --service`: OAuth2 presets as data (oauth_services.toml beside this file)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from goex.cli._app import UsageError

CATALOG = Path(__file__).with_name("oauth_services.toml")


def services() -> dict[str, dict[str, Any]]:
    with CATALOG.open("rb") as f:
        return tomllib.load(f)


def with_service(args: argparse.Namespace) -> None:
    """Fill what the flags left out from the preset of `args.service` (flags win; --host adds to its hosts)."""
    known = services()
    preset = known.get(args.service)
    if preset is None:
        raise UsageError(f"--service: {args.service!r} is not one of {', '.join(sorted(known))}")
    args.authorization_url = args.authorization_url or preset["authorization_url"]
    args.token_url = args.token_url or preset["token_url"]
    args.scopes = args.scopes or list(preset["scopes"])
    args.hosts = [*preset["hosts"], *(h for h in args.hosts if h not in preset["hosts"])]
