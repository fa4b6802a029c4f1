"""Request messages built from the clients' Python arguments (shared by sync and async)."""

from __future__ import annotations

import dataclasses
import json as _json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from goex._enums import ActionState, SecretKind
from goex._protoutil import duration
from goex._specs import ActionBody, ActionSpec, Egress, Http, Injection, Limits, Prompt, ResourceSpec, Sql
from goex.v1 import actions_pb2, secrets_pb2, sessions_pb2

CloseModeArg = Literal["commit", "undo"] | None

# A page cap for the pagination loops: a daemon that keeps returning a token would
# otherwise spin forever.
MAX_PAGES = 10_000

# AwaitOAuth: how much longer than the daemon's own wait the call's deadline is, so that
# the daemon's answer (success, or DEADLINE_EXCEEDED saying until when the flow stays
# open) arrives before the client gives up on its own.
AWAIT_OAUTH_MARGIN = 10.0


def create_session(
    *,
    fs: str | os.PathLike[str] | None,
    label: str,
    limits: Limits | None,
    resources: Iterable[ResourceSpec],
    policy: str | None,
    db: str | None = None,
    http: str | None = None,
) -> sessions_pb2.CreateSessionRequest:
    shortcuts = [
        ResourceSpec.fs(fs) if fs is not None else None,
        ResourceSpec.db(db) if db is not None else None,
        ResourceSpec.http(http) if http is not None else None,
    ]
    specs = [s for s in shortcuts if s is not None] + list(resources)
    msg = sessions_pb2.CreateSessionRequest(
        resources=[s.to_proto() for s in specs], label=label, policy_toml=policy or ""
    )
    if limits is not None and not limits.is_empty:
        msg.limits.CopyFrom(limits.to_proto())
    return msg


def close_session(session_id: str, mode: CloseModeArg) -> sessions_pb2.CloseSessionRequest:
    names = {None: "CLOSE_MODE_UNSPECIFIED", "commit": "CLOSE_MODE_COMMIT_ALL", "undo": "CLOSE_MODE_UNDO_ALL"}
    if mode not in names:
        raise ValueError(f"mode must be 'commit', 'undo' or None, not {mode!r}")
    return sessions_pb2.CloseSessionRequest(session_id=session_id, mode=names[mode])


def undo(session_id: str, action_id: str | None, cascade: bool, force: bool) -> actions_pb2.UndoActionRequest:
    return actions_pb2.UndoActionRequest(session_id=session_id, action_id=action_id or "", cascade=cascade, force=force)


def undo_to(action_id: str, force: bool, session_id: str | None = None) -> actions_pb2.UndoToRequest:
    return actions_pb2.UndoToRequest(action_id=action_id, force=force, session_id=session_id or "")


def action_spec(
    action: ActionBody | ActionSpec,
    *,
    resource: str | None = None,
    limits: Limits | None = None,
    description: str | None = None,
    egress: Egress | None = None,
) -> ActionSpec:
    """An `ActionSpec` for `action`; the keyword arguments override the spec's own fields."""
    spec = action if isinstance(action, ActionSpec) else ActionSpec(action)
    overrides: dict[str, object] = {}
    if resource is not None:
        overrides["resource"] = resource
    if limits is not None:
        overrides["limits"] = limits
    if description is not None:
        overrides["description"] = description
    if egress is not None:
        overrides["egress"] = egress
    return dataclasses.replace(spec, **overrides) if overrides else spec  # type: ignore[arg-type]


def submit(
    session_id: str,
    action: ActionBody | ActionSpec,
    *,
    resource: str | None,
    inverse: ActionBody | ActionSpec | None,
    detach: bool,
    limits: Limits | None,
    description: str | None,
    approval: str,
    egress: Egress | None = None,
) -> actions_pb2.SubmitActionRequest:
    spec = action_spec(action, resource=resource, limits=limits, description=description, egress=egress)
    msg = actions_pb2.SubmitActionRequest(session_id=session_id, spec=spec.to_proto(), detach=detach, approval=approval)
    if inverse is not None:
        # The inverse runs where the action ran, within the same limits. It gets no network
        # from the action's egress: an inverse that needs some says so in its own ActionSpec.
        msg.inverse.CopyFrom(action_spec(inverse, resource=spec.resource, limits=spec.limits).to_proto())
    return msg


def run(submitted: actions_pb2.SubmitActionRequest, stream_output: bool) -> actions_pb2.RunActionRequest:
    """The RunAction request for what a blocking submit would send: the same action, inverse and approval."""
    msg = actions_pb2.RunActionRequest(
        session_id=submitted.session_id, spec=submitted.spec, approval=submitted.approval, stream_output=stream_output
    )
    if submitted.HasField("inverse"):
        msg.inverse.CopyFrom(submitted.inverse)
    return msg


def egress(secrets: Iterable[str], hosts: Iterable[str], resources: Iterable[str] = ()) -> Egress | None:
    """`run_shell` / `run_python`'s secrets, hosts and http resources as an Egress; None (no network) when all
    are empty."""
    result = Egress(secrets=secrets, hosts=hosts, resources=resources)
    return None if result.is_empty else result


def sql_bodies(sql: str, params: Iterable[str], inverse: str | Sql | None) -> tuple[Sql, Sql | None]:
    """`run_sql`'s action and inverse: an inverse given as text has no parameters of its own."""
    return Sql(sql, params), Sql(inverse) if isinstance(inverse, str) else inverse


def http_bodies(
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    json: Any,
    body: bytes | str | None,
    inverse: Http | None,
) -> tuple[Http, Http | None]:
    """`run_http`'s action and inverse.

    `json` is JSON text when a str, else a value to serialise (None: no JSON body; send
    JSON null as the text "null"). `body` is sent as raw bytes, a str as UTF-8.
    """
    if json is not None and body is not None:
        raise ValueError("give json or body, not both")
    text: str | None
    if json is None or isinstance(json, str):
        text = json
    elif isinstance(json, bytes | bytearray):
        # bytes would fail in json.dumps with a less helpful message.
        raise TypeError("json must be JSON text (str) or a JSON-serialisable value; pass bytes as body=")
    else:
        # NaN and infinities are not JSON: refuse them here rather than send invalid text.
        text = _json.dumps(json, allow_nan=False)
    raw = _bytes(body) if body is not None else None
    return Http(method, path, query=query, headers=headers, body=raw, json=text), inverse


def plan(
    session_id: str, prompt: str, *, functions: str, resource: str | None, limits: Limits | None
) -> actions_pb2.PlanActionRequest:
    spec = action_spec(Prompt(prompt, functions), resource=resource, limits=limits)
    return actions_pb2.PlanActionRequest(session_id=session_id, spec=spec.to_proto())


def test_reversibility(
    session_id: str,
    action: ActionBody | ActionSpec,
    *,
    inverse: ActionBody | ActionSpec | None,
    resource: str | None,
    limits: Limits | None,
) -> actions_pb2.TestReversibilityRequest:
    spec = action_spec(action, resource=resource, limits=limits)
    msg = actions_pb2.TestReversibilityRequest(session_id=session_id, spec=spec.to_proto())
    if inverse is not None:
        msg.inverse.CopyFrom(action_spec(inverse, resource=spec.resource, limits=spec.limits).to_proto())
    return msg


def list_actions(
    session_id: str, states: Iterable[ActionState | str] | None, page_token: str
) -> actions_pb2.ListActionsRequest:
    return actions_pb2.ListActionsRequest(
        session_id=session_id,
        states=[ActionState(s).proto_name for s in states or ()],
        page_token=page_token,
    )


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def put_secret(
    name: str,
    value: bytes | str | None,
    *,
    kind: SecretKind | str,
    injection: Injection | None,
    allowed_hosts: Iterable[str],
    values: Mapping[str, bytes | str] | None,
    overwrite: bool,
) -> secrets_pb2.PutSecretRequest:
    info = secrets_pb2.SecretInfo(name=name, kind=SecretKind(kind).proto_name, allowed_hosts=list(allowed_hosts))
    if injection is not None:
        info.injection.CopyFrom(injection.to_proto())
    return secrets_pb2.PutSecretRequest(
        info=info,
        value=_bytes(value) if value is not None else b"",
        values={k: _bytes(v) for k, v in (values or {}).items()},
        overwrite=overwrite,
    )


def start_oauth(
    name: str,
    *,
    authorization_url: str,
    token_url: str,
    client_id: str,
    scopes: Iterable[str],
    allowed_hosts: Iterable[str],
    client_secret: bytes | str,
    overwrite: bool,
) -> secrets_pb2.StartOAuthRequest:
    return secrets_pb2.StartOAuthRequest(
        name=name,
        authorization_url=authorization_url,
        token_url=token_url,
        client_id=client_id,
        scopes=list(scopes),
        allowed_hosts=list(allowed_hosts),
        client_secret=_bytes(client_secret),
        overwrite=overwrite,
    )


def await_oauth(name: str, timeout: float | None) -> tuple[secrets_pb2.AwaitOAuthRequest, float | None]:
    """The request and the call's deadline in seconds (None: none, as the daemon's wait then has its own end)."""
    if timeout is None:
        # No timeout in the request: the daemon waits until the flow itself expires.
        return secrets_pb2.AwaitOAuthRequest(name=name), None
    if not 0 < timeout < math.inf:  # also refuses NaN
        raise ValueError(f"timeout must be a positive number of seconds (None: until the flow ends), not {timeout!r}")
    req = secrets_pb2.AwaitOAuthRequest(name=name, timeout=duration(timeout))
    return req, timeout + AWAIT_OAUTH_MARGIN
