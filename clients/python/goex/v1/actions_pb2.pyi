import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from goex.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiffContent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIFF_CONTENT_UNSPECIFIED: _ClassVar[DiffContent]
    DIFF_CONTENT_NONE: _ClassVar[DiffContent]
    DIFF_CONTENT_TEXT: _ClassVar[DiffContent]
    DIFF_CONTENT_BINARY: _ClassVar[DiffContent]
    DIFF_CONTENT_NOT_READ: _ClassVar[DiffContent]

class Judgement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JUDGEMENT_UNSPECIFIED: _ClassVar[Judgement]
    JUDGEMENT_RIGHT: _ClassVar[Judgement]
    JUDGEMENT_WRONG: _ClassVar[Judgement]
DIFF_CONTENT_UNSPECIFIED: DiffContent
DIFF_CONTENT_NONE: DiffContent
DIFF_CONTENT_TEXT: DiffContent
DIFF_CONTENT_BINARY: DiffContent
DIFF_CONTENT_NOT_READ: DiffContent
JUDGEMENT_UNSPECIFIED: Judgement
JUDGEMENT_RIGHT: Judgement
JUDGEMENT_WRONG: Judgement

class PutFunctionSetRequest(_message.Message):
    __slots__ = ("toml", "overwrite")
    TOML_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    toml: str
    overwrite: bool
    def __init__(self, toml: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class PutFunctionSetResponse(_message.Message):
    __slots__ = ("set",)
    SET_FIELD_NUMBER: _ClassVar[int]
    set: FunctionSet
    def __init__(self, set: _Optional[_Union[FunctionSet, _Mapping]] = ...) -> None: ...

class ListFunctionSetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFunctionSetsResponse(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[FunctionSet]
    def __init__(self, sets: _Optional[_Iterable[_Union[FunctionSet, _Mapping]]] = ...) -> None: ...

class DeleteFunctionSetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteFunctionSetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FunctionSet(_message.Message):
    __slots__ = ("name", "description", "rules", "source", "functions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    rules: str
    source: str
    functions: _containers.RepeatedCompositeFieldContainer[FunctionInfo]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., rules: _Optional[str] = ..., source: _Optional[str] = ..., functions: _Optional[_Iterable[_Union[FunctionInfo, _Mapping]]] = ...) -> None: ...

class FunctionInfo(_message.Message):
    __slots__ = ("name", "description", "parameters_schema", "method", "path", "inverse", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_schema: str
    method: str
    path: str
    inverse: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_schema: _Optional[str] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., inverse: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class SubmitActionRequest(_message.Message):
    __slots__ = ("session_id", "spec", "inverse", "detach", "approval", "cancel_when_unwatched")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_WHEN_UNWATCHED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: _types_pb2.ActionSpec
    inverse: _types_pb2.ActionSpec
    detach: bool
    approval: str
    cancel_when_unwatched: bool
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., inverse: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., detach: _Optional[bool] = ..., approval: _Optional[str] = ..., cancel_when_unwatched: _Optional[bool] = ...) -> None: ...

class SubmitActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class RunActionRequest(_message.Message):
    __slots__ = ("session_id", "spec", "inverse", "approval", "stream_output")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    STREAM_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: _types_pb2.ActionSpec
    inverse: _types_pb2.ActionSpec
    approval: str
    stream_output: bool
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., inverse: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., approval: _Optional[str] = ..., stream_output: _Optional[bool] = ...) -> None: ...

class RunActionEvent(_message.Message):
    __slots__ = ("accepted", "progress", "finished")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    accepted: _types_pb2.Action
    progress: _types_pb2.ActionEvent
    finished: _types_pb2.Action
    def __init__(self, accepted: _Optional[_Union[_types_pb2.Action, _Mapping]] = ..., progress: _Optional[_Union[_types_pb2.ActionEvent, _Mapping]] = ..., finished: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class GetActionRequest(_message.Message):
    __slots__ = ("action_id", "session_id")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    session_id: str
    def __init__(self, action_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class ListActionsRequest(_message.Message):
    __slots__ = ("session_id", "states", "page_size", "page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    states: _containers.RepeatedScalarFieldContainer[_types_pb2.ActionState]
    page_size: int
    page_token: str
    def __init__(self, session_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_types_pb2.ActionState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListActionsResponse(_message.Message):
    __slots__ = ("actions", "next_page_token")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    next_page_token: str
    def __init__(self, actions: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchActionRequest(_message.Message):
    __slots__ = ("action_id",)
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    def __init__(self, action_id: _Optional[str] = ...) -> None: ...

class CancelActionRequest(_message.Message):
    __slots__ = ("action_id",)
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    def __init__(self, action_id: _Optional[str] = ...) -> None: ...

class CancelActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class CommitActionsRequest(_message.Message):
    __slots__ = ("session_id", "up_to_action_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    up_to_action_id: str
    def __init__(self, session_id: _Optional[str] = ..., up_to_action_id: _Optional[str] = ...) -> None: ...

class CommitActionsResponse(_message.Message):
    __slots__ = ("committed",)
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    committed: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    def __init__(self, committed: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ...) -> None: ...

class UndoActionRequest(_message.Message):
    __slots__ = ("session_id", "action_id", "cascade", "force")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    action_id: str
    cascade: bool
    force: bool
    def __init__(self, session_id: _Optional[str] = ..., action_id: _Optional[str] = ..., cascade: _Optional[bool] = ..., force: _Optional[bool] = ...) -> None: ...

class UndoActionResponse(_message.Message):
    __slots__ = ("undone",)
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    undone: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    def __init__(self, undone: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ...) -> None: ...

class UndoToRequest(_message.Message):
    __slots__ = ("action_id", "force", "session_id")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    force: bool
    session_id: str
    def __init__(self, action_id: _Optional[str] = ..., force: _Optional[bool] = ..., session_id: _Optional[str] = ...) -> None: ...

class UndoToResponse(_message.Message):
    __slots__ = ("undone",)
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    undone: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    def __init__(self, undone: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ...) -> None: ...

class PlanActionRequest(_message.Message):
    __slots__ = ("session_id", "spec")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: _types_pb2.ActionSpec
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ...) -> None: ...

class PlanActionResponse(_message.Message):
    __slots__ = ("action", "inverse", "plan", "policy_decision", "policy_rule", "policy_reason", "reversibility")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    POLICY_DECISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_RULE_FIELD_NUMBER: _ClassVar[int]
    POLICY_REASON_FIELD_NUMBER: _ClassVar[int]
    REVERSIBILITY_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.ActionSpec
    inverse: _types_pb2.ActionSpec
    plan: _types_pb2.PromptPlan
    policy_decision: str
    policy_rule: str
    policy_reason: str
    reversibility: _types_pb2.Reversibility
    def __init__(self, action: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., inverse: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., plan: _Optional[_Union[_types_pb2.PromptPlan, _Mapping]] = ..., policy_decision: _Optional[str] = ..., policy_rule: _Optional[str] = ..., policy_reason: _Optional[str] = ..., reversibility: _Optional[_Union[_types_pb2.Reversibility, _Mapping]] = ...) -> None: ...

class TestReversibilityRequest(_message.Message):
    __slots__ = ("session_id", "spec", "inverse")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: _types_pb2.ActionSpec
    inverse: _types_pb2.ActionSpec
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., inverse: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ...) -> None: ...

class TestReversibilityResponse(_message.Message):
    __slots__ = ("reversibility",)
    REVERSIBILITY_FIELD_NUMBER: _ClassVar[int]
    reversibility: _types_pb2.Reversibility
    def __init__(self, reversibility: _Optional[_Union[_types_pb2.Reversibility, _Mapping]] = ...) -> None: ...

class GetDiffRequest(_message.Message):
    __slots__ = ("action_id", "since_last", "options", "session_id")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_LAST_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    since_last: SinceLastAction
    options: DiffOptions
    session_id: str
    def __init__(self, action_id: _Optional[str] = ..., since_last: _Optional[_Union[SinceLastAction, _Mapping]] = ..., options: _Optional[_Union[DiffOptions, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class SinceLastAction(_message.Message):
    __slots__ = ("session_id", "resource")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    resource: str
    def __init__(self, session_id: _Optional[str] = ..., resource: _Optional[str] = ...) -> None: ...

class DiffOptions(_message.Message):
    __slots__ = ("max_file_bytes", "max_total_bytes", "max_files", "context_lines", "stat_only")
    MAX_FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LINES_FIELD_NUMBER: _ClassVar[int]
    STAT_ONLY_FIELD_NUMBER: _ClassVar[int]
    max_file_bytes: int
    max_total_bytes: int
    max_files: int
    context_lines: int
    stat_only: bool
    def __init__(self, max_file_bytes: _Optional[int] = ..., max_total_bytes: _Optional[int] = ..., max_files: _Optional[int] = ..., context_lines: _Optional[int] = ..., stat_only: _Optional[bool] = ...) -> None: ...

class GetDiffResponse(_message.Message):
    __slots__ = ("action_id", "resource", "resource_kind", "from_snapshot", "to_snapshot", "files", "files_changed", "additions", "deletions", "truncated", "notes", "summary")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TO_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    FILES_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ADDITIONS_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    resource: str
    resource_kind: _types_pb2.ResourceKind
    from_snapshot: str
    to_snapshot: str
    files: _containers.RepeatedCompositeFieldContainer[FileDiff]
    files_changed: int
    additions: int
    deletions: int
    truncated: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    def __init__(self, action_id: _Optional[str] = ..., resource: _Optional[str] = ..., resource_kind: _Optional[_Union[_types_pb2.ResourceKind, str]] = ..., from_snapshot: _Optional[str] = ..., to_snapshot: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileDiff, _Mapping]]] = ..., files_changed: _Optional[int] = ..., additions: _Optional[int] = ..., deletions: _Optional[int] = ..., truncated: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ...) -> None: ...

class FileDiff(_message.Message):
    __slots__ = ("path", "path_bytes", "kind", "old", "new", "content", "additions", "deletions", "patch", "patch_truncated", "note")
    PATH_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OLD_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ADDITIONS_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    PATCH_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    path: str
    path_bytes: bytes
    kind: _types_pb2.ChangeKind
    old: DiffSide
    new: DiffSide
    content: DiffContent
    additions: int
    deletions: int
    patch: bytes
    patch_truncated: bool
    note: str
    def __init__(self, path: _Optional[str] = ..., path_bytes: _Optional[bytes] = ..., kind: _Optional[_Union[_types_pb2.ChangeKind, str]] = ..., old: _Optional[_Union[DiffSide, _Mapping]] = ..., new: _Optional[_Union[DiffSide, _Mapping]] = ..., content: _Optional[_Union[DiffContent, str]] = ..., additions: _Optional[int] = ..., deletions: _Optional[int] = ..., patch: _Optional[bytes] = ..., patch_truncated: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class DiffSide(_message.Message):
    __slots__ = ("mode", "uid", "gid", "size", "blob_id", "sha256")
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    mode: int
    uid: int
    gid: int
    size: int
    blob_id: str
    sha256: str
    def __init__(self, mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., blob_id: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class SetAside(_message.Message):
    __slots__ = ("id", "resource", "action_id", "created_at", "reason", "paths", "paths_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    PATHS_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    resource: str
    action_id: str
    created_at: _timestamp_pb2.Timestamp
    reason: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    paths_bytes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, id: _Optional[str] = ..., resource: _Optional[str] = ..., action_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., paths_bytes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListSetAsidesRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListSetAsidesResponse(_message.Message):
    __slots__ = ("set_asides",)
    SET_ASIDES_FIELD_NUMBER: _ClassVar[int]
    set_asides: _containers.RepeatedCompositeFieldContainer[SetAside]
    def __init__(self, set_asides: _Optional[_Iterable[_Union[SetAside, _Mapping]]] = ...) -> None: ...

class RestoreSetAsideRequest(_message.Message):
    __slots__ = ("session_id", "set_aside_id", "force")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SET_ASIDE_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    set_aside_id: str
    force: bool
    def __init__(self, session_id: _Optional[str] = ..., set_aside_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RestoreSetAsideResponse(_message.Message):
    __slots__ = ("verified", "detail")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    detail: str
    def __init__(self, verified: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class JudgePairRequest(_message.Message):
    __slots__ = ("action_id", "judgement", "who", "note")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    judgement: Judgement
    who: str
    note: str
    def __init__(self, action_id: _Optional[str] = ..., judgement: _Optional[_Union[Judgement, str]] = ..., who: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class JudgePairResponse(_message.Message):
    __slots__ = ("history",)
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    history: PairHistory
    def __init__(self, history: _Optional[_Union[PairHistory, _Mapping]] = ...) -> None: ...

class GetPairHistoryRequest(_message.Message):
    __slots__ = ("action_id",)
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    def __init__(self, action_id: _Optional[str] = ...) -> None: ...

class GetPairHistoryResponse(_message.Message):
    __slots__ = ("history",)
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    history: PairHistory
    def __init__(self, history: _Optional[_Union[PairHistory, _Mapping]] = ...) -> None: ...

class PairHistory(_message.Message):
    __slots__ = ("verdicts", "judgements")
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[PairVerdict]
    judgements: _containers.RepeatedCompositeFieldContainer[PairJudgement]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[PairVerdict, _Mapping]]] = ..., judgements: _Optional[_Iterable[_Union[PairJudgement, _Mapping]]] = ...) -> None: ...

class PairVerdict(_message.Message):
    __slots__ = ("reversibility", "tested_by", "fingerprint", "fingerprint_kind")
    REVERSIBILITY_FIELD_NUMBER: _ClassVar[int]
    TESTED_BY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_KIND_FIELD_NUMBER: _ClassVar[int]
    reversibility: _types_pb2.Reversibility
    tested_by: str
    fingerprint: str
    fingerprint_kind: str
    def __init__(self, reversibility: _Optional[_Union[_types_pb2.Reversibility, _Mapping]] = ..., tested_by: _Optional[str] = ..., fingerprint: _Optional[str] = ..., fingerprint_kind: _Optional[str] = ...) -> None: ...

class PairJudgement(_message.Message):
    __slots__ = ("judgement", "who", "note", "at", "action_id")
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    judgement: Judgement
    who: str
    note: str
    at: _timestamp_pb2.Timestamp
    action_id: str
    def __init__(self, judgement: _Optional[_Union[Judgement, str]] = ..., who: _Optional[str] = ..., note: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action_id: _Optional[str] = ...) -> None: ...
