"""The inverse corpus through a real goexd: its file cases (tests/corpus/files.toml) tried in bwrap on
overlays, submitted and undone; and its HTTP cases (tests/corpus/http.toml) as reversibility tests against real
json-servers: without a staging copy every pair is "unknown" (an HTTP call cannot be tried without its
side effect) and nothing is sent; with one, each pair is tried there for real before anything runs: every right
inverse passes, every wrong one fails, and where the undo could compare nothing (the cases whose undo is
"unverified") the trial is unknown too, never passed. The service itself never gets a call.

(tests/e2e/test_http_client_inverses.py runs the same cases as real actions, undone and checked.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.corpus import fs_cases
from tests.corpus.http_cases import HttpCase
from tests.daemon_process import DaemonProcess
from tests.e2e.test_http_client_inverses import (
    CASES,
    RULES_DIR,
    _daemon,
    _server,
    _stop,
    close,
    open_http,
    reversibility_of,
    state,
    state_of_seed,
)
from tests.fs_fingerprint import fingerprint
from tests.services.json_server import JsonServer

FS_CASES = fs_cases.load()
FS_UNKNOWN = fs_cases.load_unknown()

# What the trial on a staging copy must say for each verdict the undo gives.
TRIAL_FOR_UNDO = {"verified": pb.VERDICT_PASSED, "not verified": pb.VERDICT_FAILED, "unverified": pb.VERDICT_UNKNOWN}
NOT_TRIED = "an HTTP call cannot be tried without its side effect"


@pytest.fixture(scope="module")
def goexd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = _daemon(tmp_path_factory.mktemp("goexd") / "d", RULES_DIR)
    yield d
    _stop(d)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonServer]:
    with _server(tmp_path_factory.mktemp("service"), "live") as live:
        yield live


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_pairs_tried_on_staging_and_unknown_without(
    goexd: DaemonProcess, service: JsonServer, tmp_path: Path, case: HttpCase
) -> None:
    session = open_http(goexd, service.base_url, rules=case.rules)
    try:
        for inverse in (case.right, case.wrong):
            got = reversibility_of(goexd, session.id, case.action, inverse)
            assert got.verdict == pb.VERDICT_UNKNOWN and NOT_TRIED in got.detail, (case.name, got.detail)
    finally:
        close(goexd, session.id)
    for which, inverse, said in (("right", case.right, case.right_verdict), ("wrong", case.wrong, case.wrong_verdict)):
        with _server(tmp_path, f"staging-{which}") as staging:
            session = open_http(goexd, service.base_url, rules=case.rules, staging=staging.base_url)
            try:
                got = reversibility_of(goexd, session.id, case.action, inverse)
            finally:
                close(goexd, session.id)
            assert got.verdict == TRIAL_FOR_UNDO[said], (case.name, which, got.detail)
            assert f"on the staging copy {staging.base_url}" in got.detail or got.verdict == pb.VERDICT_UNKNOWN
            if which == "right" and got.verdict == pb.VERDICT_PASSED:
                assert state(staging) == state_of_seed(), case.name  # a passed pair did restore it
    assert state(service) == state_of_seed()  # the service itself never got a call


def _fs_spec(case: fs_cases.FsCase | fs_cases.UnknownCase, text: str, timeout_s: float = 0) -> pb.ActionSpec:
    limits = pb.SandboxLimits()
    if timeout_s:
        limits.timeout.FromTimedelta(timedelta(seconds=timeout_s))
    if case.kind == "python":
        return pb.ActionSpec(python=pb.PythonAction(code=text), limits=limits)
    return pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", text]), limits=limits)


@pytest.fixture(scope="module")
def fs_goexd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("goexd-fs")).start()
    yield d
    _stop(d)


def _fs_session(d: DaemonProcess, tmp_path: Path) -> tuple[str, Path]:
    ws = tmp_path / "projects" / "ws"
    ws.mkdir(parents=True)
    fs_cases.seed(ws)
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)), strategy=pb.UNDO_STRATEGY_INVERSE)
    return str(d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec]), timeout=60).session.id), ws


@pytest.mark.parametrize("case", FS_CASES, ids=[c.name for c in FS_CASES])
def test_file_corpus_through_goexd(fs_goexd: DaemonProcess, tmp_path: Path, case: fs_cases.FsCase) -> None:
    """TestReversibility passes the right inverse and fails the wrong one naming what differs; a submit with the
    wrong one is blocked and changes nothing; with the right one it runs, and its undo (the inverse run for real)
    is verified and gives the tree back."""
    d = fs_goexd
    sid, ws = _fs_session(d, tmp_path)
    before = fingerprint(ws)

    def test(inverse: str) -> pb.Reversibility:
        req = apb.TestReversibilityRequest(
            session_id=sid, spec=_fs_spec(case, case.action), inverse=_fs_spec(case, inverse)
        )
        return d.actions.TestReversibility(req, timeout=120).reversibility

    def submit(inverse: str) -> pb.Action:
        req = apb.SubmitActionRequest(session_id=sid, spec=_fs_spec(case, case.action), inverse=_fs_spec(case, inverse))
        return d.actions.SubmitAction(req, timeout=120).action

    right = test(case.right)
    assert right.verdict == pb.VERDICT_PASSED, right.detail
    wrong = test(case.wrong)
    assert wrong.verdict == pb.VERDICT_FAILED and case.wrong_diff in wrong.detail, wrong.detail
    blocked = submit(case.wrong)
    assert blocked.state == pb.ACTION_STATE_BLOCKED and case.wrong_diff in blocked.error, blocked.error
    assert fingerprint(ws) == before
    done = submit(case.right)
    assert done.state == pb.ACTION_STATE_EXECUTED and done.reversibility.verdict == pb.VERDICT_PASSED, done.error
    assert fingerprint(ws) != before
    [undone] = d.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id), timeout=120).undone
    assert undone.state == pb.ACTION_STATE_UNDONE and undone.reversibility.verdict == pb.VERDICT_PASSED, undone
    assert fingerprint(ws) == before
    d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=sid), timeout=60)


@pytest.mark.parametrize("case", FS_UNKNOWN, ids=[c.name for c in FS_UNKNOWN])
def test_file_pairs_that_cannot_be_tried_are_unknown_through_goexd(
    fs_goexd: DaemonProcess, tmp_path: Path, case: fs_cases.UnknownCase
) -> None:
    d = fs_goexd
    sid, ws = _fs_session(d, tmp_path)
    before = fingerprint(ws)
    spec, inverse = _fs_spec(case, case.action, case.timeout_s), _fs_spec(case, case.right, case.timeout_s)
    got = d.actions.TestReversibility(
        apb.TestReversibilityRequest(session_id=sid, spec=spec, inverse=inverse), timeout=120
    ).reversibility
    assert got.verdict == pb.VERDICT_UNKNOWN and case.why in got.detail, got.detail
    assert fingerprint(ws) == before
    d.sessions.CloseSession(sepb.CloseSessionRequest(session_id=sid), timeout=60)
