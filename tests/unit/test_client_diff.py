"""The diff calls of both clients: the same signatures, and the requests they build."""

from __future__ import annotations

import inspect

import pytest

import goex
from goex import _diffs
from goex.v1 import actions_pb2 as apb


@pytest.mark.parametrize("method", ["diff", "diff_since_last"])
def test_both_clients_have_the_same_diff_calls(method: str) -> None:
    sync, aio = getattr(goex.Client, method), getattr(goex.AsyncClient, method)
    assert inspect.signature(sync) == inspect.signature(aio) and inspect.iscoroutinefunction(aio)
    caps = ["max_file_bytes", "max_total_bytes", "max_files", "context_lines", "stat_only"]
    assert list(inspect.signature(sync).parameters)[-5:] == caps


def test_requests_leave_unset_caps_to_the_daemon() -> None:
    req = _diffs.action_request("act_1", _diffs.DiffOptionsArgs())
    assert req.WhichOneof("target") == "action_id" and not req.options.HasField("context_lines")
    assert req.options == apb.DiffOptions()
    zero_context = _diffs.action_request("act_1", _diffs.DiffOptionsArgs(context_lines=0, stat_only=True))
    assert zero_context.options.HasField("context_lines") and zero_context.options.context_lines == 0
    since = _diffs.since_last_request("ses_1", None, _diffs.DiffOptionsArgs(max_files=5))
    assert since.WhichOneof("target") == "since_last" and since.since_last == apb.SinceLastAction(session_id="ses_1")
    assert since.options.max_files == 5
