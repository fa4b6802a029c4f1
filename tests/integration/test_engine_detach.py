"""A detached submission answers the action as proposed, however far its worker has already run it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from goex.v1 import types_pb2 as pb
from goexd.config import Config
from goexd.domain.models import ActionState, CloseMode, ResourceKind, ResourceRequest
from goexd.engine.engine import Engine
from goexd.engine.journal import Journal
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.sandbox.limits import RlimitEnforcer
from goexd.server import convert as cv
from goexd.vault.vault import Vault


class RunAtOnce:
    """An executor that runs the work inside submit(): the worst interleaving a real pool can produce."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn(*args))
        return done

    def shutdown(self, wait: bool = True) -> None:
        return None


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    cfg = Config(state_dir=tmp_path / "state")
    cfg.state_dir.mkdir(mode=0o700)
    journal = Journal(cfg.journal_path, sync=cfg.journal_sync)
    engine = Engine(cfg, journal, BwrapSandbox(RlimitEnforcer()), Vault.open(cfg))
    yield engine
    engine.shutdown(5)
    journal.close()


def test_detach_answers_proposed_even_when_the_worker_finished_first(engine: Engine, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    session = engine.create_session([ResourceRequest("ws", ResourceKind.FS, str(workspace))])
    engine.runner.workers.shutdown()
    engine.runner.workers = RunAtOnce()  # type: ignore[assignment]
    spec = cv.action_spec(pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo x > x.txt"])), "spec")
    answered = engine.submit(session.id, spec, detach=True)
    assert answered.state is ActionState.PROPOSED and answered.seq == 1
    assert engine.get_action(answered.id).state is ActionState.EXECUTED  # it had run before submit returned
    assert (workspace / "x.txt").read_text() == "x\n"
    engine.close_session(session.id, CloseMode.COMMIT_ALL)
