"""JSON encoding of domain records for the journal (bytes as base64, enums as values)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, fields
from typing import Any

from goexd.domain.code_paths import runs_code_later
from goexd.domain.egress import Decision, EgressRecordData, RecordedCall, RecordedResponse, ResourceCall
from goexd.domain.models import (
    ActionKind,
    ActionSpec,
    EgressRequest,
    HttpRequest,
    HttpResult,
    LimitsRequest,
    Reversibility,
    ReversibilityClass,
    SqlResult,
    Timings,
    Verdict,
)
from goexd.domain.sandbox import ExecResult, Limits, Termination
from goexd.domain.snapshots import ChangeKind, ChangeSet, FileChange


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def dumps(obj: dict[str, Any] | list[Any] | None) -> str | None:
    # ASCII on purpose: a path that is not UTF-8 is a str with lone surrogates inside goexd
    # (os.fsdecode), which SQLite TEXT cannot hold; as \\udcff escapes it is stored and loaded
    # back exactly (surrogateescape yields only U+DC80..U+DCFF, which JSON never pairs up).
    return None if obj is None else json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _pairs(items: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in items)


def _recorded_call_to_json(c: RecordedCall) -> dict[str, Any]:
    return {
        "method": c.method,
        "path": c.path,
        "query": [list(p) for p in c.query],
        "headers": [list(h) for h in c.headers],
        "body": _b64(c.body),
    }


def _recorded_call_from_json(d: dict[str, Any]) -> RecordedCall:
    return RecordedCall(d["method"], d["path"], _pairs(d["query"]), _pairs(d["headers"]), _unb64(d["body"]))


def _resource_call_to_json(c: ResourceCall) -> dict[str, Any]:
    return {
        "resource": c.resource,
        "reversibility": c.reversibility,
        "note": c.note,
        "inverse": None if c.inverse is None else _recorded_call_to_json(c.inverse),
        "undo_state": dict(c.undo_state),
        "verdict": c.verdict,
        "undo_detail": c.undo_detail,
    }


def _resource_call_from_json(d: dict[str, Any]) -> ResourceCall:
    return ResourceCall(
        resource=d["resource"],
        reversibility=d["reversibility"],
        note=d["note"],
        inverse=None if d["inverse"] is None else _recorded_call_from_json(d["inverse"]),
        undo_state=d["undo_state"],
        verdict=d["verdict"],
        undo_detail=d["undo_detail"],
    )


def egress_record_to_json(r: EgressRecordData) -> dict[str, Any]:
    response = r.response
    return {
        "method": r.method,
        "url": r.url,
        "host": r.host,
        "status": r.status,
        "decision": r.decision.value,
        "reason": r.reason,
        "secrets_used": list(r.secrets_used),
        "request_bytes": r.request_bytes,
        "response_bytes": r.response_bytes,
        "duration_s": r.duration_s,
        "at": r.at,
        "request_headers": [list(h) for h in r.request_headers],
        "request_body": _b64(r.request_body),
        "request_body_truncated": r.request_body_truncated,
        "response": None
        if response is None
        else {
            "status": response.status,
            "headers": [list(h) for h in response.headers],
            "body": _b64(response.body),
            "body_truncated": response.body_truncated,
        },
        "call": None if r.call is None else _resource_call_to_json(r.call),
    }


def egress_record_from_json(d: dict[str, Any]) -> EgressRecordData:
    """Records journaled before bodies and calls were recorded (schema < 8) have neither."""
    response = d.get("response")
    call = d.get("call")
    return EgressRecordData(
        method=d["method"],
        url=d["url"],
        host=d["host"],
        status=d["status"],
        decision=Decision(d["decision"]),
        reason=d["reason"],
        secrets_used=tuple(d["secrets_used"]),
        request_bytes=d["request_bytes"],
        response_bytes=d["response_bytes"],
        duration_s=d["duration_s"],
        at=d["at"],
        request_headers=_pairs(d.get("request_headers", [])),
        request_body=_unb64(d.get("request_body", "")),
        request_body_truncated=d.get("request_body_truncated", False),
        response=None
        if response is None
        else RecordedResponse(
            response["status"], _pairs(response["headers"]), _unb64(response["body"]), response["body_truncated"]
        ),
        call=None if call is None else _resource_call_from_json(call),
    )


def egress_to_json(records: Iterable[EgressRecordData]) -> list[dict[str, Any]]:
    return [egress_record_to_json(r) for r in records]


def egress_from_json(items: list[dict[str, Any]]) -> list[EgressRecordData]:
    return [egress_record_from_json(d) for d in items]


def sql_to_json(r: SqlResult) -> dict[str, Any]:
    return {**asdict(r), "columns": list(r.columns), "rows": [list(row) for row in r.rows]}


def sql_from_json(d: dict[str, Any]) -> SqlResult:
    return SqlResult(
        columns=tuple(d["columns"]),
        rows=tuple(tuple(row) for row in d["rows"]),
        total_rows=d["total_rows"],
        truncated=d["truncated"],
        affected_rows=d["affected_rows"],
    )


def spec_to_json(spec: ActionSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind.value,
        "argv": list(spec.argv),
        "code": spec.code,
        "sql": spec.sql,
        "params": list(spec.params),
        "env": spec.env,
        "stdin": _b64(spec.stdin),
        "resource": spec.resource,
        "limits": limits_request_to_json(spec.limits),
        "description": spec.description,
        "extra": spec.extra,
        "egress": None
        if spec.egress is None
        else {
            "secrets": list(spec.egress.secrets),
            "hosts": list(spec.egress.hosts),
            "resources": list(spec.egress.resources),
        },
        "http": None if spec.http is None else http_request_to_json(spec.http),
        # Only when set: a spec without one keeps the form (and pair key, verdict_memory.py) it always had.
        **({"cwd": _b64(os.fsencode(spec.cwd))} if spec.cwd else {}),
    }


def http_request_to_json(r: HttpRequest) -> dict[str, Any]:
    return {
        "method": r.method,
        "path": r.path,
        "query": [list(p) for p in r.query],
        "headers": [list(h) for h in r.headers],
        "body": _b64(r.body),
        "json": r.json,
    }


def http_request_from_json(d: dict[str, Any]) -> HttpRequest:
    return HttpRequest(
        method=d["method"],
        path=d["path"],
        query=tuple((k, v) for k, v in d["query"]),
        headers=tuple((k, v) for k, v in d["headers"]),
        body=_unb64(d["body"]),
        json=d["json"],
    )


def http_result_to_json(r: HttpResult) -> dict[str, Any]:
    return {
        "status": r.status,
        "headers": [list(h) for h in r.headers],
        "body": _b64(r.body),
        "body_truncated": r.body_truncated,
    }


def http_result_from_json(d: dict[str, Any]) -> HttpResult:
    return HttpResult(
        status=d["status"],
        headers=tuple((k, v) for k, v in d["headers"]),
        body=_unb64(d["body"]),
        body_truncated=d["body_truncated"],
    )


def spec_from_json(d: dict[str, Any]) -> ActionSpec:
    return ActionSpec(
        kind=ActionKind(d["kind"]),
        argv=tuple(d["argv"]),
        code=d["code"],
        sql=d.get("sql", ""),
        params=tuple(d.get("params", ())),
        env=dict(d["env"]),
        stdin=_unb64(d["stdin"]),
        cwd=os.fsdecode(_unb64(d.get("cwd", ""))),
        resource=d["resource"],
        limits=limits_request_from_json(d["limits"]),
        description=d["description"],
        extra=d.get("extra", {}),
        egress=None
        if d.get("egress") is None
        else EgressRequest(
            tuple(d["egress"]["secrets"]), tuple(d["egress"]["hosts"]), tuple(d["egress"].get("resources", ()))
        ),
        http=None if d.get("http") is None else http_request_from_json(d["http"]),
    )


def _flat(obj: Any) -> dict[str, Any]:
    """A dataclass of scalars as a dict: asdict() without its deep copies."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def limits_request_to_json(lr: LimitsRequest) -> dict[str, Any]:
    return _flat(lr)


def limits_request_from_json(d: dict[str, Any]) -> LimitsRequest:
    return LimitsRequest(**d)


def limits_to_json(lim: Limits) -> dict[str, Any]:
    return _flat(lim)


def limits_from_json(d: dict[str, Any]) -> Limits:
    return Limits(**d)


def exec_to_json(r: ExecResult) -> dict[str, Any]:
    return {
        "termination": r.termination.value,
        "exit_code": r.exit_code,
        "signal": r.signal,
        "stdout": _b64(r.stdout),
        "stderr": _b64(r.stderr),
        "stdout_total": r.stdout_total,
        "stderr_total": r.stderr_total,
        "duration_s": r.duration_s,
        "limits_enforced_by": r.limits_enforced_by,
        "detail": r.detail,
        **({"trimmed": r.trimmed} if r.trimmed else {}),
    }


def exec_from_json(d: dict[str, Any]) -> ExecResult:
    return ExecResult(
        termination=Termination(d["termination"]),
        exit_code=d["exit_code"],
        signal=d["signal"],
        stdout=_unb64(d["stdout"]),
        stderr=_unb64(d["stderr"]),
        stdout_total=d["stdout_total"],
        stderr_total=d["stderr_total"],
        duration_s=d["duration_s"],
        limits_enforced_by=d["limits_enforced_by"],
        detail=d["detail"],
        trimmed=d.get("trimmed", ""),
    )


def changes_to_json(c: ChangeSet) -> dict[str, Any]:
    return {
        "changes": [[f.kind.value, f.path, f.old_mode, f.new_mode] for f in c.changes],
        "added": c.added,
        "modified": c.modified,
        "deleted": c.deleted,
        "truncated": c.truncated,
        "warnings": list(c.warnings),
    }


def changes_from_json(d: dict[str, Any]) -> ChangeSet:
    return ChangeSet(
        # runs_code is a function of the path: worked out again, not stored.
        changes=tuple(FileChange(ChangeKind(k), p, o, n, runs_code_later(p)) for k, p, o, n in d["changes"]),
        added=d["added"],
        modified=d["modified"],
        deleted=d["deleted"],
        truncated=d["truncated"],
        warnings=tuple(d.get("warnings", ())),  # absent in actions journaled before it existed
    )


def timings_to_json(t: Timings) -> dict[str, Any]:
    return _flat(t)


def timings_from_json(d: dict[str, Any]) -> Timings:
    return Timings(**d)


def reversibility_to_json(r: Reversibility) -> dict[str, Any]:
    return {
        "class": r.reversibility_class.value,
        "verdict": r.verdict.value,
        "detail": r.detail,
        "tested_at": r.tested_at,
    }


def reversibility_from_json(d: dict[str, Any]) -> Reversibility:
    return Reversibility(ReversibilityClass(d["class"]), Verdict(d["verdict"]), d["detail"], d["tested_at"])
