"""gRPC servicers: proto in, one domain call, proto out. Errors are mapped by server/errors.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import actions_pb2_grpc as agrpc
from goex.v1 import admin_pb2 as adpb
from goex.v1 import admin_pb2_grpc as adgrpc
from goex.v1 import secrets_pb2 as spb
from goex.v1 import secrets_pb2_grpc as sgrpc
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import sessions_pb2_grpc as segrpc
from goex.v1 import types_pb2 as pb
from goexd import __version__
from goexd.admin import Admin
from goexd.domain.errors import InvalidArgument
from goexd.engine.channels import Event
from goexd.engine.engine import Engine
from goexd.engine.stopping import summary
from goexd.policy.parse import PolicyError
from goexd.policy.parse import check_size as check_policy_size
from goexd.policy.parse import parse as parse_policy
from goexd.server import convert as cv
from goexd.server import convert_diff as cd
from goexd.server import convert_pairs as cp
from goexd.server import convert_plan as cpl
from goexd.server import convert_secrets as cs
from goexd.server import convert_set_aside as csa
from goexd.vault.oauth import OAuthFlows
from goexd.vault.vault import Vault

Ctx = grpc.ServicerContext
MAX_AWAIT_S = 86_400.0


class SessionsServicer(segrpc.SessionsServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def CreateSession(self, req: sepb.CreateSessionRequest, ctx: Ctx) -> sepb.CreateSessionResponse:
        requests = [cv.resource_request(r, f"resources[{i}]") for i, r in enumerate(req.resources)]
        session, reused = self.engine.get_or_create_session(
            requests,
            cv.label(req.label, "label"),
            cv.limits_request(req.limits, "limits"),
            req.policy_toml,
            reuse=req.reuse,
        )
        warnings = self.engine.session_warnings(session)
        return sepb.CreateSessionResponse(session=cv.session_pb(session), warnings=warnings, reused=reused)

    def GetSession(self, req: sepb.GetSessionRequest, ctx: Ctx) -> sepb.GetSessionResponse:
        session = self.engine.get_session(cv.require_id(req.session_id, "session_id"))
        return sepb.GetSessionResponse(session=cv.session_pb(session))

    def ListSessions(self, req: sepb.ListSessionsRequest, ctx: Ctx) -> sepb.ListSessionsResponse:
        sessions, token = self.engine.list_sessions(req.include_closed, req.page_size, req.page_token)
        return sepb.ListSessionsResponse(sessions=[cv.session_pb(s) for s in sessions], next_page_token=token)

    def CloseSession(self, req: sepb.CloseSessionRequest, ctx: Ctx) -> sepb.CloseSessionResponse:
        session, resolved = self.engine.close_session(
            cv.require_id(req.session_id, "session_id"), cv.close_mode(req.mode)
        )
        return sepb.CloseSessionResponse(session=cv.session_pb(session), resolved=[cv.action_pb(a) for a in resolved])

    def DescribeSession(self, req: sepb.DescribeSessionRequest, ctx: Ctx) -> sepb.DescribeSessionResponse:
        described = self.engine.describe_session(cv.require_id(req.session_id, "session_id"), req.include_samples)
        return sepb.DescribeSessionResponse(
            resources=[sepb.ResourceDescription(resource=n, text=t) for n, t in described]
        )


class ActionsServicer(agrpc.ActionsServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def SubmitAction(self, req: apb.SubmitActionRequest, ctx: Ctx) -> apb.SubmitActionResponse:
        session_id = cv.require_id(req.session_id, "session_id")
        if not req.HasField("spec"):
            raise_missing("spec")
        spec = cv.action_spec(req.spec, "spec")
        inverse = cv.action_spec(req.inverse, "inverse") if req.HasField("inverse") else None
        if req.cancel_when_unwatched and not req.detach:
            raise InvalidArgument(
                "cancel_when_unwatched", "goes with detach (a blocking submit is cancelled with its call)"
            )
        caller_gone = None
        if not req.detach:  # the call ending before its answer (cancelled, deadline, channel closed) cancels the action
            caller_gone = threading.Event()
            if not ctx.add_callback(caller_gone.set):
                caller_gone.set()  # it has ended already
        action = self.engine.submit(
            session_id,
            spec,
            inverse,
            detach=req.detach,
            approval=req.approval,
            caller_gone=caller_gone,
            cancel_when_unwatched=req.cancel_when_unwatched,
        )
        return apb.SubmitActionResponse(action=cv.action_pb(action))

    def GetAction(self, req: apb.GetActionRequest, ctx: Ctx) -> apb.GetActionResponse:
        action_id = self.engine.action_ref(req.action_id, "action_id", cv.optional_id(req.session_id, "session_id"))
        return apb.GetActionResponse(action=cv.action_pb(self.engine.get_action(action_id)))

    def ListActions(self, req: apb.ListActionsRequest, ctx: Ctx) -> apb.ListActionsResponse:
        actions, token = self.engine.list_actions(
            cv.require_id(req.session_id, "session_id"),
            cv.states(list(req.states)),
            req.page_size,
            req.page_token,
        )
        return apb.ListActionsResponse(actions=[cv.action_pb(a) for a in actions], next_page_token=token)

    def WatchAction(self, req: apb.WatchActionRequest, ctx: Ctx) -> Iterator[pb.ActionEvent]:
        action_id = self.engine.action_ref(req.action_id, "action_id")
        for ev in self.engine.watch(action_id, _alive(ctx)):
            yield _event_pb(action_id, ev)

    def RunAction(self, req: apb.RunActionRequest, ctx: Ctx) -> Iterator[apb.RunActionEvent]:
        session_id = cv.require_id(req.session_id, "session_id")
        if not req.HasField("spec"):
            raise_missing("spec")
        spec = cv.action_spec(req.spec, "spec")
        inverse = cv.action_spec(req.inverse, "inverse") if req.HasField("inverse") else None
        # Detached and watched on this stream: its end, before the result, cancels the action.
        accepted = self.engine.submit(
            session_id, spec, inverse, detach=True, approval=req.approval, cancel_when_unwatched=True
        )
        yield apb.RunActionEvent(accepted=cv.action_pb(accepted))
        for ev in self.engine.watch(accepted.id, _alive(ctx)):
            if ev.state is not None or req.stream_output:
                yield apb.RunActionEvent(progress=_event_pb(accepted.id, ev))
        yield apb.RunActionEvent(finished=cv.action_pb(self.engine.get_action(accepted.id)))

    def CancelAction(self, req: apb.CancelActionRequest, ctx: Ctx) -> apb.CancelActionResponse:
        action = self.engine.cancel(self.engine.action_ref(req.action_id, "action_id"))
        return apb.CancelActionResponse(action=cv.action_pb(action))

    def CommitActions(self, req: apb.CommitActionsRequest, ctx: Ctx) -> apb.CommitActionsResponse:
        session_id = cv.require_id(req.session_id, "session_id")
        up_to = (
            self.engine.action_ref(req.up_to_action_id, "up_to_action_id", session_id) if req.up_to_action_id else ""
        )
        done = self.engine.commit(session_id, up_to)
        return apb.CommitActionsResponse(committed=[cv.action_pb(a) for a in done])

    def UndoAction(self, req: apb.UndoActionRequest, ctx: Ctx) -> apb.UndoActionResponse:
        session_id = cv.require_id(req.session_id, "session_id")
        action_id = self.engine.action_ref(req.action_id, "action_id", session_id) if req.action_id else ""
        undone = self.engine.undo(session_id, action_id, req.cascade, req.force)
        return apb.UndoActionResponse(undone=[cv.action_pb(a) for a in undone])

    def UndoTo(self, req: apb.UndoToRequest, ctx: Ctx) -> apb.UndoToResponse:
        action_id = self.engine.action_ref(req.action_id, "action_id", cv.optional_id(req.session_id, "session_id"))
        undone = self.engine.undo_to(action_id, req.force)
        return apb.UndoToResponse(undone=[cv.action_pb(a) for a in undone])

    def ListSetAsides(self, req: apb.ListSetAsidesRequest, ctx: Ctx) -> apb.ListSetAsidesResponse:
        found = self.engine.list_set_asides(cv.require_id(req.session_id, "session_id"))
        return apb.ListSetAsidesResponse(set_asides=[csa.set_aside_pb(name, kept) for name, kept in found])

    def RestoreSetAside(self, req: apb.RestoreSetAsideRequest, ctx: Ctx) -> apb.RestoreSetAsideResponse:
        report = self.engine.restore_set_aside(
            cv.require_id(req.session_id, "session_id"), cv.require_id(req.set_aside_id, "set_aside_id"), req.force
        )
        return apb.RestoreSetAsideResponse(verified=report.verified, detail=report.detail)

    def PlanAction(self, req: apb.PlanActionRequest, ctx: Ctx) -> apb.PlanActionResponse:
        session_id = cv.require_id(req.session_id, "session_id")
        if not req.HasField("spec"):
            raise_missing("spec")
        review = self.engine.plan(session_id, cv.action_spec(req.spec, "spec"))
        return apb.PlanActionResponse(
            action=cv.spec_pb(review.plan.forward),
            inverse=cv.spec_pb(review.plan.inverse) if review.plan.inverse is not None else None,
            plan=cpl.plan_pb(review.exchange),
            policy_decision=review.decision.kind.value,
            policy_rule=review.decision.rule,
            policy_reason=review.decision.reason,
            reversibility=cv.reversibility_pb(review.reversibility),
        )

    def PutFunctionSet(self, req: apb.PutFunctionSetRequest, ctx: Ctx) -> apb.PutFunctionSetResponse:
        kept = self.engine.put_function_set(req.toml, req.overwrite)
        return apb.PutFunctionSetResponse(set=cpl.function_set_pb(kept))

    def ListFunctionSets(self, req: apb.ListFunctionSetsRequest, ctx: Ctx) -> apb.ListFunctionSetsResponse:
        return apb.ListFunctionSetsResponse(sets=[cpl.function_set_pb(s) for s in self.engine.list_function_sets()])

    def DeleteFunctionSet(self, req: apb.DeleteFunctionSetRequest, ctx: Ctx) -> apb.DeleteFunctionSetResponse:
        self.engine.delete_function_set(req.name)
        return apb.DeleteFunctionSetResponse()

    def TestReversibility(self, req: apb.TestReversibilityRequest, ctx: Ctx) -> apb.TestReversibilityResponse:
        session_id = cv.require_id(req.session_id, "session_id")
        spec = cv.action_spec(req.spec, "spec")
        inverse = cv.action_spec(req.inverse, "inverse") if req.HasField("inverse") else None
        verdict = self.engine.test_reversibility(session_id, spec, inverse)
        return apb.TestReversibilityResponse(reversibility=cv.reversibility_pb(verdict))

    def JudgePair(self, req: apb.JudgePairRequest, ctx: Ctx) -> apb.JudgePairResponse:
        history = self.engine.judge_pair(
            self.engine.action_ref(req.action_id, "action_id"),
            cp.judgement(req.judgement, "judgement"),
            req.who,
            req.note,
        )
        return apb.JudgePairResponse(history=cp.pair_history_pb(history))

    def GetPairHistory(self, req: apb.GetPairHistoryRequest, ctx: Ctx) -> apb.GetPairHistoryResponse:
        history = self.engine.pair_history(self.engine.action_ref(req.action_id, "action_id"))
        return apb.GetPairHistoryResponse(history=cp.pair_history_pb(history))

    def GetDiff(self, req: apb.GetDiffRequest, ctx: Ctx) -> apb.GetDiffResponse:
        options = cd.diff_options(req.options, "options")
        target = req.WhichOneof("target")
        if target == "action_id":
            session_id = cv.optional_id(req.session_id, "session_id")
            found = self.engine.diff_action(self.engine.action_ref(req.action_id, "action_id", session_id), options)
        elif target == "since_last":
            session_id = cv.require_id(req.since_last.session_id, "since_last.session_id")
            found = self.engine.diff_since_last(session_id, req.since_last.resource, options)
        else:
            raise InvalidArgument("target", "action_id or since_last is required")
        return cd.diff_pb(found)


def _alive(ctx: Ctx) -> threading.Event:
    """Set while the call's client is there; cleared once it went away (a watch stops following)."""
    alive = threading.Event()
    alive.set()
    ctx.add_callback(alive.clear)
    return alive


def _event_pb(action_id: str, ev: Event) -> pb.ActionEvent:
    msg = pb.ActionEvent(action_id=action_id, at=cv.ts(ev.at))
    if ev.state is not None:
        msg.state = cv.state_pb(ev.state)
    elif ev.stream is not None:
        msg.output.CopyFrom(pb.OutputChunk(stream=cv.STREAM_TO_PB[ev.stream], data=ev.data))
    return msg


def raise_missing(fld: str) -> None:
    raise InvalidArgument(fld, "is required")


class SecretsServicer(sgrpc.SecretsServicer):
    """Metadata in and out; a value only ever travels inwards (PutSecret)."""

    def __init__(self, vault: Vault, oauth: OAuthFlows) -> None:
        self.vault = vault
        self.oauth = oauth

    def PutSecret(self, req: spb.PutSecretRequest, ctx: Ctx) -> spb.PutSecretResponse:
        return spb.PutSecretResponse(info=cs.info_pb(self.vault.put(cs.put_request(req))))

    def ListSecrets(self, req: spb.ListSecretsRequest, ctx: Ctx) -> spb.ListSecretsResponse:
        return spb.ListSecretsResponse(secrets=[cs.info_pb(i) for i in self.vault.list_info()])

    def DeleteSecret(self, req: spb.DeleteSecretRequest, ctx: Ctx) -> spb.DeleteSecretResponse:
        self.vault.delete(req.name)
        return spb.DeleteSecretResponse()

    def RotateVaultKey(self, req: spb.RotateVaultKeyRequest, ctx: Ctx) -> spb.RotateVaultKeyResponse:
        self.vault.rotate_key(req.new_passphrase)
        return spb.RotateVaultKeyResponse()

    def StartOAuth(self, req: spb.StartOAuthRequest, ctx: Ctx) -> spb.StartOAuthResponse:
        started = self.oauth.start(cs.oauth_start(req))
        return spb.StartOAuthResponse(
            browser_url=started.browser_url, redirect_uri=started.redirect_uri, expires_at=cv.ts(started.expires_at)
        )

    def AwaitOAuth(self, req: spb.AwaitOAuthRequest, ctx: Ctx) -> spb.AwaitOAuthResponse:
        timeout = cv.duration_s(req.timeout, "timeout") if req.HasField("timeout") else 0.0
        if timeout < 0:
            raise InvalidArgument("timeout", "must not be negative")
        # No flow outlives a day: a longer wait is the same wait (and would overflow the thread's timer).
        info = self.oauth.wait(req.name, min(timeout, MAX_AWAIT_S) or None)
        return spb.AwaitOAuthResponse(info=cs.info_pb(info))


class AdminServicer(adgrpc.AdminServicer):
    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def GetHealth(self, req: adpb.GetHealthRequest, ctx: Ctx) -> adpb.GetHealthResponse:
        components = self.admin.health()
        return adpb.GetHealthResponse(
            ok=all(c.ok for c in components),
            version=__version__,
            uptime=cv.dur(time.monotonic() - self.admin.started),
            components=[adpb.ComponentHealth(name=c.name, ok=c.ok, detail=c.detail) for c in components],
            draining=self.admin.engine.draining,
        )

    def Stop(self, req: adpb.StopRequest, ctx: Ctx) -> adpb.StopResponse:
        found = self.admin.stop(req.drain, req.drain_timeout.ToTimedelta().total_seconds())
        return adpb.StopResponse(
            interrupted=[adpb.Interrupted(kind=i.kind, action_ids=i.action_ids, why=i.why) for i in found],
            summary=summary(found),
            draining=req.drain,
        )

    def GetStats(self, req: adpb.GetStatsRequest, ctx: Ctx) -> adpb.GetStatsResponse:
        s = self.admin.stats()
        return adpb.GetStatsResponse(
            open_sessions=s.open_sessions,
            actions_by_state=s.actions_by_state,
            journal_bytes=s.journal_bytes,
            snapshot_store_bytes=s.snapshot_store_bytes,
            running_actions=s.running_actions,
            sandbox_pools=[
                adpb.SandboxPool(
                    backend=p.backend,
                    image=p.image,
                    warm=p.warm,
                    leases=p.leases,
                    misses=p.misses,
                    made=p.made,
                    failed=p.failed,
                )
                for p in s.sandbox_pools
            ],
        )

    def RunGc(self, req: adpb.RunGcRequest, ctx: Ctx) -> adpb.RunGcResponse:
        r = self.admin.gc(dry_run=req.dry_run)
        return adpb.RunGcResponse(
            snapshots_removed=r.removed,
            bytes_freed=r.bytes_freed,
            reasons=r.reasons,
            outputs_trimmed=r.outputs_trimmed,
            output_bytes_trimmed=r.output_bytes_trimmed,
            journal_bytes_freed=r.journal_bytes_freed,
        )

    def CheckPolicy(self, req: adpb.CheckPolicyRequest, ctx: Ctx) -> adpb.CheckPolicyResponse:
        check_policy_size(req.toml, "toml")
        try:
            parse_policy(req.toml)
        except PolicyError as exc:
            return adpb.CheckPolicyResponse(ok=False, errors=[adpb.PolicyError(line=exc.line, message=exc.message)])
        return adpb.CheckPolicyResponse(ok=True)
