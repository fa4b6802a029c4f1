"""The egress gate's second look (issue 15): a call from sandboxed code to an http resource is decided on the
class predicted from its rule, then, once its pre-image is in, on the class that answer leaves it. A real
`ResourceGate` over a real `HttpResource` against the Community Solid Server on loopback, whose container
lets everyone write but not read: the capture GET answers 401, the PUT would be accepted."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from goexd.domain.egress import EgressRecordData, GateRequest, GateResponse
from goexd.domain.models import Resource, ResourceKind, ReversibilityClass, UndoStrategy
from goexd.domain.secrets import Secret
from goexd.egress.addresses import AddressRule
from goexd.egress.substitute import Refused
from goexd.engine.http_gate import ResourceGate
from goexd.policy.check import SessionPolicy
from goexd.policy.defaults import daemon_layers
from goexd.policy.parse import build, build_session, parse
from goexd.resources.http.resource import HttpResource, validate_base_url
from goexd.resources.http.rules import load_rule_sets, select_rules
from goexd.resources.http.send import HttpSender
from tests.e2e.test_http_second_look import WRITE_ONLY_ACL
from tests.services.solid_server import SolidServer, solid_server  # noqa: F401 - the fixture

TEXT = (("content-type", "text/plain"),)


def _no_secret(name: str, scheme: str, host: str, port: int) -> Secret:
    raise AssertionError("the resource names no secret")


@pytest.fixture
def gate_for(solid_server: SolidServer) -> Iterator[Callable[[str], ResourceGate]]:  # noqa: F811
    made: list[HttpResource] = []

    def maker(approval: str) -> ResourceGate:
        url = validate_base_url(solid_server.base_url, "base_url")
        resource = Resource("api", ResourceKind.HTTP, url, UndoStrategy.INVERSE, "", "generic")
        sender = HttpSender(url, "", _no_secret, addresses=AddressRule.from_config(["127.0.0.1/32"]))
        manager = HttpResource(resource, sender, select_rules(load_rule_sets(), "generic", url), lambda b, t: b, str)
        made.append(manager)
        policy = SessionPolicy(build(daemon_layers(None, ())), build_session(parse("")), "")
        records: list[EgressRecordData] = []
        return ResourceGate(resource, manager, policy, approval, 10.0, records.append, str)

    yield maker
    for manager in made:
        manager.close()


def test_a_gated_write_whose_capture_answers_401_needs_the_actions_approval(
    solid_server: SolidServer,  # noqa: F811
    gate_for: Callable[[str], ResourceGate],
) -> None:
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.put("/gated/.acl", content=WRITE_ONLY_ACL, headers={"content-type": "text/turtle"}).status_code == 201
    put = GateRequest("PUT", "/gated/a.txt", (), TEXT, b"a")
    with pytest.raises(Refused) as refused:
        gate_for("").admit(put)
    why = str(refused.value)
    assert refused.value.status == 403, why
    for words in ("irreversible", "predicted best effort", "GET /gated/a.txt answered 401", "--approve"):
        assert words in why, (words, why)

    gate = gate_for("ann: code may drop files")
    ticket = gate.admit(put)  # the approval lets it through; the proxy would now send it
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        sent = c.put("/gated/a.txt", content=b"a", headers=dict(TEXT))
    assert sent.status_code == 201
    settled = gate.settle(
        ticket, GateResponse(sent.status_code, {k.lower(): v for k, v in sent.headers.items()}, sent.content, False)
    )
    assert settled.reversibility == ReversibilityClass.IRREVERSIBLE.value, settled
    assert settled.inverse is None

    # A call the capture leaves as predicted is not asked about again: a readable container's PUT runs as before.
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.put("/open/b.txt", content=b"b", headers=dict(TEXT)).status_code == 201
    assert gate_for("").admit(GateRequest("PUT", "/open/b.txt", (), TEXT, b"b2")) is not None
