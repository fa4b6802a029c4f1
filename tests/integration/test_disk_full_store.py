"""A full disk under the snapshot store, the workspace writes and the journal (real tmpfs, git, SQLite).

Each failure must stay that one operation's: nothing half written, nothing left holding the space
(git's temporary objects, a lock), the connection or store usable again as soon as space is back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.diskspace import OutOfSpace, is_out_of_space
from goexd.domain.models import (
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    Resource,
    ResourceKind,
    Session,
    SessionState,
    UndoStrategy,
)
from goexd.domain.sandbox import Limits
from goexd.domain.snapshots import NoRoom, SnapshotError
from goexd.engine.journal import Journal
from goexd.resources.postgres.clone import PostgresCloneResource
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.gitrepo import add_all, open_repo
from goexd.snapshots.safefs import SafeFS
from tests.services.postgres import PG_USER, PgCluster
from tests.small_fs import MiB, fill, free, small_fs, tmp_files
from tests.users import ensure_system_user


@pytest.fixture
def disk() -> Iterator[Path]:
    with small_fs(32 * MiB) as path:
        yield path


def _random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)  # incompressible, as git stores it
    path.write_bytes(data)
    return data


def test_git_add_dying_of_enospc_leaves_its_temporary_object(disk: Path) -> None:
    """The control for the next test: git itself leaves its temporary object behind (this is what kept
    the disk full before goexd removed it)."""
    ws = disk / "ws"
    ws.mkdir()
    git_dir = disk / "store.git"
    open_repo(git_dir)
    _random_file(ws / "big", 12 * MiB)
    filler = fill(disk, leave=6 * MiB)
    with pytest.raises(SnapshotError) as caught:
        add_all(git_dir, ws, [])
    assert is_out_of_space(caught.value), caught.value
    assert tmp_files(git_dir), "git add left no temporary object: this control no longer shows the leak"
    filler.unlink()


@pytest.mark.parametrize("watch", [False, True], ids=["scan", "watch"])
def test_a_capture_that_runs_out_of_space_leaves_nothing_and_works_once_space_is_back(disk: Path, watch: bool) -> None:
    ws = disk / "ws"
    ws.mkdir()
    (ws / "small.txt").write_text("small\n")
    store = GitWorkspaceStore(disk / "store.git", ws, watch=watch)
    try:
        base = store.capture()
        data = _random_file(ws / "big", 10 * MiB)  # written by someone: the next capture stores it
        filler = fill(disk, leave=5 * MiB)
        before = free(disk)
        with pytest.raises(SnapshotError) as caught:
            store.capture()
        assert is_out_of_space(caught.value), caught.value
        assert tmp_files(store.git_dir) == []
        assert not (store.git_dir / "index.lock").exists()
        assert free(disk) >= before - 64 * 1024  # what the failed write took is given back
        filler.unlink()
        after = store.capture()
        assert [c.path for c in store.changes(base, after).changes] == ["big"]
        (ws / "big").unlink()
        store.restore(after)  # the content really is in the store
        assert (ws / "big").read_bytes() == data
    finally:
        store.close()


def test_opening_a_store_removes_what_dead_writes_left(tmp_path: Path) -> None:
    git_dir = tmp_path / "store.git"
    repo = open_repo(git_dir)
    kept = repo.create_blob(b"kept\n")
    leftovers = [
        git_dir / "objects" / "ab" / "tmp_obj_Xy12Ab",  # git's
        git_dir / "objects" / "tmp_object_git2_k3Jd9a",  # libgit2's
        git_dir / "objects" / "tmp_goex_1234",  # goexd's own streamed blobs
        git_dir / "objects" / "pack" / "tmp_pack_Qw3rTy",
        git_dir / "refs" / "goex" / "actions" / "act_1" / "pre.lock",
        git_dir / "index.lock",
        git_dir / "config.lock",
    ]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 1000)
    open_repo(git_dir)
    assert [p for p in leftovers if p.exists()] == []
    assert open_repo(git_dir)[kept].read_raw() == b"kept\n"


def test_a_revert_that_cannot_fit_is_refused_before_it_writes(disk: Path) -> None:
    ws = disk / "ws"
    ws.mkdir()
    data = _random_file(ws / "data", 6 * MiB)
    (ws / "other.txt").write_text("other\n")
    store = GitWorkspaceStore(disk / "store.git", ws, watch=True)
    try:
        pre = store.capture()
        (ws / "data").unlink()
        (ws / "other.txt").write_text("changed\n")
        post = store.capture()
        filler = fill(disk, leave=2 * MiB)
        with pytest.raises(NoRoom) as caught:
            store.revert(post, pre)
        assert caught.value.needed > caught.value.free
        assert not (ws / "data").exists() and (ws / "other.txt").read_text() == "changed\n"  # nothing written
        filler.unlink()
        store.revert(post, pre)
        assert (ws / "data").read_bytes() == data and (ws / "other.txt").read_text() == "other\n"
    finally:
        store.close()


def test_a_file_write_that_runs_out_of_space_leaves_the_old_version(disk: Path) -> None:
    ws = disk / "ws"
    ws.mkdir()
    (ws / "f").write_bytes(b"old\n")
    filler = fill(disk, leave=1 * MiB)
    with SafeFS(ws).batch() as fs, pytest.raises(OSError) as caught:
        fs.write_file("f", [b"\0" * (4 * MiB)], 0o644, (os.geteuid(), os.getegid()))
    assert is_out_of_space(caught.value)
    assert (ws / "f").read_bytes() == b"old\n"
    assert sorted(p.name for p in ws.iterdir()) == ["f"]  # no temporary left beside it
    filler.unlink()


def _session(sid: str) -> Session:
    return Session(
        id=sid,
        label="",
        state=SessionState.OPEN,
        resources=(Resource("fs", ResourceKind.FS, f"/nonexistent/{sid}", UndoStrategy.VERSIONED),),
        limits=Limits(),
        created_at=time.time(),
    )


def test_a_journal_write_on_a_full_disk_fails_alone_and_the_next_one_works(disk: Path) -> None:
    journal = Journal(disk / "journal.sqlite3")
    full: list[bool] = []
    journal.on_full = lambda: full.append(True)
    journal.insert_session(_session("ses_1"))
    spec = ActionSpec(kind=ActionKind.SHELL, argv=("true",))
    action = journal.insert_action(
        Action(
            id="act_1", session_id="ses_1", seq=0, spec=spec, state=ActionState.PROPOSED, resource="fs", created_at=0
        )
    )
    filler = fill(disk)
    big_note = "n" * (256 * 1024)  # more than the WAL has room for already
    with pytest.raises(OutOfSpace) as caught:
        journal.update(action.id, note=big_note)
    assert "journal" in str(caught.value) and str(disk) in str(caught.value)
    with pytest.raises(OutOfSpace), journal.batch():
        journal.transition(action.id, ActionState.PROPOSED, ActionState.PREPARING, big_note)
    assert full == [True, True]
    assert journal.get_action(action.id).state is ActionState.PROPOSED  # the batch left nothing
    filler.unlink()
    journal.update(action.id, note=big_note)  # no transaction was left open by the failures
    with journal.batch():
        journal.transition(action.id, ActionState.PROPOSED, ActionState.PREPARING, "")
    assert journal.get_action(action.id).state is ActionState.PREPARING
    journal.close()


def test_a_postgres_copy_on_a_full_tablespace_fails_alone_and_works_once_space_is_back(pg_cluster: PgCluster) -> None:
    """The clone strategy's copy (CREATE DATABASE ... TEMPLATE) on a server whose disk is full: the database
    lives in a tablespace on a small tmpfs, so the copy runs out of room there. STRATEGY FILE_COPY writes the
    copy's files at once; the default WAL_LOG (PostgreSQL 15+) goes through shared buffers, and a full disk
    then shows only when the server flushes them (its checkpoints fail), not as the copy's error."""
    pg_user = ensure_system_user(PG_USER) if os.geteuid() == 0 else None
    uid, gid = (pg_user.pw_uid, pg_user.pw_gid) if pg_user is not None else (os.geteuid(), os.getegid())
    dbname = f"t_full_{os.getpid()}"
    with small_fs(32 * MiB, uid, gid) as disk:
        location = disk / "ts"
        location.mkdir(mode=0o700)
        os.chown(location, uid, gid)
        with pg_cluster.connect() as su:
            su.execute(f"CREATE TABLESPACE goex_small LOCATION '{location}'")
            su.execute("ALTER ROLE app CREATEDB")
            su.execute(f"CREATE DATABASE {dbname} TABLESPACE goex_small OWNER app")
        resource = None
        filler = None
        try:
            with pg_cluster.connect_app(dbname) as app:
                app.execute("CREATE TABLE t (id integer PRIMARY KEY, v text)")
                app.execute("ALTER TABLE t ALTER COLUMN v SET STORAGE EXTERNAL")  # stored as it is: no compression
                app.execute(
                    "INSERT INTO t SELECT i, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 64)) "
                    "FROM generate_series(1, 2000) i"
                )
            resource = PostgresCloneResource(
                Resource("db", ResourceKind.POSTGRES, pg_cluster.app_dsn_for(dbname), UndoStrategy.CLONE),
                pg_cluster.app_password,
                copy_strategy="file_copy",
            )
            with pg_cluster.connect() as su:
                su.execute("CHECKPOINT")  # the table is on disk before the disk fills up
            filler = fill(disk, leave=2 * MiB)
            before = free(disk)
            with pytest.raises(OutOfSpace) as caught:
                resource.checkpoint("act_full")
            assert "out of disk space" in str(caught.value) and "PostgreSQL" in str(caught.value), caught.value
            with pg_cluster.connect() as su:
                left = su.execute("SELECT datname FROM pg_database WHERE datname LIKE 'goex_%'").fetchall()
            assert left == []
            assert free(disk) >= before - 256 * 1024  # the part it had copied is gone
            filler.unlink()
            filler = None
            with pg_cluster.connect() as su:
                size = su.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()[0]
            assert size > 3 * MiB and free(disk) > size, (size, free(disk))
            checkpoint = resource.checkpoint("act_ok")
            resource.commit("act_ok", checkpoint)  # drops the copy
        finally:
            if filler is not None:
                filler.unlink()
            if resource is not None:
                resource.close()
            pg_cluster.drop_database(dbname)
            with pg_cluster.connect() as su:
                su.execute("DROP TABLESPACE IF EXISTS goex_small")
                su.execute("ALTER ROLE app NOCREATEDB")
