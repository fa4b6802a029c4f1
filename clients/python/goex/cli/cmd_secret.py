"""goex secret put|list|delete|rotate-key|oauth: the daemon's vault (values never leave it)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import webbrowser
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from goex._enums import SecretKind
from goex._secret_models import SecretInfo
from goex._specs import Injection
from goex.cli._app import EXIT_INTERRUPTED, App, CliError, UsageError
from goex.cli._json import response_document
from goex.cli._render import format_time
from goex.cli._text import Text
from goex.cli._units import parse_duration
from goex.v1 import secrets_pb2

HOST_HELP = "allowed [scheme://]host[:port] (repeatable; bare = https on 443, plain http needs http://)"

_KINDS = [k.value for k in SecretKind if k is not SecretKind.UNSPECIFIED]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("secret", parents=[common], help="store, list and delete vault secrets; OAuth2 logins")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    put = verbs.add_parser(
        "put",
        parents=[common],
        help="store a secret (value from a hidden prompt or stdin)",
        description="Store a secret in goexd's vault. The value is read from a hidden prompt "
        "when stdin is a terminal, else from stdin (one trailing newline dropped); "
        "never from the command line. Say where the daemon injects it with one of "
        "--header, --query-param, --env or --dsn-password.",
    )
    put.add_argument("name", metavar="NAME")
    put.add_argument("--kind", choices=_KINDS, default=SecretKind.GENERIC.value, help="default: generic")
    where = put.add_mutually_exclusive_group()
    where.add_argument("--header", metavar="'NAME: TEMPLATE'", help="e.g. 'Authorization: Bearer {value}'")
    where.add_argument("--query-param", metavar="PARAM[=TEMPLATE]", help="e.g. 'api_key' or 'key={value}'")
    where.add_argument("--env", metavar="VAR", help="expose it to sandboxed processes as $VAR (explicit opt-in)")
    where.add_argument("--dsn-password", action="store_true", help="use it as a database URL's password")
    put.add_argument("--host", action="append", default=[], dest="hosts", metavar="HOST", help=HOST_HELP)
    put.add_argument("--username", help="basic auth: the user name (the value is the password)")
    put.add_argument("--overwrite", action="store_true", help="replace an existing secret of that name")
    put.set_defaults(handler=cmd_put)

    ls = verbs.add_parser("list", parents=[common], help="list secrets (metadata only)")
    ls.set_defaults(handler=cmd_list)

    rm = verbs.add_parser("delete", parents=[common], help="delete a secret")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(handler=cmd_delete)

    rot = verbs.add_parser(
        "rotate-key",
        parents=[common],
        help="re-encrypt the vault under a new key",
        description="Re-encrypt goexd's vault under a new key. Without --passphrase goexd makes a new "
        "random key (vaults sealed with a key file or the OS keyring). With --passphrase (vaults "
        "sealed with a passphrase) the new passphrase is read twice from a hidden prompt when stdin "
        "is a terminal, else once from stdin (one trailing newline dropped); never from the command "
        "line. goexd needs the new passphrase at its next start: update vault.passphrase_file or "
        "$GOEX_VAULT_PASSPHRASE if it reads it from there.",
    )
    rot.add_argument("--passphrase", action="store_true", help="seal the vault under a new passphrase")
    rot.set_defaults(handler=cmd_rotate_key)

    oa = verbs.add_parser(
        "oauth",
        parents=[common],
        help="store an OAuth2 token by authorizing in a browser",
        description="Start an OAuth2 authorization-code flow (PKCE) in goexd, open its URL in a browser, "
        "and wait until the provider sends the browser back to goexd, which stores the token as "
        "secret NAME (kind oauth2) and refreshes it from then on. The URL and the redirect URI "
        "goexd listens on are printed on stderr (with --json: the StartOAuth response as one JSON "
        "line on stderr; stdout gets the AwaitOAuth response). Ctrl-C stops waiting; the flow "
        "itself stays open in goexd until it expires.",
    )
    oa.add_argument("name", metavar="NAME")
    oa.add_argument(
        "--service",
        metavar="SERVICE",
        help="a preset: the provider's URLs, default scopes and API hosts (github, gmail, slack, spotify, dropbox, "
        "discord: goex/cli/oauth_services.toml); --auth-url, --token-url and --scope override it, --host adds",
    )
    oa.add_argument("--auth-url", dest="authorization_url", metavar="URL", help="authorization endpoint")
    oa.add_argument("--token-url", metavar="URL", help="token endpoint")
    oa.add_argument("--client-id", required=True, metavar="ID", help="the OAuth2 client registered with the provider")
    oa.add_argument("--scope", action="append", default=[], dest="scopes", metavar="SCOPE", help="(repeatable)")
    oa.add_argument("--host", action="append", default=[], dest="hosts", metavar="HOST", help=HOST_HELP)
    oa.add_argument(
        "--client-secret-stdin",
        action="store_true",
        help="a confidential client: read its client secret from stdin (a hidden prompt on a terminal)",
    )
    oa.add_argument("--overwrite", action="store_true", help="replace an existing secret of that name")
    oa.add_argument("--no-browser", action="store_true", help="only print the URL")
    oa.add_argument(
        "--timeout",
        metavar="SECONDS",
        help="stop waiting after this long (seconds, or 30s / 5m); default: until the flow expires",
    )
    oa.set_defaults(handler=cmd_oauth)


def parse_header(text: str) -> Injection:
    """ "Authorization: Bearer {value}" -> header injection; a bare name injects the value as-is."""
    name, sep, template = text.partition(":")
    name, template = name.strip(), template.strip()
    if not name or (sep and not template) or any(c.isspace() for c in name):
        raise UsageError(
            f"invalid --header {text!r}: expected 'NAME: TEMPLATE', e.g. 'Authorization: Bearer {{value}}'"
        )
    return Injection.header(name, template or "{value}")


def parse_query(text: str) -> Injection:
    """ "api_key" or "key={value}" -> query parameter injection."""
    param, _, template = text.partition("=")
    if not param.strip():
        raise UsageError(f"invalid --query-param {text!r}: expected PARAM or PARAM=TEMPLATE")
    return Injection.query(param.strip(), template or "{value}")


def injection_from_args(args: argparse.Namespace) -> Injection | None:
    if args.header:
        return parse_header(args.header)
    if args.query_param:
        return parse_query(args.query_param)
    if args.env:
        if not args.env.isidentifier():
            raise UsageError(f"invalid --env {args.env!r}: not a variable name")
        return Injection.env(args.env)
    if args.dsn_password:
        return Injection.dsn_password()
    return None


def _read_stdin() -> bytes:
    value = sys.stdin.buffer.read()
    # `echo "$TOKEN" | goex secret put` appends a newline that is not part of the secret.
    if value.endswith(b"\r\n"):
        return value[:-2]
    if value.endswith(b"\n"):
        return value[:-1]
    return value


def _read_hidden(prompt: str, what: str) -> bytes:
    """A hidden prompt on a terminal, else all of stdin (one trailing newline dropped); never empty."""
    value = getpass.getpass(prompt).encode() if sys.stdin.isatty() else _read_stdin()
    if not value:
        raise CliError(f"empty {what}", code="INVALID_ARGUMENT")
    return value


def read_value(name: str) -> bytes:
    return _read_hidden(f"value for {name}: ", "secret value")


def read_new_passphrase() -> bytes:
    """The new vault passphrase: typed twice on a terminal (both must match), else read once from stdin."""
    value = _read_hidden("new vault passphrase: ", "passphrase")
    if sys.stdin.isatty() and getpass.getpass("new vault passphrase again: ").encode() != value:
        raise CliError("the passphrases do not match", code="INVALID_ARGUMENT")
    return value


def cmd_put(app: App, args: argparse.Namespace) -> int:
    injection = injection_from_args(args)
    value = read_value(args.name)
    if args.username is not None:
        values: dict[str, bytes | str] | None = {"username": args.username, "password": value}
        single: bytes | None = None
    else:
        values, single = None, value
    info = app.client().put_secret(
        args.name,
        single,
        kind=args.kind,
        injection=injection,
        allowed_hosts=args.hosts,
        values=values,
        overwrite=args.overwrite,
    )
    if app.json:
        app.emit(secrets_pb2.PutSecretResponse(info=info.proto))
    else:
        app.out.print(Text(f"stored {info.name} ({info.kind})"))
    return 0


def cmd_list(app: App, args: argparse.Namespace) -> int:
    secrets = app.client().list_secrets()
    if app.json:
        app.emit(secrets_pb2.ListSecretsResponse(secrets=[s.proto for s in secrets]))
        return 0
    if not secrets:
        app.err.print("no secrets", style="dim")
        return 0
    # A PROBLEM column only when some secret has one (it is the last column either way).
    problems = any(s.problem for s in secrets)
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NAME", "KIND", "INJECTION", "HOSTS", "EXPIRES", "UPDATED", *(["PROBLEM"] if problems else [])):
        table.add_column(col)
    for s in secrets:
        row: list[str | Text] = [
            Text(s.name),
            str(s.kind),
            Text(s.injection.text if s.injection else "-"),
            Text(", ".join(s.allowed_hosts) or "-"),
            expiry_text(s, now),
            format_time(s.updated_at or s.created_at),
        ]
        if problems:
            row.append(Text(s.problem, style="red") if s.problem else Text("-"))
        table.add_row(*row)
    app.print_table(table)
    return 0


def expiry_text(info: SecretInfo, now: datetime) -> Text:
    """When an oauth2 access token expires: "2026-05-01 12:00:00 (refreshable)"; "-" for other secrets."""
    if info.expires_at is None:
        return Text("-")
    text = Text(format_time(info.expires_at))
    if info.refreshable:
        text.append(" (refreshable)", style="dim")
    elif info.expires_at <= now:
        text.stylize("yellow")
        text.append(" (expired)", style="yellow")
    return text


def cmd_delete(app: App, args: argparse.Namespace) -> int:
    app.client().delete_secret(args.name)
    if app.json:
        app.emit(secrets_pb2.DeleteSecretResponse())
    else:
        app.out.print(Text(f"deleted {args.name}"))
    return 0


def cmd_rotate_key(app: App, args: argparse.Namespace) -> int:
    passphrase = read_new_passphrase() if args.passphrase else b""
    app.client().rotate_vault_key(passphrase)
    if app.json:
        app.emit(secrets_pb2.RotateVaultKeyResponse())
    elif passphrase:
        app.out.print("vault re-encrypted under the new passphrase; goexd needs it at its next start")
    else:
        app.out.print("vault re-encrypted under a new random key")
    return 0


def cmd_oauth(app: App, args: argparse.Namespace) -> int:
    try:
        timeout = parse_duration(args.timeout) if args.timeout is not None else None
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    client_secret = (
        _read_hidden(f"client secret of {args.client_id}: ", "client secret") if args.client_secret_stdin else b""
    )
    if args.service:
        from goex.cli._oauth_services import with_service

        with_service(args)
    if not args.authorization_url or not args.token_url:
        raise UsageError("give --service SERVICE, or both --auth-url and --token-url")
    client = app.client()
    start = client.start_oauth(
        args.name,
        authorization_url=args.authorization_url,
        token_url=args.token_url,
        client_id=args.client_id,
        scopes=args.scopes,
        allowed_hosts=args.hosts,
        client_secret=client_secret,
        overwrite=args.overwrite,
    )
    if app.json:
        # stdout carries exactly one object, the final AwaitOAuth response: the URL a
        # program must show meanwhile comes as one JSON line on stderr.
        app.stderr.write(json.dumps(response_document(start.proto)) + "\n")
        app.stderr.flush()
    else:
        app.err.print(Text(f"to authorize {args.name}, open in a browser:"))
        app.err.print(Text(f"  {start.browser_url}", style="bold"))
        until = f"; the flow expires at {format_time(start.expires_at)}" if start.expires_at else ""
        app.err.print(Text(f"(the provider sends the browser back to {start.redirect_uri}{until})", style="dim"))
    if not args.no_browser and not open_browser(start.browser_url) and not app.json:
        app.warn("could not start a browser: open the URL yourself")

    try:
        with app.spinner("waiting for the browser to come back…"):
            info = client.await_oauth(args.name, timeout=timeout)
    except KeyboardInterrupt:
        until = f" until {format_time(start.expires_at)}" if start.expires_at else ""
        raise CliError(
            f"interrupted; stopped waiting, but the authorization of {args.name} can still complete "
            f"in the browser{until} (`goex secret list` shows it)",
            code="CANCELLED",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    if app.json:
        app.emit(secrets_pb2.AwaitOAuthResponse(info=info.proto))
        return 0
    line = f"stored {info.name} ({info.kind})"
    line += f", expires {format_time(info.expires_at)}" if info.expires_at else ", no expiry given"
    if info.refreshable:
        line += " (refreshable)"
    app.out.print(Text(line))
    if info.problem:
        app.warn(info.problem)
    return 0


def open_browser(url: str) -> bool:
    """webbrowser.open, with whatever the browser prints kept off our stdout (--json owns it)."""
    with _stdout_to_stderr():
        try:
            return webbrowser.open(url)
        except (webbrowser.Error, OSError):
            return False


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr for child processes started meanwhile (as it can)."""
    saved: int | None = None
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):
        if saved is not None:
            os.close(saved)
            saved = None
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
