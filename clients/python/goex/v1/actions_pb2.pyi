from goex.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitActionRequest(_message.Message):
    __slots__ = ("session_id", "spec", "inverse", "detach", "approval")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: _types_pb2.ActionSpec
    inverse: _types_pb2.ActionSpec
    detach: bool
    approval: str
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., inverse: _Optional[_Union[_types_pb2.ActionSpec, _Mapping]] = ..., detach: _Optional[bool] = ..., approval: _Optional[str] = ...) -> None: ...

class SubmitActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class GetActionRequest(_message.Message):
    __slots__ = ("action_id",)
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    def __init__(self, action_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("session_id", "action_id", "cascade")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    action_id: str
    cascade: bool
    def __init__(self, session_id: _Optional[str] = ..., action_id: _Optional[str] = ..., cascade: _Optional[bool] = ...) -> None: ...

class UndoActionResponse(_message.Message):
    __slots__ = ("undone",)
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    undone: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    def __init__(self, undone: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ...) -> None: ...

class UndoToRequest(_message.Message):
    __slots__ = ("action_id",)
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    def __init__(self, action_id: _Optional[str] = ...) -> None: ...

class UndoToResponse(_message.Message):
    __slots__ = ("undone",)
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    undone: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    def __init__(self, undone: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ...) -> None: ...

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
