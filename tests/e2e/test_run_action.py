"""RunAction (issue 19, the CLI's start-up): SubmitAction and WatchAction on one stream, against a real goexd.

The accepted action comes first (its id), then its state changes (output chunks only when asked), the action with
its result last; without stream_output the output arrives once, in the result. The stream ending early cancels
the action, which is rolled back; a refusal at submit ends the stream with its status before any message. The
Python client's blocking submit and `goex run` use it (their interrupt and SIGKILL paths are tested in
test_cli_daily_use.py and test_daily_use_daemon.py).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

import goex
from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e import test_daily_use_daemon as daily
from tests.e2e.rpc import get, status_of
from tests.e2e.test_cli_daily_use import _marker
from tests.fs_fingerprint import fingerprint

project = daily.project  # the fixtures: a small project, and a session over it on the shared goexd
session = daily.session

SCRIPT = "echo out; echo err >&2; echo new > added.txt"


def _run(d: DaemonProcess, session_id: str, script: str, **request: object) -> list[apb.RunActionEvent]:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    req = apb.RunActionRequest(session_id=session_id, spec=spec, **request)  # type: ignore[arg-type]
    return list(d.actions.RunAction(req, timeout=120))


def _kinds(events: list[apb.RunActionEvent]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


def test_the_accepted_action_then_its_states_then_its_result_with_the_output_once(
    shared_daemon: DaemonProcess, session: str
) -> None:
    events = _run(shared_daemon, session, SCRIPT)
    kinds = _kinds(events)
    assert kinds[0] == "accepted" and kinds[-1] == "finished", kinds
    assert set(kinds[1:-1]) == {"progress"}, kinds
    accepted, finished = events[0].accepted, events[-1].finished
    assert accepted.id.startswith("act_") and accepted.state == pb.ACTION_STATE_PROPOSED
    progress = [e.progress for e in events[1:-1]]
    assert all(p.action_id == accepted.id and p.WhichOneof("event") == "state" for p in progress), progress
    states = [p.state for p in progress]
    assert pb.ACTION_STATE_RUNNING in states and states[-1] == pb.ACTION_STATE_EXECUTED, states
    # The result is the action as GetAction has it, output and all: the output came once, here.
    assert finished == get(shared_daemon, accepted.id)
    assert finished.state == pb.ACTION_STATE_EXECUTED
    assert (finished.exec.stdout, finished.exec.stderr) == (b"out\n", b"err\n")
    assert [c.path for c in finished.changes.changes] == ["added.txt"]


def test_stream_output_sends_the_chunks_as_they_come(shared_daemon: DaemonProcess, session: str) -> None:
    events = _run(shared_daemon, session, SCRIPT, stream_output=True)
    chunks = [
        e.progress.output for e in events if e.WhichOneof("event") == "progress" and e.progress.HasField("output")
    ]
    streamed = {
        stream: b"".join(c.data for c in chunks if c.stream == stream)
        for stream in (pb.OUTPUT_STREAM_STDOUT, pb.OUTPUT_STREAM_STDERR)
    }
    assert streamed == {pb.OUTPUT_STREAM_STDOUT: b"out\n", pb.OUTPUT_STREAM_STDERR: b"err\n"}
    finished = events[-1].finished
    assert finished.exec.stdout == b"out\n"  # the record, whatever was streamed


def test_a_dropped_stream_cancels_the_action_and_rolls_it_back(
    shared_daemon: DaemonProcess, session: str, project: Path
) -> None:
    before = fingerprint(project)
    marker = _marker()
    spec = pb.ActionSpec(
        shell=pb.ShellAction(argv=["sh", "-c", f"echo partial > half.txt; rm keep.txt; sleep {marker}"])
    )
    stream = shared_daemon.actions.RunAction(apb.RunActionRequest(session_id=session, spec=spec), timeout=120)
    accepted = next(stream).accepted
    daily._running(shared_daemon, session, marker)
    stream.cancel()  # the caller goes: the action was its to follow
    daily._ends_cancelled(shared_daemon, accepted.id, marker, project, before)


def test_a_deadline_that_passes_cancels_the_action(shared_daemon: DaemonProcess, session: str, project: Path) -> None:
    before = fingerprint(project)
    marker = _marker()
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", f"rm keep.txt; sleep {marker}"]))
    stream = shared_daemon.actions.RunAction(apb.RunActionRequest(session_id=session, spec=spec), timeout=3)
    accepted = next(stream).accepted
    with pytest.raises(grpc.RpcError) as info:
        list(stream)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    daily._ends_cancelled(shared_daemon, accepted.id, marker, project, before)


def test_refusals_come_before_any_message_and_record_nothing(shared_daemon: DaemonProcess, session: str) -> None:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["true"]))
    unknown = apb.RunActionRequest(session_id="ses_0000000000000000", spec=spec)
    code, message = status_of(lambda: list(shared_daemon.actions.RunAction(unknown, timeout=30)))
    assert code == grpc.StatusCode.NOT_FOUND and "ses_0000000000000000" in message, message
    code, message = status_of(lambda: list(shared_daemon.actions.RunAction(apb.RunActionRequest(session_id=session))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "spec" in message, message
    empty = pb.ActionSpec(shell=pb.ShellAction(argv=[]))
    code, message = status_of(
        lambda: list(shared_daemon.actions.RunAction(apb.RunActionRequest(session_id=session, spec=empty)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "argv" in message, message
    assert daily.actions_of(shared_daemon, session) == []


def test_the_python_client_follows_on_one_stream(shared_daemon: DaemonProcess, session: str) -> None:
    """Client.submit (blocking) is one RunAction: on_event sees the states, and the output only when asked."""
    for live in (False, True):
        seen: list[goex.ActionEvent] = []
        with goex.Client(shared_daemon.socket, timeout=120) as client:
            action = client.submit(session, goex.Shell(["sh", "-c", SCRIPT]), on_event=seen.append, live_output=live)
        assert action.state is goex.ActionState.EXECUTED and action.exec is not None
        assert action.exec.stdout == b"out\n"
        states = [e.state for e in seen if isinstance(e, goex.StateEvent)]
        assert goex.ActionState.RUNNING in states, states
        outputs = b"".join(e.data for e in seen if isinstance(e, goex.OutputEvent))
        if live:
            assert sorted(outputs.splitlines()) == [b"err", b"out"], outputs
        else:
            assert outputs == b"", outputs
        with goex.Client(shared_daemon.socket, timeout=60) as client:
            client.undo(session)
