"""A staging trial that fails puts the staging copy back (trial 2, H6), through a real goexd with two
json-servers: the service and its staging copy.

A wrong pair's trial leaves the staging item changed; goexd puts it back from the trial's own pre-image and
verifies it, so a second wrong pair is tried on the copy as it was, and fails there too. A copy that cannot
be put back (another writer keeps changing it) is not trusted: trials answer unknown, saying to reset it,
until the item answers as before the trial.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.services.json_server import run_json_server

SEED = {"items": [{"id": 1, "name": "lamp", "price": 100, "color": "red"}]}


def _patch(body: dict[str, object]) -> pb.ActionSpec:
    return pb.ActionSpec(http=pb.HttpAction(method="PATCH", path="/items/1", json=json.dumps(body)))


def _submit(d: DaemonProcess, sid: str, spec: pb.ActionSpec, inverse: pb.ActionSpec) -> pb.Action:
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=sid, spec=spec, inverse=inverse)).action


def _test(d: DaemonProcess, sid: str, spec: pb.ActionSpec, inverse: pb.ActionSpec) -> pb.Reversibility:
    req = apb.TestReversibilityRequest(session_id=sid, spec=spec, inverse=inverse)
    return d.actions.TestReversibility(req).reversibility


def test_a_failed_trial_puts_the_staging_copy_back(daemon: DaemonProcess, tmp_path: Path) -> None:
    with (
        run_json_server(tmp_path / "live", json.loads(json.dumps(SEED))) as live,
        run_json_server(tmp_path / "staging", json.loads(json.dumps(SEED))) as staging,
    ):
        spec = pb.ResourceSpec(
            name="api", http=pb.HttpResourceSpec(base_url=live.base_url, staging_base_url=staging.base_url)
        )
        sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session.id
        # A: its inverse paints the lamp pink: blocked, and the staging copy is put back (verified).
        a = _submit(daemon, sid, _patch({"color": "green"}), _patch({"color": "pink"}))
        assert a.state == pb.ACTION_STATE_BLOCKED, (a.state, a.error)
        assert "put back from the trial's pre-image" in a.error and "verified" in a.error, a.error
        assert staging.db()["items"] == SEED["items"]
        # B: paints it pink and restores only the price: on the clean copy its trial fails too, never sent.
        b = _submit(daemon, sid, _patch({"color": "pink", "price": 1}), _patch({"price": 100}))
        assert b.state == pb.ACTION_STATE_BLOCKED, (b.state, b.error)
        assert "differs from the pre-image" in b.error, b.error
        assert live.db()["items"] == SEED["items"] == staging.db()["items"]

        # C: its inverse deletes the lamp. json-server's PUT does not create, so goexd cannot put it back: the copy
        # is not trusted, and a right pair answers unknown there until a person resets it.
        delete = pb.ActionSpec(http=pb.HttpAction(method="DELETE", path="/items/1"))
        c = _submit(daemon, sid, _patch({"color": "green"}), delete)
        assert c.state == pb.ACTION_STATE_BLOCKED, (c.state, c.error)
        assert "could not be put back" in c.error, c.error
        assert staging.db()["items"] == []
        right = (_patch({"color": "green"}), _patch({"color": "red"}))
        untrusted = _test(daemon, sid, *right)
        assert untrusted.verdict == pb.VERDICT_UNKNOWN, untrusted.detail
        assert "the staging copy differs from what a trial left" in untrusted.detail, untrusted.detail
        assert "reset it" in untrusted.detail, untrusted.detail
        with httpx.Client(base_url=staging.base_url, trust_env=False, timeout=10) as http:  # a person resets it
            assert http.post("/items", json=SEED["items"][0]).status_code == 201
        trusted = _test(daemon, sid, *right)
        assert trusted.verdict == pb.VERDICT_PASSED, trusted.detail
        assert staging.db()["items"] == SEED["items"] and live.db()["items"] == SEED["items"]
