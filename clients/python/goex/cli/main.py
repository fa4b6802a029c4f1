"""Entry point of the `goex` command: parse, dispatch to a cmd_* handler, report errors.

Exit codes (every command): 0 success, 1 error (one red `error: ...` line on stderr,
or {"error": {"code": ..., "message": ...}} on stdout with --json), 2 usage error,
130 interrupted. `goex run`/`goex python` add the command's own status, `goex sql` and
`goex http` 125 for an action that did not complete (see their --help).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import sys
from types import ModuleType
from typing import Any, NoReturn

from goex._version import __version__
from goex.cli._app import (
    EXIT_ERROR,
    EXIT_USAGE,
    App,
    ArgumentParser,
    CliError,
    Signalled,
    UsageError,
    common_flags,
    interrupt_exit_code,
    output,
    raise_signalled,
)

__all__ = ["build_parser", "main", "run"]

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
  GOEX_CLI_STATE   file remembering the last session opened or used
                   (default $XDG_STATE_HOME/goex/cli.json or ~/.local/state/goex/cli.json)

the session a command acts on: --session ID; else the open session whose workspace holds
the current directory; else the one remembered in GOEX_CLI_STATE.

exit status: 0 ok, 1 error, 2 usage error, 130 interrupted; goex run / goex python
exit with the command's own status (see `goex run --help`), goex sql and goex http
with 125 when the action did not complete (see `goex sql --help`, `goex http --help`).
"""


# Every command: the goex.cli module whose register() defines it, and its line in `goex --help`.
# A command's module (and what it imports: grpc, the generated stubs, rich) is loaded only when that
# command runs, so `goex --version`, `goex --help` and each command pay only for what they use.
# tests/unit/test_cli_startup.py checks this table against what the modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "session": ("cmd_session", "open, inspect and close sessions"),
    "describe": ("cmd_session", "what a planner is told about the session's resources"),
    "run": ("cmd_run", "run a command sandboxed in the current session"),
    "python": ("cmd_run", "run Python code sandboxed in the current session"),
    "cancel": ("cmd_run", "stop a running or queued action (it is rolled back)"),
    "sql": ("cmd_sql", "run SQL on a database of the current session"),
    "http": ("cmd_http", "send an HTTP request to a REST service of the current session"),
    "prompt": ("cmd_prompt", "turn a sentence into an action with goexd's planner (an LLM), and run it"),
    "functions": ("cmd_functions", "the function sets prompts may use (--functions): list, put, delete"),
    "log": ("cmd_log", "the current session's timeline"),
    "show": ("cmd_log", "one action in detail, with its output and changes"),
    "judge": ("cmd_judge", "mark an action's undo (its action and inverse) right or wrong"),
    "diff": ("cmd_diff", "the unified diff of an action's changes, or of your edits since the last action"),
    "commit": ("cmd_resolve", "keep pending actions (all, or up to one)"),
    "undo": ("cmd_resolve", "roll back a pending action (default: the newest)"),
    "undo-to": ("cmd_resolve", "roll back every pending action after ACTION"),
    "set-aside": ("cmd_set_aside", "versions of your files goexd overwrote and kept (list, restore)"),
    "secret": ("cmd_secret", "store, list and delete vault secrets; OAuth2 logins"),
    "policy": ("cmd_policy", "validate policy files"),
    "health": ("cmd_admin", "is goexd up and healthy? (exit 1 if not)"),
    "stats": ("cmd_admin", "sessions, actions by state, storage use"),
    "gc": ("cmd_admin", "remove snapshots no pending action needs"),
    "stop": ("cmd_admin", "stop goexd, saying what that interrupts (--drain: let it finish first)"),
    "install-service": ("cmd_service", "write systemd user units that start goexd on its socket, and a daily gc timer"),
    "uninstall-service": ("cmd_service", "stop and remove the systemd user units install-service wrote"),
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"goex.cli.{name}")


def build_parser(command: str | None = None, *, complete: bool = True, others: bool = True) -> ArgumentParser:
    """The `goex` parser. `complete`: every command defined in full (loads every command module);
    otherwise only `command`'s module defines its commands, the others are their names and help
    (without `others`, left out: they only matter to usage and help)."""
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
    wanted = {module for module, _ in COMMANDS.values()} if complete else set()
    if command in COMMANDS:
        wanted.add(COMMANDS[command][0])
    for name, (module, help_text) in COMMANDS.items():
        if name in sub.choices:
            continue
        if module in wanted:
            command_module(module).register(sub, common)
        elif others:
            sub.add_parser(name, parents=[common], help=help_text, add_help=False)
    return parser


def _parse(args_list: list[str]) -> argparse.Namespace:
    word = _command_word(args_list)
    if word in COMMANDS:
        try:  # its module's commands alone (~2 ms less than the others' names as well)
            return build_parser(word, complete=False, others=False).parse_args(args_list)
        except UsageError:
            pass  # again below, so that the message and usage are those of the whole parser
    args = build_parser(word, complete=False).parse_args(args_list)
    if not hasattr(args, "handler"):  # the command was not where _command_word looked
        args = build_parser().parse_args(args_list)
    return args


def _command_word(argv: list[str]) -> str | None:
    """The command named in `argv` (the first word that is not a global option), if any."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return None
        if word in ("--socket", "--session"):
            i += 2  # and its value
            continue
        if not word.startswith("-"):
            return word
        i += 1
    return None


def _wants_json(argv: list[str]) -> bool:
    """--json before any `--` (for errors raised before parsing has finished).

    After the command `http`, --json is the request's body, not this.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    words = argv[:end]
    if _command_word(words) == "http":
        words = words[: words.index("http")]
    return "--json" in words


def _report(json_mode: bool, code: str, message: str, error: CliError | None = None) -> None:
    """One error: a JSON object on stdout with --json (docs/cli-json.md), else one red line on stderr."""
    if json_mode:
        from goex.cli._json import error_document

        action_id = error.action_id if error is not None else None
        action = error.action.proto if error is not None and error.action is not None else None
        document = error_document(code, message, action_id=action_id, action=action)
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()
    else:
        output(sys.stderr).print(f"error: {message}", style="red", markup=False)


def _usage(exc: UsageError, json_mode: bool) -> int:
    if not json_mode and exc.parser is not None:
        sys.stderr.write(exc.parser.format_usage())
    _report(json_mode, exc.code, exc.message)
    return EXIT_USAGE


def _on_signals(handler: Any) -> dict[int, Any]:
    """Set `handler` for SIGTERM and SIGHUP; the handlers they had. Only the main thread may (main() called
    from another thread keeps them)."""
    try:
        return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:
        return {}


def main(argv: list[str] | None = None) -> int:
    """Run `goex` with `argv` (default: sys.argv[1:]); returns the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    json_mode = _wants_json(args_list)
    if not args_list:  # bare `goex`: the help, not a usage error
        build_parser(complete=False).print_help()
        return 0
    try:
        args = _parse(args_list)
    except UsageError as exc:
        return _usage(exc, json_mode)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0

    from goex._exceptions import GoexError  # after parsing: it loads grpc

    # SIGTERM and SIGHUP stop a command as Ctrl-C does (a running action is cancelled, see `goex run
    # --help`), instead of killing goex on the spot with the action left running in goexd.
    previous = _on_signals(raise_signalled)
    app = App(args)
    try:
        status: int = args.handler(app, args)
        return status
    except UsageError as exc:
        return _usage(exc, app.json)
    except CliError as exc:
        _report(app.json, exc.code, exc.message, exc)
        return exc.exit_code
    except GoexError as exc:
        _report(app.json, exc.code_name, exc.message, CliError(exc.message, action_id=exc.action_id))
        return EXIT_ERROR
    except (KeyboardInterrupt, Signalled) as exc:
        _report(app.json, "CANCELLED", "interrupted")
        return interrupt_exit_code(exc)
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
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run() -> NoReturn:
    """The `goex` console script: main(), then leave at once.

    os._exit skips the interpreter's teardown, which frees every object of every module one by one: ~25 ms
    once grpc and protobuf are loaded, a sixth of a `goex run` from a script. Nothing is left for it to do:
    main() has closed the channel, and stdout and stderr are flushed here (a reader gone makes it exit 1).
    The cyclic garbage collector is off for the command's short life: loading grpc, protobuf and the client
    makes many objects and frees few, and collecting during it cost ~5-8 ms (reference counting still frees
    what is dropped).
    """
    gc.disable()
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or EXIT_ERROR
    os._exit(status)


if __name__ == "__main__":
    run()
