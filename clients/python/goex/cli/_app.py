"""What every command handler gets: output streams, the client, the current session."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from goex._socket import SOCKET_ENV
from goex.cli._state import CliState
from goex.cli._text import plain
from goex.cli._units import parse_duration, parse_size

if TYPE_CHECKING:
    # Loaded when first used: `goex --version` and `--help` need none of them.
    from google.protobuf.message import Message
    from rich.console import Console
    from rich.status import Status
    from rich.table import Table

    from goex._client import Client
    from goex._models import Action, Session
    from goex._specs import Limits

__all__ = [
    "App",
    "ArgumentParser",
    "CliError",
    "Handler",
    "UsageError",
    "add_limit_flags",
    "common_flags",
    "limits_from_args",
    "output",
]

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the CLI reports as one line; `code` is the status name used in --json mode.

    `action_id` (and `action`, as goexd last reported it) name the action it concerns: --json prints them too.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "FAILED_PRECONDITION",
        exit_code: int = EXIT_ERROR,
        action_id: str | None = None,
        action: Action | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code
        self.action_id = action_id
        self.action = action


class Signalled(BaseException):
    """SIGTERM or SIGHUP arrived (SIGINT is Python's KeyboardInterrupt): stop what is waiting, like Ctrl-C.

    A BaseException, as KeyboardInterrupt, so that no `except Exception` swallows it on the way up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_signalled(signum: int, _frame: object) -> None:
    raise Signalled(signum)


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal: 130 for SIGINT (KeyboardInterrupt), 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + exc.signum if isinstance(exc, Signalled) else EXIT_INTERRUPTED


class UsageError(CliError):
    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message, code="INVALID_ARGUMENT", exit_code=EXIT_USAGE)
        self.parser = parser


class ArgumentParser(argparse.ArgumentParser):
    """Raises UsageError instead of printing and exiting, so main() owns all output."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


Handler = Callable[["App", argparse.Namespace], int]


def _console(file: TextIO) -> Console:
    from rich.console import Console

    width = None
    if not file.isatty() and "COLUMNS" not in os.environ:
        # Pipes and captured output: don't fold tables at 80 columns.
        width = 200
    # soft_wrap: a long path stays on one line ("A path" must stay parseable).
    return Console(file=file, highlight=False, soft_wrap=True, width=width)


class PlainConsole:
    """Where nobody watches (a pipe, a file, a script's capture), text and `Text` are written as plain
    text, as rich would without a terminal (no colour, no folding) but without loading rich: its console is
    ~20 ms of every command's start, rich.text ~12. Anything else (a table) goes to a rich console made on
    first use."""

    is_terminal = False

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self._rich: Console | None = None

    @property
    def rich(self) -> Console:
        if self._rich is None:
            self._rich = _console(self.file)
        return self._rich

    def print(self, *objects: Any, end: str = "\n", **options: Any) -> None:
        """As rich's Console.print for str and Text, goex's or rich's (`style`, `markup`, `highlight` change
        nothing here)."""
        texts = [plain(o) for o in objects]
        if all(t is not None for t in texts):
            self.file.write(" ".join(t for t in texts if t is not None) + end)
            return
        self.rich.print(*objects, end=end, **options)

    def capture(self) -> Any:
        return self.rich.capture()


def output(file: TextIO) -> Console | PlainConsole:
    """A rich console on a terminal (or where FORCE_COLOR asks for colour), else a plain one."""
    if file.isatty() or os.environ.get("FORCE_COLOR"):
        return _console(file)
    return PlainConsole(file)


class App:
    def __init__(self, args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.args = args
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.json: bool = bool(getattr(args, "json", False))
        self.socket: str | None = getattr(args, "socket", None) or os.environ.get(SOCKET_ENV) or None
        self.state = CliState()
        self._client: Client | None = None
        self._here: str | None = None  # the open session whose workspace holds the cwd ("" none), once asked
        self._sessions: dict[str, Session] = {}  # the open sessions, by id, as that lookup listed them

    @functools.cached_property
    def out(self) -> Console | PlainConsole:
        return output(self.stdout)

    @functools.cached_property
    def err(self) -> Console | PlainConsole:
        return output(self.stderr)

    # ------------------------------------------------------------ resources

    def client(self) -> Client:
        if self._client is None:
            from goex._client import Client

            self._client = Client(self.socket)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def session_id(self) -> str:
        """The session a command acts on: --session; else the open session whose workspace holds the current
        directory; else the one `goex session open` / `use` remembered."""
        current = self.current_session_id()
        if current is None:
            raise CliError("no session selected: run `goex session open --fs PATH` or pass --session ID")
        return current

    def current_session_id(self) -> str | None:
        """As session_id, None when there is none."""
        explicit: str | None = getattr(self.args, "session", None)
        if explicit:
            return explicit
        if self._here is None:
            from goex._exceptions import Unavailable
            from goex.cli._directory import session_holding

            try:
                listed = self.client().list_sessions()
                self._sessions = {s.id: s for s in listed}
                self._here = session_holding(listed, os.getcwd()) or ""
            except OSError:  # the directory was removed under us: no workspace holds it
                self._here = ""
            except Unavailable:  # goexd not running: the command's own call says so, or "no session selected"
                self._here = ""
        return self._here or self.state.session

    def workdir(self, session_id: str, resource: str | None, chosen: str | None) -> str:
        """Where an action runs, relative to its workspace root ("" = the root): `chosen` (--cwd, relative to
        the root), else the current directory's place in the session's workspace when it is in one."""
        if chosen is not None:
            return "/".join(p for p in chosen.split("/") if p not in ("", "."))
        import dataclasses

        from goex.cli._directory import workspace_holding

        session = self._sessions.get(session_id) or self.client().get_session(session_id)
        if resource is not None:
            session = dataclasses.replace(session, resources=tuple(r for r in session.resources if r.name == resource))
        try:
            here = os.path.realpath(os.getcwd())
        except OSError:  # the directory was removed under us: the root
            return ""
        root = workspace_holding(session, here)
        if root is None:
            return ""
        rel = os.path.relpath(here, root)
        return "" if rel == "." else rel

    @property
    def stdout_is_tty(self) -> bool:
        return self.stdout.isatty()

    # ------------------------------------------------------------ output

    def emit(self, message: Message) -> None:
        """Print a response as the one JSON object of --json mode (docs/cli-json.md)."""
        from goex.cli._json import response_document

        self.print_json(response_document(message))

    def print_json(self, data: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(data, indent=2) + "\n")
        self.stdout.flush()

    def write_raw(self, data: bytes, *, stderr: bool = False) -> None:
        """Pass a command's output through byte for byte (no markup, no re-encoding)."""
        file = self.stderr if stderr else self.stdout
        file.flush()
        buffer = getattr(file, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            file.write(data.decode("utf-8", "replace"))
            file.flush()

    def print_table(self, table: Table, *, stderr: bool = False) -> None:
        """Print a table; off a terminal without the cell padding that trails each line."""
        console, file = (self.err, self.stderr) if stderr else (self.out, self.stdout)
        if console.is_terminal:
            console.print(table)
            return
        with console.capture() as captured:
            console.print(table)
        file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        file.flush()

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {message}", style="yellow", markup=False)

    def error(self, message: str) -> None:
        self.err.print(f"error: {message}", style="red", markup=False)

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[Spinner]:
        """A transient spinner on stderr, shown only when stderr is a terminal."""
        err = self.err
        live = err if not isinstance(err, PlainConsole) and err.is_terminal and not self.json else None
        spinner = Spinner(live, text)
        try:
            yield spinner
        finally:
            spinner.stop()


class Spinner:
    def __init__(self, console: Console | None, text: str) -> None:
        self._status: Status | None = console.status(text) if console is not None else None
        if self._status is not None:
            self._status.start()

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)

    def stop(self) -> None:
        """Remove the spinner for good (e.g. before passing output through)."""
        if self._status is not None:
            self._status.stop()
            self._status = None


# ---------------------------------------------------------------- shared flags


def common_flags(*, json_output: bool = True) -> ArgumentParser:
    """The global flags, as a parent of every (sub)command's parser.

    `json_output=False` leaves out --json, for a command that gives --json a meaning of its own
    (`goex http`: the request's body); `goex --json COMMAND` still asks for JSON output there.
    """
    # SUPPRESS keeps a subcommand's unset flag from overwriting one given before it,
    # so `goex --json log` and `goex log --json` both work.
    common = ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS, help="daemon socket (env GOEX_SOCKET)")
    g.add_argument(
        "--session", metavar="ID", default=argparse.SUPPRESS, help="act on this session instead of the current one"
    )
    if json_output:
        g.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print exactly one JSON object (the RPC response) on stdout",
        )
    return common


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sandbox limits")
    group.add_argument("--timeout", metavar="DURATION", help="wall-clock limit: seconds, or 500ms / 2m / 1h")
    group.add_argument("--memory", metavar="BYTES", help="memory limit: bytes, or 64K / 512M / 2G (powers of 1024)")
    group.add_argument("--max-procs", metavar="N", type=int, help="process-count limit")
    group.add_argument("--output-limit", metavar="BYTES", help="captured output per stream, e.g. 1M")


def limits_from_args(args: argparse.Namespace) -> Limits | None:
    from goex._specs import Limits

    try:
        limits = Limits(
            timeout=parse_duration(args.timeout) if args.timeout else None,
            memory_bytes=parse_size(args.memory) if args.memory else None,
            max_processes=args.max_procs,
            output_bytes=parse_size(args.output_limit) if args.output_limit else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_procs is not None and args.max_procs < 1:
        raise UsageError("--max-procs must be at least 1")
    return None if limits.is_empty else limits
