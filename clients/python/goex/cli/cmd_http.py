"""goex http METHOD PATH: a declarative HTTP call to a REST service of the current session."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from goex._enums import Verdict
from goex._models import Action
from goex._specs import Http
from goex.cli._app import App, CliError, UsageError, common_flags
from goex.cli._render import http_status_text, kv_grid, reversibility_text
from goex.cli._text import Text
from goex.cli.cmd_log import print_http_response
from goex.cli.cmd_run import add_approve_flag, print_summary
from goex.cli.cmd_sql import submit_from_args
from goex.v1 import actions_pb2

_DESCRIPTION = """\
Have goexd send METHOD PATH to a REST service of the session (`goex session open --http
NAME=BASE_URL`). PATH is relative to the service's base URL and may not leave it; goexd
adds the credentials of the session's --http-secret, which the caller never sees. A write
stays pending until `goex commit`; under the inverse strategy goexd derives its inverse
from the recorded response (a created item's DELETE, ...) and `goex undo` sends it. A read
(GET, HEAD, OPTIONS) changes nothing: it is recorded as committed at once, so `goex undo`
takes back the last write, not a read after it.

--json TEXT is the request's JSON body, as in curl. For this command's output as JSON,
put --json before `http`: goex --json http GET /items. PATH starting with '-' goes after
`--`; TEXT '-' (--json, --body, --body-file) reads stdin.
"""

EXIT_HELP = """\
exit status:
  0       the service answered 1xx-3xx (a write is pending, a read committed); with --detach: accepted
  125     the action did not complete: a 4xx/5xx answer (printed; goexd records it), no answer
          at all (refused connection, time limit, cancelled), or blocked
  1       goex error: daemon not running, unknown session, a call goexd refuses (invalid JSON,
          a path outside the base URL, a credential header: INVALID_ARGUMENT) or one the session's
          policy refuses (PERMISSION_DENIED, e.g. an irreversible call without --approve, also one
          its pre-image GET showed irreversible, say answered 401; recorded as blocked); 2: usage error
  130     interrupted (Ctrl-C): on a terminal goex cancels the action, but a request already
          sent is not taken back; otherwise it may still be made by goexd (`goex log` tells)

--test: nothing is sent to the service; goexd says what it would do to undo the call
(TestReversibility): "test passed" (a read; or the call and its inverse tried for real on the
resource's staging copy, --http-staging, and the service restored), "test failed" (there, it was
not: what differs) or "test unknown" (not tried, and why: a call cannot be tried without its
side effect; then the rule set's plan). Exit 0 passed, 3 failed, 4 unknown.

Prints the status line, the response headers (a table), the body (JSON pretty-printed,
other text as it is, binary data as "N bytes of TYPE"; a note when goexd capped it),
then the reversibility class, the inverse goexd will send to undo the call, the --approve
text it was sent with, and the summary: the action's id, state, status and time. --quiet
prints only the body, byte for byte.
"""

# An HTTP method is a token (RFC 9110 section 9.1).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    del common  # its --json would clash with the request's: the global flags without it
    p = sub.add_parser(
        "http",
        parents=[common_flags(json_output=False)],
        help="send an HTTP request to a REST service of the current session",
        description=_DESCRIPTION,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", metavar="METHOD", help="GET, POST, PUT, PATCH, DELETE, ...")
    p.add_argument("path", metavar="PATH", help="path below the base URL, e.g. /items/7 (percent-encoded, no query)")
    body = p.add_argument_group("request")
    body.add_argument("--json", dest="json_body", metavar="TEXT", help="JSON body (sent as application/json)")
    body.add_argument("--body", metavar="TEXT", help="raw body, as UTF-8")
    body.add_argument("--body-file", metavar="FILE", help="raw body from FILE, byte for byte")
    body.add_argument(
        "--query",
        action="append",
        default=[],
        dest="queries",
        metavar="K=V",
        help="query parameter (repeatable)",
    )
    body.add_argument(
        "--header",
        action="append",
        default=[],
        dest="headers",
        metavar="'NAME: VALUE'",
        help="request header (repeatable); no credentials: goexd injects the resource's secret",
    )
    inv = p.add_argument_group(
        "inverse",
        "The request that undoes this one, instead of the one goexd derives from the response. goexd still "
        "takes the pre-image and checks the undo against it (verified / NOT verified / unverified where "
        "nothing can be compared), and the inverse does not make an irreversible call run without "
        "--approve unless the daemon's policy trusts client inverses.",
    )
    inv.add_argument("--inverse-method", metavar="M", help="its method")
    inv.add_argument("--inverse-path", metavar="P", help="its path")
    inv.add_argument("--inverse-json", metavar="TEXT", help="its JSON body")
    p.add_argument("--resource", metavar="NAME", help="target service (default: the session's only one)")
    p.add_argument("-m", "--description", metavar="TEXT", help="free text for the timeline")
    add_approve_flag(p)
    p.add_argument("--timeout", metavar="DURATION", help="time limit: seconds, or 500ms / 2m / 1h")
    p.add_argument("--detach", action="store_true", help="print the action id once accepted and return")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the response body")
    p.add_argument(
        "--test",
        action="store_true",
        help="send nothing: test the call's reversibility (on the staging copy if the resource names one)",
    )
    p.set_defaults(handler=cmd_http)


def http_from_args(args: argparse.Namespace) -> tuple[Http, Http | None]:
    """The request and its inverse (None without --inverse-method/--inverse-path); checked before any RPC."""
    bodies = {"--json": args.json_body, "--body": args.body, "--body-file": args.body_file}
    given = [flag for flag, value in bodies.items() if value is not None]
    if len(given) > 1:
        raise UsageError(f"give one request body: {' and '.join(given)} both given")
    method = _method(args.method, "METHOD")
    path = _path(args.path, "PATH")
    request = Http(
        method,
        path,
        query=parse_queries(args.queries),
        headers=parse_headers(args.headers),
        body=_raw_body(args),
        json=_read_stdin_text() if args.json_body == "-" else args.json_body,
    )
    return request, _inverse(args)


def _inverse(args: argparse.Namespace) -> Http | None:
    if args.inverse_method is None and args.inverse_path is None:
        if args.inverse_json is not None:
            raise UsageError("--inverse-json needs --inverse-method and --inverse-path")
        return None
    if args.inverse_method is None or args.inverse_path is None:
        raise UsageError("--inverse-method and --inverse-path go together")
    return Http(
        _method(args.inverse_method, "--inverse-method"),
        _path(args.inverse_path, "--inverse-path"),
        json=args.inverse_json,
    )


def _method(text: str, what: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise UsageError(f"{what} {text!r} is not an HTTP method (GET, POST, PUT, PATCH, DELETE, ...)")
    return text.upper()


def _path(text: str, what: str) -> str:
    if not text.strip():
        raise UsageError(f"{what} is empty: give the path below the base URL, e.g. /items")
    if "?" in text:
        raise UsageError(f"{what} {text!r} carries a query: give its parameters with --query K=V")
    return text


def parse_queries(items: list[str]) -> dict[str, str]:
    """--query K=V items as a map; a key given twice is refused (the request carries one value per key)."""
    query: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid --query {item!r}: expected K=V, e.g. --query limit=10")
        if key in query:
            raise UsageError(f"--query {key} given twice")
        query[key] = value
    return query


def parse_headers(items: list[str]) -> dict[str, str]:
    """--header 'Name: value' items as a map; a name given twice (in any case) is refused."""
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for item in items:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise UsageError(f"invalid --header {item!r}: expected 'NAME: VALUE', e.g. 'Accept: application/json'")
        if name.lower() in seen:
            raise UsageError(f"--header {name} given twice")
        seen.add(name.lower())
        headers[name] = value.strip()
    return headers


def _raw_body(args: argparse.Namespace) -> bytes | None:
    if args.body is not None:
        return sys.stdin.buffer.read() if args.body == "-" else str(args.body).encode()
    if args.body_file is None:
        return None
    if args.body_file == "-":
        return sys.stdin.buffer.read()
    try:
        with open(args.body_file, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read --body-file {args.body_file}: {exc.strerror}", code="INVALID_ARGUMENT") from None


def _read_stdin_text() -> str:
    return sys.stdin.read()


def cmd_http(app: App, args: argparse.Namespace) -> int:
    request, inverse = http_from_args(args)
    if args.test:
        return _test(app, args, request, inverse)
    return submit_from_args(app, args, request, inverse, lambda action: _print(app, args, action))


EXIT_TEST_FAILED = 3  # as `goex undo`'s NOT verified
EXIT_TEST_UNKNOWN = 4  # as `goex undo`'s unverified


def _test(app: App, args: argparse.Namespace, request: Http, inverse: Http | None) -> int:
    if args.detach or args.approve:
        raise UsageError("--test sends nothing: --detach and --approve do not go with it")
    verdict = app.client().test_reversibility(app.session_id(), request, inverse=inverse, resource=args.resource)
    if app.json:
        app.emit(actions_pb2.TestReversibilityResponse(reversibility=verdict.proto))
    else:
        app.out.print(kv_grid([("reversibility", reversibility_text(verdict))]))
    return {Verdict.PASSED: 0, Verdict.FAILED: EXIT_TEST_FAILED}.get(verdict.verdict, EXIT_TEST_UNKNOWN)


def _print(app: App, args: argparse.Namespace, action: Action) -> None:
    if args.quiet:
        if action.http is not None and action.http.body:
            app.write_raw(action.http.body)
        return
    print_http_result(app, action)
    print_summary(app, action)


def print_http_result(app: App, action: Action) -> None:
    """Status line, headers, body, then the reversibility class and the inverse; nothing of a call never answered."""
    if action.http is not None:
        app.out.print(http_status_text(action.http))
        print_http_response(app, action.http)
    rows: list[tuple[str, str | Text]] = []
    if action.reversibility is not None:
        rows.append(("reversibility", reversibility_text(action.reversibility)))
    if action.inverse is not None and action.inverse.body is not None:
        rows.append(("inverse", Text(action.inverse.text)))
    if action.approval:
        rows.append(("approval", Text(action.approval)))
    if rows:
        app.out.print(kv_grid(rows))
