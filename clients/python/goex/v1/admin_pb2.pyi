import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ComponentHealth(_message.Message):
    __slots__ = ("name", "ok", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("ok", "version", "uptime", "components", "draining")
    OK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    version: str
    uptime: _duration_pb2.Duration
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    draining: bool
    def __init__(self, ok: _Optional[bool] = ..., version: _Optional[str] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ..., draining: _Optional[bool] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SandboxPool(_message.Message):
    __slots__ = ("backend", "image", "warm", "leases", "misses", "made", "failed")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    MADE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    backend: str
    image: str
    warm: int
    leases: int
    misses: int
    made: int
    failed: int
    def __init__(self, backend: _Optional[str] = ..., image: _Optional[str] = ..., warm: _Optional[int] = ..., leases: _Optional[int] = ..., misses: _Optional[int] = ..., made: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("open_sessions", "actions_by_state", "journal_bytes", "snapshot_store_bytes", "running_actions", "sandbox_pools")
    class ActionsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    OPEN_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_POOLS_FIELD_NUMBER: _ClassVar[int]
    open_sessions: int
    actions_by_state: _containers.ScalarMap[str, int]
    journal_bytes: int
    snapshot_store_bytes: int
    running_actions: int
    sandbox_pools: _containers.RepeatedCompositeFieldContainer[SandboxPool]
    def __init__(self, open_sessions: _Optional[int] = ..., actions_by_state: _Optional[_Mapping[str, int]] = ..., journal_bytes: _Optional[int] = ..., snapshot_store_bytes: _Optional[int] = ..., running_actions: _Optional[int] = ..., sandbox_pools: _Optional[_Iterable[_Union[SandboxPool, _Mapping]]] = ...) -> None: ...

class RunGcRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class RunGcResponse(_message.Message):
    __slots__ = ("snapshots_removed", "bytes_freed", "reasons", "outputs_trimmed", "output_bytes_trimmed", "journal_bytes_freed")
    SNAPSHOTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_TRIMMED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_TRIMMED_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    snapshots_removed: int
    bytes_freed: int
    reasons: _containers.RepeatedScalarFieldContainer[str]
    outputs_trimmed: int
    output_bytes_trimmed: int
    journal_bytes_freed: int
    def __init__(self, snapshots_removed: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., reasons: _Optional[_Iterable[str]] = ..., outputs_trimmed: _Optional[int] = ..., output_bytes_trimmed: _Optional[int] = ..., journal_bytes_freed: _Optional[int] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("drain", "drain_timeout")
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    DRAIN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    drain: bool
    drain_timeout: _duration_pb2.Duration
    def __init__(self, drain: _Optional[bool] = ..., drain_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Interrupted(_message.Message):
    __slots__ = ("kind", "action_ids", "why")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    action_ids: _containers.RepeatedScalarFieldContainer[str]
    why: str
    def __init__(self, kind: _Optional[str] = ..., action_ids: _Optional[_Iterable[str]] = ..., why: _Optional[str] = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("interrupted", "summary", "draining")
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    interrupted: _containers.RepeatedCompositeFieldContainer[Interrupted]
    summary: str
    draining: bool
    def __init__(self, interrupted: _Optional[_Iterable[_Union[Interrupted, _Mapping]]] = ..., summary: _Optional[str] = ..., draining: _Optional[bool] = ...) -> None: ...

class CheckPolicyRequest(_message.Message):
    __slots__ = ("toml",)
    TOML_FIELD_NUMBER: _ClassVar[int]
    toml: str
    def __init__(self, toml: _Optional[str] = ...) -> None: ...

class PolicyError(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CheckPolicyResponse(_message.Message):
    __slots__ = ("ok", "errors")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    errors: _containers.RepeatedCompositeFieldContainer[PolicyError]
    def __init__(self, ok: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[PolicyError, _Mapping]]] = ...) -> None: ...
