"""The cases the seeded kill suite (test_seeded_kills.py) found where the journal and a resource
disagreed after a restart, each pinned at its fault point (they failed before their fixes):

- killed after a workspace action's result was applied and its run dir cleared, before EXECUTED
  was journaled (seed 17): recovery found no apply intent, said "nothing of it reached the
  workspace", and left the action's files in place. The intent now stays until the action is resolved;
- killed after a SQLite clone undo had copied the clone back and removed it (seed 13): recovery's
  second undo found no clone and failed, leaving the action EXECUTED with the database restored;
- killed in a commit after the clone strategy dropped its copy (seeds 11, 16, 19): the action stayed
  EXECUTED and could never be undone ("the copy ... is gone"). A restart now finishes a commit whose
  intent was journaled;
- killed in a workspace undo, then the person edits one of its paths while goexd is down: recovery's
  three-way undo refused (a conflict), leaving the action EXECUTED and its other paths undone. It is
  now finished forced: the person's version is set aside (listed, restorable), never dropped;
- killed after a PostgreSQL clone action's statements committed, before EXECUTED (seeds 31-33): its
  checkpoint has no "pre" until it ends, so recovery took it for one with no side effect and left its
  rows (and its copy). It is now swapped back like any other interrupted clone action;
- killed after a clone strategy's copy was made, before its checkpoint was journaled (counted as
  "left by kills" by the seeded suite until then): the copy stayed, named by nothing. Recovery now
  drops it (and ends a PostgreSQL backend still making it);
- killed after an http undo's inverse went out, before UNDONE (found by tests/conformance): recovery
  sent the inverse again, a create's DELETE was answered 404 and the action stayed pending for good.
  An http undo now looks first whether the service already holds what the undo must give back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, shell
from tests.e2e.test_http_e2e import call, items, open_http
from tests.e2e.test_http_e2e import undo as undo_http
from tests.faults.crash import armed, crash, restart, stop_cleanly
from tests.faults.test_fs_crash import _submit, _workspace
from tests.faults.test_inverse_outcomes import Db, postgres_db
from tests.faults.world import wait_idle
from tests.fs_fingerprint import fingerprint
from tests.services.json_server import JsonServer
from tests.services.postgres import PgCluster


def test_killed_after_the_apply_and_before_executed_it_is_taken_back(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    d = armed(tmp_path / "daemon", "run-returned:fs-versioned")
    session = open_fs(d, ws).id
    crash(d, "run-returned:fs-versioned", lambda: _submit(d, session, "echo agent > a.txt; echo n > new.txt"))
    assert (ws / "a.txt").read_text() == "agent\n"  # applied; the journal still says RUNNING
    restart(d)
    [action] = d.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=10).actions
    assert action.state == pb.ACTION_STATE_INTERRUPTED and "took back 2 paths" in action.error, action.error
    assert fingerprint(ws) == before
    stop_cleanly(d)


def test_an_executed_workspace_action_keeps_no_run_dir_once_resolved(tmp_path: Path) -> None:
    """The apply intent that stays for recovery goes when the action is committed or undone."""
    ws = _workspace(tmp_path)
    (tmp_path / "daemon").mkdir()
    d = DaemonProcess(tmp_path / "daemon").start()
    try:
        session = open_fs(d, ws).id
        first = shell(d, session, "echo A > a.txt")
        second = shell(d, session, "echo B > b.txt")
        overlays = d.state_dir / "overlays"
        assert sorted(p.name for p in overlays.iterdir()) == sorted([first.id, second.id])
        assert [p.name for p in (overlays / first.id).iterdir()] == ["applying"]  # the run's files are gone
        d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=first.id), timeout=60)
        d.actions.CommitActions(apb.CommitActionsRequest(session_id=session), timeout=60)
        assert list(overlays.iterdir()) == []
    finally:
        d.stop()


def _sqlite_clone(tmp_path: Path, point: str) -> tuple[DaemonProcess, str, Path]:
    (tmp_path / "dbs").mkdir()
    db = tmp_path / "dbs" / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (n INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    d = armed(tmp_path / "daemon", point)
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"), strategy=pb.UNDO_STRATEGY_CLONE)
    session = d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec]), timeout=60).session.id
    return d, session, db


def _rows(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT n FROM t ORDER BY n").fetchall()
    finally:
        conn.close()


def _sql(d: DaemonProcess, session: str, text: str) -> pb.Action:
    req = apb.SubmitActionRequest(session_id=session, spec=pb.ActionSpec(sql=pb.SqlAction(sql=text)))
    action: pb.Action = d.actions.SubmitAction(req, timeout=60).action
    return action


def test_killed_after_a_sqlite_clone_was_copied_back_the_undo_is_recorded(tmp_path: Path) -> None:
    d, session, db = _sqlite_clone(tmp_path, "undo-returned:sqlite-clone")
    action = _sql(d, session, "INSERT INTO t VALUES (2)")
    req = apb.UndoActionRequest(session_id=session, action_id=action.id)
    crash(d, "undo-returned:sqlite-clone", lambda: d.actions.UndoAction(req, timeout=60))
    assert _rows(db) == [(1,)]  # copied back; the journal still says EXECUTED
    restart(d)
    after = get(d, action.id)
    assert after.state == pb.ACTION_STATE_UNDONE and after.reversibility.verdict == pb.VERDICT_PASSED, after
    assert "already been copied back" in after.reversibility.detail
    assert _rows(db) == [(1,)]
    stop_cleanly(d)


def test_killed_in_a_sqlite_clone_commit_it_is_finished_at_restart(tmp_path: Path) -> None:
    d, session, db = _sqlite_clone(tmp_path, "commit-returned:sqlite-clone")
    action = _sql(d, session, "INSERT INTO t VALUES (2)")
    clones = list((d.state_dir / "db").iterdir())
    assert len(clones) == 1
    crash(
        d,
        "commit-returned:sqlite-clone",
        lambda: d.actions.CommitActions(apb.CommitActionsRequest(session_id=session), timeout=60),
    )
    assert not clones[0].exists()  # its copy is gone: it could no longer be undone
    restart(d)
    assert get(d, action.id).state == pb.ACTION_STATE_COMMITTED
    assert _rows(db) == [(1,), (2,)]
    stop_cleanly(d)


def _only_action(d: DaemonProcess, session: str) -> pb.Action:
    found = d.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=30).actions
    assert len(found) == 1, found
    action: pb.Action = found[0]
    return action


def test_killed_after_a_sqlite_clone_copy_was_made_recovery_drops_it(tmp_path: Path) -> None:
    d, session, db = _sqlite_clone(tmp_path, "checkpoint-made:sqlite-clone")
    crash(d, "checkpoint-made:sqlite-clone", lambda: _sql(d, session, "INSERT INTO t VALUES (2)"))
    assert len(list((d.state_dir / "db").glob("*.sqlite"))) == 1  # the copy, named by nothing in the journal
    restart(d)
    action = _only_action(d, session)
    assert action.state == pb.ACTION_STATE_INTERRUPTED, action
    assert "dropped the copy" in action.error, action.error
    assert list((d.state_dir / "db").iterdir()) == []
    assert _rows(db) == [(1,)]
    stop_cleanly(d)


@contextmanager
def _pg_clone(tmp_path: Path, cluster: PgCluster, name: str, point: str) -> Iterator[tuple[DaemonProcess, str, Db]]:
    """goexd armed at `point`, with a session on a PostgreSQL database of the clone strategy; its copies
    (and replaced databases) all gone at the end."""
    d = armed(tmp_path / "daemon", point)
    try:
        db = postgres_db(d, cluster, name)
        spec = pb.ResourceSpec(db=db.spec.db, strategy=pb.UNDO_STRATEGY_CLONE)
        wait_idle(cluster, [name])  # the setup's connection: the clone strategy needs the database to itself
        session = d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec]), timeout=60).session.id
        yield d, session, db
        with cluster.connect() as su:
            assert su.execute("SELECT datname FROM pg_database WHERE datname LIKE 'goex_%'").fetchall() == []
        stop_cleanly(d)
    finally:
        d.kill()


@pytest.mark.usefixtures("app_may_create_databases")
def test_killed_in_a_postgres_clone_commit_it_is_finished_at_restart(
    tmp_path: Path, pg_cluster: PgCluster, pg_database: str
) -> None:
    with _pg_clone(tmp_path, pg_cluster, pg_database, "commit-returned:postgres-clone") as (d, session, db):
        action = _sql(d, session, "INSERT INTO items (name) VALUES ('kept')")
        commit = apb.CommitActionsRequest(session_id=session)
        crash(d, "commit-returned:postgres-clone", lambda: d.actions.CommitActions(commit, timeout=60))
        restart(d)
        assert get(d, action.id).state == pb.ACTION_STATE_COMMITTED
        assert db.query("SELECT name FROM items") == [("kept",)]


@pytest.mark.usefixtures("app_may_create_databases")
def test_killed_after_a_postgres_clone_copy_was_made_recovery_drops_it(
    tmp_path: Path, pg_cluster: PgCluster, pg_database: str
) -> None:
    point = "checkpoint-made:postgres-clone"
    with _pg_clone(tmp_path, pg_cluster, pg_database, point) as (d, session, db):
        crash(d, point, lambda: _sql(d, session, "INSERT INTO items (name) VALUES ('never')"))
        with pg_cluster.connect() as su:  # the copy, named by nothing in the journal
            assert len(su.execute("SELECT datname FROM pg_database WHERE datname LIKE 'goex_clone_%'").fetchall()) == 1
        restart(d)
        action = _only_action(d, session)
        assert action.state == pb.ACTION_STATE_INTERRUPTED, action
        assert "dropped the copy goex_clone_" in action.error, action.error
        assert db.query("SELECT name FROM items WHERE name = 'never'") == []
        # (_pg_clone asserts no goex_ database is left)


@pytest.mark.parametrize("point", ["undo-journaled", "undo-returned"])
def test_an_interrupted_workspace_undo_is_finished_and_the_persons_edit_set_aside(tmp_path: Path, point: str) -> None:
    ws = _workspace(tmp_path)
    d = armed(tmp_path / "daemon", f"{point}:fs-versioned")
    session = open_fs(d, ws).id
    action = shell(d, session, "echo A > a.txt; echo B > b.txt")
    req = apb.UndoActionRequest(session_id=session, action_id=action.id)
    crash(d, f"{point}:fs-versioned", lambda: d.actions.UndoAction(req, timeout=60))
    (ws / "a.txt").write_text("the person's, while goexd was down\n")
    restart(d)
    after = get(d, action.id)
    assert after.state == pb.ACTION_STATE_UNDONE, after  # it was refused, and stayed EXECUTED half undone
    assert (ws / "a.txt").read_text() == "a\n" and (ws / "b.txt").read_text() == "b\n"
    [kept] = d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session), timeout=30).set_asides
    assert list(kept.paths) == ["a.txt"] and kept.action_id == action.id
    d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=session, set_aside_id=kept.id), timeout=60)
    assert (ws / "a.txt").read_text() == "the person's, while goexd was down\n"
    stop_cleanly(d)


@pytest.mark.usefixtures("app_may_create_databases")
def test_killed_after_a_postgres_clone_action_committed_it_is_swapped_back(
    tmp_path: Path, pg_cluster: PgCluster, pg_database: str
) -> None:
    """Its checkpoint has no "pre" until it ends: recovery took it for one with no side effect (seed 31)."""
    with _pg_clone(tmp_path, pg_cluster, pg_database, "run-returned:postgres-clone") as (d, session, db):
        crash(d, "run-returned:postgres-clone", lambda: _sql(d, session, "INSERT INTO items (name) VALUES ('gone')"))
        assert db.query("SELECT name FROM items") == [("gone",)]  # committed; the journal says RUNNING
        restart(d)
        [action] = d.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=10).actions
        assert action.state == pb.ACTION_STATE_INTERRUPTED and "swapped in the copy" in action.error, action.error
        assert db.query("SELECT name FROM items") == []


@pytest.mark.parametrize("first", ["POST", "DELETE"])
def test_an_http_undo_killed_after_its_inverse_is_finished_without_sending_it_again(
    tmp_path: Path, json_server: JsonServer, first: str
) -> None:
    d = armed(tmp_path / "daemon", "undo-returned:http-inverse")
    try:
        s = open_http(d, json_server.base_url)
        if first == "POST":
            action = call(d, s.id, "POST", "/items", body={"name": "lamp"})
        else:
            call(d, s.id, "POST", "/items", body={"name": "lamp"})
            d.actions.CommitActions(apb.CommitActionsRequest(session_id=s.id), timeout=30)
            (lamp,) = [i for i in items(json_server) if i.get("name") == "lamp"]
            action = call(d, s.id, "DELETE", f"/items/{lamp['id']}")  # its undo re-creates the item
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        before = items(json_server)
        crash(d, "undo-returned:http-inverse", lambda: undo_http(d, s.id, action.id))
        undone = items(json_server)  # the inverse went out; the journal still says EXECUTED
        assert undone != before
        restart(d)
        after = get(d, action.id)
        assert after.state == pb.ACTION_STATE_UNDONE, (after.state, after.error)
        assert after.reversibility.verdict == pb.VERDICT_PASSED, after.reversibility.detail
        assert "not sent" in after.reversibility.detail, after.reversibility.detail
        assert items(json_server) == undone  # nothing sent twice (a re-created item would be there twice)
        stop_cleanly(d)
    finally:
        d.kill()
