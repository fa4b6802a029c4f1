"""A real goexd whose state dir and workspaces sit on a small, full filesystem (a tmpfs of a few MiB).

What must hold: an action that needs a snapshot is refused (RESOURCE_EXHAUSTED) while the state
dir's filesystem is below the reserve; running out of space anywhere (the action, a capture, a
clone, an undo) fails that one operation cleanly, with nothing half written or left holding the
space, and a message naming the filesystem; goexd keeps serving every session, and once space is
back everything works, without a restart (a restart's recovery works too).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e import rpc
from tests.small_fs import MiB, fill, free, small_fs, tmp_files
from tests.users import ensure_system_user

SEC_USER = "goex-sec"


@contextlib.contextmanager
def goexd_on(disk: Path, reserve: int, config: str = "", user: str | None = None) -> Iterator[DaemonProcess]:
    """goexd with its socket, state dir and log on `disk`; stopped afterwards, having logged no traceback."""
    root = disk / "goexd"
    root.mkdir()
    d = DaemonProcess(root, config_toml=f"state_reserve_bytes = {reserve}\n{config}", user=user)
    d.start()
    try:
        yield d
        assert d.proc is not None and d.proc.poll() is None, d.log()
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
    assert "Traceback" not in d.log(), d.log()


def workspace(disk: Path, name: str = "ws", uid: int = 0, gid: int = 0) -> Path:
    ws = disk / name
    ws.mkdir()
    (ws / "a.txt").write_text("a\n")
    for p in (ws, ws / "a.txt"):
        os.chown(p, uid, gid)
    return ws


def actions(d: DaemonProcess, session_id: str) -> list[pb.Action]:
    return list(d.actions.ListActions(apb.ListActionsRequest(session_id=session_id), timeout=10).actions)


def restart(d: DaemonProcess) -> None:
    d.kill()  # a crash, with the disk as it is
    d.start()


def snapshots_health(d: DaemonProcess) -> adpb.ComponentHealth:
    health = d.admin.GetHealth(adpb.GetHealthRequest(), timeout=10)
    return next(c for c in health.components if c.name == "snapshots")


def sqlite_session(d: DaemonProcess, db: Path) -> pb.Session:
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"), strategy=pb.UNDO_STRATEGY_CLONE)
    return d.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60).session


def sql(d: DaemonProcess, session_id: str, text: str) -> pb.Action:
    spec = pb.ActionSpec(sql=pb.SqlAction(sql=text))
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session_id, spec=spec), timeout=60).action


@pytest.mark.parametrize("user", [None, SEC_USER], ids=["root", "unprivileged"])
def test_an_action_that_fills_the_disk_fails_alone_and_gives_the_space_back(user: str | None) -> None:
    owner = ensure_system_user(user) if user is not None else None
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner is not None else (0, 0)
    with small_fs(32 * MiB, uid, gid) as disk, goexd_on(disk, 4 * MiB, user=user) as d:
        ws = workspace(disk, uid=uid, gid=gid)
        other = workspace(disk, "other", uid=uid, gid=gid)
        s = rpc.open_fs(d, ws)
        s2 = rpc.open_fs(d, other)
        before = free(disk)
        a = rpc.shell(d, s.id, "head -c 40M /dev/zero > big; echo wrote")
        assert a.state == pb.ACTION_STATE_FAILED, a
        assert "out of disk space" in a.error and str(disk) in a.error, a.error
        assert "nothing of it reached the workspace" in a.error, a.error
        assert a.exec.stdout == b"wrote\n" and b"No space left on device" in a.exec.stderr  # its output is kept
        assert sorted(p.name for p in ws.iterdir()) == ["a.txt"]
        assert list((d.state_dir / "overlays").iterdir()) == []
        # What it wrote is gone. Its name is (above); the space comes back once the run's mount namespace is torn
        # down, which the kernel finishes a moment after the last process of it is reaped (seen under load, as
        # the unprivileged user): a bound, not an instant.
        deadline = time.monotonic() + 10
        while free(disk) < before - 1 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert free(disk) >= before - 1 * MiB, (free(disk), before)
        # Nothing is stuck: no pending action, and every session goes on as before.
        assert "no pending action" in rpc.status_of(lambda: rpc.undo(d, s.id))[1]
        b = rpc.shell(d, s.id, "echo ok > small")
        assert b.state == pb.ACTION_STATE_EXECUTED, b
        assert rpc.shell(d, s2.id, "echo ok > other.txt").state == pb.ACTION_STATE_EXECUTED
        assert rpc.undo(d, s.id)[0].state == pb.ACTION_STATE_UNDONE
        assert [x.state for x in actions(d, s.id)] == [pb.ACTION_STATE_FAILED, pb.ACTION_STATE_UNDONE]


def test_a_start_after_a_kill_while_an_action_filled_the_disk_recovers_on_that_disk() -> None:
    with small_fs(32 * MiB) as disk, goexd_on(disk, 4 * MiB) as d:
        ws = workspace(disk)
        s = rpc.open_fs(d, ws)
        a = rpc.shell(d, s.id, "head -c 40M /dev/zero > big; sleep 60", detach=True)
        deadline = time.monotonic() + 30
        while free(disk) > 256 * 1024:  # its upper, in the state dir, fills the disk
            assert time.monotonic() < deadline, free(disk)
            time.sleep(0.05)
        restart(d)  # killed while it runs; started again on the full disk
        done = rpc.get(d, a.id)
        assert done.state == pb.ACTION_STATE_INTERRUPTED, done
        assert "nothing of it reached the workspace" in done.error, done.error
        assert sorted(p.name for p in ws.iterdir()) == ["a.txt"] and list((d.state_dir / "overlays").iterdir()) == []
        assert free(disk) > 20 * MiB
        assert "run over the workspace itself" not in d.log()  # the overlay probe found room too
        assert rpc.shell(d, s.id, "echo ok > ok").state == pb.ACTION_STATE_EXECUTED


def test_a_snapshot_that_runs_out_of_space_leaves_no_git_temporary_and_recovers() -> None:
    # The full scan (git add) is what left a temporary object the size of the file behind.
    config = '[fs]\nchange_detection = "scan"\n'
    with small_fs(40 * MiB) as disk, goexd_on(disk, 4 * MiB, config) as d:
        ws = workspace(disk)
        s = rpc.open_fs(d, ws)
        store = next((d.state_dir / "fs").glob("*.git"))
        data = os.urandom(12 * MiB)
        (ws / "mine.bin").write_bytes(data)  # a person's file: the next snapshot stores it
        filler = fill(disk, leave=8 * MiB)
        a = rpc.shell(d, s.id, "echo x > y")
        assert a.state == pb.ACTION_STATE_FAILED, a
        assert "out of disk space while snapshotting" in a.error and str(disk) in a.error, a.error
        assert tmp_files(store) == [] and not (store / "index.lock").exists()
        assert free(disk) >= 7 * MiB  # what git wrote before it failed is given back
        assert sorted(p.name for p in ws.iterdir()) == ["a.txt", "mine.bin"]
        # Other sessions and calls are served, and a restart on the full disk recovers.
        other = workspace(disk, "other")
        assert rpc.shell(d, rpc.open_fs(d, other).id, "echo ok > o").state == pb.ACTION_STATE_EXECUTED
        restart(d)
        assert [x.state for x in actions(d, s.id)] == [pb.ACTION_STATE_FAILED]
        filler.unlink()
        b = rpc.shell(d, s.id, "echo x > y")
        assert b.state == pb.ACTION_STATE_EXECUTED, b
        assert rpc.undo(d, s.id)[0].state == pb.ACTION_STATE_UNDONE
        assert (ws / "mine.bin").read_bytes() == data and not (ws / "y").exists()


def removing_data(d: DaemonProcess, disk: Path, script: str) -> tuple[Path, bytes, pb.Session, pb.Action]:
    """A workspace holding 8 MiB of data, and the executed action `script` that removes it."""
    ws = workspace(disk)
    data = os.urandom(8 * MiB)
    (ws / "data").write_bytes(data)
    s = rpc.open_fs(d, ws)
    a = rpc.shell(d, s.id, script)
    assert a.state == pb.ACTION_STATE_EXECUTED, a
    return ws, data, s, a


def test_an_undo_without_room_changes_nothing_and_a_restart_does_not_finish_it() -> None:
    with small_fs(48 * MiB) as disk, goexd_on(disk, 4 * MiB) as d:
        ws, data, s, a = removing_data(d, disk, "rm data")
        filler = fill(disk, leave=2 * MiB)
        code, message = rpc.status_of(lambda: rpc.undo(d, s.id))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, message
        assert "out of disk space while undoing" in message and str(disk) in message and "needs" in message
        assert rpc.get(d, a.id).state == pb.ACTION_STATE_EXECUTED and not (ws / "data").exists()
        # Nothing was written, so the undo's intent was cleared: a restart leaves the action pending.
        restart(d)
        assert rpc.get(d, a.id).state == pb.ACTION_STATE_EXECUTED and not (ws / "data").exists()
        filler.unlink()
        assert rpc.undo(d, s.id)[0].state == pb.ACTION_STATE_UNDONE
        assert (ws / "data").read_bytes() == data


@pytest.mark.parametrize("finish", ["retry", "restart"])
def test_an_undo_that_runs_out_of_space_part_way_is_finished_by_a_retry_or_the_next_start(finish: str) -> None:
    with small_fs(64 * MiB) as disk, goexd_on(disk, 4 * MiB) as d:
        ws, data, s, a = removing_data(d, disk, "rm data; head -c 10M /dev/urandom > x")
        # Another name for x outside the workspace: removing x frees nothing, which goexd cannot
        # know before it writes (its room check counts x as freed), so the write of data fails.
        os.link(ws / "x", disk / "x-kept")
        filler = fill(disk, leave=5 * MiB)
        code, message = rpc.status_of(lambda: rpc.undo(d, s.id))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, message
        assert "stopped part way" in message and str(disk) in message, message
        assert sorted(p.name for p in ws.iterdir()) == ["a.txt"]  # x removed; data not half written
        assert rpc.get(d, a.id).state == pb.ACTION_STATE_EXECUTED
        filler.unlink()
        if finish == "retry":  # x is already as before it: only data is written now
            assert rpc.undo(d, s.id)[0].state == pb.ACTION_STATE_UNDONE
        else:
            restart(d)  # the intent stayed: recovery finishes the undo, three-way
        assert rpc.get(d, a.id).state == pb.ACTION_STATE_UNDONE
        assert (ws / "data").read_bytes() == data and not (ws / "x").exists()


def test_actions_that_snapshot_are_refused_below_the_reserve_and_nothing_else_is(tmp_path: Path) -> None:
    with small_fs(32 * MiB) as disk, goexd_on(disk, 8 * MiB) as d:
        assert (d.state_dir / "space-reserve").stat().st_size == 1 * MiB  # an eighth held back
        ws = workspace(disk)
        s = rpc.open_fs(d, ws)
        a = rpc.shell(d, s.id, "echo one > one")
        assert a.state == pb.ACTION_STATE_EXECUTED
        db = tmp_path / "t.db"  # elsewhere: its transaction strategy needs nothing of the state dir
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE t (x)")
        tx = d.sessions.CreateSession(
            spb.CreateSessionRequest(resources=[pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"))])
        ).session
        assert snapshots_health(d).ok
        filler = fill(disk, leave=6 * MiB)
        assert not snapshots_health(d).ok and "reserve 8 MiB" in snapshots_health(d).detail
        code, message = rpc.status_of(lambda: rpc.shell(d, s.id, "echo two > two"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, message
        assert "state_reserve_bytes" in message and "8.0 MiB" in message and str(disk) in message, message
        assert [x.id for x in actions(d, s.id)] == [a.id]  # refused before anything was recorded
        assert sql(d, tx.id, "INSERT INTO t VALUES (1)").state == pb.ACTION_STATE_EXECUTED
        assert rpc.undo(d, s.id)[0].state == pb.ACTION_STATE_UNDONE  # undoing frees space: never refused
        filler.unlink()
        assert rpc.shell(d, s.id, "echo two > two").state == pb.ACTION_STATE_EXECUTED
        assert (d.state_dir / "space-reserve").stat().st_size == 1 * MiB
        assert snapshots_health(d).ok


def test_a_clone_that_runs_out_of_space_leaves_no_partial_clone(tmp_path: Path) -> None:
    db = tmp_path / "big.db"  # the database elsewhere; its clone goes to the full state dir
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        c.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(64 * 1024),) for _ in range(128)])
    with small_fs(32 * MiB) as disk, goexd_on(disk, 2 * MiB) as d:
        s = sqlite_session(d, db)
        filler = fill(disk, leave=4 * MiB)
        a = sql(d, s.id, "DELETE FROM t WHERE id > 10")
        assert a.state == pb.ACTION_STATE_FAILED, a
        assert "out of disk space while cloning" in a.error and str(disk) in a.error, a.error
        assert list((d.state_dir / "db").iterdir()) == []
        with sqlite3.connect(db) as c:
            assert c.execute("SELECT count(*) FROM t").fetchone() == (128,)
        filler.unlink()
        b = sql(d, s.id, "DELETE FROM t WHERE id > 10")
        assert b.state == pb.ACTION_STATE_EXECUTED, b
        assert rpc.undo(d, s.id)[0].state == pb.ACTION_STATE_UNDONE
        with sqlite3.connect(db) as c:
            assert c.execute("SELECT count(*) FROM t").fetchone() == (128,)
