import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    RESOURCE_KIND_FS: _ClassVar[ResourceKind]
    RESOURCE_KIND_SQLITE: _ClassVar[ResourceKind]
    RESOURCE_KIND_POSTGRES: _ClassVar[ResourceKind]
    RESOURCE_KIND_HTTP: _ClassVar[ResourceKind]

class UndoStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNDO_STRATEGY_UNSPECIFIED: _ClassVar[UndoStrategy]
    UNDO_STRATEGY_VERSIONED: _ClassVar[UndoStrategy]
    UNDO_STRATEGY_INVERSE: _ClassVar[UndoStrategy]
    UNDO_STRATEGY_TRANSACTION: _ClassVar[UndoStrategy]
    UNDO_STRATEGY_CLONE: _ClassVar[UndoStrategy]
    UNDO_STRATEGY_CONFINE: _ClassVar[UndoStrategy]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_OPEN: _ClassVar[SessionState]
    SESSION_STATE_CLOSED: _ClassVar[SessionState]
    SESSION_STATE_EXPIRED: _ClassVar[SessionState]

class ActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_KIND_UNSPECIFIED: _ClassVar[ActionKind]
    ACTION_KIND_SHELL: _ClassVar[ActionKind]
    ACTION_KIND_PYTHON: _ClassVar[ActionKind]
    ACTION_KIND_SQL: _ClassVar[ActionKind]
    ACTION_KIND_HTTP: _ClassVar[ActionKind]
    ACTION_KIND_PROMPT: _ClassVar[ActionKind]

class ActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATE_UNSPECIFIED: _ClassVar[ActionState]
    ACTION_STATE_PROPOSED: _ClassVar[ActionState]
    ACTION_STATE_PREPARING: _ClassVar[ActionState]
    ACTION_STATE_RUNNING: _ClassVar[ActionState]
    ACTION_STATE_EXECUTED: _ClassVar[ActionState]
    ACTION_STATE_COMMITTED: _ClassVar[ActionState]
    ACTION_STATE_UNDONE: _ClassVar[ActionState]
    ACTION_STATE_FAILED: _ClassVar[ActionState]
    ACTION_STATE_BLOCKED: _ClassVar[ActionState]
    ACTION_STATE_INTERRUPTED: _ClassVar[ActionState]

class EgressDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EGRESS_DECISION_UNSPECIFIED: _ClassVar[EgressDecision]
    EGRESS_DECISION_ALLOWED: _ClassVar[EgressDecision]
    EGRESS_DECISION_REFUSED: _ClassVar[EgressDecision]

class Termination(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TERMINATION_UNSPECIFIED: _ClassVar[Termination]
    TERMINATION_EXITED: _ClassVar[Termination]
    TERMINATION_SIGNALED: _ClassVar[Termination]
    TERMINATION_TIMEOUT: _ClassVar[Termination]
    TERMINATION_OOM: _ClassVar[Termination]
    TERMINATION_PIDS_LIMIT: _ClassVar[Termination]
    TERMINATION_CANCELLED: _ClassVar[Termination]
    TERMINATION_SPAWN_FAILED: _ClassVar[Termination]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_ADDED: _ClassVar[ChangeKind]
    CHANGE_KIND_MODIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_DELETED: _ClassVar[ChangeKind]
    CHANGE_KIND_TYPE_CHANGED: _ClassVar[ChangeKind]
    CHANGE_KIND_MODE_CHANGED: _ClassVar[ChangeKind]

class ReversibilityClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVERSIBILITY_CLASS_UNSPECIFIED: _ClassVar[ReversibilityClass]
    REVERSIBILITY_CLASS_REVERSIBLE: _ClassVar[ReversibilityClass]
    REVERSIBILITY_CLASS_BEST_EFFORT: _ClassVar[ReversibilityClass]
    REVERSIBILITY_CLASS_IRREVERSIBLE: _ClassVar[ReversibilityClass]
    REVERSIBILITY_CLASS_READ_ONLY: _ClassVar[ReversibilityClass]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_UNTESTED: _ClassVar[Verdict]
    VERDICT_PASSED: _ClassVar[Verdict]
    VERDICT_FAILED: _ClassVar[Verdict]
    VERDICT_UNKNOWN: _ClassVar[Verdict]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_FS: ResourceKind
RESOURCE_KIND_SQLITE: ResourceKind
RESOURCE_KIND_POSTGRES: ResourceKind
RESOURCE_KIND_HTTP: ResourceKind
UNDO_STRATEGY_UNSPECIFIED: UndoStrategy
UNDO_STRATEGY_VERSIONED: UndoStrategy
UNDO_STRATEGY_INVERSE: UndoStrategy
UNDO_STRATEGY_TRANSACTION: UndoStrategy
UNDO_STRATEGY_CLONE: UndoStrategy
UNDO_STRATEGY_CONFINE: UndoStrategy
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_OPEN: SessionState
SESSION_STATE_CLOSED: SessionState
SESSION_STATE_EXPIRED: SessionState
ACTION_KIND_UNSPECIFIED: ActionKind
ACTION_KIND_SHELL: ActionKind
ACTION_KIND_PYTHON: ActionKind
ACTION_KIND_SQL: ActionKind
ACTION_KIND_HTTP: ActionKind
ACTION_KIND_PROMPT: ActionKind
ACTION_STATE_UNSPECIFIED: ActionState
ACTION_STATE_PROPOSED: ActionState
ACTION_STATE_PREPARING: ActionState
ACTION_STATE_RUNNING: ActionState
ACTION_STATE_EXECUTED: ActionState
ACTION_STATE_COMMITTED: ActionState
ACTION_STATE_UNDONE: ActionState
ACTION_STATE_FAILED: ActionState
ACTION_STATE_BLOCKED: ActionState
ACTION_STATE_INTERRUPTED: ActionState
EGRESS_DECISION_UNSPECIFIED: EgressDecision
EGRESS_DECISION_ALLOWED: EgressDecision
EGRESS_DECISION_REFUSED: EgressDecision
TERMINATION_UNSPECIFIED: Termination
TERMINATION_EXITED: Termination
TERMINATION_SIGNALED: Termination
TERMINATION_TIMEOUT: Termination
TERMINATION_OOM: Termination
TERMINATION_PIDS_LIMIT: Termination
TERMINATION_CANCELLED: Termination
TERMINATION_SPAWN_FAILED: Termination
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_ADDED: ChangeKind
CHANGE_KIND_MODIFIED: ChangeKind
CHANGE_KIND_DELETED: ChangeKind
CHANGE_KIND_TYPE_CHANGED: ChangeKind
CHANGE_KIND_MODE_CHANGED: ChangeKind
REVERSIBILITY_CLASS_UNSPECIFIED: ReversibilityClass
REVERSIBILITY_CLASS_REVERSIBLE: ReversibilityClass
REVERSIBILITY_CLASS_BEST_EFFORT: ReversibilityClass
REVERSIBILITY_CLASS_IRREVERSIBLE: ReversibilityClass
REVERSIBILITY_CLASS_READ_ONLY: ReversibilityClass
VERDICT_UNSPECIFIED: Verdict
VERDICT_UNTESTED: Verdict
VERDICT_PASSED: Verdict
VERDICT_FAILED: Verdict
VERDICT_UNKNOWN: Verdict
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream

class FsResourceSpec(_message.Message):
    __slots__ = ("path", "sandbox", "image")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    sandbox: str
    image: str
    def __init__(self, path: _Optional[str] = ..., sandbox: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class DbResourceSpec(_message.Message):
    __slots__ = ("url", "secret")
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    url: str
    secret: str
    def __init__(self, url: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class HttpResourceSpec(_message.Message):
    __slots__ = ("base_url", "secret", "rules", "staging_base_url")
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    STAGING_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    base_url: str
    secret: str
    rules: str
    staging_base_url: str
    def __init__(self, base_url: _Optional[str] = ..., secret: _Optional[str] = ..., rules: _Optional[str] = ..., staging_base_url: _Optional[str] = ...) -> None: ...

class ResourceSpec(_message.Message):
    __slots__ = ("name", "strategy", "fs", "db", "http")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    FS_FIELD_NUMBER: _ClassVar[int]
    DB_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy: UndoStrategy
    fs: FsResourceSpec
    db: DbResourceSpec
    http: HttpResourceSpec
    def __init__(self, name: _Optional[str] = ..., strategy: _Optional[_Union[UndoStrategy, str]] = ..., fs: _Optional[_Union[FsResourceSpec, _Mapping]] = ..., db: _Optional[_Union[DbResourceSpec, _Mapping]] = ..., http: _Optional[_Union[HttpResourceSpec, _Mapping]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("name", "kind", "uri", "strategy", "rules", "staging_base_url", "sandbox", "image")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    STAGING_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ResourceKind
    uri: str
    strategy: UndoStrategy
    rules: str
    staging_base_url: str
    sandbox: str
    image: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ResourceKind, str]] = ..., uri: _Optional[str] = ..., strategy: _Optional[_Union[UndoStrategy, str]] = ..., rules: _Optional[str] = ..., staging_base_url: _Optional[str] = ..., sandbox: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class SandboxLimits(_message.Message):
    __slots__ = ("timeout", "memory_bytes", "max_processes", "output_bytes")
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    timeout: _duration_pb2.Duration
    memory_bytes: int
    max_processes: int
    output_bytes: int
    def __init__(self, timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., memory_bytes: _Optional[int] = ..., max_processes: _Optional[int] = ..., output_bytes: _Optional[int] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "state", "label", "resources", "limits", "created_at", "closed_at", "pending_actions", "total_actions")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: SessionState
    label: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    limits: SandboxLimits
    created_at: _timestamp_pb2.Timestamp
    closed_at: _timestamp_pb2.Timestamp
    pending_actions: int
    total_actions: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., label: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., limits: _Optional[_Union[SandboxLimits, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending_actions: _Optional[int] = ..., total_actions: _Optional[int] = ...) -> None: ...

class ShellAction(_message.Message):
    __slots__ = ("argv", "env", "stdin", "cwd")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    stdin: bytes
    cwd: bytes
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., stdin: _Optional[bytes] = ..., cwd: _Optional[bytes] = ...) -> None: ...

class PythonAction(_message.Message):
    __slots__ = ("code", "env", "stdin", "cwd")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    code: str
    env: _containers.ScalarMap[str, str]
    stdin: bytes
    cwd: bytes
    def __init__(self, code: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., stdin: _Optional[bytes] = ..., cwd: _Optional[bytes] = ...) -> None: ...

class SqlAction(_message.Message):
    __slots__ = ("sql", "params")
    SQL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sql: _Optional[str] = ..., params: _Optional[_Iterable[str]] = ...) -> None: ...

class HttpAction(_message.Message):
    __slots__ = ("method", "path", "query", "headers", "body", "json")
    class QueryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    method: str
    path: str
    query: _containers.ScalarMap[str, str]
    headers: _containers.ScalarMap[str, str]
    body: bytes
    json: str
    def __init__(self, method: _Optional[str] = ..., path: _Optional[str] = ..., query: _Optional[_Mapping[str, str]] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ..., json: _Optional[str] = ...) -> None: ...

class PromptAction(_message.Message):
    __slots__ = ("prompt", "functions")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    functions: str
    def __init__(self, prompt: _Optional[str] = ..., functions: _Optional[str] = ...) -> None: ...

class PlanAttempt(_message.Message):
    __slots__ = ("answer", "error", "prompt_token_count", "completion_token_count", "latency")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    answer: str
    error: str
    prompt_token_count: int
    completion_token_count: int
    latency: _duration_pb2.Duration
    def __init__(self, answer: _Optional[str] = ..., error: _Optional[str] = ..., prompt_token_count: _Optional[int] = ..., completion_token_count: _Optional[int] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PromptPlan(_message.Message):
    __slots__ = ("prompt", "mode", "endpoint", "model", "transport", "request", "request_token_estimate", "attempts", "plan", "function", "error", "started_at")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TOKEN_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    mode: str
    endpoint: str
    model: str
    transport: str
    request: str
    request_token_estimate: int
    attempts: _containers.RepeatedCompositeFieldContainer[PlanAttempt]
    plan: str
    function: str
    error: str
    started_at: _timestamp_pb2.Timestamp
    def __init__(self, prompt: _Optional[str] = ..., mode: _Optional[str] = ..., endpoint: _Optional[str] = ..., model: _Optional[str] = ..., transport: _Optional[str] = ..., request: _Optional[str] = ..., request_token_estimate: _Optional[int] = ..., attempts: _Optional[_Iterable[_Union[PlanAttempt, _Mapping]]] = ..., plan: _Optional[str] = ..., function: _Optional[str] = ..., error: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActionSpec(_message.Message):
    __slots__ = ("shell", "python", "sql", "http", "prompt", "resource", "limits", "description", "egress")
    SHELL_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    shell: ShellAction
    python: PythonAction
    sql: SqlAction
    http: HttpAction
    prompt: PromptAction
    resource: str
    limits: SandboxLimits
    description: str
    egress: Egress
    def __init__(self, shell: _Optional[_Union[ShellAction, _Mapping]] = ..., python: _Optional[_Union[PythonAction, _Mapping]] = ..., sql: _Optional[_Union[SqlAction, _Mapping]] = ..., http: _Optional[_Union[HttpAction, _Mapping]] = ..., prompt: _Optional[_Union[PromptAction, _Mapping]] = ..., resource: _Optional[str] = ..., limits: _Optional[_Union[SandboxLimits, _Mapping]] = ..., description: _Optional[str] = ..., egress: _Optional[_Union[Egress, _Mapping]] = ...) -> None: ...

class Egress(_message.Message):
    __slots__ = ("secrets", "hosts", "resources")
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedScalarFieldContainer[str]
    hosts: _containers.RepeatedScalarFieldContainer[str]
    resources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, secrets: _Optional[_Iterable[str]] = ..., hosts: _Optional[_Iterable[str]] = ..., resources: _Optional[_Iterable[str]] = ...) -> None: ...

class EgressRecord(_message.Message):
    __slots__ = ("method", "url", "host", "status", "decision", "reason", "secrets_used", "request_bytes", "response_bytes", "duration", "at", "request_headers", "request_body", "request_body_truncated", "response", "resource", "reversibility", "inverse")
    class RequestHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SECRETS_USED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REVERSIBILITY_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    method: str
    url: str
    host: str
    status: int
    decision: EgressDecision
    reason: str
    secrets_used: _containers.RepeatedScalarFieldContainer[str]
    request_bytes: int
    response_bytes: int
    duration: _duration_pb2.Duration
    at: _timestamp_pb2.Timestamp
    request_headers: _containers.ScalarMap[str, str]
    request_body: bytes
    request_body_truncated: bool
    response: HttpResult
    resource: str
    reversibility: Reversibility
    inverse: HttpAction
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., host: _Optional[str] = ..., status: _Optional[int] = ..., decision: _Optional[_Union[EgressDecision, str]] = ..., reason: _Optional[str] = ..., secrets_used: _Optional[_Iterable[str]] = ..., request_bytes: _Optional[int] = ..., response_bytes: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_headers: _Optional[_Mapping[str, str]] = ..., request_body: _Optional[bytes] = ..., request_body_truncated: _Optional[bool] = ..., response: _Optional[_Union[HttpResult, _Mapping]] = ..., resource: _Optional[str] = ..., reversibility: _Optional[_Union[Reversibility, _Mapping]] = ..., inverse: _Optional[_Union[HttpAction, _Mapping]] = ...) -> None: ...

class ExecResult(_message.Message):
    __slots__ = ("termination", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "stdout_total_bytes", "stderr_total_bytes", "detail", "limits_enforced_by", "trimmed")
    TERMINATION_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LIMITS_ENFORCED_BY_FIELD_NUMBER: _ClassVar[int]
    TRIMMED_FIELD_NUMBER: _ClassVar[int]
    termination: Termination
    exit_code: int
    signal: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_total_bytes: int
    stderr_total_bytes: int
    detail: str
    limits_enforced_by: str
    trimmed: str
    def __init__(self, termination: _Optional[_Union[Termination, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ..., stdout_total_bytes: _Optional[int] = ..., stderr_total_bytes: _Optional[int] = ..., detail: _Optional[str] = ..., limits_enforced_by: _Optional[str] = ..., trimmed: _Optional[str] = ...) -> None: ...

class FileChange(_message.Message):
    __slots__ = ("kind", "path", "old_mode", "new_mode", "path_bytes", "runs_code")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OLD_MODE_FIELD_NUMBER: _ClassVar[int]
    NEW_MODE_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNS_CODE_FIELD_NUMBER: _ClassVar[int]
    kind: ChangeKind
    path: str
    old_mode: int
    new_mode: int
    path_bytes: bytes
    runs_code: bool
    def __init__(self, kind: _Optional[_Union[ChangeKind, str]] = ..., path: _Optional[str] = ..., old_mode: _Optional[int] = ..., new_mode: _Optional[int] = ..., path_bytes: _Optional[bytes] = ..., runs_code: _Optional[bool] = ...) -> None: ...

class ChangeSet(_message.Message):
    __slots__ = ("changes", "added", "modified", "deleted", "total", "truncated", "warnings")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[FileChange]
    added: int
    modified: int
    deleted: int
    total: int
    truncated: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, changes: _Optional[_Iterable[_Union[FileChange, _Mapping]]] = ..., added: _Optional[int] = ..., modified: _Optional[int] = ..., deleted: _Optional[int] = ..., total: _Optional[int] = ..., truncated: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class SqlResult(_message.Message):
    __slots__ = ("columns", "rows", "total_rows", "truncated", "affected_rows")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[SqlRow]
    total_rows: int
    truncated: bool
    affected_rows: int
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[SqlRow, _Mapping]]] = ..., total_rows: _Optional[int] = ..., truncated: _Optional[bool] = ..., affected_rows: _Optional[int] = ...) -> None: ...

class SqlRow(_message.Message):
    __slots__ = ("values", "is_null")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    is_null: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[str]] = ..., is_null: _Optional[_Iterable[bool]] = ...) -> None: ...

class HttpResult(_message.Message):
    __slots__ = ("status", "headers", "body", "body_truncated")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    status: int
    headers: _containers.ScalarMap[str, str]
    body: bytes
    body_truncated: bool
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ..., body_truncated: _Optional[bool] = ...) -> None: ...

class Reversibility(_message.Message):
    __slots__ = ("reversibility_class", "verdict", "detail", "tested_at")
    REVERSIBILITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TESTED_AT_FIELD_NUMBER: _ClassVar[int]
    reversibility_class: ReversibilityClass
    verdict: Verdict
    detail: str
    tested_at: _timestamp_pb2.Timestamp
    def __init__(self, reversibility_class: _Optional[_Union[ReversibilityClass, str]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., detail: _Optional[str] = ..., tested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("prepare", "run", "capture", "total", "undo")
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNDO_FIELD_NUMBER: _ClassVar[int]
    prepare: _duration_pb2.Duration
    run: _duration_pb2.Duration
    capture: _duration_pb2.Duration
    total: _duration_pb2.Duration
    undo: _duration_pb2.Duration
    def __init__(self, prepare: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., run: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., capture: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., total: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., undo: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("id", "session_id", "seq", "kind", "state", "resource", "spec", "inverse", "reversibility", "error", "exec", "changes", "sql", "http", "timings", "created_at", "finished_at", "resolved_at", "egress", "approval", "plan")
    ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    REVERSIBILITY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    id: str
    session_id: str
    seq: int
    kind: ActionKind
    state: ActionState
    resource: str
    spec: ActionSpec
    inverse: ActionSpec
    reversibility: Reversibility
    error: str
    exec: ExecResult
    changes: ChangeSet
    sql: SqlResult
    http: HttpResult
    timings: Timings
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    egress: _containers.RepeatedCompositeFieldContainer[EgressRecord]
    approval: str
    plan: PromptPlan
    def __init__(self, id: _Optional[str] = ..., session_id: _Optional[str] = ..., seq: _Optional[int] = ..., kind: _Optional[_Union[ActionKind, str]] = ..., state: _Optional[_Union[ActionState, str]] = ..., resource: _Optional[str] = ..., spec: _Optional[_Union[ActionSpec, _Mapping]] = ..., inverse: _Optional[_Union[ActionSpec, _Mapping]] = ..., reversibility: _Optional[_Union[Reversibility, _Mapping]] = ..., error: _Optional[str] = ..., exec: _Optional[_Union[ExecResult, _Mapping]] = ..., changes: _Optional[_Union[ChangeSet, _Mapping]] = ..., sql: _Optional[_Union[SqlResult, _Mapping]] = ..., http: _Optional[_Union[HttpResult, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., egress: _Optional[_Iterable[_Union[EgressRecord, _Mapping]]] = ..., approval: _Optional[str] = ..., plan: _Optional[_Union[PromptPlan, _Mapping]] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("stream", "data")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stream: OutputStream
    data: bytes
    def __init__(self, stream: _Optional[_Union[OutputStream, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ActionEvent(_message.Message):
    __slots__ = ("action_id", "at", "state", "output")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    at: _timestamp_pb2.Timestamp
    state: ActionState
    output: OutputChunk
    def __init__(self, action_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[ActionState, str]] = ..., output: _Optional[_Union[OutputChunk, _Mapping]] = ...) -> None: ...
