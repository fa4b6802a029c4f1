"""Which open session a directory belongs to (goex/cli/_directory.py): the CLI's session per directory."""

from __future__ import annotations

from pathlib import Path

import goex
from goex.cli._directory import session_holding
from goex.v1 import types_pb2 as pb


def session(sid: str, *uris: str, state: int = pb.SESSION_STATE_OPEN, kind: int = pb.RESOURCE_KIND_FS) -> goex.Session:
    resources = [pb.Resource(name=f"r{i}", kind=kind, uri=uri) for i, uri in enumerate(uris)]
    return goex.Session.from_proto(pb.Session(id=sid, state=state, resources=resources))  # type: ignore[arg-type]


def test_the_workspace_holding_the_directory_wins(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "ab"  # "ab" starts with "a" but is not below it
    (a / "deep").mkdir(parents=True)
    b.mkdir()
    sessions = [session("s_a", str(a)), session("s_b", str(b))]
    assert session_holding(sessions, str(a)) == "s_a"
    assert session_holding(sessions, str(a / "deep")) == "s_a"
    assert session_holding(sessions, str(b)) == "s_b"
    assert session_holding(sessions, str(tmp_path)) is None


def test_symlinks_closed_sessions_and_other_resources(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert session_holding([session("s", str(tmp_path / "link"))], str(real)) == "s"  # compared resolved
    assert session_holding([session("s", str(real))], str(tmp_path / "link")) == "s"
    assert session_holding([session("s", str(real), state=pb.SESSION_STATE_CLOSED)], str(real)) is None
    db = session("s", f"sqlite://{real}/x.db", kind=pb.RESOURCE_KIND_SQLITE)
    assert session_holding([db], str(real)) is None  # only a workspace holds directories


def test_the_deepest_workspace_wins(tmp_path: Path) -> None:
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    sessions = [session("outer", str(tmp_path / "outer")), session("inner", str(inner))]
    assert session_holding(sessions, str(inner)) == "inner"
    assert session_holding(reversed(sessions), str(inner)) == "inner"
