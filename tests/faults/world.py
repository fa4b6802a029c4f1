"""The real resources of a kill suite run, set up and read from outside goexd: the workspace (and the
person's own edits to it), three SQLite files and three PostgreSQL databases (one per strategy),
and the versions goexd set aside (read from its snapshot store with pygit2, read-only)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pygit2

from goex.v1 import secrets_pb2 as secpb
from goex.v1 import types_pb2 as pb
from goexd.resources.postgres.clone import clone_name, old_name
from goexd.snapshots.git_store import store_dir_for
from goexd.snapshots.layout import WORK
from goexd.snapshots.set_aside import REF_PREFIX
from tests.daemon_process import DaemonProcess
from tests.faults.model import DBS, INITIAL_DB, Content, DbState, Files, ResourceInfo
from tests.faults.plan import Edit
from tests.services.postgres import PgCluster

SETUP = (
    "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
    "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO counter (id, n) VALUES (1, 0)",
)
STRATEGY = {
    "transaction": pb.UNDO_STRATEGY_TRANSACTION,
    "inverse": pb.UNDO_STRATEGY_INVERSE,
    "clone": pb.UNDO_STRATEGY_CLONE,
}
SECRET = "pgpass"


def _seed_sql() -> list[str]:
    return [*SETUP, *(f"INSERT INTO kv (k, v) VALUES ('{k}', {v})" for k, v in INITIAL_DB.rows)]


@dataclass
class World:
    root: Path
    cluster: PgCluster
    pg_names: dict[str, str]  # resource -> database name

    @property
    def workspace(self) -> Path:
        return self.root / "ws"

    def sqlite_path(self, name: str) -> Path:
        return self.root / "dbs" / f"{name}.db"

    # -- set up

    def create(self, files: Files) -> None:
        self.workspace.mkdir(parents=True)
        for path, content in files.items():
            (self.workspace / path).parent.mkdir(parents=True, exist_ok=True)
            (self.workspace / path).write_bytes(content)
        (self.root / "dbs").mkdir()
        for r in DBS:
            if r.kind == "sqlite":
                lite = sqlite3.connect(self.sqlite_path(r.name))
                with lite:
                    for statement in _seed_sql():
                        lite.execute(statement)
                lite.close()
            else:
                self.pg_names[r.name] = self.cluster.create_database()
                with self.cluster.connect_app(self.pg_names[r.name]) as pg:
                    for statement in _seed_sql():
                        pg.execute(statement)

    def drop(self) -> None:
        for name in self.pg_names.values():
            self.cluster.drop_database(name)

    def put_secret(self, d: DaemonProcess) -> None:
        info = secpb.SecretInfo(
            name=SECRET,
            kind=secpb.SECRET_KIND_DSN,
            allowed_hosts=[f"{self.cluster.host}:{self.cluster.port}"],
            injection=secpb.Injection(dsn_password=secpb.DsnPasswordInjection()),
        )
        d.secrets.PutSecret(secpb.PutSecretRequest(info=info, value=self.cluster.app_password.encode()))

    def resource_spec(self, r: ResourceInfo) -> pb.ResourceSpec:
        if r.kind == "fs":
            return pb.ResourceSpec(name=r.name, fs=pb.FsResourceSpec(path=str(self.workspace)))
        if r.kind == "sqlite":
            db = pb.DbResourceSpec(url=f"sqlite://{self.sqlite_path(r.name)}")
        else:
            db = pb.DbResourceSpec(url=self.cluster.app_dsn_for(self.pg_names[r.name]), secret=SECRET)
        return pb.ResourceSpec(name=r.name, db=db, strategy=STRATEGY[r.strategy])

    # -- the person

    def edit(self, edit: Edit) -> None:
        for op in edit.ops:
            path = self.workspace / op.path
            if op.kind == "delete":
                path.unlink(missing_ok=True)
            else:
                with path.open("wb" if op.kind == "write" else "ab") as f:
                    f.write(op.text.encode() + b"\n")

    # -- reading

    def files(self) -> Files:
        """Every regular file of the workspace (the suite makes nothing else) -> its content."""
        out: Files = {}
        for dirpath, dirs, names in os.walk(self.workspace):
            rel = os.path.relpath(dirpath, self.workspace)
            if rel == ".":
                dirs[:] = [d for d in dirs if d != ".git"]
            for name in names:
                path = name if rel == "." else f"{rel}/{name}"
                out[path] = (Path(dirpath) / name).read_bytes()
        return out

    def db_state(self, r: ResourceInfo) -> DbState:
        """What a connection other than goexd's sees."""
        rows: list[tuple[object, ...]]
        if r.kind == "sqlite":
            lite = sqlite3.connect(self.sqlite_path(r.name), timeout=30)
            try:
                rows = lite.execute("SELECT k, v FROM kv ORDER BY k").fetchall()
                [(n,)] = lite.execute("SELECT n FROM counter WHERE id = 1").fetchall()
            finally:
                lite.close()
        else:
            with self.cluster.connect_app(self.pg_names[r.name]) as pg:
                rows = pg.execute("SELECT k, v FROM kv ORDER BY k").fetchall()
                [(n,)] = pg.execute("SELECT n FROM counter WHERE id = 1").fetchall()
        return DbState(tuple((str(k), int(str(v))) for k, v in rows), int(str(n)))

    def wait_pg_idle(self) -> None:
        """Until the clone strategy's database has no connection left (see wait_idle)."""
        wait_idle(self.cluster, [self.pg_names[r.name] for r in DBS if r.tag == "postgres-clone"])

    def copies(self, state_dir: Path) -> list[tuple[str, str]]:
        """(action id, what) of every copy the clone strategy keeps: SQLite files, PostgreSQL databases (those
        of the cluster's other users too: the caller keeps its own actions')."""
        found = [(p.stem, f"SQLite copy {p.name}") for p in (state_dir / "db").glob("*.sqlite")]
        with self.cluster.connect() as su:
            names = [str(n) for (n,) in su.execute("SELECT datname FROM pg_database").fetchall()]
        for prefix, what in ((clone_name(""), "copy"), (old_name(""), "replaced database")):
            found += [(n.removeprefix(prefix), f"PostgreSQL {what} {n}") for n in names if n.startswith(prefix)]
        return found

    def set_aside_versions(self, state_dir: Path, ids: list[str]) -> dict[str, dict[str, Content]]:
        """set-aside id -> path -> the version it keeps (None: the path did not exist there)."""
        repo = pygit2.Repository(str(store_dir_for(state_dir / "fs", self.workspace.resolve())))
        out: dict[str, dict[str, Content]] = {}
        for set_aside_id in ids:
            commit = repo.references[REF_PREFIX + set_aside_id].peel(pygit2.Commit)
            source = repo[commit.tree["source"].id].peel(pygit2.Tree)
            out[set_aside_id] = {}
            body_paths: list[str] = json.loads(commit.message)["paths"]
            for path in body_paths:
                try:
                    blob = source[WORK + "/" + path]
                except KeyError:
                    out[set_aside_id][path] = None
                else:
                    out[set_aside_id][path] = repo[blob.id].peel(pygit2.Blob).data
        return out


def wait_idle(cluster: PgCluster, names: list[str], timeout: float = 20.0) -> None:
    """Until no connection is left on these databases (a killed goexd's backends end a moment after it,
    ours a moment after we close them): the clone strategy refuses to copy a database others are connected to."""
    deadline = time.monotonic() + timeout
    with cluster.connect() as su:
        while True:
            [(n,)] = su.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                (names,),
            ).fetchall()
            if n == 0 or time.monotonic() > deadline:
                return
            time.sleep(0.05)
