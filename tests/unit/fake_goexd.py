"""An in-memory stand-in for goexd, served over a real Unix-socket gRPC server.

It lets the client and CLI unit tests exercise the wire path (serialization, status
codes, streaming, pagination) without the real daemon. Shell actions are scripted by
their argv words instead of being run:

    "out:TEXT"   write TEXT + newline to stdout      "err:TEXT"  same on stderr
    "A:path" / "M:path" / "D:path" / "T:path" / "P:path"   report a file change
    "exit:N"     exit status N                        "signal:N"  killed by signal N
    "timeout"    hit the time limit (FAILED)          "block"     refused by policy
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from goex.v1 import (
    actions_pb2,
    actions_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    types_pb2,
)

S = types_pb2
PAGE = 2  # small pages so the clients' pagination loops are exercised

_CHANGE = {
    "A": S.CHANGE_KIND_ADDED,
    "M": S.CHANGE_KIND_MODIFIED,
    "D": S.CHANGE_KIND_DELETED,
    "T": S.CHANGE_KIND_TYPE_CHANGED,
    "P": S.CHANGE_KIND_MODE_CHANGED,
}


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass
class _State:
    sessions: dict[str, types_pb2.Session] = field(default_factory=dict)
    actions: dict[str, types_pb2.Action] = field(default_factory=dict)
    secrets: dict[str, secrets_pb2.SecretInfo] = field(default_factory=dict)
    secret_values: dict[str, bytes] = field(default_factory=dict)
    requests: list[object] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)


def _abort(ctx: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    ctx.abort(code, message)


class _Sessions(sessions_pb2_grpc.SessionsServicer):
    def __init__(self, st: _State) -> None:
        self.st = st

    def _get(self, sid: str, ctx: grpc.ServicerContext) -> types_pb2.Session:
        if sid not in self.st.sessions:
            _abort(ctx, grpc.StatusCode.NOT_FOUND, f"session {sid!r} not found")
        return self.st.sessions[sid]

    def CreateSession(self, req, ctx):  # type: ignore[no-untyped-def]
        self.st.requests.append(req)
        if not req.resources:
            _abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, "resources: at least one resource is required")
        sid = f"s{next(self.st.ids)}"
        resources = []
        for r in req.resources:
            if r.WhichOneof("kind") == "fs":
                resources.append(
                    S.Resource(
                        name=r.name or "fs", kind=S.RESOURCE_KIND_FS, uri=r.fs.path, strategy=S.UNDO_STRATEGY_VERSIONED
                    )
                )
            else:
                _abort(ctx, grpc.StatusCode.UNIMPLEMENTED, "only fs resources are built")
        limits = S.SandboxLimits(memory_bytes=512 << 20, max_processes=256, output_bytes=1 << 20)
        limits.timeout.FromSeconds(60)
        if req.HasField("limits"):
            limits.MergeFrom(req.limits)
        session = S.Session(
            id=sid,
            state=S.SESSION_STATE_OPEN,
            label=req.label,
            resources=resources,
            limits=limits,
            created_at=_now(),
        )
        self.st.sessions[sid] = session
        return sessions_pb2.CreateSessionResponse(session=session)

    def GetSession(self, req, ctx):  # type: ignore[no-untyped-def]
        session = self._get(req.session_id, ctx)
        pending = [a for a in self.st.actions.values() if a.session_id == session.id]
        session.total_actions = len(pending)
        session.pending_actions = sum(a.state == S.ACTION_STATE_EXECUTED for a in pending)
        return sessions_pb2.GetSessionResponse(session=session)

    def ListSessions(self, req, ctx):  # type: ignore[no-untyped-def]
        items = [s for s in self.st.sessions.values() if req.include_closed or s.state == S.SESSION_STATE_OPEN]
        start = int(req.page_token or 0)
        page = items[start : start + PAGE]
        token = str(start + PAGE) if start + PAGE < len(items) else ""
        return sessions_pb2.ListSessionsResponse(sessions=page, next_page_token=token)

    def CloseSession(self, req, ctx):  # type: ignore[no-untyped-def]
        session = self._get(req.session_id, ctx)
        pending = [
            a for a in self.st.actions.values() if a.session_id == session.id and a.state == S.ACTION_STATE_EXECUTED
        ]
        if pending and req.mode == sessions_pb2.CLOSE_MODE_UNSPECIFIED:
            _abort(ctx, grpc.StatusCode.FAILED_PRECONDITION, f"session {session.id} has {len(pending)} pending actions")
        for a in pending:
            a.state = (
                S.ACTION_STATE_COMMITTED if req.mode == sessions_pb2.CLOSE_MODE_COMMIT_ALL else S.ACTION_STATE_UNDONE
            )
        session.state = S.SESSION_STATE_CLOSED
        session.closed_at.CopyFrom(_now())
        return sessions_pb2.CloseSessionResponse(session=session, resolved=pending)

    def DescribeSession(self, req, ctx):  # type: ignore[no-untyped-def]
        session = self._get(req.session_id, ctx)
        return sessions_pb2.DescribeSessionResponse(
            resources=[
                sessions_pb2.ResourceDescription(resource=r.name, text=f"directory {r.uri}") for r in session.resources
            ]
        )


class _Actions(actions_pb2_grpc.ActionsServicer):
    def __init__(self, st: _State) -> None:
        self.st = st

    def _get(self, aid: str, ctx: grpc.ServicerContext) -> types_pb2.Action:
        if aid not in self.st.actions:
            _abort(ctx, grpc.StatusCode.NOT_FOUND, f"action {aid!r} not found")
        return self.st.actions[aid]

    def _script(self, action: types_pb2.Action) -> list[types_pb2.ActionEvent]:
        """Finish `action` per its argv; returns the events a watcher sees."""
        events = [types_pb2.ActionEvent(action_id=action.id, at=_now(), state=S.ACTION_STATE_RUNNING)]
        argv = list(action.spec.shell.argv) if action.spec.WhichOneof("body") == "shell" else []
        if action.spec.WhichOneof("body") == "python":
            argv = ["out:" + action.spec.python.code]
        result = S.ExecResult(termination=S.TERMINATION_EXITED, limits_enforced_by="rlimit")
        changes = S.ChangeSet()
        final = S.ACTION_STATE_EXECUTED
        for word in argv:
            key, _, value = word.partition(":")
            if key in ("out", "err"):
                data = (value + "\n").encode()
                stream = S.OUTPUT_STREAM_STDOUT if key == "out" else S.OUTPUT_STREAM_STDERR
                if key == "out":
                    result.stdout += data
                    result.stdout_total_bytes += len(data)
                else:
                    result.stderr += data
                    result.stderr_total_bytes += len(data)
                events.append(
                    types_pb2.ActionEvent(action_id=action.id, output=S.OutputChunk(stream=stream, data=data))
                )
            elif key in _CHANGE:
                changes.changes.append(S.FileChange(kind=_CHANGE[key], path=value))
                changes.total += 1
                changes.added += key == "A"
                changes.modified += key == "M"
                changes.deleted += key == "D"
            elif key == "exit":
                result.exit_code = int(value)
            elif key == "signal":
                result.termination = S.TERMINATION_SIGNALED
                result.signal = int(value)
            elif key == "timeout":
                result.termination = S.TERMINATION_TIMEOUT
                result.detail = "wall-clock limit of 1s hit"
                final = S.ACTION_STATE_FAILED
                action.error = "timed out; rolled back"
            elif key == "block":
                final = S.ACTION_STATE_BLOCKED
                action.error = "policy forbids this command"
        if final != S.ACTION_STATE_BLOCKED:
            action.exec.CopyFrom(result)
            action.changes.CopyFrom(changes)
        action.reversibility.CopyFrom(
            S.Reversibility(reversibility_class=S.REVERSIBILITY_CLASS_REVERSIBLE, verdict=S.VERDICT_UNTESTED)
        )
        action.timings.run.FromMilliseconds(12)
        action.timings.total.FromMilliseconds(20)
        action.state = final
        action.finished_at.CopyFrom(_now())
        events.append(types_pb2.ActionEvent(action_id=action.id, at=_now(), state=final))
        return events

    def SubmitAction(self, req, ctx):  # type: ignore[no-untyped-def]
        self.st.requests.append(req)
        session = self.st.sessions.get(req.session_id)
        if session is None:
            _abort(ctx, grpc.StatusCode.NOT_FOUND, f"session {req.session_id!r} not found")
        if session.state != S.SESSION_STATE_OPEN:
            _abort(ctx, grpc.StatusCode.FAILED_PRECONDITION, f"session {session.id} is closed")
        body = req.spec.WhichOneof("body")
        if body == "shell" and not req.spec.shell.argv:
            _abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, "spec.shell.argv: must not be empty")
        with self.st.lock:
            seq = sum(a.session_id == session.id for a in self.st.actions.values()) + 1
            action = S.Action(
                id=f"a{next(self.st.ids)}",
                session_id=session.id,
                seq=seq,
                kind=S.ACTION_KIND_SHELL if body == "shell" else S.ACTION_KIND_PYTHON,
                state=S.ACTION_STATE_PROPOSED,
                resource=req.spec.resource or "fs",
                spec=req.spec,
                created_at=_now(),
            )
            if req.HasField("inverse"):
                action.inverse.CopyFrom(req.inverse)
            self.st.actions[action.id] = action
        if not req.detach:
            self._script(action)
        return actions_pb2.SubmitActionResponse(action=action)

    def GetAction(self, req, ctx):  # type: ignore[no-untyped-def]
        return actions_pb2.GetActionResponse(action=self._get(req.action_id, ctx))

    def ListActions(self, req, ctx):  # type: ignore[no-untyped-def]
        if req.session_id not in self.st.sessions:
            _abort(ctx, grpc.StatusCode.NOT_FOUND, f"session {req.session_id!r} not found")
        items = [
            a
            for a in self.st.actions.values()
            if a.session_id == req.session_id and (not req.states or a.state in req.states)
        ]
        start = int(req.page_token or 0)
        token = str(start + PAGE) if start + PAGE < len(items) else ""
        return actions_pb2.ListActionsResponse(actions=items[start : start + PAGE], next_page_token=token)

    def WatchAction(self, req, ctx):  # type: ignore[no-untyped-def]
        action = self._get(req.action_id, ctx)
        if action.state != S.ACTION_STATE_PROPOSED:
            yield types_pb2.ActionEvent(action_id=action.id, at=_now(), state=action.state)
            return
        for event in self._script(action):
            time.sleep(0.01)
            yield event

    def _pending(self, sid: str) -> list[types_pb2.Action]:
        return [a for a in self.st.actions.values() if a.session_id == sid and a.state == S.ACTION_STATE_EXECUTED]

    def CommitActions(self, req, ctx):  # type: ignore[no-untyped-def]
        pending = self._pending(req.session_id)
        if req.up_to_action_id:
            anchor = self._get(req.up_to_action_id, ctx)
            pending = [a for a in pending if a.seq <= anchor.seq]
        for a in pending:
            a.state = S.ACTION_STATE_COMMITTED
        return actions_pb2.CommitActionsResponse(committed=pending)

    def UndoAction(self, req, ctx):  # type: ignore[no-untyped-def]
        pending = self._pending(req.session_id)
        if not pending:
            _abort(ctx, grpc.StatusCode.FAILED_PRECONDITION, f"session {req.session_id} has no pending action to undo")
        target = self._get(req.action_id, ctx) if req.action_id else pending[-1]
        later = [a for a in pending if a.seq > target.seq]
        if later and not req.cascade:
            _abort(ctx, grpc.StatusCode.FAILED_PRECONDITION, f"{len(later)} later pending actions; use cascade")
        undone = [*reversed(later), target]
        for a in undone:
            a.state = S.ACTION_STATE_UNDONE
        return actions_pb2.UndoActionResponse(undone=undone)

    def UndoTo(self, req, ctx):  # type: ignore[no-untyped-def]
        anchor = self._get(req.action_id, ctx)
        undone = [a for a in reversed(self._pending(anchor.session_id)) if a.seq > anchor.seq]
        for a in undone:
            a.state = S.ACTION_STATE_UNDONE
        return actions_pb2.UndoToResponse(undone=undone)

    def TestReversibility(self, req, ctx):  # type: ignore[no-untyped-def]
        self.st.requests.append(req)
        verdict = S.VERDICT_PASSED if req.HasField("inverse") else S.VERDICT_UNTESTED
        return actions_pb2.TestReversibilityResponse(
            reversibility=S.Reversibility(
                reversibility_class=S.REVERSIBILITY_CLASS_REVERSIBLE, verdict=verdict, detail="ok"
            )
        )


class _Secrets(secrets_pb2_grpc.SecretsServicer):
    def __init__(self, st: _State) -> None:
        self.st = st

    def PutSecret(self, req, ctx):  # type: ignore[no-untyped-def]
        self.st.requests.append(req)
        name = req.info.name
        if name in self.st.secrets and not req.overwrite:
            _abort(ctx, grpc.StatusCode.ALREADY_EXISTS, f"secret {name!r} exists; pass overwrite")
        info = secrets_pb2.SecretInfo()
        info.CopyFrom(req.info)
        info.created_at.CopyFrom(_now())
        info.updated_at.CopyFrom(_now())
        self.st.secrets[name] = info
        self.st.secret_values[name] = req.value or b"|".join(req.values[k] for k in sorted(req.values))
        return secrets_pb2.PutSecretResponse(info=info)

    def ListSecrets(self, req, ctx):  # type: ignore[no-untyped-def]
        return secrets_pb2.ListSecretsResponse(secrets=list(self.st.secrets.values()))

    def DeleteSecret(self, req, ctx):  # type: ignore[no-untyped-def]
        if self.st.secrets.pop(req.name, None) is None:
            _abort(ctx, grpc.StatusCode.NOT_FOUND, f"secret {req.name!r} not found")
        return secrets_pb2.DeleteSecretResponse()


class _Admin(admin_pb2_grpc.AdminServicer):
    def GetHealth(self, req, ctx):  # type: ignore[no-untyped-def]
        resp = admin_pb2.GetHealthResponse(
            ok=True,
            version="0.0-fake",
            components=[admin_pb2.ComponentHealth(name="journal", ok=True, detail="sqlite")],
        )
        resp.uptime.FromSeconds(3725)
        return resp

    def GetStats(self, req, ctx):  # type: ignore[no-untyped-def]
        return admin_pb2.GetStatsResponse(open_sessions=1, actions_by_state={"executed": 2}, journal_bytes=2048)

    def RunGc(self, req, ctx):  # type: ignore[no-untyped-def]
        return admin_pb2.RunGcResponse(snapshots_removed=0 if req.dry_run else 3, bytes_freed=4096, reasons=["expired"])

    def CheckPolicy(self, req, ctx):  # type: ignore[no-untyped-def]
        if "bad" in req.toml:
            line = req.toml[: req.toml.index("bad")].count("\n") + 1
            return admin_pb2.CheckPolicyResponse(
                ok=False, errors=[admin_pb2.PolicyError(line=line, message="unknown key 'bad'")]
            )
        return admin_pb2.CheckPolicyResponse(ok=True)


class FakeGoexd:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.state = _State()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        sessions_pb2_grpc.add_SessionsServicer_to_server(_Sessions(self.state), self.server)
        actions_pb2_grpc.add_ActionsServicer_to_server(_Actions(self.state), self.server)
        secrets_pb2_grpc.add_SecretsServicer_to_server(_Secrets(self.state), self.server)
        admin_pb2_grpc.add_AdminServicer_to_server(_Admin(), self.server)
        self.server.add_insecure_port(f"unix://{socket_path}")

    def __enter__(self) -> FakeGoexd:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)
