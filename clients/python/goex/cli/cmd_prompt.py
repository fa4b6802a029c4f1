"""goex prompt TEXT: goexd's planner turns a sentence into an action (and its inverse), which then runs as any."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from goex._enums import ActionKind, ActionState
from goex._models import Action
from goex._specs import Prompt
from goex.cli._app import App, UsageError, add_limit_flags, limits_from_args
from goex.cli._render import exit_status, kv_grid, reversibility_text
from goex.cli._text import Text
from goex.cli._units import format_ms
from goex.v1 import actions_pb2

if TYPE_CHECKING:
    from goex._prompts import PlanReview, PromptPlan

_DESCRIPTION = """\
Ask goexd's planner (an LLM: [planner] in goexd.toml, or the embedded local model) to turn TEXT
into one action on the session's resources, then run it as any action runs: the policy decides
on it, the inverse the model wrote is tried first where the resource's strategy undoes by one (a
wrong one gets the action refused, or flagged where the policy says), and it stays pending until
`goex commit` or `goex undo`. Shows what the model planned and how, then the result.

  goex prompt "write a joke into joke.txt"
  goex prompt --plan-only "add 500 to every balance"     the plan for review; nothing runs
  goex prompt --functions slack "tell #general the build is green"

TEXT '-' reads it from stdin. `goex show ACTION` shows the whole exchange with the model.
"""

EXIT_HELP = """\
exit status:
  as `goex run` for a command, `goex sql` for SQL, `goex http` for a call (0: it ran and is
  pending); 125 when no plan was made (the endpoint failed, the model gave no usable answer:
  the error says which) or the action did not complete. --plan-only: 0 when the policy allows
  the plan and its test did not fail, 3 when the test failed or the policy refuses it, 4 when
  the test could not be made.
"""

EXIT_REFUSED = 3
EXIT_UNKNOWN = 4


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "prompt",
        parents=[common],
        help="turn a sentence into an action with goexd's planner (an LLM), and run it",
        description=_DESCRIPTION,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("text", nargs="+", metavar="TEXT", help="what to do, in words ('-': read from stdin)")
    p.add_argument(
        "--plan-only", action="store_true", help="show the plan, the policy's answer and its test; run nothing"
    )
    p.add_argument("--functions", metavar="NAME", default="", help="functions mode: pick from this function set")
    p.add_argument("--resource", metavar="NAME", help="act on this resource only (default: any of the session's)")
    p.add_argument("-m", "--description", metavar="TEXT", help="free text for the timeline")
    p.add_argument("--approve", metavar="WHO_WHY", help="an explicit approval, for what the policy holds for one")
    p.add_argument("--detach", action="store_true", help="print the action id once planned and accepted, and return")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the action's own output")
    add_limit_flags(p)
    p.set_defaults(handler=cmd_prompt)


def cmd_prompt(app: App, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    if not text.strip():
        raise UsageError("no prompt given")
    if args.plan_only:
        if args.detach or args.approve:
            raise UsageError("--plan-only runs nothing: --detach and --approve do not go with it")
        return _plan_only(app, args, text)
    from goex.cli.cmd_run import print_egress, print_outputs, print_summary, submit_action

    # submit_action's own spinner covers the planning: goexd plans before it accepts the action.
    outcome = submit_action(
        app,
        Prompt(text, args.functions),
        detach=args.detach,
        resource=args.resource,
        limits=limits_from_args(args),
        description=args.description,
        approval=args.approve or "",
    )
    if outcome is None:
        return 0
    action, streamed = outcome
    if app.json:
        app.emit(actions_pb2.SubmitActionResponse(action=action.proto))
        return exit_status(action)
    if not args.quiet and action.plan is not None:
        app.err.print(kv_grid([*plan_rows(action.plan, action), *_planned_rows(action)]))
    print_outputs(app, action, streamed, report_follows=not args.quiet)
    _print_result(app, action)
    if not args.quiet:
        print_egress(app, action)
        print_summary(app, action)
    return exit_status(action)


def _planned_rows(action: Action) -> list[tuple[str, str | Text]]:
    """What the plan became: the action and its inverse (none for a prompt that got no plan)."""
    from goex.cli.cmd_log import _spec_text as spec_text

    if action.kind is ActionKind.PROMPT:
        return []
    rows: list[tuple[str, str | Text]] = [("action", spec_text(action.spec))]
    rows.append(("inverse", spec_text(action.inverse) if action.inverse is not None else _no_inverse()))
    return rows


def _print_result(app: App, action: Action) -> None:
    from goex.cli.cmd_log import print_http_response
    from goex.cli.cmd_sql import print_sql_result

    if action.kind is ActionKind.SQL:
        print_sql_result(app, action)
    elif action.http is not None:
        print_http_response(app, action.http)


def _plan_only(app: App, args: argparse.Namespace, text: str) -> int:
    with app.spinner("planning…"):
        review = app.client().plan(
            app.session_id(), text, functions=args.functions, resource=args.resource, limits=limits_from_args(args)
        )
    if app.json:
        app.emit(review.proto)
    else:
        app.out.print(kv_grid(review_rows(review)))
    if review.policy_decision != "allow":
        return EXIT_REFUSED
    tested = review.reversibility
    verdict = str(tested.verdict) if tested is not None else "unknown"
    return {"passed": 0, "untested": 0, "failed": EXIT_REFUSED}.get(verdict, EXIT_UNKNOWN)


def review_rows(review: PlanReview) -> list[tuple[str, str | Text]]:
    from goex.cli.cmd_log import _spec_text as spec_text

    rows: list[tuple[str, str | Text]] = [("action", spec_text(review.action))]
    rows.append(("inverse", spec_text(review.inverse) if review.inverse is not None else _no_inverse()))
    decision = review.policy_decision + (f" [{review.policy_rule}]" if review.policy_rule else "")
    if review.policy_reason:
        decision += f": {review.policy_reason}"
    rows.append(("policy", Text(decision, style="green" if review.policy_decision == "allow" else "red")))
    if review.reversibility is not None:
        rows.append(("reversibility", reversibility_text(review.reversibility)))
    rows += plan_rows(review.plan, None)
    rows.append(("ran", Text("nothing: a plan for review", style="dim")))
    return rows


def _no_inverse() -> Text:
    return Text("none from the model: the resource undoes by itself, or its rule set derives the undo", style="dim")


def plan_rows(plan: PromptPlan, action: Action | None) -> list[tuple[str, str | Text]]:
    """`goex show` / `goex prompt` rows: the prompt, who planned it and how, each refused answer and why."""
    rows: list[tuple[str, str | Text]] = [("prompt", Text(plan.prompt))]
    prompt_tokens = sum(a.prompt_tokens for a in plan.attempts)
    completion_tokens = sum(a.completion_tokens for a in plan.attempts)
    answers = f"{len(plan.attempts)} answer{'s' if len(plan.attempts) != 1 else ''}"
    how = (
        f"{plan.model.rsplit('/', 1)[-1] or '?'} at {plan.endpoint} ({plan.mode}, {plan.transport}); {answers}, "
        f"{prompt_tokens}+{completion_tokens} tokens, {format_ms(plan.latency)} ms; "
        f"request ~{plan.request_tokens} tokens"
    )
    rows.append(("planned by", Text(how)))
    if plan.function:
        rows.append(("function", Text(plan.function)))
    for n, attempt in enumerate(plan.attempts, 1):
        if attempt.error:
            rows.append((f"answer {n}", Text(f"refused: {attempt.error}", style="yellow")))
    if plan.error and (action is None or action.state is not ActionState.FAILED):
        rows.append(("no plan", Text(plan.error, style="red")))
    return rows


def print_exchange(app: App, plan: PromptPlan) -> None:
    """`goex show`'s account of the exchange: the planner rows, then each answer as the model gave it."""
    for n, attempt in enumerate(plan.attempts, 1):
        app.out.print(Text(f"--- model answer {n}{' (refused)' if attempt.error else ''}", style="bold"))
        app.out.print(attempt.answer, markup=False)
