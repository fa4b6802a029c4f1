"""goex secret put|list|delete: the daemon's vault (values never leave it)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from goex._enums import SecretKind
from goex._specs import Injection
from goex.cli._app import App, CliError, UsageError
from goex.cli._render import format_time
from goex.v1 import secrets_pb2

_KINDS = [k.value for k in SecretKind if k is not SecretKind.UNSPECIFIED]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("secret", parents=[common], help="store, list and delete vault secrets")
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
    put.add_argument(
        "--host", action="append", default=[], dest="hosts", metavar="HOST", help="allowed host (repeatable)"
    )
    put.add_argument("--username", help="basic auth: the user name (the value is the password)")
    put.add_argument("--overwrite", action="store_true", help="replace an existing secret of that name")
    put.set_defaults(handler=cmd_put)

    ls = verbs.add_parser("list", parents=[common], help="list secrets (metadata only)")
    ls.set_defaults(handler=cmd_list)

    rm = verbs.add_parser("delete", parents=[common], help="delete a secret")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(handler=cmd_delete)


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


def read_value(name: str) -> bytes:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value for {name}: ").encode()
    else:
        value = sys.stdin.buffer.read()
        # `echo "$TOKEN" | goex secret put` appends a newline that is not part of the secret.
        if value.endswith(b"\r\n"):
            value = value[:-2]
        elif value.endswith(b"\n"):
            value = value[:-1]
    if not value:
        raise CliError("empty secret value", code="INVALID_ARGUMENT")
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
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NAME", "KIND", "INJECTION", "HOSTS", "UPDATED"):
        table.add_column(col)
    for s in secrets:
        table.add_row(
            Text(s.name),
            str(s.kind),
            Text(s.injection.text if s.injection else "-"),
            Text(", ".join(s.allowed_hosts) or "-"),
            format_time(s.updated_at or s.created_at),
        )
    app.print_table(table)
    return 0


def cmd_delete(app: App, args: argparse.Namespace) -> int:
    app.client().delete_secret(args.name)
    if app.json:
        app.emit(secrets_pb2.DeleteSecretResponse())
    else:
        app.out.print(Text(f"deleted {args.name}"))
    return 0
