"""goex.v1 HttpAction / HttpResult <-> the engine's HttpRequest / HttpResult.

Only the shape is checked here (a method token, a path that starts with "/", header names and
values that cannot smuggle a second header); where the call may go and whether its body is
what its content type says is the http resource manager's check, before anything is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from goex.v1 import types_pb2 as pb
from goexd.domain.egress import RecordedCall
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import HttpRequest, HttpResult

_METHOD = re.compile(r"^[A-Za-z]{3,10}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name


def http_request(msg: pb.HttpAction, fld: str) -> HttpRequest:
    if not _METHOD.match(msg.method):
        raise InvalidArgument(f"{fld}.method", f"{msg.method!r} is not an HTTP method (GET, POST, PUT, ...)")
    if not msg.path.startswith("/"):
        raise InvalidArgument(f"{fld}.path", "must start with '/' (it is relative to the resource's base URL)")
    if "?" in msg.path or "#" in msg.path:
        raise InvalidArgument(f"{fld}.path", "put query parameters in `query`, not in the path; no fragment")
    if any(c in msg.path for c in "\r\n\t ") or "\x00" in msg.path:
        raise InvalidArgument(f"{fld}.path", "must not contain whitespace or control characters (percent-encode them)")
    for name, value in msg.headers.items():
        if not _TOKEN.match(name):
            raise InvalidArgument(f"{fld}.headers", f"{name!r} is not a header name")
        if any(c in value for c in "\r\n\x00"):
            raise InvalidArgument(f"{fld}.headers[{name}]", "must not contain line breaks or NUL")
    for name, value in msg.query.items():
        if "\x00" in name or "\x00" in value:
            raise InvalidArgument(f"{fld}.query", "must not contain NUL")
    which = msg.WhichOneof("payload")
    body = msg.json.encode() if which == "json" else msg.body if which == "body" else b""
    return HttpRequest(
        method=msg.method.upper(),
        path=msg.path,
        query=tuple(sorted(msg.query.items())),
        headers=tuple(sorted(msg.headers.items())),
        body=body,
        json=which == "json",
    )


def http_action_pb(r: HttpRequest) -> pb.HttpAction:
    msg = pb.HttpAction(method=r.method, path=r.path, query=dict(r.query), headers=dict(r.headers))
    if r.json:
        msg.json = r.body.decode("utf-8", "replace")
    elif r.body:
        msg.body = r.body
    return msg


def joined_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A repeated header (set-cookie...) is joined, as HTTP allows for most."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def http_result_pb(r: HttpResult) -> pb.HttpResult:
    return pb.HttpResult(
        status=r.status, headers=joined_headers(r.headers), body=r.body, body_truncated=r.body_truncated
    )


def request_of_recorded(c: RecordedCall) -> HttpRequest:
    """An inverse a gate recorded, as the request type actions use."""
    return HttpRequest.as_sent(c.method, c.path, c.query, c.headers, c.body)
