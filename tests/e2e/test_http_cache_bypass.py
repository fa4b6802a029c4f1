"""A cache between goexd and the service must not make an undo "verified" (trial 2, H8).

json-server sits behind a caching reverse proxy (tests/services/caching_proxy.py, a real process): a GET
without `Cache-Control: no-cache` is answered from what the proxy kept. goexd's pre-image and verification
GETs send the bypass, so a wrong client inverse is found NOT verified, though the cache still holds the
pre-image.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.services.caching_proxy import run_caching_proxy
from tests.services.json_server import run_json_server


def test_a_cached_answer_does_not_verify_a_wrong_undo(daemon: DaemonProcess, tmp_path: Path) -> None:
    with (
        run_json_server(tmp_path / "svc", {"items": [{"id": 1, "name": "lamp", "price": 100}]}) as server,
        run_caching_proxy(server.base_url, tmp_path / "cache", "/items") as cache,
    ):
        res = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=cache.base_url))
        sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[res])).session.id

        def patch(price: int) -> pb.ActionSpec:
            return pb.ActionSpec(http=pb.HttpAction(method="PATCH", path="/items/1", json=json.dumps({"price": price})))

        req = apb.SubmitActionRequest(session_id=sid, spec=patch(95), inverse=patch(999))  # the wrong price back
        done = daemon.actions.SubmitAction(req).action
        assert done.state == pb.ACTION_STATE_EXECUTED, done.error
        # The cache holds the pre-image goexd read: a GET without the bypass answers it, stale, after the PATCH.
        stale = httpx.get(f"{cache.base_url}/items/1", trust_env=False, timeout=10)
        assert stale.headers["x-cache"] == "HIT" and stale.json()["price"] == 100, (stale.headers, stale.text)
        [undone] = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id)).undone
        assert undone.reversibility.verdict == pb.VERDICT_FAILED, undone.reversibility.detail
        assert "differs from the pre-image" in undone.reversibility.detail, undone.reversibility.detail
        assert server.db()["items"][0]["price"] == 999
