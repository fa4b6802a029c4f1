"""goex log / goex show ACTION: the session's timeline and one action in detail."""

from __future__ import annotations

import argparse
import contextlib
import re
from typing import Any

from rich.table import Table

from goex._enums import ActionState, Verdict
from goex._exceptions import Unimplemented
from goex._models import Action, HttpResult, SqlResult
from goex._pairs import PairHistory
from goex._specs import ActionSpec
from goex.cli._app import App, UsageError
from goex.cli._refs import ACTION_HELP, session_for
from goex.cli._render import (
    change_lines,
    egress_table,
    format_time,
    http_body_text,
    http_headers_table,
    http_status_text,
    kv_grid,
    reversibility_text,
    sql_more_rows_text,
    sql_table,
    state_text,
    termination_text,
    undo_check_text,
)
from goex.cli._text import Text
from goex.cli._units import format_ms
from goex.v1 import actions_pb2

_STATES = [s.value for s in ActionState if s is not ActionState.UNSPECIFIED]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    log = sub.add_parser(
        "log",
        parents=[common],
        help="the current session's timeline",
        description="One row per action, oldest first: seq, id, kind, state, changes as "
        "+added ~modified -deleted, run and total time in ms, its verdict, and what it ran. The verdict "
        "is its reversibility test's (passed, failed, unknown: it could not be tried; untested: its "
        "strategy needs no test, its undo is checked when it runs; '(reused)': remembered for the same "
        "pair on the same state; '(judged wrong)': a person marked the pair wrong), or once undone, "
        "its undo's check (undo verified / undo NOT verified / undo unverified: nothing to compare "
        "against); '-' for an action that never got that far (blocked by the policy, failed first).",
    )
    log.add_argument(
        "--state",
        action="append",
        choices=_STATES,
        metavar="STATE",
        help=f"only actions in this state (repeatable): {', '.join(_STATES)}",
    )
    log.set_defaults(handler=cmd_log)

    show = sub.add_parser("show", parents=[common], help="one action in detail, with its output and changes")
    show.add_argument("action", metavar="ACTION", help=ACTION_HELP)
    show.add_argument("--limit", type=int, default=None, metavar="N", help="list at most N file changes")
    show.set_defaults(handler=cmd_show)


def cmd_log(app: App, args: argparse.Namespace) -> int:
    actions = app.client().list_actions(app.session_id(), states=args.state)
    if app.json:
        app.emit(actions_pb2.ListActionsResponse(actions=[a.proto for a in actions]))
        return 0
    if not actions:
        app.err.print("no actions", style="dim")
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("SEQ", justify="right")
    table.add_column("ID", no_wrap=True)
    table.add_column("KIND")
    table.add_column("STATE")
    table.add_column("CHANGES", no_wrap=True)
    table.add_column("RUN MS", justify="right")
    table.add_column("TOTAL MS", justify="right")
    table.add_column("VERDICT", no_wrap=True)
    table.add_column("WHAT", overflow="ellipsis", no_wrap=True, max_width=60)
    for a in actions:
        timings = a.timings
        table.add_row(
            str(a.seq),
            Text(a.id),
            str(a.kind),
            state_text(a.state),
            a.changes.summary if a.changes is not None else "",
            format_ms(timings.run if timings else None),
            format_ms(timings.total if timings else None),
            verdict_text(a),
            Text(_what(a)),
        )
    app.print_table(table)
    return 0


# How goexd names the rule that refused an action, in its error ("... [policy rule http.methods]").
_POLICY_RULE = re.compile(r"\[policy rule ([^\]]+)\]")


_UNDO_WORDS = {
    Verdict.PASSED: ("undo verified", "green"),
    Verdict.FAILED: ("undo NOT verified", "bold red"),
    Verdict.UNKNOWN: ("undo unverified", "yellow"),
}
_TEST_STYLES = {Verdict.PASSED: "green", Verdict.FAILED: "red", Verdict.UNKNOWN: "yellow", Verdict.UNTESTED: "dim"}


def verdict_text(a: Action) -> Text:
    """The action's verdict in one vocabulary for every resource (see `goex log --help`)."""
    r = a.reversibility
    if r is None or r.verdict is Verdict.UNSPECIFIED:
        return Text("-", style="dim")
    if a.state is ActionState.UNDONE and r.verdict in _UNDO_WORDS:
        word, style = _UNDO_WORDS[r.verdict]
        return Text(word, style=style)
    text = str(r.verdict)
    if r.detail.startswith("reused: "):
        text += " (reused)"
    if r.verdict is Verdict.FAILED and r.detail.startswith("a person marked this pair wrong"):
        text += " (judged wrong)"
    elif "; a person marked this pair right (" in r.detail:
        text += " (judged right)"
    return Text(text, style=_TEST_STYLES.get(r.verdict, ""))


def _what(action: Action) -> str:
    text = action.spec.text if action.spec is not None else ""
    if action.spec is not None and action.spec.description:
        text = f"{action.spec.description}: {text}" if text else action.spec.description
    if action.approval:
        text += f"  (approved: {action.approval})"
    rule = _POLICY_RULE.search(action.error) if action.state is ActionState.BLOCKED else None
    if rule is not None:
        text += f"  (blocked by {rule[1]})"
    return text


def _spec_text(spec: ActionSpec | None) -> Text:
    if spec is None:
        return Text("-", style="dim")
    text = spec.text
    if spec.description:
        text += f"  # {spec.description}"
    return Text(text)


def cmd_show(app: App, args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must not be negative")
    action = app.client().get_action(args.action, session_id=session_for(app, args.action))
    if app.json:
        app.emit(actions_pb2.GetActionResponse(action=action.proto))
        return 0
    history = None
    if action.inverse is not None:  # an (action, inverse) pair: what goexd keeps of it
        with contextlib.suppress(Unimplemented):  # a goexd from before pairs were kept
            history = app.client().pair_history(action.id)
    render_action(app, action, limit=args.limit, history=history)
    return 0


def pair_lines(history: PairHistory) -> list[tuple[str, str | Text]]:
    """The pair's tests and a person's judgements, oldest first, as `goex show` rows."""
    rows: list[tuple[str, str | Text]] = []
    for v in history.verdicts:
        r = v.reversibility
        on = f" on {v.fingerprint_kind} {v.fingerprint[:12]}" if v.fingerprint else " (nothing kept to reuse it by)"
        style = _TEST_STYLES.get(r.verdict, "")
        rows.append(("pair test", Text(f"{r.verdict} by {v.tested_by} at {format_time(r.tested_at)}{on}", style=style)))
    for j in history.judgements:
        note = f": {j.note}" if j.note else ""
        style = "red" if j.judgement == "wrong" else "green"
        text = f"marked {j.judgement} by {j.who or 'someone'} at {format_time(j.at)} (on {j.action_id}){note}"
        rows.append(("judged", Text(text, style=style)))
    if not rows:
        rows.append(("pair", Text("no test or judgement kept yet", style="dim")))
    return rows


def render_action(app: App, a: Action, *, limit: int | None = None, history: PairHistory | None = None) -> None:
    rows: list[tuple[str, str | Text]] = [
        ("action", Text(a.id)),
        ("session", Text(f"{a.session_id} (seq {a.seq})")),
        ("kind", str(a.kind)),
        ("state", state_text(a.state)),
        ("resource", Text(a.resource or "-")),
        ("command", _spec_text(a.spec)),
    ]
    if a.plan is not None:  # a prompt action: how the planner made it (goex/cli/cmd_prompt.py)
        from goex.cli.cmd_prompt import plan_rows

        rows += plan_rows(a.plan, a)
    if a.spec is not None and a.spec.egress is not None:
        rows.append(("network", Text("egress proxy: " + a.spec.egress.text)))
    if a.inverse is not None:
        rows.append(("inverse", _spec_text(a.inverse)))
    if a.reversibility is not None:
        check = undo_check_text(a)  # an undone action's verdict is its undo's: verified / NOT verified / unverified
        if check is not None:
            rows.append(("reversibility", Text(str(a.reversibility.reversibility_class))))
            rows.append(("undo", Text(check.plain.strip(), style=check.style)))
        else:
            rows.append(("reversibility", reversibility_text(a.reversibility)))
    if history is not None:
        rows += pair_lines(history)
    if a.approval:
        rows.append(("approval", Text(a.approval)))
    if a.error:
        rows.append(("error", Text(a.error, style="red")))
    if a.exec is not None:
        e = a.exec
        text = termination_text(e)
        if e.limits_enforced_by:
            text += f" (limits: {e.limits_enforced_by})"
        rows.append(("exit", text))
    if a.sql is not None:
        rows.append(("rows", f"{a.sql.total_rows} returned, {a.sql.affected_rows} affected"))
    if a.http is not None:
        rows.append(("status", http_status_text(a.http)))
    if a.timings is not None:
        t = a.timings
        # goexd may send a zero undo time for actions never undone: only show it for undone ones.
        undo = t.undo if a.state is ActionState.UNDONE else None
        phases = [("prepare", t.prepare), ("run", t.run), ("capture", t.capture), ("total", t.total), ("undo", undo)]
        rows.append(("timings", " · ".join(f"{name} {format_ms(v)} ms" for name, v in phases if v is not None)))
    rows.append(("created", format_time(a.created_at)))
    if a.finished_at is not None:
        rows.append(("finished", format_time(a.finished_at)))
    if a.resolved_at is not None:
        rows.append(("resolved", format_time(a.resolved_at)))
    if a.changes is not None:
        rows.append(("changes", a.changes.summary + (f" ({a.changes.total} total)" if a.changes.total else "")))
    app.out.print(kv_grid(rows))
    for line in change_lines(a.changes, limit=limit):
        app.out.print(line)
    if a.plan is not None:
        from goex.cli.cmd_prompt import print_exchange

        print_exchange(app, a.plan)
    _render_outputs(app, a)


def _render_outputs(app: App, a: Action) -> None:
    if a.exec is not None and a.exec.trimmed:
        app.out.print(Text(a.exec.trimmed, style="dim"))
    if a.exec is not None:
        for name, data, truncated, total in (
            ("stdout", a.exec.stdout, a.exec.stdout_truncated, a.exec.stdout_total_bytes),
            ("stderr", a.exec.stderr, a.exec.stderr_truncated, a.exec.stderr_total_bytes),
        ):
            if not data:
                continue
            note = f" (first {len(data)} of {total} bytes)" if truncated else ""
            app.out.print(Text(f"--- {name}{note}", style="bold"))
            app.write_raw(data if data.endswith(b"\n") else data + b"\n")
    egress = egress_table(a.egress)
    if egress is not None:
        app.out.print(Text(f"--- egress ({len(a.egress)} request{'s' if len(a.egress) != 1 else ''})", style="bold"))
        app.print_table(egress)
    if a.sql is not None:
        print_sql_rows(app, a.sql)
    if a.http is not None:
        print_http_response(app, a.http, headers_title="--- headers", body_title="--- body")


def print_sql_rows(app: App, result: SqlResult) -> bool:
    """The table of rows a statement returned, then "... N more rows" if capped; False when it returned none."""
    table = sql_table(result)
    if table is None:
        return False
    app.print_table(table)
    more = sql_more_rows_text(result)
    if more is not None:
        app.out.print(more)
    return True


def print_http_response(app: App, result: HttpResult, *, headers_title: str = "", body_title: str = "") -> None:
    """The response headers as a table, then the body (pretty JSON, text, or "N bytes" for binary data).

    A title, when given, is printed before its part (as `goex show` does); parts that are empty are left out.
    """
    table = http_headers_table(result)
    if table is not None:
        if headers_title:
            app.out.print(Text(headers_title, style="bold"))
        app.print_table(table)
    body = http_body_text(result)
    if body is not None:
        if body_title:
            app.out.print(Text(body_title, style="bold"))
        app.out.print(body)
