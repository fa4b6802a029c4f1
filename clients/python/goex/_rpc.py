"""The contract's RPCs as typed method descriptions, shared by the sync and async clients.

The generated *_pb2_grpc stubs are untyped; building the multi-callables from this
table keeps request and response types checked. Paths come from the service
descriptors and the message types are checked against them at import time, so
the table cannot drift from the .proto files unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import grpc
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

if TYPE_CHECKING:
    import grpc.aio  # the sync client and the CLI never load it

from goex.v1 import actions_pb2, admin_pb2, secrets_pb2, sessions_pb2, types_pb2

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


@dataclass(frozen=True)
class Method(Generic[Req, Resp]):
    path: str  # "/goex.v1.Actions/SubmitAction"
    request: type[Req]
    response: type[Resp]

    def unary(self, channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[Req, Resp]:
        return channel.unary_unary(
            self.path,
            request_serializer=self.request.SerializeToString,
            response_deserializer=self.response.FromString,
        )

    def unary_stream(self, channel: grpc.Channel) -> grpc.UnaryStreamMultiCallable[Req, Resp]:
        return channel.unary_stream(
            self.path,
            request_serializer=self.request.SerializeToString,
            response_deserializer=self.response.FromString,
        )

    def aio_unary(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[Req, Resp]:
        return channel.unary_unary(
            self.path,
            request_serializer=self.request.SerializeToString,
            response_deserializer=self.response.FromString,
        )

    def aio_unary_stream(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamMultiCallable[Req, Resp]:
        return channel.unary_stream(
            self.path,
            request_serializer=self.request.SerializeToString,
            response_deserializer=self.response.FromString,
        )


def _method(
    file: FileDescriptor, service: str, name: str, request: type[Req], response: type[Resp]
) -> Method[Req, Resp]:
    desc = file.services_by_name[service].methods_by_name[name]
    if (desc.input_type.full_name, desc.output_type.full_name) != (
        request.DESCRIPTOR.full_name,
        response.DESCRIPTOR.full_name,
    ):
        raise RuntimeError(f"goex._rpc is out of date with the contract for {service}.{name}")
    return Method(f"/{desc.containing_service.full_name}/{name}", request, response)


_S, _A, _X, _D = sessions_pb2, actions_pb2, secrets_pb2, admin_pb2
_SF, _AF, _XF, _DF = _S.DESCRIPTOR, _A.DESCRIPTOR, _X.DESCRIPTOR, _D.DESCRIPTOR

CREATE_SESSION = _method(_SF, "Sessions", "CreateSession", _S.CreateSessionRequest, _S.CreateSessionResponse)
GET_SESSION = _method(_SF, "Sessions", "GetSession", _S.GetSessionRequest, _S.GetSessionResponse)
LIST_SESSIONS = _method(_SF, "Sessions", "ListSessions", _S.ListSessionsRequest, _S.ListSessionsResponse)
CLOSE_SESSION = _method(_SF, "Sessions", "CloseSession", _S.CloseSessionRequest, _S.CloseSessionResponse)
DESCRIBE_SESSION = _method(_SF, "Sessions", "DescribeSession", _S.DescribeSessionRequest, _S.DescribeSessionResponse)

SUBMIT_ACTION = _method(_AF, "Actions", "SubmitAction", _A.SubmitActionRequest, _A.SubmitActionResponse)
GET_ACTION = _method(_AF, "Actions", "GetAction", _A.GetActionRequest, _A.GetActionResponse)
LIST_ACTIONS = _method(_AF, "Actions", "ListActions", _A.ListActionsRequest, _A.ListActionsResponse)
WATCH_ACTION = _method(_AF, "Actions", "WatchAction", _A.WatchActionRequest, types_pb2.ActionEvent)
RUN_ACTION = _method(_AF, "Actions", "RunAction", _A.RunActionRequest, _A.RunActionEvent)
CANCEL_ACTION = _method(_AF, "Actions", "CancelAction", _A.CancelActionRequest, _A.CancelActionResponse)
COMMIT_ACTIONS = _method(_AF, "Actions", "CommitActions", _A.CommitActionsRequest, _A.CommitActionsResponse)
UNDO_ACTION = _method(_AF, "Actions", "UndoAction", _A.UndoActionRequest, _A.UndoActionResponse)
UNDO_TO = _method(_AF, "Actions", "UndoTo", _A.UndoToRequest, _A.UndoToResponse)
PLAN_ACTION = _method(_AF, "Actions", "PlanAction", _A.PlanActionRequest, _A.PlanActionResponse)
PUT_FUNCTION_SET = _method(_AF, "Actions", "PutFunctionSet", _A.PutFunctionSetRequest, _A.PutFunctionSetResponse)
LIST_FUNCTION_SETS = _method(
    _AF, "Actions", "ListFunctionSets", _A.ListFunctionSetsRequest, _A.ListFunctionSetsResponse
)
DELETE_FUNCTION_SET = _method(
    _AF, "Actions", "DeleteFunctionSet", _A.DeleteFunctionSetRequest, _A.DeleteFunctionSetResponse
)
TEST_REVERSIBILITY = _method(
    _AF, "Actions", "TestReversibility", _A.TestReversibilityRequest, _A.TestReversibilityResponse
)
GET_DIFF = _method(_AF, "Actions", "GetDiff", _A.GetDiffRequest, _A.GetDiffResponse)
LIST_SET_ASIDES = _method(_AF, "Actions", "ListSetAsides", _A.ListSetAsidesRequest, _A.ListSetAsidesResponse)
RESTORE_SET_ASIDE = _method(_AF, "Actions", "RestoreSetAside", _A.RestoreSetAsideRequest, _A.RestoreSetAsideResponse)
JUDGE_PAIR = _method(_AF, "Actions", "JudgePair", _A.JudgePairRequest, _A.JudgePairResponse)
GET_PAIR_HISTORY = _method(_AF, "Actions", "GetPairHistory", _A.GetPairHistoryRequest, _A.GetPairHistoryResponse)

PUT_SECRET = _method(_XF, "Secrets", "PutSecret", _X.PutSecretRequest, _X.PutSecretResponse)
LIST_SECRETS = _method(_XF, "Secrets", "ListSecrets", _X.ListSecretsRequest, _X.ListSecretsResponse)
DELETE_SECRET = _method(_XF, "Secrets", "DeleteSecret", _X.DeleteSecretRequest, _X.DeleteSecretResponse)
ROTATE_VAULT_KEY = _method(_XF, "Secrets", "RotateVaultKey", _X.RotateVaultKeyRequest, _X.RotateVaultKeyResponse)
START_OAUTH = _method(_XF, "Secrets", "StartOAuth", _X.StartOAuthRequest, _X.StartOAuthResponse)
AWAIT_OAUTH = _method(_XF, "Secrets", "AwaitOAuth", _X.AwaitOAuthRequest, _X.AwaitOAuthResponse)

GET_HEALTH = _method(_DF, "Admin", "GetHealth", _D.GetHealthRequest, _D.GetHealthResponse)
GET_STATS = _method(_DF, "Admin", "GetStats", _D.GetStatsRequest, _D.GetStatsResponse)
RUN_GC = _method(_DF, "Admin", "RunGc", _D.RunGcRequest, _D.RunGcResponse)
CHECK_POLICY = _method(_DF, "Admin", "CheckPolicy", _D.CheckPolicyRequest, _D.CheckPolicyResponse)
STOP = _method(_DF, "Admin", "Stop", _D.StopRequest, _D.StopResponse)
