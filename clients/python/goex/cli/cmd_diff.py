"""goex diff [ACTION] / goex diff --since-last: what an action changed, or what changed since it.

Off a terminal stdout is the unified diff byte for byte (`goex diff | git apply -R` takes a
text-only change back), and goexd's notes go to stderr; on a terminal it is coloured, with
control characters in file contents shown escaped.
"""

from __future__ import annotations

import argparse
from typing import Any

from goex._diffs import Diff, FileDiff
from goex._enums import ActionState, DiffContent
from goex.cli._app import App, CliError, UsageError
from goex.cli._refs import ACTION_HELP, session_for
from goex.cli._text import Text
from goex.cli._units import parse_size

_DIFFABLE = [ActionState.EXECUTED, ActionState.COMMITTED, ActionState.UNDONE]
_STAT_BAR = 40  # columns of + and - for the largest change in --stat
_HEADER_STYLE = "bold"
_LINE_STYLES = {"+": "green", "-": "red", "@": "cyan", "\\": "dim"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "diff",
        parents=[common],
        help="the unified diff of an action's changes, or of your edits since the last action",
        description="The changes of ACTION (default: the session's newest action that ran) as a git-style "
        "unified diff: text files line by line, binary files by size and hash, modes, owners and symlink "
        "targets; SQL and http actions as what goexd recorded. --since-last instead shows what changed in "
        "the workspace since the session's latest action left it (your own edits). Secrets are redacted; "
        "caps cut at a line end and say so on stderr. Off a terminal the diff is written byte for byte.",
    )
    p.add_argument("action", nargs="?", metavar="ACTION", help=ACTION_HELP)
    p.add_argument("--since-last", action="store_true", help="the workspace now against the latest action's result")
    p.add_argument("--resource", metavar="NAME", help="with --since-last: the fs resource (when there are several)")
    p.add_argument("--stat", action="store_true", help="one line per file with its line counts, no patch text")
    p.add_argument("-U", "--unified", type=int, metavar="N", help="lines of context (default 3)")
    p.add_argument("--max-file-bytes", metavar="SIZE", help="patch bytes per file (default 256K)")
    p.add_argument("--max-total-bytes", metavar="SIZE", help="patch bytes in all (default 4M)")
    p.add_argument("--max-files", type=int, metavar="N", help="files listed (default 1000)")
    p.set_defaults(handler=cmd_diff)


def cmd_diff(app: App, args: argparse.Namespace) -> int:
    if args.since_last and args.action:
        raise UsageError("give ACTION or --since-last, not both")
    if args.resource and not args.since_last:
        raise UsageError("--resource goes with --since-last")
    if args.unified is not None and args.unified < 0:
        raise UsageError("-U/--unified must not be negative")
    if args.max_files is not None and args.max_files < 1:
        raise UsageError("--max-files must be at least 1")
    try:
        caps: dict[str, Any] = {
            "max_file_bytes": parse_size(args.max_file_bytes) if args.max_file_bytes else 0,
            "max_total_bytes": parse_size(args.max_total_bytes) if args.max_total_bytes else 0,
            "max_files": args.max_files or 0,
            "context_lines": args.unified,
            "stat_only": bool(args.stat),
        }
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    client = app.client()
    if args.since_last:
        diff = client.diff_since_last(app.session_id(), resource=args.resource, **caps)
    else:
        ref = args.action or _newest(app)
        diff = client.diff(ref, session_id=session_for(app, ref), **caps)
    if app.json:
        app.emit(diff.proto)
        return 0
    if args.stat:
        _print_stat(app, diff)
    elif app.out.is_terminal:
        _print_coloured(app, diff)
    else:
        app.write_raw(diff.patch)
    if diff.summary:
        app.out.print(Text(diff.summary))
    _print_notes(app, diff)
    return 0


def _newest(app: App) -> str:
    session_id = app.session_id()
    actions = app.client().list_actions(session_id, states=_DIFFABLE)
    if not actions:
        raise CliError(f"session {session_id} has no action that ran (pending, committed or undone) to diff")
    return actions[-1].id


def _print_notes(app: App, diff: Diff) -> None:
    notes = [*diff.notes, *(f"{f.path}: {f.note}" for f in diff.files if f.note)]
    if not diff.files and not diff.summary:
        notes.append("no changes")
    for note in notes:
        app.err.print(Text(f"note: {note}", style="dim"))


def _print_coloured(app: App, diff: Diff) -> None:
    for f in diff.files:
        in_hunk = False
        for line in f.patch.decode("utf-8", "replace").splitlines():
            if line.startswith(("diff --git ", "Directory ")):
                in_hunk = False
            elif line.startswith("@@ "):
                in_hunk = True
            style = _LINE_STYLES.get(line[:1], "") if in_hunk else _HEADER_STYLE
            app.out.print(Text(_visible(line), style=style))


def _visible(line: str) -> str:
    """A content line for a terminal: what is not printable (escape sequences...) shown escaped."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or c == "\t" else _escaped(c) for c in line)


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _print_stat(app: App, diff: Diff) -> None:
    if not diff.files:
        return
    width = max(len(f.path) for f in diff.files)
    largest = max((f.additions + f.deletions for f in diff.files), default=0)
    for f in diff.files:
        line = Text(f" {f.path.ljust(width)} | ")
        line.append_text(_stat_cell(f, largest))
        app.out.print(line)
    app.out.print(
        Text(
            f" {diff.files_changed} file{'s' if diff.files_changed != 1 else ''} changed, "
            f"{diff.additions} insertion{'s' if diff.additions != 1 else ''}(+), "
            f"{diff.deletions} deletion{'s' if diff.deletions != 1 else ''}(-)"
        )
    )


def _stat_cell(f: FileDiff, largest: int) -> Text:
    old, new = f.old.size if f.old else 0, f.new.size if f.new else 0
    if f.content is DiffContent.BINARY:
        return Text(f"Bin {old} -> {new} bytes")
    if f.content is DiffContent.NOT_READ:
        return Text(f"not compared, {old} -> {new} bytes")
    if f.content is DiffContent.NONE:
        return Text(str(f.kind))
    total = f.additions + f.deletions
    scale = min(1.0, _STAT_BAR / largest) if largest else 1.0
    plus, minus = round(f.additions * scale), round(f.deletions * scale)
    cell = Text(f"{total} ")
    cell.append("+" * plus, style="green")
    cell.append("-" * minus, style="red")
    return cell
