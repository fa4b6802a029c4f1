"""An http resource's staging copy through a real goexd, on a real Community Solid Server: the service at
/live/ and its staging copy at /staging/ of one server, so whatever the staging copy answers (a Location
naming what a POST made) is under the staging base URL and outside the service's.

- The staging answer is read with the rule sets bound to the staging base URL: a POST's Location there is
  what the undo deletes and checks, on both TestReversibility and a submitted write.
- A write on such a resource is tried on the staging copy before it is sent, with goexd's own derived inverse
  as with a client's: the trial's verdict is recorded with the action, and the staging copy is left as it was
  by a pair that passes."""

from __future__ import annotations

import httpx

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.test_http_e2e import (  # noqa: F401 - _close_shared_sessions: the autouse fixture
    CLASS,
    _close_shared_sessions,
    call,
    undo,
)
from tests.services.solid_server import SolidServer, solid_server  # noqa: F401 - the fixture

TEXT = {"content-type": "text/plain"}


def _open(d: DaemonProcess, server: SolidServer) -> pb.Session:
    spec = pb.ResourceSpec(
        name="api",
        http=pb.HttpResourceSpec(
            base_url=f"{server.base_url}/live", rules="generic", staging_base_url=f"{server.base_url}/staging"
        ),
    )
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session


def _open_seeded(d: DaemonProcess, server: SolidServer, path: str, body: bytes) -> pb.Session:
    """A session on /live/ with /staging/ as its copy, `path` put into both first."""
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as c:
        for top in ("live", "staging"):
            assert c.put(f"/{top}{path}", content=body, headers=TEXT).status_code == 201
    return _open(d, server)


def _test(d: DaemonProcess, session_id: str, spec: pb.HttpAction, inverse: pb.HttpAction | None) -> pb.Reversibility:
    req = apb.TestReversibilityRequest(session_id=session_id, spec=pb.ActionSpec(http=spec))
    if inverse is not None:
        req.inverse.CopyFrom(pb.ActionSpec(http=inverse))
    return d.actions.TestReversibility(req).reversibility


def _tree(server: SolidServer, top: str) -> dict[str, bytes]:
    return {k: v for k, v in server.files().items() if k.startswith(top)}


def test_a_post_answered_with_a_staging_location_is_undone_there(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    s = _open_seeded(shared_daemon, solid_server, "/notes/first.txt", b"first")
    staging, live = _tree(solid_server, "staging/"), _tree(solid_server, "live/")
    post = pb.HttpAction(method="POST", path="/notes/", headers={**TEXT, "slug": "hello"}, body=b"hello")

    # goexd's own inverse, derived from the staging answer: DELETE of its Location, checked gone.
    derived = _test(shared_daemon, s.id, post, None)
    assert derived.verdict == pb.VERDICT_PASSED, derived.detail
    assert "inverse DELETE /notes/hello" in derived.detail and "(gone, as expected)" in derived.detail, derived.detail
    assert _tree(solid_server, "staging/") == staging
    # The client's: checked against what the rule says the undo must leave (the Location gone).
    right = _test(shared_daemon, s.id, post, pb.HttpAction(method="DELETE", path="/notes/hello"))
    assert right.verdict == pb.VERDICT_PASSED and "(gone, as expected)" in right.detail, right.detail
    assert _tree(solid_server, "staging/") == staging
    wrong = _test(shared_daemon, s.id, post, pb.HttpAction(method="DELETE", path="/notes/first.txt"))
    assert wrong.verdict == pb.VERDICT_FAILED and "should be gone" in wrong.detail, wrong.detail
    # goexd put back what the wrong pair did there: the note it deleted (captured before the trial), the one made
    assert "the staging copy was put back" in wrong.detail and "verified" in wrong.detail, wrong.detail
    assert (solid_server.root / "staging" / "notes" / "first.txt").read_bytes() == b"first"
    assert not (solid_server.root / "staging" / "notes" / "hello").exists()
    assert _tree(solid_server, "live/") == live  # the service itself never got a call

    # Submitted (a POST needs an approval): tried there first, then sent, and undone by its own Location.
    done = call(
        shared_daemon, s.id, "POST", "/notes/", raw=b"hi", headers={**TEXT, "slug": "hi"}, approval="ann: a note"
    )
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    assert done.reversibility.verdict == pb.VERDICT_PASSED, done.reversibility.detail
    assert "tried first: " in done.reversibility.detail and "staging" in done.reversibility.detail
    assert done.inverse.http.path == "/notes/hi", done.inverse
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.get("/live/notes/hi").content == b"hi"
    assert undo(shared_daemon, s.id, done.id).reversibility.verdict == pb.VERDICT_PASSED
    assert _tree(solid_server, "live/") == live


def test_a_write_is_tried_on_staging_with_its_derived_inverse_before_it_is_sent(
    shared_daemon: DaemonProcess,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    s = _open_seeded(shared_daemon, solid_server, "/docs/a.txt", b"v1")
    staging = _tree(solid_server, "staging/")
    done = call(shared_daemon, s.id, "PUT", "/docs/a.txt", raw=b"v2", headers=TEXT)
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    rev = done.reversibility
    assert rev.reversibility_class == CLASS.REVERSIBILITY_CLASS_REVERSIBLE
    assert rev.verdict == pb.VERDICT_PASSED and "tried first: " in rev.detail, rev.detail
    assert "equals the pre-image" in rev.detail, rev.detail
    assert _tree(solid_server, "staging/") == staging  # the passed pair left it as it was
    assert (solid_server.root / "live" / "docs" / "a.txt").read_bytes() == b"v2"
    assert undo(shared_daemon, s.id, done.id).reversibility.verdict == pb.VERDICT_PASSED
    assert (solid_server.root / "live" / "docs" / "a.txt").read_bytes() == b"v1"

    # A staging copy that refuses the call cannot try it: unknown, said why, and the call still runs.
    with httpx.Client(base_url=solid_server.base_url, trust_env=False, timeout=10) as c:
        assert c.put("/live/docs/c.txt", content=b"c", headers=TEXT).status_code == 201
        assert c.get("/staging/docs/c.txt").status_code == 404
    gone = call(shared_daemon, s.id, "DELETE", "/docs/c.txt")
    assert gone.state == pb.ACTION_STATE_EXECUTED, gone.error
    assert gone.reversibility.verdict == pb.VERDICT_UNKNOWN, gone.reversibility.detail
    assert "not tried on the staging copy" in gone.reversibility.detail
    assert "answered the call 404" in gone.reversibility.detail, gone.reversibility.detail
    assert not (solid_server.root / "live" / "docs" / "c.txt").exists()
    assert undo(shared_daemon, s.id, gone.id).reversibility.verdict == pb.VERDICT_PASSED
    assert (solid_server.root / "live" / "docs" / "c.txt").read_bytes() == b"c"
