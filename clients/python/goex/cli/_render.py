"""Human rendering shared by the commands: change sets, action status lines, egress, SQL and HTTP results,
key/value grids.

Everything the daemon sends (paths, errors, output) is wrapped in `Text`, never
parsed as rich markup: a file named "[red]x" must print as itself.
"""

from __future__ import annotations

import http
import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from goex._enums import ActionState, ChangeKind, EgressDecision, Termination, Verdict
from goex._models import Action, ChangeSet, EgressRecord, ExecResult, HttpResult, Reversibility, SqlResult
from goex.cli._text import Text
from goex.cli._units import format_ms

if TYPE_CHECKING:
    from rich.table import Table  # ~25 ms to import: loaded by the commands that print one

__all__ = [
    "EXIT_NOT_COMPLETED",
    "EXIT_TIMEOUT",
    "action_headline",
    "change_lines",
    "egress_table",
    "exit_status",
    "format_time",
    "http_body_text",
    "http_headers_table",
    "http_status_text",
    "kv_grid",
    "reversibility_text",
    "sql_affected_text",
    "sql_more_rows_text",
    "sql_table",
    "state_text",
    "termination_text",
    "undo_check_text",
]

# `goex run` / `goex python` exit statuses beyond the command's own (see cmd_run).
EXIT_TIMEOUT = 124  # as coreutils timeout(1)
EXIT_NOT_COMPLETED = 125  # blocked, failed before or after running, limit hit, interrupted

_STATE_STYLES = {
    ActionState.PROPOSED: "cyan",
    ActionState.PREPARING: "cyan",
    ActionState.RUNNING: "cyan",
    ActionState.EXECUTED: "yellow",  # pending
    ActionState.COMMITTED: "green",
    ActionState.UNDONE: "blue",
    ActionState.FAILED: "red",
    ActionState.BLOCKED: "red",
    ActionState.INTERRUPTED: "magenta",
}

_CHANGE_STYLES = {
    ChangeKind.ADDED: "green",
    ChangeKind.MODIFIED: "yellow",
    ChangeKind.DELETED: "red",
    ChangeKind.TYPE_CHANGED: "cyan",
    ChangeKind.MODE_CHANGED: "cyan",
}


def state_text(state: ActionState) -> Text:
    return Text(str(state), style=_STATE_STYLES.get(state, ""))


def change_lines(changes: ChangeSet | None, *, limit: int | None = None) -> list[Text]:
    """ "A a.txt", "M b.txt", "D c.txt" (T type change, P mode change), then "... and N more", then what
    goexd itself changed after the action ("goexd: removed the set-user-ID bit of ...")."""
    if changes is None:
        return []
    shown = changes.changes if limit is None else changes.changes[:limit]
    lines = [Text(c.line, style=_CHANGE_STYLES.get(c.kind, "")) for c in shown]
    more = max(changes.total, len(changes.changes)) - len(shown)
    if more > 0:
        lines.append(Text(f"... and {more} more", style="dim"))
    elif changes.truncated and not lines:
        lines.append(Text("... (change list truncated)", style="dim"))
    lines += [Text(f"goexd: {w}", style="yellow") for w in changes.warnings]
    return lines


_DECISION_STYLES = {EgressDecision.ALLOWED: "green", EgressDecision.REFUSED: "red"}


def egress_table(records: Iterable[EgressRecord]) -> Table | None:
    """The requests an action made through the egress proxy, one row each; None when there were none."""
    rows = list(records)
    if not rows:
        return None
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("METHOD", no_wrap=True)
    table.add_column("URL", overflow="fold")
    table.add_column("STATUS", justify="right", no_wrap=True)
    table.add_column("DECISION", no_wrap=True)
    table.add_column("REASON", overflow="fold")
    calls = any(r.resource for r in rows)
    if calls:
        table.add_column("UNDO", overflow="fold")
    for r in rows:
        cells: list[Text] = [
            Text(r.method),
            Text(r.url),
            Text(str(r.status) if r.status else "-"),
            Text(str(r.decision), style=_DECISION_STYLES.get(r.decision, "")),
            Text(r.reason or "-"),
        ]
        if calls:
            cells.append(_call_undo(r))
        table.add_row(*cells)
    return table


def _call_undo(r: EgressRecord) -> Text:
    """For a call to an http resource: its class, the inverse, and the verdict once undone."""
    if not r.resource or r.reversibility is None:
        return Text("-")
    rev = r.reversibility
    text = Text(f"{r.resource}: {rev.reversibility_class}")
    if r.inverse is not None:
        text.append(f", inverse {r.inverse.method} {r.inverse.path}")
    said = {Verdict.PASSED: ("verified", "green"), Verdict.FAILED: ("NOT verified", "red")}
    said[Verdict.UNKNOWN] = ("unverified", "yellow")
    if rev.verdict in said:
        word, style = said[rev.verdict]
        text.append(f"; undone, {word}: ", style=style)
        text.append(rev.detail)
    return text


def sql_table(result: SqlResult) -> Table | None:
    """The rows a statement returned (NULL dimmed); None when it returns no columns (e.g. an UPDATE)."""
    from rich.table import Table

    if not result.columns:
        return None
    table = Table(header_style="bold")
    for col in result.columns:
        table.add_column(Text(col))
    for row in result.rows:
        table.add_row(*(Text("NULL", style="dim") if v is None else Text(v) for v in row))
    return table


def sql_more_rows_text(result: SqlResult) -> Text | None:
    """ "... N more rows" when goexd sent only the first rows; None when it sent them all."""
    more = result.total_rows - len(result.rows)
    if not result.truncated:
        return None
    if more <= 0:
        return Text("... (rows truncated)", style="dim")
    return Text(f"... {more} more row{'s' if more != 1 else ''}", style="dim")


def sql_affected_text(result: SqlResult) -> Text:
    """ "3 rows affected" """
    n = result.affected_rows
    if n < 0:  # a driver that could not tell
        return Text("rows affected: unknown")
    return Text(f"{n} row{'s' if n != 1 else ''} affected")


def http_status_text(result: HttpResult) -> Text:
    """ "201 Created" (green 2xx, yellow 3xx, red 4xx/5xx); the number alone for a status without a phrase."""
    try:
        phrase = http.HTTPStatus(result.status).phrase
    except ValueError:
        phrase = ""
    style = {2: "green", 3: "yellow", 4: "red", 5: "red"}.get(result.status // 100, "")
    return Text(f"{result.status} {phrase}".rstrip(), style=style)


def http_headers_table(result: HttpResult) -> Table | None:
    """The response headers (names as goexd sends them, lower-cased), sorted; None when there are none."""
    from rich.table import Table

    if not result.headers:
        return None
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("HEADER", no_wrap=True)
    table.add_column("VALUE", overflow="fold")
    for name, value in sorted(result.headers.items()):
        table.add_row(Text(name), Text(value))
    return table


# Media types whose bodies are summarised rather than printed, whatever their bytes.
_BINARY_TYPES = ("image/", "audio/", "video/", "font/", "application/octet-stream", "application/zip")


def http_body_text(result: HttpResult) -> Text | None:
    """The body for reading: JSON pretty-printed, other text as it is, binary as "N bytes (TYPE)"; None when empty.

    A body goexd capped gets a note after it; a capped JSON body no longer parses and shows as text.
    """
    body = result.body
    if not body:
        return None
    media_type, _, params = result.headers.get("content-type", "").partition(";")
    media_type = media_type.strip().lower()
    text = None if media_type.startswith(_BINARY_TYPES) else _decode(body, _charset(params))
    if text is None:
        size = f"{len(body)} bytes" + (" (first bytes only: truncated)" if result.body_truncated else "")
        return Text(f"{size} of {media_type or 'binary data'}", style="dim")
    if "json" in media_type or text.lstrip()[:1] in ("{", "["):
        text = _pretty_json(text)
    out = Text(text.rstrip("\n"))
    if result.body_truncated:
        out.append(f"\n... body truncated by goexd: first {len(body)} bytes shown", style="dim")
    return out


def _pretty_json(text: str) -> str:
    """JSON text indented; other text (not JSON after all, or capped) as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _charset(params: str) -> str:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"')
    return "utf-8"


def _decode(body: bytes, charset: str) -> str | None:
    """The body as text; None when it is not text in its charset (or holds NUL bytes)."""
    try:
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None
    return None if "\x00" in text else text


def undo_check_text(a: Action) -> Text | None:
    """How goexd checked an undone action ("  verified: ..." or "  NOT verified: ..."); None for other actions.

    On stderr, so that stdout keeps one line per action."""
    r = a.reversibility
    if a.state is not ActionState.UNDONE or r is None or not r.detail:
        return None
    if r.verdict is Verdict.PASSED:
        return Text(f"  verified: {r.detail}", style="dim")
    if r.verdict is Verdict.FAILED:
        return Text(f"  NOT verified: {r.detail}", style="bold red")
    if r.verdict is Verdict.UNKNOWN:
        return Text(f"  unverified: {r.detail}", style="yellow")
    return None


def reversibility_text(r: Reversibility) -> Text:
    """ "reversible, test passed", then the test's detail after a colon ("reversible, untested: ..." where its
    strategy needs no test: its undo is checked when it runs)."""
    said = "untested" if r.verdict is Verdict.UNTESTED else f"test {r.verdict}"
    text = f"{r.reversibility_class}, {said}"
    if r.detail:
        text += f": {r.detail}"
    return Text(text)


def termination_text(result: ExecResult) -> str:
    """How the sandboxed process ended, e.g. "exit 0", "killed by signal 9", "timed out"."""
    t = result.termination
    if t is Termination.EXITED:
        text = f"exit {result.exit_code}"
    elif t is Termination.SIGNALED:
        text = f"killed by signal {result.signal}"
    elif t is Termination.TIMEOUT:
        text = "timed out"
    elif t is Termination.OOM:
        text = "out of memory"
    elif t is Termination.PIDS_LIMIT:
        text = "process limit hit"
    elif t is Termination.CANCELLED:
        text = "cancelled"
    elif t is Termination.SPAWN_FAILED:
        text = "failed to start"
    else:
        text = f"exit {result.exit_code}"
    if result.detail and t is not Termination.EXITED and result.detail != text:  # not "cancelled (cancelled)"
        text += f" ({result.detail})"
    return text


def action_headline(action: Action) -> Text:
    """ "action 01J…: executed, exit 0, 41 ms" """
    line = Text(f"action {action.id}: ")
    line.append_text(state_text(action.state))
    if action.exec is not None:
        line.append(", " + termination_text(action.exec))
    if action.http is not None:
        line.append(f", HTTP {action.http.status}")
    if action.timings is not None and action.timings.total is not None:
        line.append(f", {format_ms(action.timings.total)} ms")
    return line


def exit_status(action: Action) -> int:
    """The exit status `goex run` reports for a finished action (documented in its --help)."""
    if action.state is ActionState.BLOCKED:
        return EXIT_NOT_COMPLETED
    failed = action.state in (ActionState.FAILED, ActionState.INTERRUPTED)
    result = action.exec
    if result is None:
        return EXIT_NOT_COMPLETED if failed or action.state.is_active else 0
    t = result.termination
    if t is Termination.EXITED:
        code = result.exit_code
        if failed and code == 0:
            return EXIT_NOT_COMPLETED
        return code if 0 <= code <= 255 else EXIT_NOT_COMPLETED
    if t is Termination.SIGNALED and result.signal > 0:
        return 128 + result.signal
    if t is Termination.TIMEOUT:
        return EXIT_TIMEOUT
    if t is Termination.UNSPECIFIED and not failed:
        return 0
    return EXIT_NOT_COMPLETED


def format_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def kv_grid(rows: Iterable[tuple[str, str | Text]]) -> Text:
    """A key/value block: keys in bold, values aligned (no table padding after the values)."""
    items = list(rows)
    width = max((len(key) for key, _ in items), default=0)
    block = Text()
    for i, (key, value) in enumerate(items):
        if i:
            block.append("\n")
        block.append(key.ljust(width + 2), style="bold")
        block.append_text(Text(value) if isinstance(value, str) else value)
    return block
