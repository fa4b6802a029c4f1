"""Small helpers over the raw generated stubs for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.services.postgres import PgCluster


def _set_limits(msg: pb.SandboxLimits, limits: dict[str, int]) -> None:
    for k, v in limits.items():
        if k == "timeout_s":
            msg.timeout.FromSeconds(v)
        else:
            setattr(msg, k, v)


def open_fs(d: DaemonProcess, path: Path, **limits: int) -> pb.Session:
    req = spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(path)))])
    _set_limits(req.limits, limits)
    return d.sessions.CreateSession(req, timeout=60).session


def shell(d: DaemonProcess, session_id: str, script: str, detach: bool = False, **limits: int) -> pb.Action:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    _set_limits(spec.limits, limits)
    req = apb.SubmitActionRequest(session_id=session_id, spec=spec, detach=detach)
    return d.actions.SubmitAction(req, timeout=120).action


def undo(d: DaemonProcess, session_id: str, action_id: str = "", cascade: bool = False) -> list[pb.Action]:
    req = apb.UndoActionRequest(session_id=session_id, action_id=action_id, cascade=cascade)
    return list(d.actions.UndoAction(req, timeout=60).undone)


def commit(d: DaemonProcess, session_id: str, up_to: str = "") -> list[pb.Action]:
    req = apb.CommitActionsRequest(session_id=session_id, up_to_action_id=up_to)
    return list(d.actions.CommitActions(req, timeout=60).committed)


def get(d: DaemonProcess, action_id: str) -> pb.Action:
    return d.actions.GetAction(apb.GetActionRequest(action_id=action_id), timeout=10).action


def upper_of(d: DaemonProcess, action_id: str) -> Path:
    """Where a running fs action's writes land (its overlay's upper dir), not the workspace."""
    return d.state_dir / "overlays" / action_id / "upper"


def status_of(call: object) -> tuple[grpc.StatusCode, str]:
    """Run a zero-argument callable expected to fail; return its status code and message."""
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded but was expected to fail")


def change_lines(action: pb.Action) -> list[str]:
    letter = {
        pb.CHANGE_KIND_ADDED: "A",
        pb.CHANGE_KIND_MODIFIED: "M",
        pb.CHANGE_KIND_DELETED: "D",
        pb.CHANGE_KIND_TYPE_CHANGED: "T",
        pb.CHANGE_KIND_MODE_CHANGED: "P",
    }
    return [f"{letter[c.kind]} {c.path}" for c in action.changes.changes]


def session_count(d: DaemonProcess) -> int:
    """Every session the daemon has, open or closed, over all pages (a daemon shared by many tests
    has more than one page: the first page's length would stop counting there)."""
    count, token = 0, ""
    while True:
        page = d.sessions.ListSessions(spb.ListSessionsRequest(include_closed=True, page_token=token), timeout=30)
        count += len(page.sessions)
        token = page.next_page_token
        if not token:
            return count


def put_pg_secret(d: DaemonProcess, cluster: PgCluster, name: str) -> str:
    """Store the cluster's `app` password in goexd's vault as DSN secret `name` (allowed for the cluster only)."""
    info = secpb.SecretInfo(
        name=name,
        kind=secpb.SECRET_KIND_DSN,
        allowed_hosts=[f"{cluster.host}:{cluster.port}"],
        injection=secpb.Injection(dsn_password=secpb.DsnPasswordInjection()),
    )
    d.secrets.PutSecret(secpb.PutSecretRequest(info=info, value=cluster.app_password.encode()))
    return name
