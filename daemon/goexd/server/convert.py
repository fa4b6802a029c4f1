"""Proto <-> domain conversion. Structural validation of requests happens here and names the
field; semantic checks (does the path exist, is the action pending) belong to the engine."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from goex.v1 import types_pb2 as pb
from goexd.domain.egress import Decision, EgressRecordData
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import (
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    CloseMode,
    EgressRequest,
    HttpResult,
    LimitsRequest,
    Resource,
    ResourceKind,
    ResourceRequest,
    Reversibility,
    Session,
    SessionState,
    SqlResult,
    Timings,
    UndoStrategy,
)
from goexd.domain.names import display_path, utf8_text
from goexd.domain.sandbox import ExecResult, Limits, Stream
from goexd.domain.secrets import check_host, check_name
from goexd.domain.snapshots import ChangeSet
from goexd.server.convert_http import http_action_pb, http_request, http_result_pb, joined_headers, request_of_recorded
from goexd.server.convert_plan import plan_pb

_STATE_TO_PB = {s: cast(pb.ActionState, pb.ActionState.Value(f"ACTION_STATE_{s.name}")) for s in ActionState}
_STATE_FROM_PB: dict[int, ActionState] = {v: k for k, v in _STATE_TO_PB.items()}
_SESSION_STATE_TO_PB = {
    s: cast(pb.SessionState, pb.SessionState.Value(f"SESSION_STATE_{s.name}")) for s in SessionState
}
_KIND_TO_PB = {k: cast(pb.ActionKind, pb.ActionKind.Value(f"ACTION_KIND_{k.name}")) for k in ActionKind}
_RKIND_TO_PB = {k: cast(pb.ResourceKind, pb.ResourceKind.Value(f"RESOURCE_KIND_{k.name}")) for k in ResourceKind}
_STRATEGY_TO_PB = {s: cast(pb.UndoStrategy, pb.UndoStrategy.Value(f"UNDO_STRATEGY_{s.name}")) for s in UndoStrategy}
_STRATEGY_FROM_PB: dict[int, UndoStrategy] = {v: k for k, v in _STRATEGY_TO_PB.items()}
_CHANGE_TO_PB = {
    "added": pb.CHANGE_KIND_ADDED,
    "modified": pb.CHANGE_KIND_MODIFIED,
    "deleted": pb.CHANGE_KIND_DELETED,
    "type_changed": pb.CHANGE_KIND_TYPE_CHANGED,
    "mode_changed": pb.CHANGE_KIND_MODE_CHANGED,
}
_TERMINATION_TO_PB = {
    "exited": pb.TERMINATION_EXITED,
    "signaled": pb.TERMINATION_SIGNALED,
    "timeout": pb.TERMINATION_TIMEOUT,
    "oom": pb.TERMINATION_OOM,
    "pids_limit": pb.TERMINATION_PIDS_LIMIT,
    "cancelled": pb.TERMINATION_CANCELLED,
    "spawn_failed": pb.TERMINATION_SPAWN_FAILED,
}
_RCLASS_TO_PB = {
    "reversible": pb.REVERSIBILITY_CLASS_REVERSIBLE,
    "best_effort": pb.REVERSIBILITY_CLASS_BEST_EFFORT,
    "irreversible": pb.REVERSIBILITY_CLASS_IRREVERSIBLE,
    "read_only": pb.REVERSIBILITY_CLASS_READ_ONLY,
}
_VERDICT_TO_PB = {
    "untested": pb.VERDICT_UNTESTED,
    "passed": pb.VERDICT_PASSED,
    "failed": pb.VERDICT_FAILED,
    "unknown": pb.VERDICT_UNKNOWN,
}
STREAM_TO_PB = {Stream.STDOUT: pb.OUTPUT_STREAM_STDOUT, Stream.STDERR: pb.OUTPUT_STREAM_STDERR}

MAX_ID_LEN = 64
MAX_LABEL_CHARS = 1024  # a session's label is kept in the journal and shown in listings
MAX_DURATION_S = 315_576_000_000  # google.protobuf.Duration's own range (about 10,000 years)


def ts(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def dur(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def require_id(value: str, fld: str) -> str:
    if not value:
        raise InvalidArgument(fld, "is required")
    if len(value) > MAX_ID_LEN or not value.replace("_", "").replace("-", "").isalnum():
        raise InvalidArgument(fld, f"{value[:MAX_ID_LEN]!r} is not a valid id")
    return value


def optional_id(value: str, fld: str) -> str:
    return require_id(value, fld) if value else ""


def label(value: str, fld: str) -> str:
    if len(value) > MAX_LABEL_CHARS:
        raise InvalidArgument(fld, f"at most {MAX_LABEL_CHARS} characters, not {len(value)}")
    return value


# ---------------------------------------------------------------- requests -> domain


def duration_s(msg: Duration, fld: str) -> float:
    """A Duration in seconds; one outside the type's range (or with mixed signs) is INVALID_ARGUMENT."""
    seconds, nanos = msg.seconds, msg.nanos
    if abs(seconds) > MAX_DURATION_S or abs(nanos) > 999_999_999 or seconds * nanos < 0:
        raise InvalidArgument(fld, "not a valid duration")
    return seconds + nanos / 1e9


def limits_request(msg: pb.SandboxLimits, fld: str) -> LimitsRequest:
    timeout = duration_s(msg.timeout, f"{fld}.timeout") if msg.HasField("timeout") else None
    if timeout is not None and timeout < 0:
        raise InvalidArgument(f"{fld}.timeout", "must not be negative")
    return LimitsRequest(
        timeout_s=timeout or None,
        memory_bytes=msg.memory_bytes or None,
        max_processes=msg.max_processes or None,
        output_bytes=msg.output_bytes or None,
    )


def resource_request(msg: pb.ResourceSpec, fld: str) -> ResourceRequest:
    which = msg.WhichOneof("kind")
    strategy = _STRATEGY_FROM_PB.get(msg.strategy) if msg.strategy else None
    if msg.strategy and strategy is None:
        raise InvalidArgument(f"{fld}.strategy", f"unknown strategy {msg.strategy}")
    if msg.name and (len(msg.name) > 64 or not msg.name.replace("_", "").replace("-", "").isalnum()):
        raise InvalidArgument(f"{fld}.name", "use letters, digits, '-' and '_' (at most 64)")
    if which == "fs":
        return ResourceRequest(
            msg.name, ResourceKind.FS, msg.fs.path, strategy, sandbox=msg.fs.sandbox, image=msg.fs.image
        )
    if which == "db":
        kind = ResourceKind.POSTGRES if msg.db.url.startswith("postgres") else ResourceKind.SQLITE
        return ResourceRequest(msg.name, kind, msg.db.url, strategy, msg.db.secret)
    if which == "http":
        return ResourceRequest(
            msg.name,
            ResourceKind.HTTP,
            msg.http.base_url,
            strategy,
            msg.http.secret,
            msg.http.rules,
            msg.http.staging_base_url,
        )
    raise InvalidArgument(f"{fld}.kind", "set one of fs, db or http")


def action_spec(msg: pb.ActionSpec, fld: str) -> ActionSpec:
    which = msg.WhichOneof("body")
    limits = limits_request(msg.limits, f"{fld}.limits")

    egress = egress_request(msg.egress, f"{fld}.egress") if msg.HasField("egress") else None

    def spec(kind: ActionKind, **body: Any) -> ActionSpec:
        base = ActionSpec(kind, resource=msg.resource, limits=limits, description=msg.description, egress=egress)
        return replace(base, **body)

    if which == "shell":
        if not msg.shell.argv:
            raise InvalidArgument(f"{fld}.shell.argv", "must not be empty")
        if any("\x00" in a for a in msg.shell.argv):
            raise InvalidArgument(f"{fld}.shell.argv", "arguments must not contain NUL bytes")
        return spec(
            ActionKind.SHELL,
            argv=tuple(msg.shell.argv),
            env=dict(msg.shell.env),
            stdin=msg.shell.stdin,
            cwd=workspace_dir(msg.shell.cwd, f"{fld}.shell.cwd"),
        )
    if which == "python":
        if not msg.python.code.strip():
            raise InvalidArgument(f"{fld}.python.code", "must not be empty")
        return spec(
            ActionKind.PYTHON,
            code=msg.python.code,
            env=dict(msg.python.env),
            stdin=msg.python.stdin,
            cwd=workspace_dir(msg.python.cwd, f"{fld}.python.cwd"),
        )
    if which == "sql":
        if not msg.sql.sql.strip():
            raise InvalidArgument(f"{fld}.sql.sql", "must not be empty")
        return spec(ActionKind.SQL, sql=msg.sql.sql, params=tuple(msg.sql.params))
    if which == "http":
        return spec(ActionKind.HTTP, http=http_request(msg.http, f"{fld}.http"))
    if which == "prompt":
        if not msg.prompt.prompt.strip():
            raise InvalidArgument(f"{fld}.prompt.prompt", "must not be empty")
        extra = {"prompt": msg.prompt.prompt, **({"functions": msg.prompt.functions} if msg.prompt.functions else {})}
        return spec(ActionKind.PROMPT, extra=extra)
    raise InvalidArgument(f"{fld}.body", "set one of shell, python, sql, http or prompt")


MAX_CWD_BYTES = 4096  # PATH_MAX


def workspace_dir(raw: bytes, fld: str) -> str:
    """An action's working directory as given: relative to the workspace root, normalised ("" the root), never
    leaving it by "..". Whether it is a directory of the workspace is the resource's check (fs_cwd.py)."""
    if len(raw) > MAX_CWD_BYTES:
        raise InvalidArgument(fld, f"at most {MAX_CWD_BYTES} bytes, not {len(raw)}")
    if b"\x00" in raw:
        raise InvalidArgument(fld, "must not contain NUL bytes")
    if raw.startswith(b"/"):
        raise InvalidArgument(fld, f"{display_path(raw)!r} is absolute: give it relative to the workspace root")
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise InvalidArgument(fld, f"{display_path(raw)!r} goes up with '..': it must stay in the workspace")
    return os.fsdecode(b"/".join(parts))


def close_mode(value: int) -> CloseMode:
    modes = {
        0: CloseMode.REFUSE_IF_PENDING,
        1: CloseMode.COMMIT_ALL,
        2: CloseMode.UNDO_ALL,
    }
    if value not in modes:
        raise InvalidArgument("mode", f"unknown close mode {value}")
    return modes[value]


def states(values: list[int]) -> list[ActionState]:
    out = []
    for v in values:
        if v not in _STATE_FROM_PB:
            raise InvalidArgument("states", f"unknown action state {v}")
        out.append(_STATE_FROM_PB[v])
    return out


# ---------------------------------------------------------------- domain -> proto


def limits_pb(lim: Limits) -> pb.SandboxLimits:
    return pb.SandboxLimits(
        timeout=dur(lim.timeout_s),
        memory_bytes=lim.memory_bytes,
        max_processes=lim.max_processes,
        output_bytes=lim.output_bytes,
    )


def resource_pb(r: Resource) -> pb.Resource:
    return pb.Resource(
        name=r.name,
        kind=_RKIND_TO_PB[r.kind],
        uri=r.uri,
        strategy=_STRATEGY_TO_PB[r.strategy],
        rules=r.rules,
        staging_base_url=r.staging,
        sandbox=r.sandbox,
        image=r.image,
    )


def session_pb(s: Session) -> pb.Session:
    return pb.Session(
        id=s.id,
        state=_SESSION_STATE_TO_PB[s.state],
        label=s.label,
        resources=[resource_pb(r) for r in s.resources],
        limits=limits_pb(s.limits),
        created_at=ts(s.created_at),
        closed_at=ts(s.closed_at),
        pending_actions=s.pending_actions,
        total_actions=s.total_actions,
    )


def egress_request(msg: pb.Egress, fld: str) -> EgressRequest:
    for i, name in enumerate(msg.secrets):
        check_name(name, f"{fld}.secrets[{i}]")
    hosts = tuple(check_host(h, f"{fld}.hosts[{i}]") for i, h in enumerate(msg.hosts))
    for i, name in enumerate(msg.resources):
        check_name(name, f"{fld}.resources[{i}]")
    if not msg.secrets and not hosts and not msg.resources:
        raise InvalidArgument(fld, "name at least one secret, host or resource, or leave egress unset for no network")
    return EgressRequest(
        tuple(dict.fromkeys(msg.secrets)), tuple(dict.fromkeys(hosts)), tuple(dict.fromkeys(msg.resources))
    )


def spec_pb(spec: ActionSpec) -> pb.ActionSpec:
    msg = pb.ActionSpec(resource=spec.resource, description=spec.description)
    if spec.egress is not None:
        egress = spec.egress
        msg.egress.CopyFrom(
            pb.Egress(secrets=list(egress.secrets), hosts=list(egress.hosts), resources=list(egress.resources))
        )
    lim = spec.limits
    if lim.timeout_s:
        msg.limits.timeout.CopyFrom(dur(lim.timeout_s))
    msg.limits.memory_bytes = lim.memory_bytes or 0
    msg.limits.max_processes = lim.max_processes or 0
    msg.limits.output_bytes = lim.output_bytes or 0
    if spec.kind is ActionKind.SHELL:
        msg.shell.CopyFrom(
            pb.ShellAction(argv=list(spec.argv), env=spec.env, stdin=spec.stdin, cwd=os.fsencode(spec.cwd))
        )
    elif spec.kind is ActionKind.PYTHON:
        msg.python.CopyFrom(pb.PythonAction(code=spec.code, env=spec.env, stdin=spec.stdin, cwd=os.fsencode(spec.cwd)))
    elif spec.kind is ActionKind.SQL:
        msg.sql.CopyFrom(pb.SqlAction(sql=spec.sql, params=list(spec.params)))
    elif spec.kind is ActionKind.HTTP and spec.http is not None:
        msg.http.CopyFrom(http_action_pb(spec.http))
    elif spec.kind is ActionKind.PROMPT:
        extra = spec.extra
        msg.prompt.CopyFrom(
            pb.PromptAction(prompt=str(extra.get("prompt", "")), functions=str(extra.get("functions", "")))
        )
    return msg


def exec_pb(r: ExecResult) -> pb.ExecResult:
    return pb.ExecResult(
        termination=_TERMINATION_TO_PB[r.termination.value],
        exit_code=r.exit_code if r.exit_code is not None else 0,
        signal=r.signal or 0,
        stdout=r.stdout,
        stderr=r.stderr,
        stdout_truncated=r.stdout_truncated,
        stderr_truncated=r.stderr_truncated,
        stdout_total_bytes=r.stdout_total,
        stderr_total_bytes=r.stderr_total,
        detail=r.detail,
        limits_enforced_by=r.limits_enforced_by,
        trimmed=r.trimmed,
    )


def changes_pb(c: ChangeSet) -> pb.ChangeSet:
    return pb.ChangeSet(
        changes=[
            pb.FileChange(
                kind=_CHANGE_TO_PB[f.kind.value],
                path=display_path(f.path),
                path_bytes=os.fsencode(f.path),
                old_mode=f.old_mode,
                new_mode=f.new_mode,
                runs_code=f.runs_code,
            )
            for f in c.changes
        ],
        added=c.added,
        modified=c.modified,
        deleted=c.deleted,
        total=c.total,
        truncated=c.truncated,
        warnings=[utf8_text(w) for w in c.warnings],
    )


def reversibility_pb(r: Reversibility) -> pb.Reversibility:
    return pb.Reversibility(
        reversibility_class=_RCLASS_TO_PB[r.reversibility_class.value],
        verdict=_VERDICT_TO_PB[r.verdict.value],
        detail=utf8_text(r.detail),  # an undo's report may quote paths
        tested_at=ts(r.tested_at),
    )


def timings_pb(t: Timings) -> pb.Timings:
    """Phases that never ran stay unset rather than reading as 0 ms."""
    msg = pb.Timings()
    for name, seconds in (
        ("prepare", t.prepare_s),
        ("run", t.run_s),
        ("capture", t.capture_s),
        ("total", t.total_s),
        ("undo", t.undo_s),
    ):
        if seconds > 0:
            getattr(msg, name).CopyFrom(dur(seconds))
    return msg


def sql_pb(r: SqlResult) -> pb.SqlResult:
    return pb.SqlResult(
        columns=list(r.columns),
        rows=[pb.SqlRow(values=[v or "" for v in row], is_null=[v is None for v in row]) for row in r.rows],
        total_rows=r.total_rows,
        truncated=r.truncated,
        affected_rows=r.affected_rows,
    )


def egress_record_pb(r: EgressRecordData) -> pb.EgressRecord:
    msg = pb.EgressRecord(
        method=r.method,
        url=r.url,
        host=r.host,
        status=r.status,
        decision=pb.EGRESS_DECISION_ALLOWED if r.decision is Decision.ALLOWED else pb.EGRESS_DECISION_REFUSED,
        reason=r.reason,
        secrets_used=list(r.secrets_used),
        request_bytes=r.request_bytes,
        response_bytes=r.response_bytes,
        duration=dur(r.duration_s),
        at=ts(r.at),
        request_headers=joined_headers(r.request_headers),
        request_body=r.request_body,
        request_body_truncated=r.request_body_truncated,
    )
    if r.response is not None:
        msg.response.CopyFrom(
            http_result_pb(
                HttpResult(r.response.status, r.response.headers, r.response.body, r.response.body_truncated)
            )
        )
    if r.call is not None:
        msg.resource = r.call.resource
        msg.reversibility.CopyFrom(
            pb.Reversibility(
                reversibility_class=_RCLASS_TO_PB[r.call.reversibility],
                verdict=_VERDICT_TO_PB[r.call.verdict],
                detail=r.call.undo_detail or r.call.note,
            )
        )
        if r.call.inverse is not None:
            msg.inverse.CopyFrom(http_action_pb(request_of_recorded(r.call.inverse)))
    return msg


def action_pb(a: Action) -> pb.Action:
    msg = pb.Action(
        id=a.id,
        session_id=a.session_id,
        seq=a.seq,
        kind=_KIND_TO_PB[a.kind],
        state=_STATE_TO_PB[a.state],
        resource=a.resource,
        spec=spec_pb(a.spec),
        error=utf8_text(a.error),  # may quote a path (a snapshot error, say)
        timings=timings_pb(a.timings),
        created_at=ts(a.created_at),
        finished_at=ts(a.finished_at),
        resolved_at=ts(a.resolved_at),
        egress=[egress_record_pb(r) for r in a.egress],
        approval=a.approval,
    )
    if a.inverse is not None:
        msg.inverse.CopyFrom(spec_pb(a.inverse))
    if a.reversibility is not None:
        msg.reversibility.CopyFrom(reversibility_pb(a.reversibility))
    if a.exec is not None:
        msg.exec.CopyFrom(exec_pb(a.exec))
    if a.changes is not None:
        msg.changes.CopyFrom(changes_pb(a.changes))
    if a.sql is not None:
        msg.sql.CopyFrom(sql_pb(a.sql))
    if a.http is not None:
        msg.http.CopyFrom(http_result_pb(a.http))
    if a.plan is not None:
        msg.plan.CopyFrom(plan_pb(a.plan))
    return msg


def state_pb(s: ActionState) -> pb.ActionState:
    return _STATE_TO_PB[s]
