"""The policy engine: TOML validation with line numbers, layering, Policy.check decisions, and a session's
policy checked beside the daemon's (it can only narrow it, key by key)."""

from __future__ import annotations

import json

import pytest

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import LimitsRequest
from goexd.domain.sandbox import Limits
from goexd.policy.check import RateCounter, SessionPolicy, check, path_allowed
from goexd.policy.model import (
    ActionFacts,
    DecisionKind,
    HttpRequestFacts,
    LimitsFacts,
    SqlStatementFacts,
)
from goexd.policy.parse import MAX_POLICY_BYTES, PolicyError, build, build_session, check_size, load, parse


def _err(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse(text)
    return info.value


# ---------------------------------------------------------------- validation


def test_an_empty_policy_is_valid_and_takes_the_defaults() -> None:
    policy = load("")
    assert policy.sql["privileged"] == "deny"
    assert policy.sql["write"] == "allow"
    assert policy.http.classes["irreversible"] == "approval"
    assert policy.deny == ()


def test_a_syntax_error_names_its_line() -> None:
    e = _err('[sql]\nwrite = "allow"\nddl = allow\n')
    assert e.line == 3
    assert "invalid TOML" in e.message


def test_an_unknown_top_level_key_is_refused_with_its_line() -> None:
    e = _err('[sql]\nwrite = "allow"\n\n[sqll]\nddl = "deny"\n')
    assert e.line == 4
    assert "sqll" in e.message and "unknown key" in e.message


def test_an_unknown_key_in_a_nested_resource_table_names_the_key_and_line() -> None:
    text = '[http]\nmethods = ["GET"]\n\n[http.resources.s3]\npaths = ["/b/**"]\nmethod = ["PUT"]\n'
    e = _err(text)
    assert e.line == 6
    assert "http.resources.s3.method" in e.message
    assert "methods" in e.message  # lists what is known there


def test_an_error_in_the_third_deny_rule_points_at_that_rule() -> None:
    text = "\n".join(
        [
            "[[deny]]",
            'name = "a"',
            'contains = "x"',
            "[[deny]]",
            'name = "b"',
            'contains = "y"',
            "[[deny]]",
            'name = "c"',
            'regex = "(unclosed"',
        ]
    )
    e = _err(text)
    assert e.line == 9
    assert "deny[2].regex" in e.message and "regular expression" in e.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[sql]\nprivileged = "yes"\n', "allow"),
        ('[http]\nmethods = ["get"]\n', "capitals"),
        ('[http]\npaths = ["items/*"]\n', "start with '/'"),
        ('[http]\nrate_limit = "many"\n', "30/minute"),
        ('[http]\nrate_limit = "0/minute"\n', "positive"),
        ('[http]\nhosts = ["not a host"]\n', "not a host name"),
        ("[sandbox]\nmax_processes = -3\n", "positive integer"),
        ('[sandbox]\nmax_memory = "lots"\n', "size"),
        ('[egress]\nhosts = "api.example.com"\n', "list of strings"),
        ('[[deny]]\ncontains = "x"\n', "needs a name"),
        ('[[deny]]\nname = "a"\n', "exactly one of contains, regex or json"),
        ('[[deny]]\nname = "a"\njson = "amount"\n', "exactly one of above or not_matching"),
        ('[[deny]]\nname = "a"\ncontains = "x"\nabove = 3\n', "go with json"),
        ('[[deny]]\nname = "a"\ncontains = "x"\n[[deny]]\nname = "a"\ncontains = "y"\n', "defined twice"),
        ('[[deny]]\nname = "a"\ncontains = "x"\nin = "cookies"\n', "one of url, headers, body, any"),
        ("sql = 3\n", "must be a table"),
    ],
)
def test_bad_values_are_refused_with_a_reason(text: str, needle: str) -> None:
    e = _err(text)
    assert needle in e.message, e.message
    assert e.line >= 1


def test_a_full_policy_parses() -> None:
    text = """
[sql]
privileged = "allow"
ddl = "approval"

[http]
methods = ["GET", "POST", "DELETE"]
rate_limit = "30/minute"
irreversible = "deny"
hosts = ["127.0.0.1:5000", "*.example.com"]

[http.resources.s3]
paths = ["/bucket-*", "/bucket-*/**"]
rate_limit = "5/s"

[[deny]]
name = "big-payments"
json = "amount"
above = 1000
reason = "payments over 1000 need a person"

[sandbox]
max_timeout_s = 30
max_memory = "256MiB"
network = "approval"

[egress]
hosts = ["api.example.com"]
"""
    policy = load(text)
    assert policy.sql["privileged"] == "allow" and policy.sql["ddl"] == "approval"
    s3 = policy.rules_for("s3")
    assert s3.methods == frozenset({"GET", "POST", "DELETE"})  # inherited from [http]
    assert s3.paths == ("/bucket-*", "/bucket-*/**")
    assert s3.rate_limit is not None and s3.rate_limit.count == 5 and s3.rate_limit.per_s == 1
    assert s3.classes["irreversible"] == "deny"
    assert policy.sandbox.max_memory_bytes == 256 * 1024 * 1024
    assert policy.egress_hosts == ("api.example.com",)
    assert policy.http_hosts == ("127.0.0.1:5000", "*.example.com")


def test_the_daemons_own_layers_merge_key_by_key_and_deny_rules_accumulate() -> None:
    daemon = parse('[sql]\nddl = "deny"\nwrite = "approval"\n[[deny]]\nname = "d"\ncontains = "secret-word"\n')
    session = parse('[sql]\nwrite = "allow"\n[[deny]]\nname = "s"\ncontains = "other"\n')
    policy = build([daemon, session])
    assert policy.sql["ddl"] == "deny"  # kept from the daemon
    assert policy.sql["write"] == "allow"  # the session's
    assert [r.name for r in policy.deny] == ["d", "s"]


# ---------------------------------------------------------------- decisions


def _sql(*classes: str) -> ActionFacts:
    return ActionFacts("sql", "db", statements=tuple(SqlStatementFacts(c, f"a {c} statement") for c in classes))


def _http(method: str, path: str, body: object = b"", reversibility: str = "", resource: str = "api") -> ActionFacts:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = HttpRequestFacts(method, f"http://127.0.0.1:9/{path.lstrip('/')}", path, {"x-test": "1"}, raw, reversibility)
    return ActionFacts("http", resource, request=req)


def test_privileged_sql_is_denied_by_default_naming_the_rule_and_statement() -> None:
    d = check(load(""), _sql("read", "privileged"))
    assert d.kind is DecisionKind.DENY
    assert d.rule == "sql.privileged"
    assert "statement 2" in d.reason


def test_a_daemon_policy_can_allow_privileged_sql() -> None:
    assert check(load('[sql]\nprivileged = "allow"\n'), _sql("privileged")).allowed


def test_approval_turns_needs_approval_into_allow_but_never_overrides_a_deny() -> None:
    policy = load('[sql]\nddl = "approval"\n')
    needs = check(policy, _sql("ddl"))
    assert needs.kind is DecisionKind.NEEDS_APPROVAL and needs.rule == "sql.ddl"
    ok = check(policy, _sql("ddl"), approval="  ops: ticket 42 ")
    assert ok.allowed and ok.approval == "ops: ticket 42"
    assert check(policy, _sql("ddl"), approval="   ").kind is DecisionKind.NEEDS_APPROVAL
    denied = check(policy, _sql("ddl", "privileged"), approval="yes")
    assert denied.kind is DecisionKind.DENY and denied.rule == "sql.privileged"


def test_http_methods_and_paths_are_confined_per_resource() -> None:
    policy = load('[http]\nmethods = ["GET", "PUT"]\n[http.resources.s3]\npaths = ["/bucket-*", "/bucket-*/**"]\n')
    assert check(policy, _http("PUT", "/bucket-a/key/x.txt", resource="s3")).allowed
    d = check(policy, _http("DELETE", "/bucket-a", resource="s3"))
    assert d.kind is DecisionKind.DENY and d.rule == "http.resources.s3.methods"
    d = check(policy, _http("GET", "/other", resource="s3"))
    assert d.kind is DecisionKind.DENY and d.rule == "http.resources.s3.paths"
    assert check(policy, _http("GET", "/other", resource="api")).allowed  # only s3 has the path rule


def test_globs_keep_single_stars_within_a_segment() -> None:
    assert path_allowed(("/items/*",), "/items/7")
    assert not path_allowed(("/items/*",), "/items/7/tags")
    assert path_allowed(("/items/**",), "/items/7/tags")
    assert not path_allowed(("/items/?",), "/items/17")


def test_deny_patterns_match_url_headers_body_and_json_fields() -> None:
    policy = load(
        "\n".join(
            [
                "[[deny]]",
                'name = "no-admin"',
                'in = "url"',
                'regex = "/admin(/|$)"',
                "[[deny]]",
                'name = "outside-recipients"',
                'json = "to"',
                r'not_matching = "@example\\.com$"',
                'reason = "mail only to example.com"',
                "[[deny]]",
                'name = "big-amounts"',
                'json = "payment.amount"',
                "above = 1000",
                'methods = ["POST"]',
            ]
        )
    )
    d = check(policy, _http("GET", "/admin/users"))
    assert d.kind is DecisionKind.DENY and d.rule == "deny.no-admin"
    assert check(policy, _http("GET", "/administrators")).allowed
    d = check(policy, _http("POST", "/mail", {"to": ["a@example.com", "b@evil.test"]}))
    assert d.kind is DecisionKind.DENY and d.rule == "deny.outside-recipients"
    assert "b@evil.test" in d.reason and "mail only to example.com" in d.reason
    assert check(policy, _http("POST", "/mail", {"to": ["a@example.com"]})).allowed
    d = check(policy, _http("POST", "/pay", {"payment": {"amount": "1500.5"}}))
    assert d.kind is DecisionKind.DENY and d.rule == "deny.big-amounts"
    assert check(policy, _http("PUT", "/pay", {"payment": {"amount": 5000}})).allowed  # the rule names POST only
    assert check(policy, _http("POST", "/pay", b"amount=5000")).allowed  # not JSON: a json rule cannot look


def test_irreversible_calls_need_approval_by_default_and_a_policy_can_deny_or_allow_them() -> None:
    d = check(load(""), _http("POST", "/mail", {"to": "x"}, reversibility="irreversible"))
    assert d.kind is DecisionKind.NEEDS_APPROVAL and d.rule == "http.irreversible"
    assert check(load(""), _http("POST", "/mail", b"", "irreversible"), approval="sent by ops").allowed
    d = check(load('[http.resources.api]\nirreversible = "deny"\n'), _http("POST", "/m", b"", "irreversible"))
    assert d.kind is DecisionKind.DENY and d.rule == "http.resources.api.irreversible"
    assert check(load('[http]\nirreversible = "allow"\n'), _http("POST", "/m", b"", "irreversible")).allowed
    assert check(load(""), _http("GET", "/m", reversibility="read_only")).allowed


def test_sandbox_limits_and_network() -> None:
    policy = load('[sandbox]\nmax_timeout_s = 10\nnetwork = "deny"\n')
    facts = ActionFacts("python", "fs", limits=LimitsFacts(30, 1 << 20, 10))
    d = check(policy, facts)
    assert d.kind is DecisionKind.DENY and d.rule == "sandbox.max_timeout_s"
    d = check(policy, ActionFacts("shell", "fs", limits=LimitsFacts(5, 1 << 20, 10), uses_egress=True))
    assert d.kind is DecisionKind.DENY and d.rule == "sandbox.network"
    assert check(policy, ActionFacts("shell", "fs", limits=LimitsFacts(5, 1 << 20, 10))).allowed


def test_rate_limits_count_allowed_calls_in_a_sliding_window() -> None:
    now = [100.0]
    policy = SessionPolicy(load('[http]\nrate_limit = "2/minute"\n'), counter=RateCounter(clock=lambda: now[0]))
    assert policy.check(_http("GET", "/a")).allowed
    assert policy.check(_http("GET", "/a", resource="other")).allowed  # counted per resource
    now[0] = 130.0
    assert policy.check(_http("GET", "/b")).allowed
    third = policy.check(_http("GET", "/c"))
    assert third.kind is DecisionKind.DENY and third.rule == "http.rate_limit"
    assert third.retry_after_s == pytest.approx(30.0)
    now[0] = 160.5  # the first call left the window
    assert policy.check(_http("GET", "/d")).allowed
    # a refused call does not use up the window
    assert policy.check(_http("DELETE", "/x", b"", "irreversible")).kind is DecisionKind.NEEDS_APPROVAL


# ---------------------------------------------------------------- class 8: hostile policy text


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a=", "}")])
def test_a_policy_nested_thousands_deep_is_a_policy_error_not_a_crash(opener: str, closer: str) -> None:
    e = _err("x = " + opener * 5000 + "1" * (opener != "[") + closer * 5000)
    assert e.line == 1 and "nested too deeply" in e.message


def test_a_policy_larger_than_the_cap_is_refused_naming_the_field() -> None:
    check_size("#" * MAX_POLICY_BYTES, "policy_toml")  # at the cap: accepted
    with pytest.raises(InvalidArgument) as info:
        check_size("#" * (MAX_POLICY_BYTES + 1), "policy_toml")
    assert info.value.field == "policy_toml" and f"at most {MAX_POLICY_BYTES}" in info.value.problem


# ---------------------------------------------------------------- a session's policy only narrows the daemon's


def _narrowed(daemon: str, session: str) -> SessionPolicy:
    return SessionPolicy(load(daemon), build_session(parse(session)), session)


def _code(hosts: tuple[str, ...] = (), limits: LimitsFacts | None = None, egress: bool = True) -> ActionFacts:
    return ActionFacts("shell", "fs", limits=limits or LimitsFacts(), egress_hosts=hosts, uses_egress=egress)


def test_a_session_policy_alone_restricts_nothing_it_does_not_name() -> None:
    own = build_session(parse(""))
    assert own.sql == {} and own.http.classes == {} and own.egress_hosts is None and own.http_hosts is None
    empty = _narrowed("", "")
    for facts in (_sql("read", "write", "ddl"), _http("GET", "/a"), _code(egress=False)):
        assert empty.check(facts) == check(load(""), facts)


@pytest.mark.parametrize(
    "daemon,session,facts,rule",
    [
        # each key: the session asks for more than the daemon allows, and gets the daemon's answer
        ('[sql]\nwrite = "deny"\n', '[sql]\nwrite = "allow"\n', _sql("write"), "sql.write"),
        ("", '[sql]\nprivileged = "allow"\n', _sql("privileged"), "sql.privileged"),  # the built-in default
        ('[http]\nmethods = ["GET"]\n', '[http]\nmethods = ["GET", "DELETE"]\n', _http("DELETE", "/a"), "http.methods"),
        ('[http]\npaths = ["/a"]\n', '[http]\npaths = ["/**"]\n', _http("GET", "/b"), "http.paths"),
        (
            '[http.resources.api]\nmethods = ["GET"]\n',
            '[http.resources.api]\nmethods = ["POST"]\n',
            _http("POST", "/a"),
            "http.resources.api.methods",
        ),
        (
            '[http]\nbest_effort = "deny"\n',
            '[http]\nbest_effort = "allow"\n',
            _http("PUT", "/a", b"", "best_effort"),
            "http.best_effort",
        ),
        (
            '[[deny]]\nname = "d"\ncontains = "secret-word"\n',
            '[[deny]]\nname = "d"\ncontains = "harmless"\n',  # same name: it cannot replace the daemon's rule
            _http("POST", "/a", b"the secret-word"),
            "deny.d",
        ),
        (
            '[egress]\nhosts = ["api.example.com"]\n',
            '[egress]\nhosts = ["api.example.com", "evil.example.net"]\n',
            _code(("evil.example.net",)),
            "egress.hosts",
        ),
        ("", '[egress]\nhosts = ["127.0.0.1:5432"]\n', _code(("127.0.0.1:5432",)), "egress.hosts"),  # none allowed
        ('[sandbox]\nnetwork = "deny"\n', '[sandbox]\nnetwork = "allow"\n', _code(), "sandbox.network"),
        (
            "[sandbox]\nmax_timeout_s = 10\n",
            "[sandbox]\nmax_timeout_s = 1000\n",
            _code(limits=LimitsFacts(timeout_s=60), egress=False),
            "sandbox.max_timeout_s",
        ),
        (
            '[sandbox]\nmax_memory = "64MiB"\n',
            '[sandbox]\nmax_memory = "8GiB"\n',
            _code(limits=LimitsFacts(memory_bytes=1 << 30), egress=False),
            "sandbox.max_memory",
        ),
        (
            "[sandbox]\nmax_processes = 8\n",
            "[sandbox]\nmax_processes = 4096\n",
            _code(limits=LimitsFacts(max_processes=100), egress=False),
            "sandbox.max_processes",
        ),
    ],
)
def test_a_session_policy_cannot_loosen_a_key_of_the_daemons(
    daemon: str, session: str, facts: ActionFacts, rule: str
) -> None:
    assert check(build_session(parse(session)), facts).allowed  # control: the session's policy alone allows it
    d = _narrowed(daemon, session).check(facts)
    assert d.kind is DecisionKind.DENY and d.rule == rule, d
    assert "the daemon's policy" in d.reason


def test_approvals_the_daemon_requires_stay_required() -> None:
    policy = _narrowed("", '[http]\nirreversible = "allow"\n')  # the daemon's default: approval
    facts = _http("POST", "/mail", b"", "irreversible")
    d = policy.check(facts)
    assert d.kind is DecisionKind.NEEDS_APPROVAL and d.rule == "http.irreversible"
    approved = policy.check(facts, approval="ann: ok")
    assert approved.allowed and approved.approval == "ann: ok"


def test_a_session_policy_still_narrows() -> None:
    policy = _narrowed("", '[sql]\nwrite = "approval"\n[http]\nmethods = ["GET"]\n[egress]\nhosts = []\n')
    d = policy.check(_sql("write"))
    assert d.kind is DecisionKind.NEEDS_APPROVAL and "the daemon's policy" not in d.reason
    assert policy.check(_http("POST", "/a")).rule == "http.methods"
    assert policy.check(_http("GET", "/a")).allowed
    wide = _narrowed('[egress]\nhosts = ["*.example.com"]\n', '[egress]\nhosts = ["api.example.com"]\n')
    assert wide.check(_code(("api.example.com",))).allowed
    assert wide.check(_code(("www.example.com",))).rule == "egress.hosts"  # the daemon's allows it, the session's not


def test_http_hosts_of_both_policies_apply() -> None:
    policy = _narrowed('[http]\nhosts = ["127.0.0.1:5000"]\n', '[http]\nhosts = ["127.0.0.1:5000", "evil.test"]\n')
    assert [hosts for hosts, _ in policy.http_hosts] == [("127.0.0.1:5000",), ("127.0.0.1:5000", "evil.test")]
    assert "the daemon's policy" in policy.http_hosts[0][1] and policy.http_hosts[1][1] == ""
    assert _narrowed("", "").http_hosts == ()


def test_limits_are_lowered_to_both_ceilings() -> None:
    policy = _narrowed(
        '[sandbox]\nmax_timeout_s = 10\nmax_memory = "1GiB"\n',
        '[sandbox]\nmax_timeout_s = 100\nmax_memory = "64MiB"\nmax_processes = 8\n',
    )
    got = policy.limits(LimitsRequest(), Limits(timeout_s=60, memory_bytes=1 << 31, max_processes=256))
    assert (got.timeout_s, got.memory_bytes, got.max_processes) == (10, 64 << 20, 8)


def test_both_rate_limits_count_and_a_looser_one_does_not_lift_the_daemons() -> None:
    now = [100.0]
    policy = SessionPolicy(
        load('[http]\nrate_limit = "2/minute"\n'),
        build_session(parse('[http]\nrate_limit = "1000/second"\n')),
        counter=RateCounter(clock=lambda: now[0]),
    )
    assert policy.check(_http("GET", "/a")).allowed
    assert policy.check(_http("GET", "/b")).allowed
    third = policy.check(_http("GET", "/c"))
    assert third.kind is DecisionKind.DENY and third.rule == "http.rate_limit" and "the daemon's policy" in third.reason
    tight = SessionPolicy(
        load('[http]\nrate_limit = "1000/second"\n'),
        build_session(parse('[http]\nrate_limit = "1/minute"\n')),
        counter=RateCounter(clock=lambda: now[0]),
    )
    assert tight.check(_http("GET", "/a")).allowed
    second = tight.check(_http("GET", "/b"))
    assert second.rule == "http.rate_limit" and "1/minute" in second.reason


# ---------------------------------------------------------------- client inverses


def _with_inverse(reversibility: str, resource: str = "api") -> ActionFacts:
    req = HttpRequestFacts("POST", "http://127.0.0.1:9/m", "/m", {}, b"", reversibility, client_inverse=True)
    return ActionFacts("http", resource, request=req)


def test_a_client_inverse_lifts_nothing_unless_the_policy_trusts_it() -> None:
    d = check(load(""), _with_inverse("irreversible"))
    assert d.kind is DecisionKind.NEEDS_APPROVAL and d.rule == "http.irreversible"
    assert "its client inverse is not trusted: [http] trust_client_inverses" in d.reason
    trusting = load("[http]\ntrust_client_inverses = true\n")
    assert check(trusting, _with_inverse("irreversible")).allowed
    assert check(trusting, _http("POST", "/m", b"", "irreversible")).kind is DecisionKind.NEEDS_APPROVAL  # none given
    # Trust counts it reversible: a policy that holds reversible calls holds it too.
    held = check(load('[http]\ntrust_client_inverses = true\nreversible = "approval"\n'), _with_inverse("best_effort"))
    assert held.kind is DecisionKind.NEEDS_APPROVAL and held.rule == "http.reversible"
    # Per resource, over [http]; a read stays a read.
    per = load("[http]\ntrust_client_inverses = true\n[http.resources.mail]\ntrust_client_inverses = false\n")
    assert check(per, _with_inverse("irreversible", "mail")).kind is DecisionKind.NEEDS_APPROVAL
    assert check(per, _with_inverse("irreversible", "api")).allowed
    assert check(load('[http]\nread_only = "approval"\n'), _with_inverse("read_only")).rule == "http.read_only"


def test_a_session_cannot_trust_client_inverses_the_daemon_does_not() -> None:
    policy = _narrowed("", '[http]\ntrust_client_inverses = true\nirreversible = "allow"\n')
    assert policy.check(_with_inverse("irreversible")).kind is DecisionKind.NEEDS_APPROVAL
    strict = _narrowed("[http]\ntrust_client_inverses = true\n", '[http]\nirreversible = "deny"\n')
    assert strict.check(_with_inverse("irreversible")).kind is DecisionKind.DENY  # the session's own class rule


def test_trust_client_inverses_must_be_a_boolean() -> None:
    e = _err('[http]\ntrust_client_inverses = "yes"\n')
    assert e.line == 2 and "http.trust_client_inverses: must be true or false" in e.message, e.message
