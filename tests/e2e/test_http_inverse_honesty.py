"""What goexd records about HTTP inverses is what happened (issue 15, trial 15b E09 and H28), through a real goexd
against a real json-server:
- an inverse given for a read (GET, HEAD, OPTIONS) is refused with INVALID_ARGUMENT naming `inverse`, never
  silently dropped: a read has nothing to undo;
- an undo whose inverse is a read and that has nothing to check it against is refused: recording the action
  `undone` would claim that a sent message was taken back by a GET. The action stays as it was, the outbox too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.corpus.http_cases import HttpCall
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_http_client_inverses import RULES_DIR, _daemon, _server, _stop, close, open_http, spec_of, state
from tests.e2e.test_http_client_inverses import submit as submit_call

OUTBOX = HttpCall("POST", "/outbox", '{"to": "bob", "text": "hi"}')


@pytest.fixture(scope="module")
def goexd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = _daemon(tmp_path_factory.mktemp("goexd") / "d", RULES_DIR)
    yield d
    _stop(d)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_an_inverse_given_for_a_read_is_refused_naming_it(goexd: DaemonProcess, tmp_path: Path, method: str) -> None:
    with _server(tmp_path, "s") as server:
        session = open_http(goexd, server.base_url)
        read, inverse = HttpCall(method, "/items/1"), HttpCall("DELETE", "/items/1")
        got, msg = status_of(lambda: submit_call(goexd, session.id, read, inverse))
        assert got == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("inverse:"), msg
        assert f"{method} is read-only: it needs no inverse" in msg, msg
        test = apb.TestReversibilityRequest(session_id=session.id, spec=spec_of(read), inverse=spec_of(inverse))
        got, msg = status_of(lambda: goexd.actions.TestReversibility(test))
        assert got == grpc.StatusCode.INVALID_ARGUMENT and "needs no inverse" in msg, msg
        assert goexd.actions.ListActions(apb.ListActionsRequest(session_id=session.id)).actions == []
        assert [i["id"] for i in state(server)["items"]] == [1, 2, 3]  # nothing was sent
        close(goexd, session.id)


def test_an_undo_by_a_read_with_nothing_to_check_is_refused(goexd: DaemonProcess, tmp_path: Path) -> None:
    with _server(tmp_path, "s") as server:
        session = open_http(goexd, server.base_url, rules="creates-only")
        sent = submit_call(goexd, session.id, OUTBOX, HttpCall("GET", "/outbox"), "ann: a test double")
        assert sent.state == pb.ACTION_STATE_EXECUTED, sent.error
        undo = apb.UndoActionRequest(session_id=session.id, action_id=sent.id)
        got, msg = status_of(lambda: goexd.actions.UndoAction(undo))
        assert got == grpc.StatusCode.FAILED_PRECONDITION, msg
        assert "its inverse GET /outbox is read-only, so it takes nothing back" in msg, msg
        again = goexd.actions.GetAction(apb.GetActionRequest(action_id=sent.id)).action
        assert again.state == pb.ACTION_STATE_EXECUTED, again  # never recorded undone
        assert len(state(server)["outbox"]) == 1  # the message is still sent
        # A client inverse that writes is sent; its undo, with nothing to check, says it does not know.
        other = submit_call(goexd, session.id, OUTBOX, HttpCall("DELETE", "/outbox/2"), "ann: a test double")
        undone = goexd.actions.UndoAction(apb.UndoActionRequest(session_id=session.id, action_id=other.id)).undone
        assert undone[-1].reversibility.verdict == pb.VERDICT_UNKNOWN
        assert "whether the call was taken back is not known" in undone[-1].reversibility.detail
        close(goexd, session.id)
