"""The http kind: a REST service at a base URL, undone by inverse calls (rule sets) or confined."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from goexd.domain.errors import InvalidArgument, SetupError
from goexd.domain.models import Resource, ResourceKind, ResourceRequest, UndoStrategy
from goexd.egress.upstream import tls_context as upstream_tls_context
from goexd.resources.http.resource import HttpResource, check_address, validate_base_url
from goexd.resources.http.rules import RuleError, load_rule_sets, select_rules
from goexd.resources.http.send import HttpSender, check_secret_injection
from goexd.resources.registry import Host, Registry
from goexd.vault.destinations import DEFAULT_PORTS


def register(registry: Registry, host: Host) -> None:
    try:  # a broken rule file stops the start, like a broken policy file: undo rules must be what they say
        rule_sets = load_rule_sets([Path(d).expanduser() for d in host.cfg.http.rules_dirs])
    except RuleError as exc:
        raise SetupError(f"http rule sets: {exc}") from None

    def check(req: ResourceRequest, fld: str, strategy: UndoStrategy) -> Resource:
        url = validate_base_url(req.location, f"{fld}.http.base_url")
        check_address(url, host.addresses, f"{fld}.http.base_url")
        rules = req.rules or "rest"
        try:
            select_rules(rule_sets, rules)
        except ValueError as exc:
            raise InvalidArgument(f"{fld}.http.rules", str(exc)) from None
        staging = ""
        if req.staging:
            staging = validate_base_url(req.staging, f"{fld}.http.staging_base_url")
            check_address(staging, host.addresses, f"{fld}.http.staging_base_url")
            if staging == url:
                raise InvalidArgument(
                    f"{fld}.http.staging_base_url", "is the resource's own base URL: tests would change the service"
                )
        if req.secret:
            check_secret_injection(host.vault.get(req.secret), f"{fld}.http.secret")
            for where in (url, staging) if staging else (url,):  # the staging copy gets the same credential
                parts = urlsplit(where)
                port = parts.port or DEFAULT_PORTS[parts.scheme]
                host.vault.resolve(req.secret, parts.scheme, parts.hostname or "", port)  # PERMISSION_DENIED now
        return Resource(req.name or "http", ResourceKind.HTTP, url, strategy, req.secret, rules, staging)

    def sender(base_url: str, resource: Resource) -> HttpSender:
        return HttpSender(
            base_url,
            resource.secret,
            host.vault.resolve,
            host.cfg.http.connect_timeout_s,
            verify=upstream_tls_context(host.cfg.egress),  # what the egress proxy trusts, for the same services
            addresses=host.addresses,
        )

    def factory(resource: Resource) -> HttpResource:
        main = sender(resource.uri, resource)
        main.reachable()
        # The staging copy is not required to be up: a test that cannot reach it says so.
        staging = sender(resource.staging, resource) if resource.staging else None
        return HttpResource(
            resource,
            main,
            select_rules(rule_sets, resource.rules, resource.uri),
            host.vault.redactor,
            host.vault.redactor.text,
            staging=staging,
        )

    registry.add_kind(ResourceKind.HTTP, "an http resource", UndoStrategy.INVERSE, check)
    registry.add_strategy(ResourceKind.HTTP, UndoStrategy.INVERSE, factory)
    registry.add_strategy(ResourceKind.HTTP, UndoStrategy.CONFINE, factory)
