"""Generic HTTP semantics (the shipped `generic` rule set, RFC 9110) and how rule sets are chained
for a resource: which rule plans a call at each shape, what each answer derives, the prediction
once the capture is in, Location and ETag references, and the fall-through from a specific rule
that cannot undo an answer. Pure: no service (tests/integration/test_http_generic_live.py runs
the same rules against real ones)."""

from __future__ import annotations

import json
from textwrap import dedent

import pytest

from goexd.domain.models import ReversibilityClass as RC
from goexd.resources.http.rules import (
    Exchange,
    HttpCall,
    RuleError,
    RuleSet,
    VerifyKind,
    load_rule_sets,
    select_rules,
    verified,
)
from goexd.resources.http.rules_parse import parse_rule_file

SETS = load_rule_sets()
BASE = "http://127.0.0.1:8080/api"
GENERIC = select_rules(SETS, "generic", BASE)
DEFAULT = select_rules(SETS, "rest", BASE)
ETAG = '"v2-abc"'
TEXT = {"content-type": "text/plain; charset=utf-8"}


def ex(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Exchange:
    return Exchange(status, headers or {}, body)


def derive(rs: RuleSet, call: HttpCall, response: Exchange, capture: Exchange | None = None):  # type: ignore[no-untyped-def]
    return rs.derive(rs.plan(call), call, response, capture)


# ---------------------------------------------------------------- choosing the sets


def test_a_resource_gets_its_sets_then_generic_unless_only() -> None:
    assert DEFAULT.chain == "rest+generic" and DEFAULT.base_url == BASE
    assert select_rules(SETS, "s3").chain == "s3+generic"
    assert select_rules(SETS, "s3+rest").chain == "s3+rest+generic"
    assert select_rules(SETS, "generic+rest").chain == "generic+rest"  # named: not appended again
    assert select_rules(SETS, "only:rest").chain == "rest"
    assert select_rules(SETS, "only:s3+rest").chain == "s3+rest"
    # binding makes a copy: the loaded set itself is left as it was
    assert SETS["rest"].chain == "rest" and SETS["rest"].base_url == ""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "no rule set named 'nope' (known: generic, rest, s3, slack;"),
        ("rest+nope", "no rule set named 'nope'"),
        ("only:", "no rule set named ''"),
        ("rest+", "no rule set named ''"),
        ("rest+rest", "'rest+rest' names a rule set twice"),
        ("Only:rest", "no rule set named 'Only:rest'"),
    ],
)
def test_a_bad_selection_says_why(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        select_rules(SETS, spec)
    assert message in str(e.value)


def test_only_the_named_set_leaves_other_shapes_irreversible() -> None:
    only = select_rules(SETS, "only:rest", BASE)
    call = HttpCall("PUT", "/report.txt", body=b"x")
    assert only.plan(call).rule == "" and only.plan(call).predicted is RC.IRREVERSIBLE
    assert derive(only, call, ex(201)).note == "no rule of rest matches PUT /report.txt"
    assert DEFAULT.plan(call).rule == "generic.put"


# ---------------------------------------------------------------- which rule plans which shape


@pytest.mark.parametrize(
    ("method", "path", "rule", "capture", "predicted"),
    [
        ("PUT", "/report.txt", "generic.put", "/report.txt", RC.REVERSIBLE),
        ("PUT", "/a/b/c.json", "generic.put-nested", "/a/b/c.json", RC.BEST_EFFORT),
        ("PUT", "/a%20b/c%2Fd", "generic.put-nested", "/a%20b/c%2Fd", RC.BEST_EFFORT),
        ("PATCH", "/a/b/c.json", "generic.patch", "/a/b/c.json", RC.BEST_EFFORT),
        ("DELETE", "/report.txt", "generic.delete", "/report.txt", RC.BEST_EFFORT),
        ("DELETE", "/a/b/c.json", "generic.delete", "/a/b/c.json", RC.BEST_EFFORT),
        ("DELETE", "/a/b/", "generic.container", None, RC.IRREVERSIBLE),
        ("PUT", "/a/", "generic.container", None, RC.IRREVERSIBLE),
        ("POST", "/", "generic.create-at-root", None, RC.IRREVERSIBLE),
        ("POST", "/notes/", "generic.create-in-container", None, RC.IRREVERSIBLE),
        ("POST", "/a/b/notes", "generic.create", None, RC.IRREVERSIBLE),
        ("DELETE", "/", "", None, RC.IRREVERSIBLE),
        ("MKCOL", "/a", "", None, RC.IRREVERSIBLE),
    ],
)
def test_generic_plans_every_depth(method: str, path: str, rule: str, capture: str | None, predicted: RC) -> None:
    planned = GENERIC.plan(HttpCall(method, path))
    assert (planned.rule, planned.predicted) == (rule, predicted)
    assert (planned.capture.path if planned.capture else None) == capture
    if planned.capture is not None:
        assert (planned.capture.method, planned.capture.query, planned.capture.body) == ("GET", (), b"")


def test_a_call_with_a_query_is_no_item_for_generic_semantics() -> None:
    # A query often selects an operation (S3's ?acl, ?uploads), not the item a GET would show.
    planned = GENERIC.plan(HttpCall("PUT", "/report.txt", (("version", "2"),)))
    assert (planned.rule, planned.predicted) == ("", RC.IRREVERSIBLE)


def test_the_named_set_plans_first_and_generic_takes_the_rest() -> None:
    assert DEFAULT.plan(HttpCall("PUT", "/items/1")).rule == "rest.update"
    assert DEFAULT.plan(HttpCall("POST", "/items")).rule == "rest.create"
    assert DEFAULT.plan(HttpCall("PUT", "/items/1/extra")).rule == "generic.put-nested"
    assert DEFAULT.plan(HttpCall("POST", "/items/1/comments")).rule == "generic.create"
    assert select_rules(SETS, "s3").plan(HttpCall("PUT", "/bkt/k")).rule == "s3.put-object"
    assert select_rules(SETS, "s3").plan(HttpCall("PUT", "/bkt", (("versioning", ""),))).rule == ""


# ---------------------------------------------------------------- PUT


def test_put_of_a_missing_item_is_undone_by_a_delete_only_of_what_it_wrote() -> None:
    call = HttpCall("PUT", "/report.txt", headers=(("content-type", "text/plain"),), body=b"new")
    d = derive(GENERIC, call, ex(201, b"<html>created</html>", {"etag": ETAG}), ex(404, b"nope"))
    assert d.reversibility is RC.REVERSIBLE and d.note.startswith("generic.put [created]: reversible")
    assert d.inverse == HttpCall("DELETE", "/report.txt", headers=(("if-match", ETAG),))
    assert (d.verify.kind, d.verify.call) == (VerifyKind.ABSENT, HttpCall("GET", "/report.txt"))


@pytest.mark.parametrize("etag", ['W/"weak"', "unquoted", ""])
def test_an_undo_is_conditional_only_on_a_strong_etag(etag: str) -> None:
    # If-Match compares strongly: a weak ETag there would fail every undo.
    call = HttpCall("PUT", "/report.txt", body=b"new")
    d = derive(GENERIC, call, ex(204, b"", {"etag": etag} if etag else {}), ex(410))
    assert d.inverse == HttpCall("DELETE", "/report.txt")


def test_put_over_an_item_puts_its_bytes_and_content_type_back() -> None:
    old = bytes(range(256))  # not text, not JSON: sent back byte for byte
    capture = ex(200, old, {"content-type": "application/octet-stream", "content-language": "de", "etag": '"v1"'})
    call = HttpCall("PUT", "/a/b/blob.bin", body=b"replaced")
    d = derive(GENERIC, call, ex(204, b"", {"etag": ETAG}), capture)
    assert d.reversibility is RC.REVERSIBLE and "[replaced]" in d.note
    assert d.inverse == HttpCall(
        "PUT",
        "/a/b/blob.bin",
        headers=(("content-type", "application/octet-stream"), ("content-language", "de"), ("if-match", ETAG)),
        body=old,
    )
    assert (d.verify.kind, d.verify.call) == (VerifyKind.PRE_IMAGE, HttpCall("GET", "/a/b/blob.bin"))
    # the check: the same bytes and media type are back, nothing else passes
    assert verified(
        d.verify, inverse=ex(204), check=ex(200, old, {"content-type": "application/octet-stream"}), capture=capture
    )
    assert not verified(
        d.verify,
        inverse=ex(204),
        check=ex(200, old[:-1], {"content-type": "application/octet-stream"}),
        capture=capture,
    )
    assert not verified(d.verify, inverse=ex(204), check=ex(200, old, TEXT), capture=capture)
    assert not verified(
        d.verify, inverse=ex(412), check=ex(200, old, {"content-type": "application/octet-stream"}), capture=capture
    )


def test_a_capture_without_a_content_type_is_put_back_without_one() -> None:
    d = derive(GENERIC, HttpCall("PUT", "/x"), ex(200), ex(200, b"old"))
    assert d.inverse == HttpCall("PUT", "/x", body=b"old")


def test_put_of_a_new_nested_item_is_best_effort() -> None:
    d = derive(
        GENERIC, HttpCall("PUT", "/a/b/c.json", body=b"{}"), ex(201, b"", {"location": BASE + "/a/b/c.json"}), ex(404)
    )
    assert d.reversibility is RC.BEST_EFFORT and "containers a service made on its way are left" in d.note
    assert d.inverse == HttpCall("DELETE", "/a/b/c.json")


@pytest.mark.parametrize("status", [301, 302, 401, 403, 500, 204])
def test_put_whose_capture_is_neither_an_item_nor_missing_is_irreversible(status: int) -> None:
    call = HttpCall("PUT", "/a")  # a WebDAV collection answers 301 to /a/
    capture = ex(status, b"", {"location": "/a/"})
    d = derive(GENERIC, call, ex(204), capture)
    assert (d.reversibility, d.inverse) == (RC.IRREVERSIBLE, None)
    assert d.note.startswith("generic.put: no outcome applies (refused: response status 204 not in the outcome's;")
    assert GENERIC.predict(GENERIC.plan(call), call, capture) is RC.IRREVERSIBLE


def test_a_refused_put_has_nothing_to_undo() -> None:
    d = derive(GENERIC, HttpCall("PUT", "/a/b/c"), ex(409, b"no parent"), ex(404))
    assert (d.reversibility, d.inverse, d.verify.kind) == (RC.REVERSIBLE, None, VerifyKind.PRE_IMAGE)


# ---------------------------------------------------------------- PATCH and DELETE


@pytest.mark.parametrize(
    ("allow", "cls", "label"),
    [
        ("OPTIONS, HEAD, GET, PATCH, PUT, DELETE", RC.REVERSIBLE, "[patched, PUT allowed]"),
        ("GET,put", RC.REVERSIBLE, "[patched, PUT allowed]"),
        ("GET, PATCH", RC.BEST_EFFORT, "[patched]"),
        (None, RC.BEST_EFFORT, "[patched]"),
    ],
)
def test_patch_is_undone_by_a_put_as_sure_as_the_allow_header_says(allow: str | None, cls: RC, label: str) -> None:
    headers = {"content-type": "text/turtle", **({"allow": allow} if allow is not None else {})}
    capture = ex(200, b"<#a> <#b> <#c>.", headers)
    call = HttpCall("PATCH", "/data/card", headers=(("content-type", "text/n3"),), body=b"@prefix ...")
    planned = GENERIC.plan(call)
    d = GENERIC.derive(planned, call, ex(205), capture)
    assert d.reversibility is cls and label in d.note, d.note
    assert d.inverse == HttpCall("PUT", "/data/card", headers=(("content-type", "text/turtle"),), body=capture.body)
    assert GENERIC.predict(planned, call, capture) is cls


def test_patch_that_created_the_item_deletes_it() -> None:
    d = derive(GENERIC, HttpCall("PATCH", "/data/new"), ex(201), ex(404, b"", {"allow": "PATCH, PUT"}))
    assert (d.reversibility, d.inverse) == (RC.BEST_EFFORT, HttpCall("DELETE", "/data/new"))


@pytest.mark.parametrize(
    ("allow", "cls"), [("GET, PUT, DELETE", RC.REVERSIBLE), (None, RC.BEST_EFFORT), ("GET, DELETE", RC.BEST_EFFORT)]
)
def test_delete_is_undone_by_putting_the_item_back_where_nothing_is(allow: str | None, cls: RC) -> None:
    headers = {"content-type": "application/json", **({"allow": allow} if allow else {})}
    capture = ex(200, b'{"a": 1}', headers)
    call = HttpCall("DELETE", "/cfg/app.json")
    d = derive(GENERIC, call, ex(204), capture)
    assert d.reversibility is cls
    assert d.inverse == HttpCall(
        "PUT", "/cfg/app.json", headers=(("content-type", "application/json"), ("if-none-match", "*")), body=b'{"a": 1}'
    )
    assert d.verify.kind is VerifyKind.PRE_IMAGE
    # generic semantics promise the bytes back: the same bytes verify, JSON re-serialised does not
    assert verified(d.verify, inverse=ex(201), check=ex(200, b'{"a": 1}', headers), capture=capture)
    assert not verified(d.verify, inverse=ex(201), check=ex(200, b'{ "a" : 1.0 }', headers), capture=capture)


def test_delete_of_a_missing_item_changed_nothing() -> None:
    d = derive(GENERIC, HttpCall("DELETE", "/gone.txt"), ex(404), ex(404))
    assert (d.reversibility, d.inverse) == (RC.REVERSIBLE, None) and "[nothing deleted]" in d.note


# ---------------------------------------------------------------- POST


@pytest.mark.parametrize(
    ("path", "location", "inverse"),
    [
        ("/notes/", BASE + "/notes/n1", "/notes/n1"),
        ("/notes/", "/api/notes/n%201", "/notes/n%201"),  # an absolute path, under the base's /api
        ("/notes/", "n2", "/notes/n2"),  # relative to the request's URL
        ("/notes", "notes/n3", "/notes/n3"),  # relative to /api/notes: /api/notes/n3
        ("/", "x", "/x"),
        ("/a/b", "./c/../d", "/a/d"),
        ("/notes/", "HTTP://127.0.0.1:8080/api/notes/n4", "/notes/n4"),
    ],
)
def test_post_answered_201_with_a_location_deletes_that_item(path: str, location: str, inverse: str) -> None:
    call = HttpCall("POST", path, body=b"hello")
    d = derive(GENERIC, call, ex(201, b"", {"location": location}))
    assert d.reversibility is RC.BEST_EFFORT and "[located]" in d.note, d.note
    assert d.inverse == HttpCall("DELETE", inverse)
    assert (d.verify.kind, d.verify.call) == (VerifyKind.ABSENT, HttpCall("GET", inverse))


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://127.0.0.1:9999/api/notes/n1", "outside the resource's base URL"),
        ("https://127.0.0.1:8080/api/notes/n1", "outside the resource's base URL"),
        ("/other/n1", "outside the resource's base URL"),
        ("/api", "outside the resource's base URL"),
        ("/api/notes/n1?x=1", "has a query or a dot segment"),
        ("/api/notes/%2e%2e/x", "has a query or a dot segment"),
        ("/api/notes/", "names the request's target or a container of it"),
        ("/api/notes", "names the request's target or a container of it"),
        ("/api/", "names the request's target or a container of it"),
    ],
)
def test_a_location_that_could_delete_the_wrong_thing_is_not_used(location: str, why: str) -> None:
    d = derive(GENERIC, HttpCall("POST", "/notes/"), ex(201, b"", {"location": location}))
    assert (d.reversibility, d.inverse) == (RC.IRREVERSIBLE, None)
    assert why in d.note, d.note


def test_post_needs_a_201_for_its_location_then_falls_to_an_id_then_to_irreversible() -> None:
    call = HttpCall("POST", "/a/notes")
    seeother = derive(GENERIC, call, ex(303, b"", {"location": "/api/a/notes/1"}))
    assert seeother.reversibility is RC.IRREVERSIBLE and "[unknown effect]" in seeother.note
    by_id = derive(GENERIC, call, ex(200, json.dumps({"id": 7}).encode(), {"content-type": "application/json"}))
    assert (by_id.reversibility, by_id.inverse) == (RC.BEST_EFFORT, HttpCall("DELETE", "/a/notes/7"))
    at_root = derive(GENERIC, HttpCall("POST", "/"), ex(201, b'{"id": "a b"}'))
    assert (at_root.reversibility, at_root.inverse) == (RC.BEST_EFFORT, HttpCall("DELETE", "/a%20b"))
    nothing = derive(GENERIC, call, ex(200, b"ok"))
    assert (nothing.reversibility, nothing.inverse) == (RC.IRREVERSIBLE, None)
    assert "a POST may do anything" in nothing.note


def test_a_location_needs_a_base_url_to_resolve_against() -> None:
    unbound = select_rules(SETS, "generic")
    d = derive(unbound, HttpCall("POST", "/notes/"), ex(201, b"", {"location": "/notes/1"}))
    assert d.reversibility is RC.IRREVERSIBLE and "not bound to a base URL" in d.note


# ---------------------------------------------------------------- fall-through and prediction


def test_a_specific_rule_that_cannot_undo_the_answer_leaves_it_to_generic() -> None:
    # rest.update puts JSON back; a text item at /{collection}/{id} is generic's to undo.
    call = HttpCall("PUT", "/notes/1", body=b"new text")
    capture = ex(200, b"old text", TEXT)
    d = derive(DEFAULT, call, ex(204), capture)
    assert d.reversibility is RC.REVERSIBLE and d.note.startswith("generic.put-nested [replaced]")
    assert d.inverse is not None and d.inverse.body == b"old text"
    alone = derive(select_rules(SETS, "only:rest", BASE), call, ex(204), capture)
    assert alone.reversibility is RC.IRREVERSIBLE
    assert alone.note.startswith("rest.update: no outcome applies (refused: response status 204")


def test_rest_puts_a_deleted_item_back_where_its_allow_header_lists_put() -> None:
    # An LDP server's /{container}/{doc} looks like a collection's item; a POST there would make a new one.
    call = HttpCall("DELETE", "/profile/app.json")
    capture = ex(200, b'{"a": 1}', {"content-type": "application/json", "allow": "GET, PUT, DELETE"})
    d = derive(DEFAULT, call, ex(205), capture)
    assert d.reversibility is RC.REVERSIBLE and d.note.startswith("rest.delete [deleted, PUT allowed]")
    assert d.inverse == HttpCall(
        "PUT",
        "/profile/app.json",
        headers=(("content-type", "application/json"), ("if-none-match", "*")),
        body=b'{"a": 1}',
    )
    json_server_like = derive(DEFAULT, call, ex(200, b"{}"), ex(200, b'{"a": 1}', {"content-type": "application/json"}))
    assert json_server_like.inverse is not None and json_server_like.inverse.method == "POST"


def test_the_notes_of_a_failed_fall_through_name_both_rules() -> None:
    call = HttpCall("PUT", "/notes/1")
    d = derive(DEFAULT, call, ex(204), ex(500))
    assert d.reversibility is RC.IRREVERSIBLE
    assert "; generic.put-nested refused: response status 204" in d.note, d.note


def test_prediction_after_the_capture() -> None:
    call = HttpCall("DELETE", "/x.txt")
    planned = GENERIC.plan(call)
    assert GENERIC.predict(planned, call, ex(200, b"x", {"allow": "GET, PUT"})) is RC.REVERSIBLE
    assert GENERIC.predict(planned, call, ex(200, b"x")) is RC.BEST_EFFORT
    assert GENERIC.predict(planned, call, ex(404)) is RC.REVERSIBLE
    assert GENERIC.predict(planned, call, ex(500)) is RC.IRREVERSIBLE  # a 2xx answer would meet no outcome
    put = HttpCall("PUT", "/x.txt")
    assert GENERIC.predict(GENERIC.plan(put), put, ex(200)) is RC.REVERSIBLE
    # a rule without a capture: its own prediction
    post = HttpCall("POST", "/x/")
    assert GENERIC.predict(GENERIC.plan(post), post, None) is RC.IRREVERSIBLE
    assert DEFAULT.predict(DEFAULT.plan(HttpCall("POST", "/items")), HttpCall("POST", "/items"), None) is RC.REVERSIBLE


# ---------------------------------------------------------------- the grammar of the new references


def _one_rule(inverse: str, extra: str = "") -> str:
    return dedent(
        f"""\
        name = "t"
        [[rule]]
        name = "r"
        method = "POST"
        path = "/{{c}}"
        {extra}
          [[rule.outcome]]
          class = "reversible"
          inverse = {inverse}
          verify = "status"
        """
    )


@pytest.mark.parametrize(
    ("inverse", "extra", "message"),
    [
        ('{ method = "DELETE", path = "/x/{response.location}" }', "", "a location is a whole path, alone"),
        ('{ method = "DELETE", path = "{request.location}" }', "", "location is a value of a response or capture"),
        ('{ method = "DELETE", path = "/{response.etag.x}" }', "", "etag is a value of a response or capture"),
        ('{ method = "DELETE", path = "/{capture.location}" }', "", "needs a capture in the rule"),
        ('{ method = "DELETE", path = "x{response.location}" }', "", "must start with '/'"),
    ],
)
def test_location_and_etag_references_are_checked_when_loaded(inverse: str, extra: str, message: str) -> None:
    with pytest.raises(RuleError) as e:
        parse_rule_file(_one_rule(inverse, extra), "t.toml")
    assert message in str(e.value)


def test_capture_allows_needs_a_capture_and_methods() -> None:
    text = _one_rule('{ method = "DELETE", path = "/x" }').replace(
        'class = "reversible"', 'class = "reversible"\n  when = { capture_allows = "PUT" }'
    )
    with pytest.raises(RuleError, match="capture_allows: the rule has no capture"):
        parse_rule_file(text, "t.toml")
    with_capture = text.replace('path = "/{c}"', 'path = "/{c}"\ncapture = { path = "/{c}" }')
    parse_rule_file(with_capture, "t.toml")
    with pytest.raises(RuleError, match="is not an HTTP method"):
        parse_rule_file(with_capture.replace('capture_allows = "PUT"', 'capture_allows = ["put"]'), "t.toml")
    with pytest.raises(RuleError, match="must be a method or a list of methods"):
        parse_rule_file(with_capture.replace('capture_allows = "PUT"', "capture_allows = []"), "t.toml")


def test_a_user_set_can_use_a_location_header() -> None:
    rs = RuleSet(parse_rule_file(_one_rule('{ method = "DELETE", path = "{response.location}" }'), "t.toml"), "t")
    bound = rs.bound(BASE)
    d = derive(bound, HttpCall("POST", "/things"), ex(201, b"", {"location": "/api/things/9"}))
    assert d.inverse == HttpCall("DELETE", "/things/9")
