"""The HTTP cases of the inverse corpus (tests/corpus/http.toml) as reversibility tests, through a real goexd
and real json-servers: without a staging copy every pair is "unknown" (an HTTP call cannot be tried without its
side effect) and nothing is sent; with one, each pair is tried there for real before anything runs: every right
inverse passes, every wrong one fails, and where the undo could compare nothing (the cases whose undo is
"unverified") the trial is unknown too, never passed. The service itself never gets a call.

(tests/e2e/test_http_client_inverses.py runs the same cases as real actions, undone and checked.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import types_pb2 as pb
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
from tests.services.json_server import JsonServer

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
