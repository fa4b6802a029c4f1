"""The proxy's side of gates (goexd.egress.policy): which gate a request belongs to (find_gate), what the
gate is handed (gate_request), and that a CONNECT may go to a gate's host:port (check_reachable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from goexd import config
from goexd.domain.egress import EgressGrant, EgressRecordData, GateRequest, GateResponse, ResourceCall
from goexd.egress.policy import BadRequest, Target, check_reachable, find_gate, gate_request, parse_authority, parse_url
from goexd.egress.substitute import Refused
from goexd.vault.vault import Vault


@dataclass
class BaseUrl:
    """A `Gate` as far as these pure functions look at one: its name and base URL (never admitted to)."""

    resource: str
    base_url: str
    secret: str = ""
    capture_bytes: int = 0

    def admit(self, request: GateRequest) -> object:
        raise AssertionError("find_gate and gate_request never call the gate")

    def settle(self, ticket: object, response: GateResponse) -> ResourceCall:
        raise AssertionError("find_gate and gate_request never call the gate")

    def unanswered(self, ticket: object, why: str, maybe_sent: bool) -> ResourceCall:
        raise AssertionError("find_gate and gate_request never call the gate")

    def persist(self, record: EgressRecordData) -> None:
        raise AssertionError("find_gate and gate_request never call the gate")


API = BaseUrl("api", "http://svc.test:8080/api")
ROOT = BaseUrl("root", "http://svc.test:9090")


def grant(*gates: BaseUrl, hosts: tuple[str, ...] = ()) -> EgressGrant:
    return EgressGrant("act-1", hosts=hosts, gates=gates)


def gate_for(url: str, *gates: BaseUrl) -> str | None:
    """The name of the gate `url` (absolute-form, as the proxy sees it) goes to, if any."""
    found = find_gate(grant(*gates), parse_url(url), url)
    return None if found is None else found.resource


def handed(gate: BaseUrl, url: str, method: str = "GET", headers: tuple[tuple[bytes, bytes], ...] = ()) -> GateRequest:
    return gate_request(gate, method, url, list(headers), b"")


# --- find_gate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://svc.test:8080/api", "api"),
        ("http://svc.test:8080/api/", "api"),
        ("http://svc.test:8080/api/items/1", "api"),
        ("http://svc.test:8080/api?x=1", "api"),
        ("http://svc.test:8080/apix", None),  # a prefix of the segment is not the base path
        ("http://svc.test:8080/apix/items", None),
        ("http://svc.test:8080/ap", None),
        ("http://svc.test:8080/", None),
        ("http://svc.test:8080", None),
        ("http://svc.test:8080/other/api", None),
        ("http://SVC.test:8080/api/items", "api"),  # host names compare case-insensitively
    ],
)
def test_a_base_path_holds_itself_and_what_is_below_it(url: str, expected: str | None) -> None:
    assert gate_for(url, API) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://svc.test:8080/api/items",  # another scheme
        "http://other.test:8080/api/items",  # another host
        "http://svc.test:8081/api/items",  # another port
        "http://svc.test/api/items",  # the default port is 80, not the base URL's
        "http://10.0.0.1:8080/api/items",
    ],
)
def test_scheme_host_and_port_must_all_be_the_base_urls(url: str) -> None:
    assert gate_for(url, API) is None


@pytest.mark.parametrize("url", ["http://svc.test:9090", "http://svc.test:9090/", "http://svc.test:9090/any/deep?q=1"])
def test_a_base_url_without_a_path_holds_everything_on_its_host_and_port(url: str) -> None:
    assert gate_for(url, ROOT) == "root"
    assert gate_for(url.replace(":9090", ":9091"), ROOT) is None


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://svc.test", "http://svc.test:80/x"),
        ("http://svc.test:80", "http://svc.test/x"),
        ("https://svc.test", "https://svc.test:443/x"),
        ("https://svc.test:443/v1", "https://svc.test/v1/x"),
    ],
)
def test_a_default_port_is_the_same_target_written_or_not(base: str, url: str) -> None:
    assert gate_for(url, BaseUrl("svc", base)) == "svc"


def test_a_connect_tunnel_names_the_same_target_as_the_base_url() -> None:
    """Inside a tunnel the proxy matches https://{CONNECT authority}{path}: port 443 written or not."""
    gates = grant(BaseUrl("svc", "https://svc.test/v1"))
    tunnel = parse_authority("svc.test:443")
    assert tunnel == Target("https", "svc.test", 443)
    assert find_gate(gates, tunnel, "https://svc.test:443/v1/items") is not None
    assert find_gate(gates, tunnel, "https://svc.test:443/v2/items") is None


def test_ipv6_base_urls_match_their_address_and_port() -> None:
    v6 = BaseUrl("v6", "http://[::1]:8080/api")
    assert gate_for("http://[::1]:8080/api/items", v6) == "v6"
    assert gate_for("http://[::1]:8081/api/items", v6) is None
    assert gate_for("http://127.0.0.1:8080/api/items", v6) is None


def test_several_gates_on_one_host_each_hold_their_own_path() -> None:
    a, b = BaseUrl("a", "http://svc.test:8080/a"), BaseUrl("b", "http://svc.test:8080/b")
    assert gate_for("http://svc.test:8080/a/x", a, b) == "a"
    assert gate_for("http://svc.test:8080/b/x", a, b) == "b"
    assert gate_for("http://svc.test:8080/c/x", a, b) is None
    assert gate_for("http://svc.test:8080/x", a, b, ROOT) is None  # ROOT is on another port
    assert find_gate(grant(), parse_url("http://svc.test:8080/a"), "http://svc.test:8080/a") is None


# --- gate_request: what the gate is handed --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://svc.test:8080/api", "/"),
        ("http://svc.test:8080/api/", "/"),
        ("http://svc.test:8080/api/items", "/items"),
        ("http://svc.test:8080/api/items/", "/items/"),  # a trailing slash is the service's business
        ("http://svc.test:8080/api/items/1?x=1", "/items/1"),
        ("http://svc.test:8080/api/items/a%20b%2Fc%3F", "/items/a%20b%2Fc%3F"),  # percent-encoding as sent
        ("http://svc.test:8080/api/.well-known/x", "/.well-known/x"),  # not dot segments
        ("http://svc.test:8080/api/a..b/...", "/a..b/..."),
    ],
)
def test_the_path_is_relative_to_the_base_path_as_sent(url: str, path: str) -> None:
    assert handed(API, url).path == path


@pytest.mark.parametrize(
    ("url", "path"),
    [("http://svc.test:9090", "/"), ("http://svc.test:9090/", "/"), ("http://svc.test:9090/api/items", "/api/items")],
)
def test_under_a_base_url_without_a_path_the_whole_path_is_handed_over(url: str, path: str) -> None:
    assert handed(ROOT, url).path == path


def test_query_pairs_come_decoded_in_order_with_blank_values_kept() -> None:
    got = handed(API, "http://svc.test:8080/api/items?a=1&b=&c&d=x%20y&e=p+q&a=2&f=%26%3D")
    assert got.query == (("a", "1"), ("b", ""), ("c", ""), ("d", "x y"), ("e", "p q"), ("a", "2"), ("f", "&="))
    assert handed(API, "http://svc.test:8080/api/items").query == ()


def test_method_body_and_headers_are_handed_over_with_header_names_lower_cased() -> None:
    headers = [(b"Content-Type", b"application/json"), (b"X-Trace-ID", b"Abc-1"), (b"X-Latin", b"caf\xe9")]
    got = gate_request(API, "PATCH", "http://svc.test:8080/api/items/1", headers, b'{"price": 45}')
    assert (got.method, got.path, got.body) == ("PATCH", "/items/1", b'{"price": 45}')
    assert got.headers == (("content-type", "application/json"), ("x-trace-id", "Abc-1"), ("x-latin", "café"))


@pytest.mark.parametrize(
    "path",
    [
        "/api/..",
        "/api/../db",
        "/api/items/../../db",
        "/api/./items",
        "/api/items/.",
        "/api/%2e%2e/db",
        "/api/%2E%2e/db",
        "/api/%2E%2E/db",
        "/api/.%2e/db",
        "/api/%2e./db",
        "/api/%2E/items",
        "/api/..;jsessionid=x/db",  # Tomcat and Spring read "..;x" as ".."
        "/api/%2e%2e%2fdb",  # an encoded slash: a server that decodes before splitting climbs
        "/api/items%2F..%2F..%2Fdb",
        "/api/..%5cdb",  # a backslash, a separator to some servers
        "/api//items",  # an empty inner segment: some services fold it, the policy's globs do not
        "/api/items//1",
        "/api/items//",
    ],
)
def test_dot_segments_and_empty_inner_segments_are_refused_naming_the_resource(path: str) -> None:
    url = f"http://svc.test:8080{path}"
    assert gate_for(url, API) == "api"  # the request does go to the gate, which refuses it
    with pytest.raises(BadRequest, match=r"dot segments and empty segments .* refused for resource 'api'"):
        handed(API, url)


@pytest.mark.parametrize("path", ["/..", "/./x", "/%2e%2e/etc", "//x", "/a//b"])
def test_a_base_url_without_a_path_refuses_them_too(path: str) -> None:
    with pytest.raises(BadRequest, match="resource 'root'"):
        handed(ROOT, f"http://svc.test:9090{path}")


def test_climbing_back_into_the_base_path_is_refused_as_well() -> None:
    url = "http://svc.test:8080/api/../api/items"  # lands under /api once resolved, but the policy saw ../
    assert gate_for(url, API) == "api"
    with pytest.raises(BadRequest, match="resource 'api'"):
        handed(API, url)


# --- check_reachable: CONNECT to a gate's host ------------------------------------------------------


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.open(config.load(None, {"state_dir": str(tmp_path)}, {}))


def test_a_tunnel_may_go_to_a_gates_host_and_port_only(vault: Vault) -> None:
    g = grant(BaseUrl("api", "https://svc.test:8443/api"), BaseUrl("std", "https://std.test"))
    check_reachable(vault, g, parse_authority("svc.test:8443"), tunnel=True)
    check_reachable(vault, g, parse_authority("std.test:443"), tunnel=True)
    for authority in ("svc.test:8444", "svc.test:443", "other.test:8443", "std.test:8443"):
        with pytest.raises(Refused, match="is not reachable"):
            check_reachable(vault, g, parse_authority(authority), tunnel=True)


def test_outside_a_tunnel_a_gates_host_is_reachable_only_through_the_gate(vault: Vault) -> None:
    """Plain http to the gate's host:port is not reachable as such: each request either falls under
    a gate (and find_gate hands it over) or is refused."""
    g = grant(API)
    with pytest.raises(Refused, match="is not reachable"):
        check_reachable(vault, g, parse_url("http://svc.test:8080/elsewhere"))
    # A gate on http does not open a CONNECT to the same host:port (that would be https).
    with pytest.raises(Refused, match="is not reachable"):
        check_reachable(vault, g, parse_authority("svc.test:8080"), tunnel=True)
    # Granted hosts stay reachable, with or without gates.
    check_reachable(vault, grant(API, hosts=("svc.test:8080",)), parse_url("http://svc.test:8080/elsewhere"))
