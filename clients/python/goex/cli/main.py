"""Entry point of the `goex` command: parse, dispatch to a cmd_* handler, report errors.

Exit codes (every command): 0 success, 1 error (one red `error: ...` line on stderr,
or {"error": {"code": ..., "message": ...}} on stdout with --json), 2 usage error,
130 interrupted. `goex run`/`goex python` add the command's own status, `goex sql` and
`goex http` 125 for an action that did not complete (see their --help).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from rich.console import Console

from goex import __version__
from goex._exceptions import GoexError
from goex.cli import (
    cmd_admin,
    cmd_diff,
    cmd_http,
    cmd_judge,
    cmd_log,
    cmd_policy,
    cmd_resolve,
    cmd_run,
    cmd_secret,
    cmd_session,
    cmd_set_aside,
    cmd_sql,
)
from goex.cli._app import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    App,
    ArgumentParser,
    CliError,
    UsageError,
    common_flags,
)

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Run commands against your files with undo: every action runs sandboxed in a session,
is checkpointed first, and stays pending until you commit or undo it.

  goex session open --fs .          open a session over a workspace (becomes current)
  goex run -- make build            run a command; shows its output and file changes
  goex sql "UPDATE t SET n = n + 1" run SQL on the session's database (--db at open)
  goex http POST /items --json '{"name": "x"}'
                                    call the session's REST service (--http at open)
  goex log                          the session's timeline
  goex diff [ACTION]                what an action changed (--since-last: your edits since)
  goex undo                         roll back the newest pending action
  goex set-aside list               your versions an undo --force overwrote (restore ID)
  goex commit                       keep everything pending
"""

_EPILOG = """\
environment:
  GOEX_SOCKET      daemon socket (default $XDG_RUNTIME_DIR/goex/goexd.sock,
                   or /tmp/goex-<uid>/goexd.sock without XDG_RUNTIME_DIR)
  GOEX_CLI_STATE   file remembering the current session
                   (default $XDG_STATE_HOME/goex/cli.json or ~/.local/state/goex/cli.json)

exit status: 0 ok, 1 error, 2 usage error, 130 interrupted; goex run / goex python
exit with the command's own status (see `goex run --help`), goex sql and goex http
with 125 when the action did not complete (see `goex sql --help`, `goex http --help`).
"""


def build_parser() -> ArgumentParser:
    common = common_flags()
    parser = ArgumentParser(
        prog="goex",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"goex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        cmd_session,
        cmd_run,
        cmd_sql,
        cmd_http,
        cmd_log,
        cmd_judge,
        cmd_diff,
        cmd_resolve,
        cmd_set_aside,
        cmd_secret,
        cmd_policy,
        cmd_admin,
    ):
        module.register(sub, common)
    return parser


def _wants_json(argv: list[str]) -> bool:
    """--json before any `--` (for errors raised before parsing has finished).

    After the command `http`, --json is the request's body, not this.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    words = argv[:end]
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("--socket", "--session"):
            i += 2  # and its value
            continue
        if not word.startswith("-"):  # the command
            if word == "http":
                words = words[:i]
            break
        i += 1
    return "--json" in words


def _report(json_mode: bool, code: str, message: str) -> None:
    """One error: a JSON object on stdout with --json, else one red line on stderr."""
    if json_mode:
        sys.stdout.write(json.dumps({"error": {"code": code, "message": message}}, indent=2) + "\n")
        sys.stdout.flush()
    else:
        Console(file=sys.stderr, highlight=False, soft_wrap=True).print(f"error: {message}", style="red", markup=False)


def _usage(exc: UsageError, json_mode: bool) -> int:
    if not json_mode and exc.parser is not None:
        sys.stderr.write(exc.parser.format_usage())
    _report(json_mode, exc.code, exc.message)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Run `goex` with `argv` (default: sys.argv[1:]); returns the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    json_mode = _wants_json(args_list)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        return _usage(exc, json_mode)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0

    app = App(args)
    try:
        status: int = args.handler(app, args)
        return status
    except UsageError as exc:
        return _usage(exc, app.json)
    except CliError as exc:
        _report(app.json, exc.code, exc.message)
        return exc.exit_code
    except GoexError as exc:
        _report(app.json, exc.code_name, exc.message)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _report(app.json, "CANCELLED", "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `goex log | head`: the reader left; stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("GOEX_DEBUG"):
            raise
        message = f"goex CLI bug: {type(exc).__name__}: {exc} (GOEX_DEBUG=1 shows the traceback)"
        _report(app.json, "INTERNAL", message)
        return EXIT_ERROR
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
