"""goex functions list|put|delete: the function sets `goex prompt --functions NAME` picks from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from goex.cli._app import App, UsageError
from goex.cli._text import Text
from goex.v1 import actions_pb2

_ABOUT = """\
A function set is TOML: a name, and functions, each with a description, the JSON Schema of its
arguments, an HTTP call template against the session's http resource and optionally the function
that undoes it (docs/architecture.md, "Planner"). goexd ships `slack`; [planner] functions_dirs adds
directories of sets; `goex functions put` keeps one in goexd. With `goex prompt --functions NAME`
the model picks one function of the set and fills its arguments, which goexd checks first."""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "functions",
        parents=[common],
        help="the function sets prompts may use (--functions): list, put, delete",
        description=_ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", parents=[common], help="every set, its functions and where it comes from")
    ls.set_defaults(handler=cmd_list)
    put = verbs.add_parser("put", parents=[common], help="keep a set (a TOML file; '-': stdin) in goexd")
    put.add_argument("file", metavar="FILE")
    put.add_argument("--overwrite", action="store_true", help="replace a set of the same name")
    put.set_defaults(handler=cmd_put)
    delete = verbs.add_parser("delete", parents=[common], help="remove a set put with `goex functions put`")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=cmd_delete)


def cmd_list(app: App, args: argparse.Namespace) -> int:
    sets = app.client().function_sets()
    if app.json:
        app.emit(actions_pb2.ListFunctionSetsResponse(sets=[s.proto for s in sets]))
        return 0
    for s in sets:
        head = Text(f"{s.name}", style="bold")
        head.append(f"  ({s.source}{'; undone by rule set ' + s.rules if s.rules else ''})")
        app.out.print(head)
        for f in s.functions:
            undo = f"; undone by {f.inverse}" if f.inverse else ""
            arguments = ", ".join(f.parameters.get("properties", {}))
            runs = f"{f.method} {f.path}" if f.kind == "http" else "python, in the sandbox"
            app.out.print(Text(f"  {f.name}({arguments})  {runs}{undo}"))
    return 0


def cmd_put(app: App, args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from None
    kept = app.client().put_function_set(text, overwrite=args.overwrite)
    if app.json:
        app.emit(actions_pb2.PutFunctionSetResponse(set=kept.proto))
    else:
        app.out.print(Text(f"kept function set {kept.name}: {', '.join(f.name for f in kept.functions)}"))
    return 0


def cmd_delete(app: App, args: argparse.Namespace) -> int:
    app.client().delete_function_set(args.name)
    if app.json:
        app.emit(actions_pb2.DeleteFunctionSetResponse())
    else:
        app.out.print(Text(f"deleted function set {args.name}"))
    return 0
