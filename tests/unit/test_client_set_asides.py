"""Set-asides and forced undo in the client: the models from hand-built messages, the requests both
clients send, and that the sync and async clients offer the same calls (no daemon needed; the
end-to-end tests in tests/e2e/test_set_aside_client.py run them against a real goexd)."""

from __future__ import annotations

import dataclasses
import inspect
import os
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import goex
from goex import _requests as rq
from goex._set_asides import list_request, restore_request
from goex.v1 import actions_pb2 as apb

WHEN = datetime(2026, 12, 7, 18, 0, 1, 500000, tzinfo=UTC)


def kept(**fields: object) -> apb.SetAside:
    created = Timestamp()
    created.FromDatetime(WHEN)
    msg = apb.SetAside(
        id="3f2a9c01b4de",
        resource="fs",
        action_id="act_00000000000000a1",
        created_at=created,
        reason="changed since the action; overwritten by a forced undo",
        paths=["a.txt", "bad\\xff", "dir/"],
        paths_bytes=[b"a.txt", b"bad\xff", b"dir/"],
    )
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def test_set_aside_fields_times_and_exact_names() -> None:
    msg = kept()
    s = goex.SetAside.from_proto(msg)
    assert (s.id, s.resource, s.action_id) == ("3f2a9c01b4de", "fs", "act_00000000000000a1")
    assert s.created_at == WHEN and s.created_at.tzinfo is not None
    assert s.reason.startswith("changed since the action")
    assert s.paths == ("a.txt", "bad\\xff", "dir/")
    assert s.paths_bytes == (b"a.txt", b"bad\xff", b"dir/")
    # The exact name as os functions take it: the byte that is not UTF-8 survives a round trip.
    assert s.fspaths[1] == os.fsdecode(b"bad\xff") and os.fsencode(s.fspaths[1]) == b"bad\xff"
    assert s.proto is msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.id = "other"  # type: ignore[misc]
    assert "proto" not in repr(s)


def test_set_aside_json_form_and_unset_fields() -> None:
    d = goex.SetAside.from_proto(kept()).to_dict()
    assert d["id"] == "3f2a9c01b4de" and d["created_at"] == "2026-12-07T18:00:01.500Z"
    assert d["paths"] == ["a.txt", "bad\\xff", "dir/"] and d["paths_bytes"][1] == "YmFk/w=="  # base64
    # A set-aside a forced restore made has no action; an unset time is None, not the epoch.
    bare = goex.SetAside.from_proto(apb.SetAside(id="x", paths=["a.txt"]))
    assert bare.action_id == "" and bare.created_at is None
    assert bare.to_dict()["action_id"] == ""
    # A goexd that sent no exact names: the display form stands for them, as for FileChange.
    assert bare.paths_bytes == (b"a.txt",)


def test_set_aside_restored() -> None:
    msg = apb.RestoreSetAsideResponse(verified=True, detail="brought back 1 path")
    r = goex.SetAsideRestored.from_proto(msg)
    assert r.verified and r.detail == "brought back 1 path" and r.proto is msg
    assert goex.SetAsideRestored.from_proto(apb.RestoreSetAsideResponse()).verified is False
    assert r.to_dict() == {"verified": True, "detail": "brought back 1 path"}


def test_undo_requests_carry_force() -> None:
    assert rq.undo("s1", None, False, False) == apb.UndoActionRequest(session_id="s1")
    assert rq.undo("s1", "a1", True, True) == apb.UndoActionRequest(
        session_id="s1", action_id="a1", cascade=True, force=True
    )
    assert rq.undo("s1", "a1", False, True).force and not rq.undo("s1", "a1", True, False).force
    assert rq.undo_to("a1", False) == apb.UndoToRequest(action_id="a1")
    assert rq.undo_to("a1", True) == apb.UndoToRequest(action_id="a1", force=True)


def test_set_aside_requests() -> None:
    assert list_request("s1") == apb.ListSetAsidesRequest(session_id="s1")
    assert restore_request("s1", "3f2a", False) == apb.RestoreSetAsideRequest(session_id="s1", set_aside_id="3f2a")
    assert restore_request("s1", "3f2a", True).force


@pytest.mark.parametrize(
    ("method", "parameters", "keyword_only"),
    [
        ("undo", ["session_id", "action_id", "cascade", "force"], ["cascade", "force"]),
        ("undo_to", ["action_id", "force", "session_id"], ["force", "session_id"]),
        ("set_asides", ["session_id"], []),
        ("restore_set_aside", ["session_id", "set_aside_id", "force"], ["force"]),
    ],
)
def test_both_clients_offer_the_same_calls(method: str, parameters: list[str], keyword_only: list[str]) -> None:
    sync, aio = inspect.signature(getattr(goex.Client, method)), inspect.signature(getattr(goex.AsyncClient, method))
    assert list(sync.parameters) == ["self", *parameters]
    assert [p.name for p in sync.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY] == keyword_only
    assert inspect.iscoroutinefunction(getattr(goex.AsyncClient, method))
    assert not inspect.iscoroutinefunction(getattr(goex.Client, method))
    # force never defaults to on: overwriting someone's version is asked for each time.
    if "force" in parameters:
        assert sync.parameters["force"].default is False
    # Same parameters and defaults; the return types differ only by the coroutine.
    assert [(p.name, p.kind, p.default) for p in sync.parameters.values()] == [
        (p.name, p.kind, p.default) for p in aio.parameters.values()
    ]
