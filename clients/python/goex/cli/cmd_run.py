"""goex run -- ARGV... / goex python CODE: run an action in the current session; goex cancel ACTION."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from goex._client import Client, interrupted_action, interrupted_action_id, interrupted_was_cancelled
from goex._enums import ActionKind, ActionState, OutputStream, Verdict
from goex._models import Action, ActionEvent, OutputEvent, StateEvent
from goex._specs import ActionBody, Egress, Http, Python, Shell
from goex.cli._app import (
    App,
    CliError,
    Signalled,
    UsageError,
    add_limit_flags,
    interrupt_exit_code,
    limits_from_args,
)
from goex.cli._refs import ACTION_HELP, action_id
from goex.cli._render import action_headline, change_lines, egress_table, exit_status, kv_grid, reversibility_text
from goex.cli._text import Text
from goex.v1 import actions_pb2

EXIT_HELP = """\
exit status:
  N       the command's own exit status (it ran; its changes are pending)
  128+N   the command was killed by signal N
  124     the action hit its time limit (rolled back)
  125     the action did not complete: blocked by policy, failed to start, hit its
          memory or process limit, failed or was interrupted (rolled back)
  0       with --detach: the action was accepted
  1       goex error (daemon not running, unknown session, ...); 2: usage error
  130     interrupted by SIGINT (Ctrl-C, `timeout -s INT`, a script's kill -INT);
  143     by SIGTERM; 129 by SIGHUP (the terminal closed). goex cancels the action in
          goexd, waits for it to be rolled back (at most 10 s) and reports its id and
          state (--json: the error object with "action_id" and the action); a second
          signal stops waiting. With --detach nothing is cancelled.

--inverse: on a workspace with the inverse strategy (goex session open --fs-strategy inverse),
what undoes the action: for `goex run` a shell command line (run as `sh -c CMD`), for
`goex python` Python code. goexd first tries the pair on an overlay of the workspace; a pair
that does not leave it as it was is blocked (exit 125), the error naming what differs.
--test: runs nothing for real; goexd tries the action and --inverse on a throwaway overlay of
the workspace (any strategy) and prints the verdict: "test passed" (the workspace came back
exactly: contents, modes, owners, links), "test failed" (what differs) or "test unknown" (not
tried, and why). Exit 0 passed, 3 failed, 4 unknown.

The command's stdout and stderr are passed through byte for byte to goex's stdout and
stderr (live when stdout is a terminal), so `goex run -- cat x.txt > out` puts x.txt in out.
goex's own report goes to stderr: with --secret or --allow-host, the requests the command
made through goexd's egress proxy as a table (METHOD, URL, STATUS, DECISION, REASON); then
the action's state and exit status, and its file changes as "A path" (added), "M"
(modified), "D" (deleted), "T" (type changed), "P" (permissions changed).
--quiet leaves only the command's output.
"""

# After WatchAction ends, the final state may lag a moment behind; how long to poll for it.
_SETTLE_S = 5.0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser(
        "run",
        parents=[common],
        help="run a command sandboxed in the current session",
        description="Run ARGV as-is (no shell; use `sh -c '...'` for one) inside the sandbox, in the "
        "current directory's place in the session's workspace (its root from outside it; --cwd to choose).",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="goex run [options] -- ARGV...",
    )
    _add_action_flags(r)
    r.add_argument("argv", nargs=argparse.REMAINDER, metavar="ARGV", help="the command and its arguments")
    r.set_defaults(handler=cmd_run)

    py = sub.add_parser(
        "python",
        parents=[common],
        help="run Python code sandboxed in the current session",
        description="Run CODE with the sandbox's python3, in the current directory's place in the workspace "
        "(as goex run). CODE '-' reads it from stdin.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_action_flags(py)
    py.add_argument("code", metavar="CODE")
    py.set_defaults(handler=cmd_python)

    c = sub.add_parser(
        "cancel",
        parents=[common],
        help="stop a running or queued action (it is rolled back)",
        description="Ask goexd to stop ACTION. It ends failed (termination cancelled) and its "
        "changes are rolled back. Waits a few seconds for that outcome and prints it; with "
        "--json prints the CancelAction response (the action as it was when the cancel arrived).",
    )
    c.add_argument("action", metavar="ACTION", help=ACTION_HELP)
    c.set_defaults(handler=cmd_cancel)


def _add_action_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detach", action="store_true", help="print the action id once accepted and return")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the command's own output")
    p.add_argument("--resource", metavar="NAME", help="target resource (default: the session's only one)")
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="run in DIR, a directory of the workspace given relative to its root ('.' the root); "
        "default: the current directory's place in the workspace (its root from outside it)",
    )
    p.add_argument("-m", "--description", metavar="TEXT", help="free text for the timeline")
    p.add_argument(
        "--inverse",
        metavar="CMD",
        help="what undoes this action (goex run: a shell command line, run as sh -c CMD; goex python: code); "
        "for a workspace with the inverse strategy, tried with the action before it runs",
    )
    p.add_argument(
        "--test",
        action="store_true",
        help="run nothing for real: try the action and --inverse on a throwaway overlay of the workspace",
    )
    add_approve_flag(p)
    add_limit_flags(p)
    net = p.add_argument_group(
        "network",
        "Without these the action has no network. With them its only way out is goexd's egress proxy "
        "(HTTP_PROXY/HTTPS_PROXY are set).",
    )
    net.add_argument(
        "--secret",
        action="append",
        default=[],
        dest="secrets",
        metavar="NAME",
        help="vault secret the action may use, seen inside as the placeholder goex-secret:NAME; "
        "the proxy puts the value in towards the secret's allowed hosts (repeatable)",
    )
    net.add_argument(
        "--allow-host",
        action="append",
        default=[],
        dest="allow_hosts",
        metavar="HOST",
        help="further host to reach without credentials; goexd's egress.allowed_hosts must allow it (repeatable)",
    )
    net.add_argument(
        "--http",
        action="append",
        default=[],
        dest="http_resources",
        metavar="NAME",
        help="the session's http resource the code may call: its policy applies to each request, goexd adds "
        "its secret, and each call is recorded with its inverse and undone with the action (repeatable)",
    )


def cmd_run(app: App, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("nothing to run: goex run [options] -- ARGV...")
    cwd = app.workdir(app.session_id(), args.resource, args.cwd)
    inverse = Shell(["sh", "-c", args.inverse], cwd=cwd) if args.inverse is not None else None
    return run_action(app, args, Shell(argv, cwd=cwd), inverse)


def cmd_python(app: App, args: argparse.Namespace) -> int:
    code: str = sys.stdin.read() if args.code == "-" else args.code
    if not code.strip():
        raise UsageError("no Python code given")
    cwd = app.workdir(app.session_id(), args.resource, args.cwd)
    inverse = Python(args.inverse, cwd=cwd) if args.inverse is not None else None
    return run_action(app, args, Python(code, cwd=cwd), inverse)


def run_action(app: App, args: argparse.Namespace, body: ActionBody, inverse: ActionBody | None = None) -> int:
    if inverse is not None and not args.inverse.strip():
        raise UsageError("--inverse needs a command")
    if args.test:
        return _test(app, args, body, inverse)
    outcome = submit_action(
        app,
        body,
        detach=args.detach,
        resource=args.resource,
        limits=limits_from_args(args),
        description=args.description,
        egress=egress_from_args(args),
        approval=args.approve or "",
        inverse=inverse,
    )
    if outcome is None:
        return 0
    action, streamed = outcome
    if app.json:
        app.emit(actions_pb2.SubmitActionResponse(action=action.proto))
        return exit_status(action)
    print_outputs(app, action, streamed, report_follows=not args.quiet)
    if not args.quiet:
        print_egress(app, action)
        print_summary(app, action)
    return exit_status(action)


EXIT_TEST_FAILED = 3  # as `goex undo`'s NOT verified
EXIT_TEST_UNKNOWN = 4  # as `goex undo`'s unverified


def _test(app: App, args: argparse.Namespace, body: ActionBody, inverse: ActionBody | None) -> int:
    """--test: the action and its inverse tried on a throwaway overlay of the workspace; nothing runs for real."""
    if args.detach or args.approve or egress_from_args(args) is not None:
        raise UsageError("--test runs nothing for real: --detach, --approve and network flags do not go with it")
    verdict = app.client().test_reversibility(
        app.session_id(), body, inverse=inverse, resource=args.resource, limits=limits_from_args(args)
    )
    if app.json:
        app.emit(actions_pb2.TestReversibilityResponse(reversibility=verdict.proto))
    else:
        app.out.print(kv_grid([("reversibility", reversibility_text(verdict))]))
    return {Verdict.PASSED: 0, Verdict.FAILED: EXIT_TEST_FAILED}.get(verdict.verdict, EXIT_TEST_UNKNOWN)


def submit_action(
    app: App, body: ActionBody, *, detach: bool, **options: Any
) -> tuple[Action, dict[OutputStream, bool]] | None:
    """Submit `body` in the current session and wait for its result.

    `options` go to `Client.submit`. With `detach`, prints the accepted action's id
    (or the response with --json) and returns None. Otherwise returns the finished
    action and which of its output streams were already passed through live: on a
    terminal the output is followed as it comes and Ctrl-C cancels the action.
    """
    client = app.client()
    session_id = app.session_id()
    if detach:
        action = client.submit(session_id, body, detach=True, **options)
        if app.json:
            app.emit(actions_pb2.SubmitActionResponse(action=action.proto))
        else:
            app.out.print(action.id, markup=False)
            app.err.print(f"follow it with `goex show {action.id}`", style="dim", markup=False)
        return None

    if isinstance(body, Http):
        # goexd answers a request in one call (a pre-image it refuses raises there); it is not cancelled.
        try:
            with app.spinner("sending…"):
                action = client.submit(session_id, body, **options)
        except (KeyboardInterrupt, Signalled) as exc:
            raise CliError(
                "interrupted; the request may still be sent (see `goex log`)",
                code="CANCELLED",
                exit_code=interrupt_exit_code(exc),
            ) from None
        return action, {OutputStream.STDOUT: False, OutputStream.STDERR: False}

    # One RunAction stream: an interruption (Ctrl-C, SIGINT/SIGTERM/SIGHUP from a script or `timeout`) cancels the
    # action by its id; killed outright (SIGKILL), goex leaves a stream that ends, and goexd cancels it then. The
    # output comes live only when a person watches stdout; else once, with the result.
    streamed = {OutputStream.STDOUT: False, OutputStream.STDERR: False}
    live = not app.json and app.stdout_is_tty
    try:
        with app.spinner("submitting…") as spinner:

            def show(event: ActionEvent) -> None:
                if isinstance(event, StateEvent):
                    spinner.update(f"{event.state}…")
                elif isinstance(event, OutputEvent) and event.data:
                    spinner.stop()  # it would redraw over the output
                    streamed[event.stream] = True
                    app.write_raw(event.data, stderr=event.stream is OutputStream.STDERR)

            final = client.submit(session_id, body, on_event=show, live_output=live, **options)
    except (KeyboardInterrupt, Signalled) as exc:
        raise interrupted_error(exc) from None
    return final, streamed


def interrupted_error(exc: BaseException) -> CliError:
    """What the CLI reports when a signal stopped its wait for an action (which `Client.submit` cancelled)."""
    action_id = interrupted_action_id(exc)
    if action_id is None:
        return CliError(
            "interrupted before goexd accepted the action; if it did, it is cancelled as no one follows it",
            code="CANCELLED",
            exit_code=interrupt_exit_code(exc),
        )
    final = interrupted_action(exc)
    if final is None:
        message = (
            f"interrupted; asked goexd to cancel action {action_id}, its outcome is unknown (`goex show {action_id}`)"
        )
    elif final.state.is_active:
        message = f"interrupted; asked goexd to cancel action {action_id}, which is still {final.state}"
    elif interrupted_was_cancelled(exc):  # a SQL action has no exec result: the cancel's own word counts
        message = f"interrupted; cancelled action {action_id} ({final.state}, rolled back)"
    else:
        hint = f"; `goex undo {action_id}` rolls it back" if final.is_pending else ""
        message = f"interrupted; action {action_id} had already finished ({final.state}){hint}"
    return CliError(message, code="CANCELLED", exit_code=interrupt_exit_code(exc), action_id=action_id, action=final)


def add_approve_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--approve",
        metavar="TEXT",
        help="explicit approval (who and why) for an action the session's policy holds for approval; recorded",
    )


def egress_from_args(args: argparse.Namespace) -> Egress | None:
    """--secret / --allow-host / --http as the action's egress; None (no network) without any."""
    for flag, values in (
        ("--secret", args.secrets),
        ("--allow-host", args.allow_hosts),
        ("--http", args.http_resources),
    ):
        if any(not v.strip() for v in values):
            raise UsageError(f"{flag} needs a non-empty value")
    egress = Egress(secrets=args.secrets, hosts=args.allow_hosts, resources=args.http_resources)
    return None if egress.is_empty else egress


def _settle(client: Client, action: Action) -> Action:
    """Poll until the action leaves the active states, for at most _SETTLE_S."""
    deadline = time.monotonic() + _SETTLE_S
    while action.state.is_active and time.monotonic() < deadline:
        time.sleep(0.05)
        action = client.get_action(action.id)
    return action


def cmd_cancel(app: App, args: argparse.Namespace) -> int:
    client = app.client()
    delivered = client.cancel(action_id(app, args.action))
    if app.json:
        app.emit(actions_pb2.CancelActionResponse(action=delivered.proto))
        return 0
    with app.spinner("cancelling…"):
        final = _settle(client, delivered)
    if final.state.is_active:
        app.out.print(Text(f"cancel sent; action {final.id} is still {final.state} (see `goex show {final.id}`)"))
        return 0
    app.out.print(action_headline(final))
    if final.error:
        app.err.print(Text(final.error, style="dim"))
    return 0


def print_outputs(app: App, action: Action, streamed: dict[OutputStream, bool], *, report_follows: bool = True) -> None:
    """The captured output of streams that were not already shown live; `report_follows`: goex's report
    comes next on stderr, so it starts on a line of its own."""
    result = action.exec
    if result is None:
        return
    if result.stdout and not streamed[OutputStream.STDOUT]:
        app.write_raw(result.stdout)
    if result.stderr and not streamed[OutputStream.STDERR]:
        app.write_raw(result.stderr, stderr=True)
    if result.stdout_truncated:
        app.warn(f"stdout truncated: {len(result.stdout)} of {result.stdout_total_bytes} bytes kept")
    if result.stderr_truncated:
        app.warn(f"stderr truncated: {len(result.stderr)} of {result.stderr_total_bytes} bytes kept")
    # On a terminal, keep the summary off a last line of output that lacks a newline; elsewhere
    # stdout stays the command's own bytes.
    if result.stdout and not result.stdout.endswith(b"\n") and app.stdout_is_tty:
        app.write_raw(b"\n")
    if report_follows and result.stderr and not result.stderr.endswith(b"\n") and not streamed[OutputStream.STDERR]:
        app.write_raw(b"\n", stderr=True)


def print_egress(app: App, action: Action) -> None:
    """The requests the action made through the egress proxy, if any."""
    table = egress_table(action.egress)
    if table is not None:
        app.print_table(table, stderr=True)


# The report after an action names at most this many changed paths ("... and N more" after them).
SUMMARY_CHANGES = 50


def print_summary(app: App, action: Action) -> None:
    """goex's own account of the action, on stderr (stdout carries only the action's own output):
    the headline, the error, the changes, the inverse's trial."""
    app.err.print(action_headline(action))
    if action.error:
        reason = {
            ActionState.BLOCKED: "blocked",
            ActionState.FAILED: "failed (rolled back)",
            ActionState.INTERRUPTED: "interrupted (rolled back)",
        }.get(action.state, str(action.state))
        if action.kind is ActionKind.HTTP and action.state is not ActionState.BLOCKED:
            # A sent request is not taken back: the service refused it, or may have acted (the error says).
            reason = str(action.state)
        app.err.print(Text(f"{reason}: {action.error}", style="red"))
    lines = change_lines(action.changes, limit=SUMMARY_CHANGES)
    if action.changes is not None and max(action.changes.total, len(action.changes.changes)) > SUMMARY_CHANGES:
        lines.append(Text(f"(`goex show {action.id}` lists every change)", style="dim"))
    if lines and action.state in (ActionState.FAILED, ActionState.INTERRUPTED):
        # The change set describes what the action did before goexd undid it.
        app.err.print(Text("changes before the rollback:", style="dim"))
    for line in lines:
        app.err.print(line)
    tested = action.reversibility
    if (
        action.kind in (ActionKind.SHELL, ActionKind.PYTHON, ActionKind.SQL)
        and tested is not None
        and tested.verdict is not Verdict.UNTESTED
    ):
        app.err.print(kv_grid([("reversibility", reversibility_text(tested))]))  # its inverse's trial
    if action.is_pending and app.err.is_terminal:
        app.err.print(Text(f"pending: `goex commit` keeps it, `goex undo {action.id}` rolls it back", style="dim"))
