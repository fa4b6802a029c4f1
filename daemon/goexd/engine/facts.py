"""What an action is checked against before it runs: the resource it is for, its limits, and the facts the
policy decides on."""

from __future__ import annotations

from goexd.config import SandboxConfig
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, LimitsRequest, Resource, ResourceKind, Session
from goexd.domain.resource import ResourceManager
from goexd.engine import sql_policy
from goexd.policy.model import ActionFacts, HttpRequestFacts, LimitsFacts
from goexd.resources.http.resource import HttpResource

DB_KINDS = frozenset({ResourceKind.SQLITE, ResourceKind.POSTGRES})


def check_limits(s: SandboxConfig, fld: str, req: LimitsRequest) -> LimitsRequest:
    """`req` within the daemon's ceilings ([sandbox] max_*): INVALID_ARGUMENT naming the field otherwise."""
    for name, value, ceiling in (
        ("timeout", req.timeout_s, s.max_timeout_s),
        ("memory_bytes", req.memory_bytes, s.max_memory_bytes),
        ("max_processes", req.max_processes, s.max_max_processes),
        ("output_bytes", req.output_bytes, s.max_output_bytes),
    ):
        if value is not None and value < 0:
            raise InvalidArgument(f"{fld}.{name}", "must not be negative")
        if value is not None and value > ceiling:
            raise InvalidArgument(f"{fld}.{name}", f"{value} is above the daemon's ceiling {ceiling}")
    return req


def pick_resource(session: Session, spec: ActionSpec) -> Resource:
    if spec.resource:
        for r in session.resources:
            if r.name == spec.resource:
                return r
        raise InvalidArgument("spec.resource", f"session has no resource named {spec.resource!r}")
    wanted = (
        DB_KINDS
        if spec.kind is ActionKind.SQL
        else frozenset({ResourceKind.HTTP})
        if spec.kind is ActionKind.HTTP
        else frozenset({ResourceKind.FS})
    )
    fitting = [r for r in session.resources if r.kind in wanted]
    if len(fitting) == 1:
        return fitting[0]
    if fitting:
        raise InvalidArgument("spec.resource", "the session has several resources of that kind; name one")
    raise InvalidArgument("spec.resource", f"no resource for {spec.kind.value} actions in this session")


def facts(
    resource: Resource,
    manager: ResourceManager,
    spec: ActionSpec,
    inverse: ActionSpec | None,
    trial: bool = False,
    in_connection: bool = False,
) -> ActionFacts:
    """What the policy is told about an action before it runs (`trial`: in a reversibility test only;
    `in_connection`: its strategy keeps pending work in goexd's connection, StrategyTraits)."""
    if spec.kind is ActionKind.HTTP and isinstance(manager, HttpResource) and spec.http is not None:
        req = spec.http  # checked by precheck() already: it stays within the base URL
        facts = HttpRequestFacts(
            method=req.method,
            url=manager.url(spec),
            path=req.path,
            headers=dict(req.headers),
            body=req.body,
            reversibility=manager.predicted_class(spec).value,
            client_inverse=inverse is not None,
        )
        return ActionFacts("http", resource.name, request=facts)
    if spec.kind is ActionKind.SQL and resource.kind in DB_KINDS:  # the inverse's statements too
        return sql_policy.sql_facts(resource, spec, inverse, trial, in_connection)
    asked = spec.limits
    return ActionFacts(
        spec.kind.value,
        resource.name,
        limits=LimitsFacts(asked.timeout_s, asked.memory_bytes, asked.max_processes),
        egress_hosts=spec.egress.hosts if spec.egress is not None else (),
        uses_egress=spec.egress is not None,
    )
