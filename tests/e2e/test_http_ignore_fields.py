"""HTTP rule sets' ignore_fields through a real goexd against a real service (issue 15, trial 15b H30, H29).

The service (tests/services/stamped_app.py, Flask) stamps `updated` and `meta.etag` on every write, so no inverse
can give the pre-image back byte for byte or JSON for JSON: without ignore_fields every undo is NOT verified (the
trial's false alarm); with them the right inverse is verified, a wrong one still is not, and the undo's text names
what was left out. It also soft-deletes: an undo verifies the item, and says that is all it verifies, unless the
rule names the trash as related (then a delete and re-create is not verified)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.services.stamped_service import StampedService, run_stamped_service

RULES = """
name = "{name}"
compare = "json"
{ignore}

[[rule]]
name = "update"
method = ["PUT", "PATCH", "DELETE"]
path = "/stamped/{{id}}"
capture = {{ method = "GET", path = "/stamped/{{id}}" }}
{related}

  [[rule.outcome]]
  name = "replaced"
  when = {{ capture_status = [200] }}
  class = "reversible"
  inverse = {{ method = "PUT", path = "/stamped/{{id}}", json = "{{capture.body}}" }}
  verify = "pre-image"
  note = "puts the captured item back"
"""


@pytest.fixture(scope="module")
def goexd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    rules = tmp_path_factory.mktemp("rules")
    (rules / "strict.toml").write_text(textwrap.dedent(RULES.format(name="strict", ignore="", related="")))
    ignore = 'ignore_fields = ["updated", "meta.etag"]'
    (rules / "stamped.toml").write_text(textwrap.dedent(RULES.format(name="stamped", ignore=ignore, related="")))
    related = 'related = [{ path = "/_trash" }]'
    (rules / "trashy.toml").write_text(textwrap.dedent(RULES.format(name="trashy", ignore=ignore, related=related)))
    root = tmp_path_factory.mktemp("goexd") / "d"
    root.mkdir()
    d = DaemonProcess(root, env={"GOEXD_HTTP__RULES_DIRS": str(rules)}).start()
    yield d
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[StampedService]:
    with run_stamped_service(tmp_path / "svc") as svc:
        yield svc


def state(service: StampedService) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{service.base_url}/_state", trust_env=False).json()
    return doc


def spec(method: str, path: str, json_body: str | None = None) -> pb.ActionSpec:
    http = pb.HttpAction(method=method, path=path)
    if json_body is not None:
        http.json = json_body
    return pb.ActionSpec(http=http)


def run_and_undo(
    d: DaemonProcess, service: StampedService, rules: str, action: pb.ActionSpec, inverse: pb.ActionSpec | None
) -> pb.Action:
    res = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=service.base_url, rules=rules))
    session = d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[res])).session
    try:
        req = apb.SubmitActionRequest(session_id=session.id, spec=action)
        if inverse is not None:
            req.inverse.CopyFrom(inverse)
        done = d.actions.SubmitAction(req).action
        assert done.state == pb.ACTION_STATE_EXECUTED, done.error
        undo = apb.UndoActionRequest(session_id=session.id, action_id=done.id)
        undone: pb.Action = d.actions.UndoAction(undo).undone[-1]
        return undone
    finally:
        d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=session.id, mode=sepb.CLOSE_MODE_COMMIT_ALL))


def test_without_ignore_fields_a_server_stamp_fails_every_undo(goexd: DaemonProcess, service: StampedService) -> None:
    undone = run_and_undo(goexd, service, "strict", spec("PATCH", "/stamped/1", '{"text": "x"}'), None)
    assert undone.reversibility.verdict == pb.VERDICT_FAILED, undone.reversibility.detail
    assert "changed: 'meta', 'updated'" in undone.reversibility.detail, undone.reversibility.detail
    assert state(service)["items"]["1"]["text"] == "a"  # restored, all but the stamps


def test_ignore_fields_verify_the_right_inverse(goexd: DaemonProcess, service: StampedService) -> None:
    for inverse in (None, spec("PATCH", "/stamped/1", '{"text": "a"}')):  # the derived PUT, and a client's PATCH
        undone = run_and_undo(goexd, service, "stamped", spec("PATCH", "/stamped/1", '{"text": "x"}'), inverse)
        detail = undone.reversibility.detail
        assert undone.reversibility.verdict == pb.VERDICT_PASSED, detail
        assert "equals the pre-image" in detail and "left out of the comparison" in detail, detail
        assert "updated, meta.etag" in detail, detail
    item = state(service)["items"]["1"]
    assert item["text"] == "a" and item["meta"]["kind"] == "note"


def test_ignore_fields_still_fail_a_wrong_inverse(goexd: DaemonProcess, service: StampedService) -> None:
    wrong = spec("PATCH", "/stamped/1", '{"text": "A"}')
    undone = run_and_undo(goexd, service, "stamped", spec("PATCH", "/stamped/1", '{"text": "x"}'), wrong)
    detail = undone.reversibility.detail
    assert undone.reversibility.verdict == pb.VERDICT_FAILED, detail
    assert "changed: 'text'" in detail and "updated" not in detail.split("left out")[0], detail


def test_a_verified_undo_says_it_verified_the_item_only(goexd: DaemonProcess, service: StampedService) -> None:
    """Trial 15b H29: the service keeps a deleted item's copy in its trash; the undo verifies the item back and
    says that what the service keeps beside it is not compared."""
    undone = run_and_undo(goexd, service, "stamped", spec("DELETE", "/stamped/2"), None)
    detail = undone.reversibility.detail
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, detail
    assert "this item only" in detail and "is not compared unless the rule names it as related" in detail, detail
    after = state(service)
    assert after["items"]["2"]["text"] == "b" and [t["id"] for t in after["trash"]] == ["2"]


def test_a_related_call_the_rule_names_is_compared_too(goexd: DaemonProcess, service: StampedService) -> None:
    """The rule names the trash as related: the same delete and re-create is NOT verified, naming the trash; an
    update that leaves the trash alone is verified, saying the trash answers as before."""
    undone = run_and_undo(goexd, service, "trashy", spec("DELETE", "/stamped/2"), None)
    detail = undone.reversibility.detail
    assert undone.reversibility.verdict == pb.VERDICT_FAILED, detail
    assert "GET /stamped/2 equals the pre-image" in detail and "but GET /_trash differs from before" in detail, detail
    updated = run_and_undo(goexd, service, "trashy", spec("PATCH", "/stamped/1", '{"text": "x"}'), None)
    detail = updated.reversibility.detail
    assert updated.reversibility.verdict == pb.VERDICT_PASSED, detail
    assert "GET /_trash answer(s) as before the call" in detail, detail
