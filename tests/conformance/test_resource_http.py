"""The http resource (inverse strategy, `rest` rule sets) plugged into the ResourceManager suite, against a
real json-server on loopback, authenticating with a bearer token from a real vault."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goexd import config
from goexd.domain.models import ActionKind, ActionSpec, HttpRequest, Resource, ResourceKind, UndoStrategy
from goexd.domain.resource import Journaling, ResourceManager
from goexd.domain.secrets import SecretKind, SecretRequest
from goexd.egress.addresses import AddressRule
from goexd.resources.http.resource import HttpResource, validate_base_url
from goexd.resources.http.rules import load_rule_sets, select_rules
from goexd.resources.http.send import HttpSender
from goexd.vault.vault import Vault
from tests.conformance.resource_suite import (
    Capabilities,
    InverseUse,
    ResourceBackend,
    ResourceManagerContract,
)
from tests.services.json_server import JsonServer, run_json_server

SEED: dict[str, Any] = {"items": [{"id": 1, "name": "one"}], "users": []}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonServer]:
    """One json-server for the module (each start costs ~1 s under load), put back to SEED before each test."""
    with run_json_server(tmp_path_factory.mktemp("json-server"), SEED) as server:
        yield server


@pytest.fixture
def api(service: JsonServer) -> JsonServer:
    with service.client() as c:
        for item in c.get("/items").json():
            assert c.delete(f"/items/{item['id']}").status_code == 200
        for item in SEED["items"]:
            assert c.post("/items", json=item).status_code == 201
    assert service.db() == SEED
    return service


def call(method: str, path: str, body: object | None = None) -> ActionSpec:
    payload = b"" if body is None else json.dumps(body).encode()
    return ActionSpec(
        ActionKind.HTTP, http=HttpRequest(method, path, body=payload, json=body is not None), resource="api"
    )


def change(n: int) -> tuple[ActionSpec, None]:
    """A create; its inverse (a DELETE of what was created) is derived from the response."""
    return call("POST", "/items", {"id": 100 + n, "name": f"new {n}"}), None


class TestHttpRest(ResourceManagerContract):
    caps = Capabilities(
        strategy_words="undo: inverses derived by the rule sets",
        has_fingerprint=False,
        taken_back_after_a_crash=False,
        inverse=InverseUse.OPTIONAL,
        write_journaling=Journaling.BEFORE_RUN,
    )

    @pytest.fixture
    def backend(self, tmp_path: Path, api: JsonServer) -> ResourceBackend:
        token = f"tok_{secrets.token_hex(16)}"
        vault = Vault.open(config.load(None, {"state_dir": str(tmp_path / "state")}, {}))
        vault.put(
            SecretRequest("api-token", SecretKind.BEARER, {"value": token.encode()}, allowed_hosts=(api.base_url,))
        )
        url = validate_base_url(api.base_url + "/", "base_url")
        resource = Resource("api", ResourceKind.HTTP, url, UndoStrategy.INVERSE, secret="api-token", rules="rest")

        def open_manager() -> ResourceManager:
            sender = HttpSender(url, "api-token", vault.resolve, addresses=AddressRule.from_config(["127.0.0.1/32"]))
            rules = select_rules(load_rule_sets(), "rest", url)
            return HttpResource(resource, sender, rules, vault.redactor, vault.redactor.text)

        return ResourceBackend(
            open=open_manager,
            change=change,
            failing=(call("POST", "/items", {"id": 1, "name": "a duplicate id"}), None),  # json-server answers 500
            read_action=call("GET", "/items"),
            bad=call("GET", "/items/../../db"),
            bad_field="spec.http.path",
            state=api.db,
            credential=token,
        )
