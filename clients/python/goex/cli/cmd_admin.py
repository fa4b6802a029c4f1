"""goex health / goex stats / goex gc / goex stop: operating the daemon."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from goex.cli._app import App, UsageError
from goex.cli._render import kv_grid
from goex.cli._text import Text
from goex.cli._units import format_bytes, format_duration, parse_duration


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    h = sub.add_parser(
        "health",
        parents=[common],
        help="is goexd up and healthy? (exit 1 if not)",
        description="Show the daemon's version, uptime and per-component health. "
        "Exits 0 when healthy, 1 when a component is not (or goexd is unreachable).",
    )
    h.set_defaults(handler=cmd_health)

    s = sub.add_parser("stats", parents=[common], help="sessions, actions by state, storage use")
    s.set_defaults(handler=cmd_stats)

    g = sub.add_parser(
        "gc",
        parents=[common],
        help="remove snapshots no pending action needs",
        description="Remove snapshots and journal data that no pending action needs and whose retention expired.",
    )
    g.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    g.set_defaults(handler=cmd_gc)

    stop = sub.add_parser(
        "stop",
        parents=[common],
        help="stop goexd, saying what that interrupts (--drain: let it finish first)",
        description="Ask goexd to stop, and print what that interrupts: actions running now and actions "
        "pending in a transaction-strategy database (their work is lost; they end interrupted). With "
        "--drain goexd first refuses new sessions and actions and stops once none of those is left, or at "
        "--drain-timeout; it then prints what it is waiting for. Exit 0 once goexd took the request.",
    )
    stop.add_argument(
        "--drain",
        action="store_true",
        help="refuse new work and stop once nothing runs or is pending in a database transaction",
    )
    stop.add_argument(
        "--drain-timeout",
        metavar="DURATION",
        help="with --drain: the longest wait (seconds, or 30s / 5m; default: goexd's shutdown.drain_timeout_s)",
    )
    stop.set_defaults(handler=cmd_stop)


def cmd_health(app: App, args: argparse.Namespace) -> int:
    health = app.client().health()
    code = 0 if health.ok else 1
    if app.json:
        app.emit(health.proto)
        return code
    line = Text("ok" if health.ok else "unhealthy", style="green" if health.ok else "red")
    line.append(f"  goexd {health.version or '?'}, up {format_duration(health.uptime)}")
    app.out.print(line)
    if health.components:
        table = Table(box=None, show_header=False, pad_edge=False)
        for c in health.components:
            table.add_row(
                Text("ok" if c.ok else "FAIL", style="green" if c.ok else "red"), Text(c.name), Text(c.detail)
            )
        app.print_table(table)
    return code


def cmd_stats(app: App, args: argparse.Namespace) -> int:
    stats = app.client().stats()
    if app.json:
        app.emit(stats.proto)
        return 0
    rows: list[tuple[str, str | Text]] = [
        ("open sessions", str(stats.open_sessions)),
        ("running actions", str(stats.running_actions)),
        ("journal", format_bytes(stats.journal_bytes)),
        ("snapshot store", format_bytes(stats.snapshot_store_bytes)),
    ]
    for state, count in sorted(stats.actions_by_state.items()):
        rows.append((f"actions {state.removeprefix('ACTION_STATE_').lower()}", str(count)))
    for p in stats.proto.sandbox_pools:  # the container sandbox's warm pools, one per image
        rows.append((f"{p.backend} pool {p.image}", f"{p.warm} warm, {p.leases} leases, {p.misses} misses"))
    app.out.print(kv_grid(rows))
    return 0


def cmd_gc(app: App, args: argparse.Namespace) -> int:
    with app.spinner("collecting garbage…"):
        result = app.client().gc(dry_run=args.dry_run)
    if app.json:
        app.emit(result.proto)
        return 0
    verb = "would remove" if args.dry_run else "removed"
    app.out.print(
        f"{verb} {result.snapshots_removed} snapshot{'s' if result.snapshots_removed != 1 else ''}, "
        f"{'would free' if args.dry_run else 'freed'} {format_bytes(result.bytes_freed)}",
        markup=False,
    )
    if result.outputs_trimmed:
        n = result.outputs_trimmed
        app.out.print(
            f"{'would trim' if args.dry_run else 'trimmed'} the outputs of {n} resolved action{'s' if n != 1 else ''} "
            f"({format_bytes(result.output_bytes_trimmed)})",
            markup=False,
        )
    if result.journal_bytes_freed:
        app.out.print(f"journal: {format_bytes(result.journal_bytes_freed)} given back (VACUUM)", markup=False)
    for reason in result.reasons:
        app.out.print(Text(f"  {reason}", style="dim"))
    return 0


def cmd_stop(app: App, args: argparse.Namespace) -> int:
    if args.drain_timeout and not args.drain:
        raise UsageError("--drain-timeout goes with --drain")
    try:
        timeout = parse_duration(args.drain_timeout) if args.drain_timeout else 0.0
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = app.client().stop(drain=args.drain, drain_timeout_s=timeout)
    if app.json:
        app.emit(result.proto)
        return 0
    said = "goexd is draining: it stops once these are resolved" if result.draining else "goexd is stopping"
    app.out.print(Text(f"{said}; {result.summary}" if result.summary else said))
    for kind, ids in sorted(result.interrupted.items()):
        app.out.print(Text(f"  {kind}: {', '.join(ids)}"))
    return 0
