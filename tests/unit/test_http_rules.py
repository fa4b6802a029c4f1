"""The HTTP rule engine (goexd.resources.http.rules): matching, templates, every outcome of the
shipped rule sets on recorded-looking exchanges, the pre-image comparison, loading user
directories, and validation errors that name the file, line and key."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from goexd.domain.models import ReversibilityClass as RC
from goexd.resources.http.rules import (
    Derived,
    Exchange,
    HttpCall,
    Planned,
    RuleError,
    RuleSet,
    Verify,
    VerifyKind,
    load_rule_sets,
    pre_image_matches,
    verified,
)
from goexd.resources.http.rules_parse import parse_rule_file

SHIPPED = load_rule_sets()
REST = SHIPPED["rest"]
S3 = SHIPPED["s3"]
JSON = {"content-type": "application/json; charset=utf-8"}


def ex(status: int, body: bytes | dict[str, object] = b"", headers: dict[str, str] | None = None) -> Exchange:
    if isinstance(body, dict):
        return Exchange(status, {**JSON, **(headers or {})}, json.dumps(body, indent=2).encode())
    return Exchange(status, headers or {}, body)


def rules(text: str, file: str = "t.toml") -> RuleSet:
    return RuleSet(parse_rule_file(dedent(text), file), file)


def run(rs: RuleSet, call: HttpCall, response: Exchange, capture: Exchange | None = None) -> tuple[Planned, Derived]:
    planned = rs.plan(call)
    return planned, rs.derive(planned, call, response, capture)


def get(path: str, query: tuple[tuple[str, str], ...] = ()) -> HttpCall:
    return HttpCall("GET", path, query)


# ---------------------------------------------------------------- matching

PATHS = """
name = "m"
[[rule]]
name = "one"
method = "POST"
path = "/{collection}"
  [[rule.outcome]]
  class = "irreversible"
[[rule]]
name = "two"
method = ["PUT", "PATCH"]
path = "/api/{collection}/{id}"
  [[rule.outcome]]
  class = "irreversible"
[[rule]]
name = "plus"
method = "PUT"
path = "/{bucket}/{key+}"
no_query = true
  [[rule.outcome]]
  class = "irreversible"
[[rule]]
name = "middle"
method = "DELETE"
path = "/{a}/{rest+}/end"
  [[rule.outcome]]
  class = "irreversible"
[[rule]]
name = "spaced"
method = "DELETE"
path = "/my stuff/{id}"
  [[rule.outcome]]
  class = "irreversible"
"""


@pytest.mark.parametrize(
    ("method", "path", "query", "rule", "variables"),
    [
        ("POST", "/items", (), "m.one", {"collection": "items"}),
        ("POST", "/items/1", (), "", {}),
        ("POST", "/", (), "", {}),
        ("POST", "/items/", (), "", {}),
        ("PUT", "/api/items/1", (), "m.two", {"collection": "items", "id": "1"}),
        ("PATCH", "/api/items/a%2Fb", (), "m.two", {"collection": "items", "id": "a%2Fb"}),  # kept as sent
        ("PUT", "/v2/items/1", (), "m.plus", {"bucket": "v2", "key": "items/1"}),
        ("PATCH", "/api/items/1/x", (), "", {}),
        ("DELETE", "/api/items/1", (), "", {}),
        ("PUT", "/b/a/b/c.txt", (), "m.plus", {"bucket": "b", "key": "a/b/c.txt"}),
        ("PUT", "/b/a//c", (), "m.plus", {"bucket": "b", "key": "a//c"}),
        ("PUT", "/b", (), "", {}),
        ("PUT", "/b/", (), "", {}),
        ("PUT", "/b/k", (("acl", ""),), "", {}),  # no_query
        ("DELETE", "/x/1/2/end", (), "m.middle", {"a": "x", "rest": "1/2"}),
        ("DELETE", "/x/end", (), "", {}),
        ("DELETE", "/my%20stuff/7", (), "m.spaced", {"id": "7"}),  # a literal matches decoded
        ("DELETE", "/my%20stuffs/7", (), "", {}),
    ],
)
def test_matching(
    method: str, path: str, query: tuple[tuple[str, str], ...], rule: str, variables: dict[str, str]
) -> None:
    planned = rules(PATHS).plan(HttpCall(method, path, query))
    assert (planned.rule, dict(planned.variables)) == (rule, variables)
    assert planned.predicted is RC.IRREVERSIBLE


def test_the_first_matching_rule_wins() -> None:
    rs = rules(
        """
        name = "o"
        [[rule]]
        name = "first"
        method = "POST"
        path = "/{c}"
          [[rule.outcome]]
          class = "reversible"
          inverse = "none"
          verify = "none"
        [[rule]]
        name = "second"
        method = "POST"
        path = "/{c}"
          [[rule.outcome]]
          class = "irreversible"
        """
    )
    planned = rs.plan(HttpCall("POST", "/x"))
    assert (planned.rule, planned.predicted) == ("o.first", RC.REVERSIBLE)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_read_only_methods_are_read_only_without_a_capture(method: str) -> None:
    call = HttpCall(method, "/items/1")
    planned, derived = run(REST, call, ex(200, {"id": 1}))
    assert planned == Planned("", None, RC.READ_ONLY, {})
    assert derived == Derived(
        RC.READ_ONLY, None, Verify(VerifyKind.NONE, None), f"{method} is read-only: nothing to undo"
    )


def test_a_write_no_rule_matches_is_irreversible() -> None:
    call = HttpCall("POST", "/items/1/comments")
    planned, derived = run(REST, call, ex(201, {"id": 5}))
    assert (planned.rule, planned.capture, planned.predicted) == ("", None, RC.IRREVERSIBLE)
    assert derived == Derived(
        RC.IRREVERSIBLE, None, Verify(VerifyKind.NONE, None), "no rule of rest matches POST /items/1/comments"
    )


def test_derive_refuses_a_plan_of_another_rule_set() -> None:
    call = HttpCall("POST", "/items")
    with pytest.raises(ValueError, match="not a rule of s3"):
        S3.derive(REST.plan(call), call, ex(201, {"id": 1}), None)


# ---------------------------------------------------------------- templates

TEMPLATES = """
name = "t"
[[rule]]
name = "make"
method = "POST"
path = "/{c}/{sub+}"
  [rule.capture]
  path = "/{c}/{sub}"
  query = { view = "full-{request.headers.x-view}" }
  headers = { x-trace = "{request.headers.x-trace}" }
  [[rule.outcome]]
  name = "by id"
  class = "reversible"
  verify = "absent"
  [rule.outcome.inverse]
  method = "DELETE"
  path = "/{c}/{sub}/{response.json.data.0.id}"
  query = { v = "{response.headers.x-version}" }
  headers = { if-match = "{response.headers.etag}", x-literal = "{{not a ref}}" }

  [[rule.outcome]]
  name = "by location"
  class = "best_effort"
  verify = { kind = "pre-image", path = "/{c}/{sub}", query = { id = "{response.json.name}" } }
  [rule.outcome.inverse]
  method = "PATCH"
  path = "/{c}/{response.headers.x-name}"
  json = { id = "{response.json.id}", label = "was {request.json.label}", done = true, tags = ["{response.json.name}"] }
"""


def test_templates_fill_paths_encoded_queries_and_headers_raw() -> None:
    rs = rules(TEMPLATES)
    call = HttpCall("POST", "/top/a%20b/c", headers=(("X-View", "all"), ("X-Trace", "t 1")))
    planned = rs.plan(call)
    assert planned.capture == HttpCall("GET", "/top/a%20b/c", (("view", "full-all"),), (("x-trace", "t 1"),))
    response = ex(201, {"data": [{"id": "x/y z"}]}, {"x-version": "v+1/2", "etag": '"e1"'})
    derived = rs.derive(planned, call, response, ex(404))
    assert derived.reversibility is RC.REVERSIBLE
    # Path variables go in as matched; values from the response are percent-encoded; query and
    # header values stay raw (the sender encodes the query).
    assert derived.inverse == HttpCall(
        "DELETE",
        "/top/a%20b/c/x%2Fy%20z",
        (("v", "v+1/2"),),
        (("if-match", '"e1"'), ("x-literal", "{not a ref}")),
    )
    assert derived.verify == Verify(VerifyKind.ABSENT, HttpCall("GET", "/top/a%20b/c/x%2Fy%20z"))
    assert derived.note == "t.make [by id]: reversible, undo DELETE /top/a%20b/c/x%2Fy%20z"


def test_a_missing_value_in_a_path_or_query_falls_through_and_a_missing_header_is_left_out() -> None:
    rs = rules(TEMPLATES)
    call = HttpCall("POST", "/top/s", body=b'{"label": "old"}')
    assert rs.plan(call).capture is None  # its query needs an X-View header: no capture at all
    call = HttpCall("POST", "/top/s", headers=(("x-view", "v"),), body=b'{"label": "old"}')
    planned = rs.plan(call)
    assert planned.capture == HttpCall("GET", "/top/s", (("view", "full-v"),))  # no X-Trace: no header

    no_version = ex(201, {"data": [{"id": 4}], "id": 9, "name": "n 1"}, {"x-name": "n/1"})
    derived = rs.derive(planned, call, no_version, ex(200, b"{}", JSON))
    assert derived.reversibility is RC.BEST_EFFORT
    assert derived.inverse == HttpCall(
        "PATCH",
        "/top/n%2F1",
        (),
        (("content-type", "application/json"),),
        b'{"id":9,"label":"was old","done":true,"tags":["n 1"]}',
    )
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/top/s", (("id", "n 1"),)))

    # Neither outcome applies: the note says what each missed.
    derived = rs.derive(planned, call, ex(201, {"data": []}), None)
    assert derived == Derived(
        RC.IRREVERSIBLE,
        None,
        Verify(VerifyKind.NONE, None),
        "t.make: no outcome applies (by id: response.json.data.0.id is missing; by location: "
        "response.headers.x-name is missing)",
    )


def test_the_capture_is_left_out_when_its_path_needs_a_missing_request_value() -> None:
    rs = rules(
        """
        name = "c"
        [[rule]]
        name = "r"
        method = "PUT"
        path = "/{c}"
        capture = { path = "/{c}/{request.json.id}" }
          [[rule.outcome]]
          class = "reversible"
          inverse = { method = "PUT", path = "/{c}/{request.json.id}", body = "{capture.body}" }
          verify = "pre-image"
        """
    )
    assert rs.plan(HttpCall("PUT", "/x", body=b'{"id": 3}')).capture == HttpCall("GET", "/x/3")
    call = HttpCall("PUT", "/x", body=b"not json")
    planned = rs.plan(call)
    assert planned.capture is None
    derived = rs.derive(planned, call, ex(200), None)
    assert derived.reversibility is RC.IRREVERSIBLE
    assert derived.note == "c.r: no outcome applies (1: request.json.id is not JSON)"


def test_json_values_keep_their_type_and_null_counts_as_missing() -> None:
    rs = rules(
        """
        name = "j"
        [[rule]]
        name = "r"
        method = "POST"
        path = "/{c}"
          [[rule.outcome]]
          class = "reversible"
          verify = "none"
          [rule.outcome.inverse]
          method = "POST"
          path = "/{c}"
          json.n = "{response.json.n}"
          json.f = "{response.json.f}"
          json.obj = "{response.json.o}"
          json.text = "{response.json.n}!"
        """
    )
    call = HttpCall("POST", "/x")
    derived = rs.derive(rs.plan(call), call, ex(200, {"n": 2, "f": 1.5, "o": {"a": [True, None]}}), None)
    assert derived.inverse is not None
    assert json.loads(derived.inverse.body) == {"n": 2, "f": 1.5, "obj": {"a": [True, None]}, "text": "2!"}
    derived = rs.derive(rs.plan(call), call, ex(200, {"n": None, "f": 1, "o": {}}), None)
    assert (derived.reversibility, derived.inverse) == (RC.IRREVERSIBLE, None)
    assert "response.json.n is null" in derived.note


def test_an_object_cannot_stand_in_a_string() -> None:
    rs = rules(
        """
        name = "j"
        [[rule]]
        name = "r"
        method = "POST"
        path = "/{c}"
          [[rule.outcome]]
          class = "reversible"
          inverse = { method = "DELETE", path = "/{c}/{response.json.id}" }
          verify = "absent"
        """
    )
    call = HttpCall("POST", "/x")
    derived = rs.derive(rs.plan(call), call, ex(200, {"id": {"a": 1}}), None)
    assert derived.reversibility is RC.IRREVERSIBLE
    assert "response.json.id is not a single value" in derived.note
    derived = rs.derive(rs.plan(call), call, ex(200, {"id": True}), None)
    assert derived.inverse == HttpCall("DELETE", "/x/true")


def test_raw_bodies_are_sent_unchanged_and_a_raw_json_body_must_be_json() -> None:
    rs = rules(
        """
        name = "raw"
        [[rule]]
        name = "r"
        method = "PUT"
        path = "/{c}"
        capture = { path = "/{c}" }
          [[rule.outcome]]
          name = "as json"
          class = "reversible"
          verify = "pre-image"
          inverse.method = "PUT"
          inverse.path = "/{c}"
          inverse.json = "{capture.body}"
          inverse.headers = { content-type = "application/merge-patch+json" }
          [[rule.outcome]]
          name = "as bytes"
          class = "best_effort"
          inverse = { method = "PUT", path = "/{c}", body = "{capture.body}" }
          verify = "pre-image"
        """
    )
    call = HttpCall("PUT", "/x")
    planned = rs.plan(call)
    spaced = b'{ "a" :  1 }\n'
    derived = rs.derive(planned, call, ex(200), ex(200, spaced, JSON))
    assert derived.inverse == HttpCall("PUT", "/x", (), (("content-type", "application/merge-patch+json"),), spaced)
    binary = bytes(range(256))
    derived = rs.derive(planned, call, ex(200), ex(200, binary))
    assert derived.inverse == HttpCall("PUT", "/x", body=binary)
    assert derived.note.startswith("raw.r [as bytes]: best_effort, undo PUT /x")


# ---------------------------------------------------------------- rest.toml


def test_rest_create_deletes_by_the_returned_id() -> None:
    call = HttpCall("POST", "/items", body=b'{"name": "a"}')
    planned, derived = run(REST, call, ex(201, {"name": "a", "id": 7}, {"location": "http://h/items/7"}))
    assert planned == Planned("rest.create", None, RC.REVERSIBLE, {"collection": "items"})
    assert derived.reversibility is RC.REVERSIBLE
    assert derived.inverse == HttpCall("DELETE", "/items/7")
    assert derived.verify == Verify(VerifyKind.ABSENT, HttpCall("GET", "/items/7"), as_json=True)
    assert derived.note.startswith("rest.create [created]: reversible, undo DELETE /items/7: ")
    _, derived = run(REST, call, ex(201, {"id": "a b/c"}))
    assert derived.inverse == HttpCall("DELETE", "/items/a%20b%2Fc")


def test_rest_create_refused_or_without_an_id() -> None:
    call = HttpCall("POST", "/nosuch")
    _, derived = run(REST, call, ex(404, {}))
    assert (derived.reversibility, derived.inverse, derived.verify.kind) == (RC.REVERSIBLE, None, VerifyKind.NONE)
    assert derived.note.startswith("rest.create [refused]: reversible, nothing to undo")
    _, derived = run(REST, call, ex(201, {"name": "no id"}))
    assert (derived.reversibility, derived.inverse) == (RC.IRREVERSIBLE, None)
    assert "response.json.id is missing" in derived.note
    _, derived = run(REST, call, ex(500, b"oops"))
    assert derived.reversibility is RC.IRREVERSIBLE
    assert "response status 500" in derived.note


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_rest_update_puts_the_captured_item_back(method: str) -> None:
    call = HttpCall(method, "/items/1", body=b'{"name": "new"}')
    planned = REST.plan(call)
    assert planned == Planned(
        "rest.update", HttpCall("GET", "/items/1"), RC.REVERSIBLE, {"collection": "items", "id": "1"}
    )
    before = ex(200, {"id": 1, "name": "old", "size": 3})
    derived = REST.derive(planned, call, ex(200, {"id": 1, "name": "new"}), before)
    assert derived.reversibility is RC.REVERSIBLE
    assert derived.inverse == HttpCall("PUT", "/items/1", (), (("content-type", "application/json"),), before.body)
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/items/1"), as_json=True)


def test_rest_update_of_a_missing_item() -> None:
    call = HttpCall("PUT", "/items/9", body=b"{}")
    planned = REST.plan(call)
    derived = REST.derive(planned, call, ex(201, {"id": 9}), ex(404, {}))  # a service whose PUT creates
    assert derived.reversibility is RC.REVERSIBLE
    assert derived.inverse == HttpCall("DELETE", "/items/9")
    assert derived.verify == Verify(VerifyKind.ABSENT, HttpCall("GET", "/items/9"), as_json=True)
    derived = REST.derive(planned, call, ex(404, {}), ex(404, {}))  # json-server's: PUT does not create
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, None)
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/items/9"), as_json=True)


def test_rest_delete() -> None:
    call = HttpCall("DELETE", "/items/3")
    planned = REST.plan(call)
    assert planned == Planned(
        "rest.delete", HttpCall("GET", "/items/3"), RC.BEST_EFFORT, {"collection": "items", "id": "3"}
    )
    before = ex(200, {"id": 3, "name": "c"})
    derived = REST.derive(planned, call, ex(200, {}), before)
    assert derived.reversibility is RC.BEST_EFFORT
    assert derived.inverse == HttpCall("POST", "/items", (), (("content-type", "application/json"),), before.body)
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/items/3"), as_json=True)
    assert "new id" in derived.note

    derived = REST.derive(planned, call, ex(404, {}), ex(404, {}))
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, None)
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/items/3"), as_json=True)
    assert derived.note.startswith("rest.delete [nothing deleted]: reversible, nothing to undo")

    derived = REST.derive(planned, call, ex(403, {}), before)
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, None)
    assert derived.note.startswith("rest.delete [refused]")


def test_rest_derive_without_the_capture_it_planned_is_irreversible() -> None:
    call = HttpCall("DELETE", "/items/3")
    derived = REST.derive(REST.plan(call), call, ex(200, {}), None)
    assert (derived.reversibility, derived.inverse) == (RC.IRREVERSIBLE, None)
    assert "no capture was recorded" in derived.note


# ---------------------------------------------------------------- s3.toml

XML = {"content-type": "application/xml"}


def test_s3_create_bucket() -> None:
    call = HttpCall("PUT", "/bkt")
    planned = S3.plan(call)
    assert planned == Planned("s3.create-bucket", HttpCall("HEAD", "/bkt"), RC.BEST_EFFORT, {"bucket": "bkt"})
    derived = S3.derive(planned, call, ex(200, headers={"location": "/bkt"}), ex(404))
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, HttpCall("DELETE", "/bkt"))
    assert derived.verify == Verify(VerifyKind.ABSENT, HttpCall("GET", "/bkt"))
    # Already there (S3 answers 200 to its owner): never delete it.
    derived = S3.derive(planned, call, ex(200), ex(200, headers={"x-amz-bucket-region": "us-east-1"}))
    assert (derived.reversibility, derived.inverse) == (RC.BEST_EFFORT, None)
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("HEAD", "/bkt"))
    derived = S3.derive(planned, call, ex(409, b"<Error><Code>BucketAlreadyExists</Code></Error>", XML), ex(200))
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, None)
    assert derived.note.startswith("s3.create-bucket [refused]")


def test_s3_put_object_in_a_versioned_bucket_deletes_the_new_version() -> None:
    call = HttpCall("PUT", "/bkt/dir/a%20b.txt", headers=(("content-type", "text/plain"),), body=b"two")
    planned = S3.plan(call)
    assert planned.rule == "s3.put-object"
    assert planned.capture == HttpCall("GET", "/bkt/dir/a%20b.txt")
    assert planned.variables == {"bucket": "bkt", "key": "dir/a%20b.txt"}
    assert planned.predicted is RC.BEST_EFFORT
    response = ex(200, headers={"etag": '"e"', "x-amz-version-id": "v2"})
    for before in (ex(200, b"one", {"x-amz-version-id": "v1"}), ex(404, b"<Error/>", XML)):
        derived = S3.derive(planned, call, response, before)
        assert derived.reversibility is RC.REVERSIBLE
        assert derived.inverse == HttpCall("DELETE", "/bkt/dir/a%20b.txt", (("versionId", "v2"),))
        assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/bkt/dir/a%20b.txt"))
        assert derived.note.startswith("s3.put-object [versioned]: reversible, undo DELETE /bkt/dir/a%20b.txt")


def test_s3_put_object_in_an_unversioned_bucket() -> None:
    call = HttpCall("PUT", "/bkt/k", body=b"new")
    planned = S3.plan(call)
    before = ex(200, b"\x00old", {"content-type": "image/png", "cache-control": "no-cache", "etag": '"x"'})
    for response in (ex(200, headers={"etag": '"e"'}), ex(200, headers={"x-amz-version-id": "null"})):
        derived = S3.derive(planned, call, response, before)
        assert derived.reversibility is RC.BEST_EFFORT
        assert derived.inverse == HttpCall(
            "PUT", "/bkt/k", (), (("content-type", "image/png"), ("cache-control", "no-cache")), b"\x00old"
        )
        assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/bkt/k"))
        assert "x-amz-meta" in derived.note
    derived = S3.derive(planned, call, ex(200), ex(404, b"<Error/>", XML))
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, HttpCall("DELETE", "/bkt/k"))
    assert derived.verify == Verify(VerifyKind.ABSENT, HttpCall("GET", "/bkt/k"))
    derived = S3.derive(planned, call, ex(403, b"", {}), before)
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, None)


def test_s3_copy_is_a_put() -> None:
    call = HttpCall("PUT", "/bkt/copy", headers=(("x-amz-copy-source", "/bkt/k"),))
    planned = S3.plan(call)
    assert planned.rule == "s3.put-object"
    response = ex(200, b"<CopyObjectResult/>", {**XML, "x-amz-version-id": "v9", "x-amz-copy-source-version-id": "v1"})
    derived = S3.derive(planned, call, response, ex(404))
    assert derived.inverse == HttpCall("DELETE", "/bkt/copy", (("versionId", "v9"),))


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("PUT", "/bkt", (("versioning", ""),)),
        ("PUT", "/bkt/k", (("acl", ""),)),
        ("PUT", "/bkt/k", (("partNumber", "1"), ("uploadId", "u"))),
        ("POST", "/bkt/k", (("uploads", ""),)),
        ("POST", "/bkt", (("delete", ""),)),
        ("DELETE", "/bkt/k", (("versionId", "v1"),)),
        ("DELETE", "/bkt", (("policy", ""),)),
    ],
)
def test_s3_subresources_match_no_rule(method: str, path: str, query: tuple[tuple[str, str], ...]) -> None:
    call = HttpCall(method, path, query)
    planned, derived = run(S3, call, ex(200))
    assert (planned.rule, planned.predicted) == ("", RC.IRREVERSIBLE)
    assert (derived.reversibility, derived.inverse) == (RC.IRREVERSIBLE, None)


def test_s3_delete_object() -> None:
    call = HttpCall("DELETE", "/bkt/a/b")
    planned = S3.plan(call)
    assert (planned.rule, planned.capture, planned.predicted) == (
        "s3.delete-object",
        HttpCall("GET", "/bkt/a/b"),
        RC.BEST_EFFORT,
    )
    before = ex(200, b"data", {"content-type": "text/plain", "x-amz-version-id": "v1"})
    marker = ex(204, headers={"x-amz-version-id": "m1", "x-amz-delete-marker": "true"})
    derived = S3.derive(planned, call, marker, before)
    assert derived.reversibility is RC.REVERSIBLE
    assert derived.inverse == HttpCall("DELETE", "/bkt/a/b", (("versionId", "m1"),))
    assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/bkt/a/b"))
    assert derived.note.startswith("s3.delete-object [delete marker]")

    # Unversioned (or a suspended bucket's "null" marker): the captured bytes go back.
    for response in (ex(204), ex(204, headers={"x-amz-version-id": "null", "x-amz-delete-marker": "true"})):
        derived = S3.derive(planned, call, response, before)
        assert derived.reversibility is RC.BEST_EFFORT
        assert derived.inverse == HttpCall("PUT", "/bkt/a/b", (), (("content-type", "text/plain"),), b"data")
        assert derived.verify == Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/bkt/a/b"))
    not_a_marker = ex(204, headers={"x-amz-version-id": "v1", "x-amz-delete-marker": "false"})
    assert S3.derive(planned, call, not_a_marker, before).reversibility is RC.BEST_EFFORT

    derived = S3.derive(planned, call, ex(204), ex(404, b"<Error/>", XML))
    assert (derived.reversibility, derived.inverse) == (RC.REVERSIBLE, None)
    assert derived.note.startswith("s3.delete-object [absent]: reversible, nothing to undo")


def test_s3_delete_bucket() -> None:
    call = HttpCall("DELETE", "/bkt")
    planned = S3.plan(call)
    assert planned == Planned("s3.delete-bucket", None, RC.BEST_EFFORT, {"bucket": "bkt"})
    derived = S3.derive(planned, call, ex(204), None)
    assert derived.reversibility is RC.BEST_EFFORT
    assert derived.inverse == HttpCall("PUT", "/bkt")
    assert derived.verify == Verify(VerifyKind.STATUS, None)
    assert "without its settings" in derived.note
    derived = S3.derive(planned, call, ex(409, b"<Error><Code>BucketNotEmpty</Code></Error>", XML), None)
    assert (derived.reversibility, derived.inverse, derived.verify.kind) == (RC.REVERSIBLE, None, VerifyKind.NONE)


def test_notes_never_carry_bodies() -> None:
    secret = b"s3cr3t-body-contents"
    call = HttpCall("DELETE", "/bkt/k")
    derived = S3.derive(S3.plan(call), call, ex(204), ex(200, secret, {"content-type": "text/plain"}))
    assert derived.inverse is not None and derived.inverse.body == secret
    assert secret.decode() not in derived.note


# ---------------------------------------------------------------- checking an undo


@pytest.mark.parametrize(
    ("capture", "now", "same"),
    [
        (ex(404, b"<Error>req 1</Error>"), ex(404, b"<Error>req 2</Error>"), True),
        (ex(404), ex(410), True),
        (ex(404), ex(200, b""), False),
        (ex(200, b"x"), ex(404), False),
        (ex(200, b"x"), ex(201, b"x"), False),
        (ex(200, b'{"a": 1, "b": [1, 2]}', JSON), ex(200, b'{"b":[1,2],"a":1.0}', JSON), True),
        (ex(200, b'{"a": 1}', JSON), ex(200, b'{"a": true}', JSON), False),
        (ex(200, b'{"a": "1"}', JSON), ex(200, b'{"a": 1}', JSON), False),
        (ex(200, b'{"a": [1]}', JSON), ex(200, b'{"a": [1, 1]}', JSON), False),
        (ex(200, b'{"a": 1}', JSON), ex(200, b'{"a": 1, "b": null}', JSON), False),
        (
            ex(200, b'{"a": 1}', {"content-type": "application/ld+json"}),
            ex(200, b'{ "a":1 }', {"content-type": "application/ld+json; charset=utf-8"}),
            True,
        ),
        # another media type is another representation, even with equal JSON or equal bytes
        (ex(200, b'{"a": 1}', {"content-type": "application/problem+json"}), ex(200, b'{ "a":1 }', JSON), False),
        (ex(200, b"<p>", {"content-type": "text/html"}), ex(200, b"<p>", {"content-type": "text/plain"}), False),
        (
            ex(200, b"x", {"content-type": "Text/Plain"}),
            ex(200, b"x", {"content-type": "text/plain; charset=utf-8"}),
            True,
        ),
        (ex(200, b'{"a": 1}', JSON), ex(200, b'{"a":1}', {"content-type": "text/plain"}), False),  # bytes then
        (ex(200, b'{"a": 1}'), ex(200, b'{"a": 1}'), True),
        (ex(200, b"not json", JSON), ex(200, b"not json", JSON), True),
        (ex(200, b"abc"), ex(200, b"abc "), False),
    ],
)
def test_pre_image_matches(capture: Exchange, now: Exchange, same: bool) -> None:
    """As a JSON API's rule set compares (compare = "json")."""
    assert pre_image_matches(capture, now, as_json=True) is same


@pytest.mark.parametrize(
    ("capture", "now", "same"),
    [
        # re-serialised JSON is other bytes (key order, 1.0, spacing, the final newline): not the same file
        (ex(200, b'{"a": 1, "b": [1, 2]}\n', JSON), ex(200, b'{"b":[1,2],"a":1.0}', JSON), False),
        (ex(200, b'{"a": 1}\n', JSON), ex(200, b'{"a": 1}', JSON), False),
        (
            ex(200, b'{"a": 1}\n', JSON),
            ex(200, b'{"a": 1}\n', {"content-type": "application/json; charset=utf-8"}),
            True,
        ),
        (ex(200, b'{"a": 1}', JSON), ex(200, b'{"a": 1}', {"content-type": "text/plain"}), False),
        (ex(404), ex(410), True),
    ],
)
def test_pre_image_matches_bytes(capture: Exchange, now: Exchange, same: bool) -> None:
    """As every other rule set compares (compare = "bytes", the default): byte for byte, and the media type."""
    assert pre_image_matches(capture, now, as_json=False) is same


def test_verified() -> None:
    absent = Verify(VerifyKind.ABSENT, HttpCall("GET", "/x/1"))
    assert verified(absent, inverse=ex(204), check=ex(404), capture=None)
    assert not verified(absent, inverse=ex(204), check=ex(200, b"{}"), capture=None)
    assert not verified(absent, inverse=ex(500), check=ex(404), capture=None)
    assert not verified(absent, inverse=ex(204), check=None, capture=None)
    pre = Verify(VerifyKind.PRE_IMAGE, HttpCall("GET", "/x/1"))
    assert verified(pre, inverse=None, check=ex(200, b"a"), capture=ex(200, b"a"))
    assert not verified(pre, inverse=ex(200), check=ex(200, b"b"), capture=ex(200, b"a"))
    assert not verified(pre, inverse=ex(200), check=ex(200, b"a"), capture=None)
    status = Verify(VerifyKind.STATUS, None)
    assert verified(status, inverse=ex(200), check=None, capture=None)
    assert not verified(status, inverse=ex(409), check=None, capture=None)


# ---------------------------------------------------------------- loading


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(dedent(text))
    return path


MINIMAL = """
name = "{name}"
description = "{description}"
[[rule]]
name = "r"
method = "POST"
path = "/x"
  [[rule.outcome]]
  class = "irreversible"
"""


def test_the_shipped_sets_are_package_data() -> None:
    assert set(SHIPPED) == {"rest", "s3", "generic", "slack"}
    assert REST.source == "rest.toml (shipped)"
    assert REST.description.startswith("JSON REST collections")
    assert [r.name for r in S3.rules] == ["create-bucket", "put-object", "delete-object", "delete-bucket"]


def test_user_dirs_add_and_replace_sets(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first, "mine.toml", MINIMAL.format(name="rest", description="mine"))
    _write(first, "extra.toml", MINIMAL.format(name="extra", description="one"))
    _write(first, "notes.txt", "not a rule file")
    _write(second, "later.toml", MINIMAL.format(name="extra", description="two"))
    sets = load_rule_sets([first, second])
    assert set(sets) == {"rest", "s3", "generic", "slack", "extra"}
    assert (sets["rest"].description, sets["rest"].source) == ("mine", str(first / "mine.toml"))
    assert sets["extra"].description == "two"
    assert sets["s3"].source == "s3.toml (shipped)"
    assert sets["rest"].plan(HttpCall("POST", "/items")).rule == ""  # the shipped rest rules are gone
    assert load_rule_sets([str(first)])["extra"].description == "one"  # a str names a directory too


def test_one_name_twice_in_a_directory_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", MINIMAL.format(name="dup", description="a"))
    b = _write(tmp_path, "b.toml", "# the same set again\n" + dedent(MINIMAL.format(name="dup", description="b")))
    with pytest.raises(RuleError) as e:
        load_rule_sets([tmp_path])
    assert (e.value.file, e.value.line) == (str(b), 3)
    assert str(e.value) == f"{b}, line 3: rule set 'dup' is also defined in {tmp_path / 'a.toml'}"


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"nowhere: not a directory of rule files$"):
        load_rule_sets([tmp_path / "nowhere"])


def test_an_invalid_user_file_names_its_path(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.toml", MINIMAL.format(name="bad", description="x").replace('path = "/x"', 'path = "x"'))
    with pytest.raises(RuleError) as e:
        load_rule_sets([tmp_path])
    assert str(e.value) == f"{bad}, line 7: rule[0].path: path pattern 'x' must start with '/' and hold no query"


# ---------------------------------------------------------------- validation

GOOD = """\
name = "v"

[[rule]]
name = "first"
method = "POST"
path = "/{c}"
  [[rule.outcome]]
  class = "reversible"
  inverse = { method = "DELETE", path = "/{c}/{response.json.id}" }
  verify = "absent"

[[rule]]
name = "second"
method = ["PUT", "PATCH"]
path = "/{c}/{id}"
capture = { path = "/{c}/{id}" }
  [[rule.outcome]]
  when = { capture_status = [200] }
  class = "reversible"
  inverse = { method = "PUT", path = "/{c}/{id}", json = "{capture.body}" }
  verify = "pre-image"
  [[rule.outcome]]
  class = "irreversible"
"""


def test_the_validation_base_is_valid() -> None:
    rs = rules(GOOD)
    assert [r.name for r in rs.rules] == ["first", "second"]


def _error(text: str) -> RuleError:
    with pytest.raises(RuleError) as e:
        parse_rule_file(text, "f.toml")
    return e.value


def _line(text: str, needle: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(text.splitlines(), start=1) if needle in line][nth]


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            'name = "second"',
            'name = "second"\nmethods = "PUT"',
            "methods",
            "rule[1].methods: unknown key (known here: ",
        ),
        (
            '  class = "irreversible"',
            '  class = "irreversible"\n  inverze = "none"',
            "inverze",
            "rule[1].outcome[1].inverze: unknown key",
        ),
        (
            'class = "reversible"\n  inverse = { method = "PUT"',
            'class = "undoable"\n  inverse = { method = "PUT"',
            "undoable",
            "rule[1].outcome[0].class: must be one of reversible, best_effort, irreversible, not 'undoable'",
        ),
        (
            "{response.json.id}",
            "{response.json.id}/{ID}",
            "{ID}",
            "rule[0].outcome[0].inverse.path: unknown variable {ID} (the rule's path binds c)",
        ),
        ("{response.json.id}", "{reponse.json.id}", "reponse", "unknown reference {reponse.json.id}"),
        ("{response.json.id}", "{response.status}", "response.status", "after response. comes json, headers, body"),
        ("{response.json.id}", "{capture.body}", "capture.body", "{capture.body} needs a capture in the rule"),
        (
            'capture = { path = "/{c}/{id}" }',
            'capture = { path = "/{c}/{response.json.id}" }',
            "capture =",
            "the capture is sent before the call",
        ),
        ('name = "second"', 'name = "first"  # again', "# again", "rule[1].name: rule 'first' is defined twice"),
        ('method = "POST"', 'method = "post"', "post", "'post' is not an HTTP method in capitals"),
        ('path = "/{c}"', 'path = "/x{c}"', "/x{c}", "a variable is a whole segment"),
        ('path = "/{c}/{id}"', 'path = "/{c+}/{id+}"', "{id+}", "at most one {name+} variable"),
        ('path = "/{c}/{id}"', 'path = "/{c}/{c}"', "/{c}/{c}", "variable {c} appears twice"),
        ('verify = "absent"', 'verify = "gone"', "gone", "must be one of absent, pre-image, status, none"),
        ('verify = "absent"', 'verify = { path = "/{c}" }', "verify =", "verify needs a kind"),
        ('verify = "absent"', 'verify = { kind = "status", path = "/{c}" }', "verify =", "it takes no method"),
        ('verify = "absent"', 'verify = "pre-image"', 'verify = "pre-image"', "the rule has no capture"),
        (
            '  class = "irreversible"',
            '  class = "irreversible"\n  inverse = { method = "PUT", path = "/x" }',
            'path = "/x"',
            'an irreversible outcome has inverse = "none"',
        ),
        (
            '  class = "irreversible"',
            '  class = "irreversible"\n  verify = "pre-image"  # here',
            "# here",
            'verify = "none"',
        ),
        ("  when = { capture_status = [200] }", "  when = { capture_status = [700] }", "700", "700 is not a status"),
        (
            "  when = { capture_status = [200] }",
            "  when = { status = [200] }",
            "when",
            "outcome[0].when.status: unknown key",
        ),
        ('  verify = "absent"', "", "[[rule.outcome]]", "rule[0].outcome[0]: a reversible outcome needs verify"),
        ('method = "POST"\n', "", "[[rule]]", "rule[0]: a rule needs method"),
        ('"/{c}/{response.json.id}"', '"{c}/{response.json.id}"', "DELETE", "must start with '/' and hold no query"),
        ('"/{c}/{response.json.id}"', '"/{c}/{response.json.id"', "DELETE", "unbalanced '{'"),
        ('json = "{capture.body}"', 'json = "{capture.body}", body = "x"', "json =", "give body or json, not both"),
        ('name = "v"', 'name = "v.1"', 'name = "v.1"', "name: use 1 to 64 letters"),
    ],
)
def test_validation_errors_name_the_line_and_key(old: str, new: str, needle: str, message: str) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    error = _error(text)
    assert error.file == "f.toml"
    assert message in error.message
    assert error.line == _line(text, needle), str(error)
    assert str(error) == f"f.toml, line {error.line}: {error.message}"


def test_an_outcome_in_a_later_rule_is_found_by_its_own_index() -> None:
    # line_of counts [[rule.outcome]] across the file; the error must point into rule 1's second one.
    text = GOOD.replace('  class = "irreversible"', '  class = "irreversible"\n  note = 3')
    error = _error(text)
    assert error.message == "rule[1].outcome[1].note: must be a non-empty string"
    assert error.line == _line(text, "note = 3")


def test_an_inline_outcome_array_is_located_at_its_key() -> None:
    text = dedent(
        """\
        name = "inline"
        [[rule]]
        name = "r"
        method = "POST"
        path = "/x"
        outcome = [
          { class = "irreversible" },
          { class = "maybe" },
        ]
        """
    )
    error = _error(text)
    assert error.message.startswith("rule[0].outcome[1].class: must be one of")
    assert error.line == 6


def test_toml_syntax_errors_have_their_line() -> None:
    text = GOOD.replace('path = "/{c}"', 'path = "/{c}', 1)
    error = _error(text)
    assert error.line == _line(text, 'path = "/{c}')
    assert error.message.startswith("invalid TOML: ")


def test_a_file_needs_a_name_and_rules() -> None:
    assert _error('description = "x"\n').message == "a rule file needs a name (rule sets are chosen by it)"
    assert _error('name = "x"\n').message == "a rule file needs at least one [[rule]]"
    no_outcome = 'name = "x"\n[[rule]]\nname = "r"\nmethod = "POST"\npath = "/x"\noutcome = []\n'
    error = _error(no_outcome)
    assert (error.line, error.message) == (6, "rule[0].outcome: a rule needs at least one [[rule.outcome]]")


def test_only_a_json_api_compares_json() -> None:
    # http-rules.md: rest (a JSON API) compares pre-images as JSON; generic and s3 promise the bytes back.
    sets = load_rule_sets()
    compares = {"rest": "json", "generic": "bytes", "s3": "bytes", "slack": "bytes"}  # slack's undos compare nothing
    assert {name: s.compare for name, s in sets.items()} == compares
    rest = sets["rest"].bound("http://svc", [sets["generic"]])
    item = Exchange(200, {"content-type": "application/json"}, b'{"id": 1, "a": 1}')
    for rule_set, path, as_json in ((rest, "/items/1", True), (sets["generic"].bound("http://svc"), "/f.json", False)):
        call = HttpCall("PUT", path, (), (("content-type", "application/json"),), b'{"id": 1, "a": 2}')
        planned = rule_set.plan(call)
        derived = rule_set.derive(planned, call, Exchange(200, {}, b""), item)
        assert derived.verify.kind is VerifyKind.PRE_IMAGE and derived.verify.as_json is as_json, derived


def test_compare_must_be_bytes_or_json() -> None:
    assert "compare" in str(_error(GOOD.replace('name = "v"', 'name = "v"\ncompare = "yaml"', 1)))


def test_a_difference_names_a_changed_content_type_over_the_same_bytes() -> None:
    from goexd.resources.http.resource import _difference

    before = Exchange(200, {"content-type": "application/json"}, b'{"a": 1}')
    retyped = Exchange(200, {"content-type": "text/plain"}, b'{"a": 1}')
    said = _difference(before, retyped, as_json=True)
    assert said == "the content type changed: text/plain, was application/json (the same body bytes)", said
    reserialised = Exchange(200, {"content-type": "application/json"}, b'{"a":1.0}')
    assert "the body's bytes differ" in _difference(before, reserialised, as_json=False)
