"""What a client asks for: limits, resources, action bodies, egress and secret injections.

These frozen dataclasses go both ways: the client turns them into request messages,
and an `Action`'s spec (and inverse) comes back as the same types.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlencode

from goex._enums import ActionKind, UndoStrategy
from goex._protoutil import duration, seconds
from goex.v1 import secrets_pb2, types_pb2

__all__ = [
    "ActionBody",
    "ActionSpec",
    "Egress",
    "Http",
    "Injection",
    "Limits",
    "Prompt",
    "Python",
    "ResourceSpec",
    "Shell",
    "Sql",
]


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """Sandbox limits; None leaves a field to the session's, then the daemon's, default."""

    timeout: float | None = None  # seconds of wall-clock time
    memory_bytes: int | None = None
    max_processes: int | None = None
    output_bytes: int | None = None  # per stream

    def to_proto(self) -> types_pb2.SandboxLimits:
        msg = types_pb2.SandboxLimits(
            memory_bytes=self.memory_bytes or 0,
            max_processes=self.max_processes or 0,
            output_bytes=self.output_bytes or 0,
        )
        if self.timeout is not None:
            msg.timeout.CopyFrom(duration(self.timeout))
        return msg

    @classmethod
    def from_proto(cls, msg: types_pb2.SandboxLimits) -> Limits:
        # Zero means "not set" in the contract.
        return cls(
            timeout=seconds(msg, "timeout") or None,
            memory_bytes=msg.memory_bytes or None,
            max_processes=msg.max_processes or None,
            output_bytes=msg.output_bytes or None,
        )

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.timeout, self.memory_bytes, self.max_processes, self.output_bytes))


# ---------------------------------------------------------------- resources

ResourceType = Literal["fs", "db", "http"]


@dataclass(frozen=True)
class ResourceSpec:
    """A resource to bind to a new session; build with `fs()`, `db()` or `http()`."""

    type: ResourceType
    location: str  # fs: absolute path; db: URL; http: base URL
    name: str = ""  # default: the kind ("fs", "db") or the http alias
    secret: str = ""  # db / http: vault secret to authenticate with
    strategy: UndoStrategy = UndoStrategy.UNSPECIFIED
    rules: str = ""  # http: the rule set deriving inverses ("rest", "s3", ...); empty: goexd's default
    staging: str = ""  # http: base URL of a staging copy, where reversibility tests try calls for real
    sandbox: str = ""  # fs: the sandbox backend its actions run in ("bwrap", "container"); empty: the daemon's
    image: str = ""  # fs: the container image its actions run in; empty: the daemon's default

    @classmethod
    def fs(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str = "",
        strategy: UndoStrategy | str = "",
        sandbox: str = "",
        image: str = "",
    ) -> ResourceSpec:
        """A workspace directory. `sandbox` names the backend its actions run in ("bwrap", "container"; empty: the
        daemon's), `image` the container image (the container backend's; empty: the daemon's default): goexd
        refuses at session open a backend it does not have and an image its engine does not have."""
        # The daemon runs on this host (Unix socket) and wants an absolute path.
        return cls(
            "fs",
            os.path.abspath(os.fspath(path)),
            name=name,
            strategy=_strategy(strategy),
            sandbox=sandbox,
            image=image,
        )

    @classmethod
    def db(cls, url: str, *, secret: str = "", name: str = "", strategy: UndoStrategy | str = "") -> ResourceSpec:
        return cls("db", url, name=name, secret=secret, strategy=_strategy(strategy))

    @classmethod
    def http(
        cls,
        base_url: str,
        *,
        secret: str = "",
        name: str = "",
        strategy: UndoStrategy | str = "",
        rules: str = "",
        staging: str = "",
    ) -> ResourceSpec:
        """A REST service: actions' paths are relative to `base_url` and may not leave it.

        `secret` names the vault secret goexd authenticates with (injected by goexd, never
        seen by the caller); `strategy` is "inverse" (the default) or "confine"; `rules`
        names the rule sets that derive inverses from the recorded responses ("rest", the
        default, "s3", "generic", a user's; several joined by "+", tried in order, generic
        semantics last unless the value starts with "only:"); `staging` is the base URL of a
        staging copy of the service, where `test_reversibility` tries a call and its inverse
        for real (never on `base_url`), as goexd does before every write it is sent.
        """
        return cls(
            "http", base_url, name=name, secret=secret, strategy=_strategy(strategy), rules=rules, staging=staging
        )

    def to_proto(self) -> types_pb2.ResourceSpec:
        msg = types_pb2.ResourceSpec(name=self.name, strategy=self.strategy.proto_name)
        if self.type == "fs":
            msg.fs.path = self.location
            msg.fs.sandbox = self.sandbox
            msg.fs.image = self.image
        elif self.type == "db":
            msg.db.url = self.location
            msg.db.secret = self.secret
        else:
            msg.http.base_url = self.location
            msg.http.secret = self.secret
            msg.http.rules = self.rules
            msg.http.staging_base_url = self.staging
        return msg


def _strategy(value: UndoStrategy | str) -> UndoStrategy:
    return UndoStrategy(value) if value else UndoStrategy.UNSPECIFIED


# ---------------------------------------------------------------- action bodies


@dataclass(frozen=True)
class Shell:
    """Run `argv` as-is inside the sandbox (no shell unless you ask for one), in `cwd`: a directory of the
    workspace, relative to its root ("" = the root)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, hash=False)  # mappings are unhashable
    stdin: bytes = b""
    cwd: str = ""

    def __init__(
        self,
        argv: Iterable[str],
        env: Mapping[str, str] | None = None,
        stdin: bytes = b"",
        cwd: str | os.PathLike[str] = "",
    ) -> None:
        if isinstance(argv, str | bytes):
            # A bare string would silently become one argv entry per character.
            raise TypeError("argv must be a sequence of strings, not a string; use shlex.split()")
        object.__setattr__(self, "argv", tuple(argv))
        object.__setattr__(self, "env", _frozen_map(env))
        object.__setattr__(self, "stdin", stdin)
        object.__setattr__(self, "cwd", os.fspath(cwd))

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Python:
    """Run `code` with the sandbox's python3, in `cwd` (as `Shell.cwd`)."""

    code: str
    env: Mapping[str, str] = field(default_factory=dict, hash=False)  # mappings are unhashable
    stdin: bytes = b""
    cwd: str = ""

    def __init__(
        self,
        code: str,
        env: Mapping[str, str] | None = None,
        stdin: bytes = b"",
        cwd: str | os.PathLike[str] = "",
    ) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "env", _frozen_map(env))
        object.__setattr__(self, "stdin", stdin)
        object.__setattr__(self, "cwd", os.fspath(cwd))

    @property
    def text(self) -> str:
        return "python: " + _first_line(self.code)


@dataclass(frozen=True)
class Sql:
    """Run `sql` (one statement or a script) in goexd on a database; `params` bind a single statement's placeholders."""

    sql: str
    params: tuple[str, ...] = ()

    def __init__(self, sql: str, params: Iterable[str] = ()) -> None:
        if isinstance(params, str | bytes):
            # A bare string would silently become one parameter per character.
            raise TypeError("params must be a sequence of strings, not a string")
        object.__setattr__(self, "sql", sql)
        object.__setattr__(self, "params", tuple(params))

    @property
    def text(self) -> str:
        return _first_line(self.sql)


@dataclass(frozen=True)
class Http:
    """A request relative to the resource's base URL; `json` is JSON text, `body` raw bytes.

    `path` is percent-encoded and carries no query: the parameters go in `query`. No
    credentials in `headers`: goexd injects the resource's secret.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict, hash=False)  # mappings are unhashable
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)  # mappings are unhashable
    body: bytes | None = None
    json: str | None = None

    def __init__(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json: str | None = None,
    ) -> None:
        if body is not None and json is not None:
            raise ValueError("give body or json, not both")
        object.__setattr__(self, "method", method.upper())
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query", _frozen_map(query))
        object.__setattr__(self, "headers", _frozen_map(headers))
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "json", json)

    @property
    def text(self) -> str:
        """ "POST /items", or with the query: "GET /items?limit=10&q=x" (parameters sorted)."""
        line = f"{self.method} {self.path}"
        if self.query:
            line += "?" + urlencode(sorted(self.query.items()))
        return line


@dataclass(frozen=True)
class Prompt:
    """Natural language; the daemon's planner turns it into an action and its inverse. `functions`: the name of
    a function set, for the functions mode (the model picks one of its functions and fills its arguments)."""

    prompt: str
    functions: str = ""

    @property
    def text(self) -> str:
        return "prompt: " + _first_line(self.prompt)


ActionBody = Shell | Python | Sql | Http | Prompt


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    if not lines:
        return ""
    return lines[0] + (" …" if len(lines) > 1 else "")


# ---------------------------------------------------------------- egress


@dataclass(frozen=True)
class Egress:
    """Network for a shell or python action, only through goexd's egress proxy.

    Without egress an action has no network at all. With it, HTTP_PROXY/HTTPS_PROXY
    lead to the daemon's proxy, which lets requests through to each listed secret's
    allowed hosts and to `hosts` (each must be allowed by the daemon's
    egress.allowed_hosts setting). The sandbox sees a secret only as the placeholder
    "goex-secret:NAME"; the proxy puts the value in where the secret's injection says.
    """

    secrets: tuple[str, ...] = ()  # vault secret names
    hosts: tuple[str, ...] = ()  # further hosts to reach without credentials
    # The session's http resources it may call: their policy applies to each request, their secret
    # is added, and each call is recorded with its inverse and undone with the action.
    resources: tuple[str, ...] = ()

    def __init__(self, secrets: Iterable[str] = (), hosts: Iterable[str] = (), resources: Iterable[str] = ()) -> None:
        for what, value in (("secrets", secrets), ("hosts", hosts), ("resources", resources)):
            if isinstance(value, str | bytes):
                # A bare string would silently become one entry per character.
                raise TypeError(f"{what} must be a sequence of strings, not a string")
        object.__setattr__(self, "secrets", tuple(secrets))
        object.__setattr__(self, "hosts", tuple(hosts))
        object.__setattr__(self, "resources", tuple(resources))

    @property
    def is_empty(self) -> bool:
        return not self.secrets and not self.hosts and not self.resources

    @property
    def text(self) -> str:
        """ "secrets gh, npm; hosts pypi.org" """
        parts = []
        if self.secrets:
            parts.append("secrets " + ", ".join(self.secrets))
        if self.hosts:
            parts.append("hosts " + ", ".join(self.hosts))
        if self.resources:
            parts.append("http resources " + ", ".join(self.resources))
        return "; ".join(parts) or "no secrets or hosts"

    def to_proto(self) -> types_pb2.Egress:
        return types_pb2.Egress(secrets=list(self.secrets), hosts=list(self.hosts), resources=list(self.resources))

    @classmethod
    def from_proto(cls, msg: types_pb2.Egress) -> Egress:
        return cls(secrets=msg.secrets, hosts=msg.hosts, resources=msg.resources)


# ---------------------------------------------------------------- action specs


@dataclass(frozen=True)
class ActionSpec:
    """One action: its body plus where it runs, within which limits and with which network."""

    body: ActionBody | None
    resource: str = ""  # empty: the session's only resource of the needed kind
    limits: Limits | None = None
    description: str = ""
    egress: Egress | None = None  # shell/python only; None: no network

    @property
    def kind(self) -> ActionKind:
        return _KINDS.get(type(self.body), ActionKind.UNSPECIFIED)

    @property
    def text(self) -> str:
        """A one-line human summary (argv, first line of code, "GET /path", ...)."""
        return self.body.text if self.body is not None else ""

    def to_proto(self) -> types_pb2.ActionSpec:
        msg = types_pb2.ActionSpec(resource=self.resource, description=self.description)
        if self.limits is not None and not self.limits.is_empty:
            msg.limits.CopyFrom(self.limits.to_proto())
        if self.egress is not None:
            # Sent as given, even empty: goexd says why it refuses that.
            msg.egress.CopyFrom(self.egress.to_proto())
        body = self.body
        if isinstance(body, Shell):
            msg.shell.argv.extend(body.argv)
            msg.shell.env.update(body.env)
            msg.shell.stdin = body.stdin
            msg.shell.cwd = os.fsencode(body.cwd)
        elif isinstance(body, Python):
            msg.python.code = body.code
            msg.python.env.update(body.env)
            msg.python.stdin = body.stdin
            msg.python.cwd = os.fsencode(body.cwd)
        elif isinstance(body, Sql):
            msg.sql.sql = body.sql
            msg.sql.params.extend(body.params)
        elif isinstance(body, Http):
            msg.http.method = body.method
            msg.http.path = body.path
            msg.http.query.update(body.query)
            msg.http.headers.update(body.headers)
            if body.body is not None:
                msg.http.body = body.body
            elif body.json is not None:
                msg.http.json = body.json
        elif isinstance(body, Prompt):
            msg.prompt.prompt = body.prompt
            msg.prompt.functions = body.functions
        return msg

    @classmethod
    def from_proto(cls, msg: types_pb2.ActionSpec) -> ActionSpec:
        return cls(
            body=_body_from_proto(msg),
            resource=msg.resource,
            limits=Limits.from_proto(msg.limits) if msg.HasField("limits") else None,
            description=msg.description,
            egress=Egress.from_proto(msg.egress) if msg.HasField("egress") else None,
        )


_KINDS: dict[type, ActionKind] = {
    Shell: ActionKind.SHELL,
    Python: ActionKind.PYTHON,
    Sql: ActionKind.SQL,
    Http: ActionKind.HTTP,
    Prompt: ActionKind.PROMPT,
}


def _body_from_proto(msg: types_pb2.ActionSpec) -> ActionBody | None:
    which = msg.WhichOneof("body")
    if which == "shell":
        return Shell(msg.shell.argv, env=msg.shell.env, stdin=msg.shell.stdin, cwd=os.fsdecode(msg.shell.cwd))
    if which == "python":
        return Python(msg.python.code, env=msg.python.env, stdin=msg.python.stdin, cwd=os.fsdecode(msg.python.cwd))
    if which == "sql":
        return Sql(msg.sql.sql, params=msg.sql.params)
    if which == "http":
        return http_from_proto(msg.http)
    if which == "prompt":
        return Prompt(msg.prompt.prompt, msg.prompt.functions)
    return None


def http_from_proto(h: types_pb2.HttpAction) -> Http:
    payload = h.WhichOneof("payload")
    return Http(
        h.method,
        h.path,
        query=h.query,
        headers=h.headers,
        body=h.body if payload == "body" else None,
        json=h.json if payload == "json" else None,
    )


# ---------------------------------------------------------------- secrets

InjectionTarget = Literal["header", "query", "env", "dsn_password"]


@dataclass(frozen=True)
class Injection:
    """Where the daemon puts a secret's value; build with header(), query(), env(), dsn_password()."""

    target: InjectionTarget
    name: str = ""  # header name, query parameter or environment variable
    template: str = ""  # e.g. "Bearer {value}"; header and query only

    @classmethod
    def header(cls, name: str, template: str = "{value}") -> Injection:
        return cls("header", name, template)

    @classmethod
    def query(cls, param: str, template: str = "{value}") -> Injection:
        return cls("query", param, template)

    @classmethod
    def env(cls, variable: str) -> Injection:
        return cls("env", variable)

    @classmethod
    def dsn_password(cls) -> Injection:
        return cls("dsn_password")

    @property
    def text(self) -> str:
        if self.target == "header":
            return f"header {self.name}: {self.template}"
        if self.target == "query":
            return f"query {self.name}={self.template}"
        if self.target == "env":
            return f"env {self.name}"
        return "dsn password"

    def to_proto(self) -> secrets_pb2.Injection:
        msg = secrets_pb2.Injection()
        if self.target == "header":
            msg.header.name = self.name
            msg.header.template = self.template
        elif self.target == "query":
            msg.query.param = self.name
            msg.query.template = self.template
        elif self.target == "env":
            msg.env.variable = self.name
        else:
            msg.dsn_password.SetInParent()
        return msg

    @classmethod
    def from_proto(cls, msg: secrets_pb2.Injection) -> Injection | None:
        which = msg.WhichOneof("target")
        if which == "header":
            return cls.header(msg.header.name, msg.header.template)
        if which == "query":
            return cls.query(msg.query.param, msg.query.template)
        if which == "env":
            return cls.env(msg.env.variable)
        if which == "dsn_password":
            return cls.dsn_password()
        return None
