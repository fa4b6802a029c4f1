"""ignore_fields (issue 15, trial 15b H30): a rule set leaves fields the service manages itself out of its
pre-image checks, validated like every other key, applied to the derived verify, and to the comparison."""

from __future__ import annotations

import json
from textwrap import dedent

import pytest

from goexd.resources.http.rules import (
    Exchange,
    HttpCall,
    RuleError,
    RuleSet,
    pre_image_matches,
    verified,
    without_fields,
)
from goexd.resources.http.rules_parse import parse_rule_file

JSON = {"content-type": "application/json"}
STAMPED = """
name = "stamped"
compare = "json"
ignore_fields = ["updated"]

[[rule]]
name = "update"
method = ["PUT", "PATCH"]
path = "/stamped/{id}"
ignore_fields = ["meta.etag"]
capture = { method = "GET", path = "/stamped/{id}" }

  [[rule.outcome]]
  name = "updated"
  when = { response_status = ["2xx"], capture_status = [200] }
  class = "reversible"
  inverse = { method = "PUT", path = "/stamped/{id}", body = "{capture.body}" }
  verify = "pre-image"
  note = "puts the pre-image back"

[[rule]]
name = "other"
method = "DELETE"
path = "/stamped/{id}"
capture = { method = "GET", path = "/stamped/{id}" }

  [[rule.outcome]]
  name = "deleted"
  class = "reversible"
  inverse = { method = "PUT", path = "/stamped/{id}", body = "{capture.body}" }
  verify = "pre-image"
  note = "puts it back"
"""


def ex(status: int, doc: object) -> Exchange:
    return Exchange(status, JSON, json.dumps(doc).encode())


def test_the_derived_check_leaves_the_files_and_the_rules_fields_out() -> None:
    rs = RuleSet(parse_rule_file(STAMPED, "s.toml"), "s.toml").bound("http://127.0.0.1:1")
    call = HttpCall("PATCH", "/stamped/1", (), (("content-type", "application/json"),), b'{"text": "b"}')
    planned = rs.plan(call)
    before = ex(200, {"id": 1, "text": "a", "updated": 1, "meta": {"etag": "x", "by": "ann"}})
    derived = rs.derive(planned, call, ex(200, {}), before)
    assert derived.verify.as_json and derived.verify.ignore == ("updated", "meta.etag")
    back = ex(200, {"id": 1, "text": "a", "updated": 3, "meta": {"etag": "y", "by": "ann"}})
    assert verified(derived.verify, inverse=ex(200, {}), check=back, capture=before)
    wrong = ex(200, {"id": 1, "text": "a", "updated": 3, "meta": {"etag": "y", "by": "bob"}})
    assert not verified(derived.verify, inverse=ex(200, {}), check=wrong, capture=before)
    other = rs.derive(rs.plan(HttpCall("DELETE", "/stamped/1")), HttpCall("DELETE", "/stamped/1"), ex(204, {}), before)
    assert other.verify.ignore == ("updated",)  # the file's only


@pytest.mark.parametrize(
    ("ignore", "a", "same"),
    [
        ((), 1, False),
        (("updated",), 1, False),  # meta.etag differs too
        (("meta.etag",), 1, False),
        (("updated", "meta.etag"), 1, True),
        (("updated", "meta.etag"), 2, False),  # what is not left out is still compared
        (("nope", "meta.etag.deeper"), 1, False),
    ],
)
def test_pre_image_matches_without_fields(ignore: tuple[str, ...], a: int, same: bool) -> None:
    before = ex(200, {"a": 1, "updated": 1, "meta": {"etag": "x"}})
    now = ex(200, {"a": a, "updated": 2, "meta": {"etag": "y"}})
    assert pre_image_matches(before, now, True, ignore) is same
    assert not pre_image_matches(before, now, False, ignore)  # compared as bytes: nothing is left out


def test_without_fields_copies() -> None:
    doc = {"a": 1, "m": {"e": 1, "f": 2}, "l": [1]}
    assert without_fields(doc, ("a", "m.e", "l.x", "zz.y")) == {"m": {"f": 2}, "l": [1]}
    assert doc == {"a": 1, "m": {"e": 1, "f": 2}, "l": [1]}
    assert without_fields([1], ("a",)) == [1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name = "x"\nignore_fields = ["u"]\n',
            "ignore_fields: leaves JSON fields out of the comparison: the file needs",
        ),
        ('name = "x"\ncompare = "json"\nignore_fields = "u"\n', "ignore_fields: must be a list of JSON field paths"),
        ('name = "x"\ncompare = "json"\nignore_fields = ["a..b"]\n', "'a..b' is not a JSON field path"),
        ('name = "x"\ncompare = "json"\nignore_fields = [""]\n', "'' is not a JSON field path"),
        ('name = "x"\ncompare = "json"\nignore_fields = [1]\n', "1 is not a JSON field path"),
    ],
)
def test_bad_ignore_fields_are_errors_naming_the_key(text: str, message: str) -> None:
    rule = '\n[[rule]]\nname = "r"\nmethod = "PUT"\npath = "/x"\n[[rule.outcome]]\nname = "o"\nclass = "irreversible"\n'
    rule += 'inverse = "none"\nverify = "none"\nnote = "n"\n'
    with pytest.raises(RuleError) as e:
        parse_rule_file(dedent(text) + rule, "f.toml")
    assert message in str(e.value) and "f.toml, line" in str(e.value), str(e.value)


def test_a_rules_ignore_fields_needs_a_json_file() -> None:
    text = STAMPED.replace('compare = "json"\nignore_fields = ["updated"]\n', "")
    with pytest.raises(RuleError) as e:
        parse_rule_file(text, "f.toml")
    assert "rule[0].ignore_fields: leaves JSON fields out" in str(e.value), str(e.value)


def test_related_calls_are_planned_with_the_capture() -> None:
    text = STAMPED.replace(
        'capture = { method = "GET", path = "/stamped/{id}" }\n\n  [[rule.outcome]]\n  name = "deleted"',
        'capture = { method = "GET", path = "/stamped/{id}" }\nrelated = [{ path = "/trash/{id}" }, { path = "/log" }]'
        '\n\n  [[rule.outcome]]\n  name = "deleted"',
    )
    rs = RuleSet(parse_rule_file(text, "s.toml"), "s.toml").bound("http://127.0.0.1:1")
    planned = rs.plan(HttpCall("DELETE", "/stamped/7"))
    assert [(c.method, c.path) for c in planned.related] == [("GET", "/trash/7"), ("GET", "/log")]
    assert rs.plan(HttpCall("PATCH", "/stamped/7")).related == ()


@pytest.mark.parametrize(
    ("related", "message"),
    [
        ('related = [{ path = "/t" }]', "rule[0].related: compares what the service answered before the call"),
        ('related = "/t"', "rule[0].related: must be a list of tables"),
        ('related = [{ method = "POST", path = "/t" }]', "rule[0].related[0].method: must be one of GET"),
        ('related = [{ query = { a = "b" } }]', "rule[0].related[0]: a related call needs a path"),
    ],
)
def test_bad_related_calls_are_errors_naming_the_key(related: str, message: str) -> None:
    text = 'name = "x"\n[[rule]]\nname = "r"\nmethod = "PUT"\npath = "/x"\n' + related + "\n"
    text += '[[rule.outcome]]\nname = "o"\nclass = "irreversible"\ninverse = "none"\nverify = "none"\nnote = "n"\n'
    if "compares what" not in message:
        text = text.replace('path = "/x"\n', 'path = "/x"\ncapture = { path = "/x" }\n', 1)
    with pytest.raises(RuleError) as e:
        parse_rule_file(text, "f.toml")
    assert message in str(e.value), str(e.value)
