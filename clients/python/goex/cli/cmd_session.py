"""goex session open|list|show|use|describe|close, and goex describe (the current session's)"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from typing import Any, Literal

from rich.table import Table

from goex._enums import UndoStrategy
from goex._exceptions import FailedPrecondition
from goex._models import ResourceDescription, Session
from goex._specs import ResourceSpec
from goex.cli._app import App, CliError, UsageError, add_limit_flags, limits_from_args
from goex.cli._render import format_time, kv_grid
from goex.cli._text import Text
from goex.cli._units import format_bytes, format_duration
from goex.v1 import sessions_pb2

# The undo strategies `goex session open` offers: --fs-strategy for a workspace, --db-strategy for databases,
# --http-strategy for REST services.
FS_STRATEGIES = (UndoStrategy.VERSIONED.value, UndoStrategy.INVERSE.value)
DB_STRATEGIES = (UndoStrategy.TRANSACTION.value, UndoStrategy.INVERSE.value, UndoStrategy.CLONE.value)
HTTP_STRATEGIES = (UndoStrategy.INVERSE.value, UndoStrategy.CONFINE.value)

# NAME=BASE_URL: a resource name before the first '=' (a bare URL has "scheme:" before any '=').
_HTTP_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("session", help="open, inspect and close sessions", parents=[common])
    top = sub.add_parser("describe", parents=[common], help=_DESCRIBE_HELP, description=_DESCRIBE_DESCRIPTION)
    _add_describe_flags(top)  # `goex session describe` without an ID
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    o = verbs.add_parser(
        "open",
        parents=[common],
        help="open a session and make it the current one",
        description="Open a session over a workspace directory (and/or databases, REST services), "
        "print its id and remember it as the current session of later goex commands.",
    )
    o.add_argument("--fs", metavar="PATH", help="workspace directory (made absolute)")
    o.add_argument(
        "--reuse",
        action="store_true",
        help="if a session over the same resources is open (or expired), make that one current instead of opening "
        "another (its label, limits and policy stay as they are; goexd does both in one step)",
    )
    o.add_argument(
        "--fs-strategy",
        choices=FS_STRATEGIES,
        default="",
        help="how goexd undoes actions on the workspace: versioned (the default: snapshots, restored three-way) "
        "or inverse (each action gives an inverse command, goex run --inverse; the pair is tried on an overlay "
        "of the workspace before the action runs, and undo runs the inverse and checks the result)",
    )
    o.add_argument(
        "--sandbox",
        choices=("bwrap", "container"),
        default="",
        help="the sandbox the workspace's actions run in (default: goexd's [sandbox] backend)",
    )
    o.add_argument(
        "--image",
        default="",
        help="the container image the workspace's actions run in (the container sandbox; default: goexd's "
        "[container] image); goexd refuses one its engine does not have",
    )
    o.add_argument("--db", metavar="URL", action="append", default=[], help="database URL (repeatable)")
    o.add_argument("--db-secret", metavar="NAME", default="", help="vault secret with the database password")
    o.add_argument(
        "--db-strategy",
        choices=DB_STRATEGIES,
        default="",
        help="how goexd undoes database actions: transaction (the default: one open transaction, a "
        "savepoint per action), inverse (each action commits at once; undo runs its tested inverse "
        "SQL) or clone (a copy of the database before each action)",
    )
    o.add_argument(
        "--http",
        metavar="[NAME=]BASE_URL",
        action="append",
        default=[],
        help="REST service, named NAME (default: http) in --resource; goex http's paths are relative "
        "to BASE_URL and may not leave it (repeatable)",
    )
    o.add_argument(
        "--http-secret",
        "--secret",
        metavar="NAME",
        default="",
        help="vault secret goexd authenticates to the --http services with (never seen by actions)",
    )
    o.add_argument(
        "--http-rules",
        metavar="NAME[+NAME...]",
        default="",
        help="rule sets deriving the --http services' inverses from their responses, tried in order: rest (the "
        "default), s3, generic, a user's; generic semantics come last unless the value starts with only:",
    )
    o.add_argument(
        "--http-staging",
        metavar="BASE_URL",
        default="",
        help="a staging copy of the one --http service: `goex http --test` tries a call and its inverse there "
        "for real (never on the service itself) and checks the undo; every write is tried there first too, and "
        "one whose undo fails there is blocked",
    )
    o.add_argument(
        "--http-strategy",
        choices=HTTP_STRATEGIES,
        default="",
        help="how goexd undoes HTTP actions: inverse (the default: an inverse request derived from the "
        "recorded response) or confine (no undo; every write is irreversible and the policy decides)",
    )
    o.add_argument("--label", default="", help="free text shown in `goex session list`")
    o.add_argument("--policy", metavar="FILE", help="damage-confinement policy (TOML) for this session")
    add_limit_flags(o)
    o.set_defaults(handler=cmd_open)

    ls = verbs.add_parser("list", parents=[common], help="list sessions (* marks the current one)")
    ls.add_argument("-a", "--all", action="store_true", help="include closed sessions")
    ls.set_defaults(handler=cmd_list)

    show = verbs.add_parser("show", parents=[common], help="show a session (default: the current one)")
    show.add_argument("id", nargs="?", metavar="ID")
    show.set_defaults(handler=cmd_show)

    use = verbs.add_parser("use", parents=[common], help="make an open session the current one")
    use.add_argument("id", metavar="ID")
    use.set_defaults(handler=cmd_use)

    desc = verbs.add_parser("describe", parents=[common], help=_DESCRIBE_HELP, description=_DESCRIBE_DESCRIPTION)
    desc.add_argument("id", nargs="?", metavar="ID", help="session (default: the current one)")
    _add_describe_flags(desc)

    c = verbs.add_parser(
        "close",
        parents=[common],
        help="close a session (default: the current one)",
        description="Close a session. The daemon refuses while actions are pending unless "
        "--commit-all or --undo-all says what to do with them.",
    )
    c.add_argument("id", nargs="?", metavar="ID")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--commit-all", action="store_true", help="commit every pending action first")
    mode.add_argument("--undo-all", action="store_true", help="undo every pending action first")
    c.set_defaults(handler=cmd_close)


_DESCRIBE_HELP = "what a planner is told about the session's resources"
_DESCRIBE_DESCRIPTION = (
    "Print, per resource of the session, what goexd tells an LLM planner about it: a workspace's "
    "files, a database's tables, columns, keys, indexes and row counts. No credentials or "
    "connection details."
)


def _add_describe_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", action="store_true", help="include a few sample rows per table")
    p.set_defaults(handler=cmd_describe)


def _target(app: App, args: argparse.Namespace) -> str:
    explicit: str | None = getattr(args, "id", None)
    return explicit or app.session_id()


def resources_from_args(args: argparse.Namespace) -> list[ResourceSpec]:
    """--db / --http as resources (--fs goes to create_session as itself); at least one resource overall."""
    if args.db_strategy and not args.db:
        raise UsageError("--db-strategy needs --db URL")
    for flag, value in (("--fs-strategy", args.fs_strategy), ("--sandbox", args.sandbox), ("--image", args.image)):
        if value and args.fs is None:
            raise UsageError(f"{flag} needs --fs PATH")
    for flag, value in (
        ("--http-secret", args.http_secret),
        ("--http-rules", args.http_rules),
        ("--http-strategy", args.http_strategy),
        ("--http-staging", args.http_staging),
    ):
        if value and not args.http:
            raise UsageError(f"{flag} needs --http BASE_URL")
    if args.http_staging and len(args.http) > 1:
        raise UsageError("--http-staging is the staging copy of one service: give one --http with it")
    resources = [ResourceSpec.db(url, secret=args.db_secret, strategy=args.db_strategy) for url in args.db]
    for item in args.http:
        name, base_url = parse_http_item(item)
        resources.append(
            ResourceSpec.http(
                base_url,
                name=name,
                secret=args.http_secret,
                strategy=args.http_strategy,
                rules=args.http_rules,
                staging=args.http_staging,
            )
        )
    if args.fs is None and not resources:
        raise UsageError("give at least one resource: --fs PATH, --db URL or --http BASE_URL")
    return resources


def parse_http_item(item: str) -> tuple[str, str]:
    """--http NAME=BASE_URL as (NAME, BASE_URL); a bare BASE_URL has the default name ""."""
    name, sep, rest = item.partition("=")
    if sep and _HTTP_NAME.fullmatch(name):
        base_url = rest
    else:  # "https://api.example/x?a=b" has a ':' before its '=': a bare URL
        name, base_url = "", item
    if not base_url.strip():
        raise UsageError(f"--http {item!r}: no base URL (--http NAME=BASE_URL or --http BASE_URL)")
    return name, base_url


def cmd_open(app: App, args: argparse.Namespace) -> int:
    resources = resources_from_args(args)
    policy = None
    if args.policy:
        try:
            with open(args.policy, encoding="utf-8") as f:
                policy = f.read()
        except OSError as exc:
            raise CliError(f"cannot read policy {args.policy}: {exc.strerror}", code="INVALID_ARGUMENT") from None
    fs = args.fs
    if args.fs_strategy or args.sandbox or args.image:  # the workspace as a resource spec, with its choices
        spec = ResourceSpec.fs(args.fs, strategy=args.fs_strategy, sandbox=args.sandbox, image=args.image)
        resources.insert(0, spec)
        fs = None
    session = app.client().create_session(
        fs=fs, label=args.label, limits=limits_from_args(args), resources=resources, policy=policy, reuse=args.reuse
    )
    app.state.set_session(session.id)
    if app.json:
        app.emit(
            sessions_pb2.CreateSessionResponse(session=session.proto, warnings=session.warnings, reused=session.reused)
        )
    else:
        # Only the id on stdout, so that SID=$(goex session open ...) works; what goexd warns of on stderr.
        app.out.print(session.id, markup=False)
        for warning in session.warnings:
            app.warn(warning)
    return 0


def cmd_list(app: App, args: argparse.Namespace) -> int:
    sessions = app.client().list_sessions(include_closed=args.all)
    if app.json:
        app.emit(sessions_pb2.ListSessionsResponse(sessions=[s.proto for s in sessions]))
        return 0
    if not sessions:
        app.err.print("no sessions" if args.all else "no open sessions", style="dim")
        return 0
    current = app.current_session_id()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("", "ID", "STATE", "LABEL", "RESOURCES", "PENDING", "ACTIONS", "CREATED"):
        table.add_column(col, no_wrap=col in ("ID", "CREATED"))
    for s in sessions:
        table.add_row(
            "*" if s.id == current else "",
            Text(s.id),
            Text(str(s.state), style="green" if s.state == "open" else "dim"),
            Text(s.label),
            Text(", ".join(f"{r.name}={r.uri}" for r in s.resources)),
            str(s.pending_actions),
            str(s.total_actions),
            format_time(s.created_at),
        )
    app.print_table(table)
    return 0


def _render_session(app: App, s: Session) -> None:
    limits = s.limits
    rows: list[tuple[str, str | Text]] = [
        ("session", Text(s.id)),
        ("state", Text(str(s.state), style="green" if s.state == "open" else "dim")),
        ("label", Text(s.label or "-")),
        ("actions", f"{s.total_actions} ({s.pending_actions} pending)"),
        ("created", format_time(s.created_at)),
    ]
    if s.closed_at is not None:
        rows.append(("closed", format_time(s.closed_at)))
    rows.append(
        (
            "limits",
            ", ".join(
                [
                    f"timeout {format_duration(limits.timeout)}",
                    f"memory {format_bytes(limits.memory_bytes) if limits.memory_bytes else '-'}",
                    f"procs {limits.max_processes or '-'}",
                    f"output {format_bytes(limits.output_bytes) if limits.output_bytes else '-'}",
                ]
            ),
        )
    )
    for r in s.resources:
        rules = f", rules: {r.rules}" if r.rules else ""
        rules += f", staging: {r.staging_base_url}" if r.staging_base_url else ""
        rows.append((f"resource {r.name}", Text(f"{r.kind} {r.uri} (undo: {r.strategy}{rules})")))
    app.out.print(kv_grid(rows))


def cmd_show(app: App, args: argparse.Namespace) -> int:
    session = app.client().get_session(_target(app, args))
    if app.json:
        app.emit(sessions_pb2.GetSessionResponse(session=session.proto))
    else:
        _render_session(app, session)
    return 0


def cmd_use(app: App, args: argparse.Namespace) -> int:
    session = app.client().get_session(args.id)
    if session.state != "open":
        raise CliError(f"session {session.id} is {session.state}")
    app.state.set_session(session.id)
    if app.json:
        app.emit(sessions_pb2.GetSessionResponse(session=session.proto))
    else:
        app.out.print(session.id, markup=False)
    return 0


def cmd_describe(app: App, args: argparse.Namespace) -> int:
    descriptions = app.client().describe_session(_target(app, args), include_samples=args.samples)
    if app.json:
        app.emit(sessions_pb2.DescribeSessionResponse(resources=[d.proto for d in descriptions]))
        return 0
    render_descriptions(app, descriptions)
    return 0


def render_descriptions(app: App, descriptions: Iterable[ResourceDescription]) -> None:
    """ "== NAME ==" then the daemon's text, per resource, a blank line between them."""
    for i, d in enumerate(descriptions):
        if i:
            app.out.print()
        app.out.print(Text(f"== {d.resource} ==", style="bold"))
        app.out.print(Text(d.text.rstrip("\n")))


def cmd_close(app: App, args: argparse.Namespace) -> int:
    session_id = _target(app, args)
    mode: Literal["commit", "undo"] | None = "commit" if args.commit_all else "undo" if args.undo_all else None
    try:
        closed = app.client().close_session(session_id, mode)
    except FailedPrecondition as exc:
        if mode is not None or app.json:
            raise
        # The daemon names the RPC's modes; say which flags those are here.
        raise CliError(f"{exc.message} (goex session close --commit-all or --undo-all)") from None
    app.state.forget_session(session_id)
    if app.json:
        app.emit(closed.proto)
        return 0
    verb = {"commit": "committed", "undo": "undid"}.get(mode or "", "resolved")
    line = Text(f"closed {closed.session.id}")
    if closed.resolved:
        n = len(closed.resolved)
        line.append(f"; {verb} {n} pending action{'s' if n != 1 else ''}")
    app.out.print(line)
    return 0
