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

class SecretKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECRET_KIND_UNSPECIFIED: _ClassVar[SecretKind]
    SECRET_KIND_API_KEY: _ClassVar[SecretKind]
    SECRET_KIND_BEARER: _ClassVar[SecretKind]
    SECRET_KIND_BASIC: _ClassVar[SecretKind]
    SECRET_KIND_OAUTH2: _ClassVar[SecretKind]
    SECRET_KIND_DSN: _ClassVar[SecretKind]
    SECRET_KIND_GENERIC: _ClassVar[SecretKind]
SECRET_KIND_UNSPECIFIED: SecretKind
SECRET_KIND_API_KEY: SecretKind
SECRET_KIND_BEARER: SecretKind
SECRET_KIND_BASIC: SecretKind
SECRET_KIND_OAUTH2: SecretKind
SECRET_KIND_DSN: SecretKind
SECRET_KIND_GENERIC: SecretKind

class HeaderInjection(_message.Message):
    __slots__ = ("name", "template")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    template: str
    def __init__(self, name: _Optional[str] = ..., template: _Optional[str] = ...) -> None: ...

class QueryInjection(_message.Message):
    __slots__ = ("param", "template")
    PARAM_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    param: str
    template: str
    def __init__(self, param: _Optional[str] = ..., template: _Optional[str] = ...) -> None: ...

class EnvInjection(_message.Message):
    __slots__ = ("variable",)
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    variable: str
    def __init__(self, variable: _Optional[str] = ...) -> None: ...

class DsnPasswordInjection(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Injection(_message.Message):
    __slots__ = ("header", "query", "env", "dsn_password")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    DSN_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    header: HeaderInjection
    query: QueryInjection
    env: EnvInjection
    dsn_password: DsnPasswordInjection
    def __init__(self, header: _Optional[_Union[HeaderInjection, _Mapping]] = ..., query: _Optional[_Union[QueryInjection, _Mapping]] = ..., env: _Optional[_Union[EnvInjection, _Mapping]] = ..., dsn_password: _Optional[_Union[DsnPasswordInjection, _Mapping]] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("name", "kind", "injection", "allowed_hosts", "created_at", "updated_at", "expires_at", "refreshable", "problem", "parts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INJECTION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOSTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESHABLE_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: SecretKind
    injection: Injection
    allowed_hosts: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    refreshable: bool
    problem: str
    parts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[SecretKind, str]] = ..., injection: _Optional[_Union[Injection, _Mapping]] = ..., allowed_hosts: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refreshable: _Optional[bool] = ..., problem: _Optional[str] = ..., parts: _Optional[_Iterable[str]] = ...) -> None: ...

class PutSecretRequest(_message.Message):
    __slots__ = ("info", "value", "values", "overwrite")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    INFO_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    info: SecretInfo
    value: bytes
    values: _containers.ScalarMap[str, bytes]
    overwrite: bool
    def __init__(self, info: _Optional[_Union[SecretInfo, _Mapping]] = ..., value: _Optional[bytes] = ..., values: _Optional[_Mapping[str, bytes]] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class PutSecretResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: SecretInfo
    def __init__(self, info: _Optional[_Union[SecretInfo, _Mapping]] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    def __init__(self, secrets: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ...) -> None: ...

class DeleteSecretRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSecretResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateVaultKeyRequest(_message.Message):
    __slots__ = ("new_passphrase",)
    NEW_PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    new_passphrase: bytes
    def __init__(self, new_passphrase: _Optional[bytes] = ...) -> None: ...

class RotateVaultKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartOAuthRequest(_message.Message):
    __slots__ = ("name", "authorization_url", "token_url", "client_id", "scopes", "allowed_hosts", "client_secret", "overwrite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_URL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOSTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    authorization_url: str
    token_url: str
    client_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    allowed_hosts: _containers.RepeatedScalarFieldContainer[str]
    client_secret: bytes
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., authorization_url: _Optional[str] = ..., token_url: _Optional[str] = ..., client_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., allowed_hosts: _Optional[_Iterable[str]] = ..., client_secret: _Optional[bytes] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class StartOAuthResponse(_message.Message):
    __slots__ = ("browser_url", "redirect_uri", "expires_at")
    BROWSER_URL_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    browser_url: str
    redirect_uri: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, browser_url: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AwaitOAuthRequest(_message.Message):
    __slots__ = ("name", "timeout")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    timeout: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AwaitOAuthResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: SecretInfo
    def __init__(self, info: _Optional[_Union[SecretInfo, _Mapping]] = ...) -> None: ...
