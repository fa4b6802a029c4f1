"""goex policy check FILE: validate a damage-confinement policy."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from goex.cli._app import App, CliError
from goex.cli._text import Text


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("policy", parents=[common], help="validate policy files")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    c = verbs.add_parser(
        "check",
        parents=[common],
        help="validate a policy file ('-' reads stdin); exit 1 if it has errors",
        description="Ask goexd to validate a policy (TOML). Errors print as FILE:LINE: message; "
        "the exit status is 1 when there are any.",
    )
    c.add_argument("file", metavar="FILE")
    c.set_defaults(handler=cmd_check)


def cmd_check(app: App, args: argparse.Namespace) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}", code="INVALID_ARGUMENT") from None
    except UnicodeDecodeError:
        raise CliError(f"{name} is not UTF-8 text", code="INVALID_ARGUMENT") from None
    check = app.client().check_policy(text)
    code = 0 if check.ok else 1
    if app.json:
        app.emit(check.proto)
        return code
    if check.ok:
        app.out.print(Text(f"{name}: ok", style="green"))
    for err in check.errors:
        where = f"{name}:{err.line}" if err.line else name
        app.out.print(Text(f"{where}: {err.message}", style="red"))
    if not check.ok and not check.errors:
        app.out.print(Text(f"{name}: invalid", style="red"))
    return code
