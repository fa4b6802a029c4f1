from goex.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CloseMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLOSE_MODE_UNSPECIFIED: _ClassVar[CloseMode]
    CLOSE_MODE_COMMIT_ALL: _ClassVar[CloseMode]
    CLOSE_MODE_UNDO_ALL: _ClassVar[CloseMode]
CLOSE_MODE_UNSPECIFIED: CloseMode
CLOSE_MODE_COMMIT_ALL: CloseMode
CLOSE_MODE_UNDO_ALL: CloseMode

class CreateSessionRequest(_message.Message):
    __slots__ = ("resources", "label", "limits", "policy_toml", "reuse")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    REUSE_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[_types_pb2.ResourceSpec]
    label: str
    limits: _types_pb2.SandboxLimits
    policy_toml: str
    reuse: bool
    def __init__(self, resources: _Optional[_Iterable[_Union[_types_pb2.ResourceSpec, _Mapping]]] = ..., label: _Optional[str] = ..., limits: _Optional[_Union[_types_pb2.SandboxLimits, _Mapping]] = ..., policy_toml: _Optional[str] = ..., reuse: _Optional[bool] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session", "warnings", "reused")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    session: _types_pb2.Session
    warnings: _containers.RepeatedScalarFieldContainer[str]
    reused: bool
    def __init__(self, session: _Optional[_Union[_types_pb2.Session, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., reused: _Optional[bool] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _types_pb2.Session
    def __init__(self, session: _Optional[_Union[_types_pb2.Session, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("include_closed", "page_size", "page_token")
    INCLUDE_CLOSED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    include_closed: bool
    page_size: int
    page_token: str
    def __init__(self, include_closed: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_types_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id", "mode")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    mode: CloseMode
    def __init__(self, session_id: _Optional[str] = ..., mode: _Optional[_Union[CloseMode, str]] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("session", "resolved")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    session: _types_pb2.Session
    resolved: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    def __init__(self, session: _Optional[_Union[_types_pb2.Session, _Mapping]] = ..., resolved: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ...) -> None: ...

class DescribeSessionRequest(_message.Message):
    __slots__ = ("session_id", "include_samples")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    include_samples: bool
    def __init__(self, session_id: _Optional[str] = ..., include_samples: _Optional[bool] = ...) -> None: ...

class ResourceDescription(_message.Message):
    __slots__ = ("resource", "text")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    resource: str
    text: str
    def __init__(self, resource: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class DescribeSessionResponse(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceDescription]
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceDescription, _Mapping]]] = ...) -> None: ...
