"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl into a temp dir, one per session.

`run_pg_cluster()` starts a private cluster and yields a `PgCluster`; the session fixture
`pg_cluster` starts one for the whole run and `pg_database` gives each test a fresh, empty
database owned by `app` (dropped afterwards).

- Binaries: /usr/local/bin (initdb, pg_ctl, postgres), else a Debian install under
  /usr/lib/postgresql/*/bin (scripts/install-system-deps.sh installs one).
- PostgreSQL refuses to run as root: when the suite runs as root, the cluster runs as the
  system user `goex-pg` (created with useradd if missing), its directory owned by that user.
- It listens on a free TCP port on 127.0.0.1 and on a unix socket in a private directory.
- Authentication: the superuser `postgres` is trusted on the unix socket only (the fixture's
  own setup path; the socket directory is 0700, so only the suite's user and root reach it);
  every other role, and every role over TCP, needs its password (scram-sha-256). The role `app`
  has a password, so a test can check that a DSN without one is refused and that injecting
  the password works.
- Durability is off (fsync, synchronous_commit, full_page_writes): it is thrown away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from tests.users import UserSetupError, ensure_system_user

PG_USER = "goex-pg"  # the unprivileged system user the cluster runs as when the suite runs as root
SUPERUSER = "postgres"
APP_ROLE = "app"
APP_DATABASE = "app"
_PREFIX = "goex-pg-"  # the clusters' directories in the temp dir


class PgClusterError(RuntimeError):
    pass


def pg_bindir() -> Path:
    """Where initdb, pg_ctl and postgres are: /usr/local/bin, else the newest Debian install."""
    local = Path("/usr/local/bin")
    if all((local / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
        return local
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[3]))
    if found:
        return Path(found[-1]).parent
    raise PgClusterError(
        "PostgreSQL is not installed (no /usr/local/bin/initdb, no /usr/lib/postgresql/*/bin/initdb); "
        "run scripts/install-system-deps.sh as root (make install does)"
    )


@dataclass(frozen=True)
class PgCluster:
    host: str  # 127.0.0.1: TCP, password required
    port: int
    socket_dir: Path  # unix socket directory: the superuser's trusted path
    data_dir: Path
    superuser: str
    app_role: str
    app_password: str
    app_database: str  # a database owned by app, created at start
    start_s: float  # how long initdb + start + setup took

    @property
    def superuser_dsn(self) -> str:
        """The superuser over the private unix socket, trusted (no password): for test setup only."""
        return self.superuser_dsn_for("postgres")

    @property
    def app_dsn(self) -> str:
        """`app` over TCP without its password, as the journal would keep it: connecting needs
        the password (`app_password`) supplied separately."""
        return self.app_dsn_for(self.app_database)

    @property
    def app_dsn_with_password(self) -> str:
        return self.app_dsn_for(self.app_database, with_password=True)

    def superuser_dsn_for(self, dbname: str) -> str:
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{quote(dbname, safe='')}?host={host}&port={self.port}"

    def app_dsn_for(self, dbname: str, *, with_password: bool = False) -> str:
        auth = f"{self.app_role}:{quote(self.app_password, safe='')}" if with_password else self.app_role
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection (unix socket)."""
        return psycopg.connect(self.superuser_dsn_for(dbname), autocommit=autocommit)

    def connect_app(
        self, dbname: str | None = None, *, autocommit: bool = True
    ) -> psycopg.Connection[tuple[object, ...]]:
        """An `app` connection over TCP, with its password."""
        return psycopg.connect(
            self.app_dsn_for(dbname or self.app_database), password=self.app_password, autocommit=autocommit
        )

    def create_database(self, name: str | None = None, *, template: str = "template1", owner: str | None = None) -> str:
        """CREATE DATABASE name TEMPLATE template OWNER owner (default: app); returns the name.

        PostgreSQL copies the template only when nothing else is connected to it (and when
        something is, it waits 5 s before failing): this looks first and raises a PgClusterError
        naming the connections at once (close them first). Autovacuum workers (no user) are left
        out: PostgreSQL stops those itself, and one may be on template1 at any time."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(template), sql.Identifier(owner or self.app_role)
        )
        with self.connect() as conn:
            others = conn.execute(
                "SELECT pid, usename, client_addr::text, state FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND usesysid IS NOT NULL",
                (template,),
            ).fetchall()
            if others:
                raise PgClusterError(f"cannot copy database {template!r}: it has other connections {others}")
            try:
                conn.execute(stmt)
            except psycopg.errors.ObjectInUse as e:  # one came meanwhile
                raise PgClusterError(f"cannot copy database {template!r}: {e}") from e
        return name

    @contextlib.contextmanager
    def app_may_create_databases(self, *, drop_copies: bool = False) -> Iterator[None]:
        """`app` may create databases (the clone strategy's copies) for the block; the cluster is shared, so the
        grant is taken back after. `drop_copies`: goexd's copies (goex_*) left by pending actions go too."""
        with self.connect() as su:
            su.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(APP_ROLE)))
        try:
            yield
        finally:
            with self.connect() as su:
                su.execute(sql.SQL("ALTER ROLE {} NOCREATEDB").format(sql.Identifier(APP_ROLE)))
                if drop_copies:
                    for (name,) in su.execute(
                        "SELECT datname FROM pg_database WHERE datname LIKE 'goex\\_%'"
                    ).fetchall():
                        su.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(str(name))))

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS name WITH (FORCE): terminates its connections first."""
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _run_as(uid: int | None, gid: int | None, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run argv as uid/gid (via setpriv) when they are given, else as ourselves."""
    if uid is not None and gid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def _unprivileged_user() -> tuple[int, int]:
    """The system user the cluster runs as when we are root: goex-pg, created if missing."""
    try:
        pw = ensure_system_user(PG_USER)
    except UserSetupError as e:
        raise PgClusterError(str(e)) from None
    return pw.pw_uid, pw.pw_gid


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_HBA = f"""\
# goex test cluster: the superuser is trusted on the private unix socket only;
# everything else needs a password.
local   all   {SUPERUSER}                 trust
local   all   all                         scram-sha-256
host    all   all         127.0.0.1/32    scram-sha-256
host    all   all         ::1/128         scram-sha-256
"""


def _conf(port: int, socket_dir: Path) -> str:
    return f"""
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
max_connections = 50
max_wal_size = 1GB
logging_collector = off
log_min_messages = warning
log_connections = off
timezone = 'UTC'
"""


@contextlib.contextmanager
def run_pg_cluster(start_timeout: float = 60) -> Iterator[PgCluster]:
    """Start a private cluster, yield it, then stop it (pg_ctl stop -m fast) and remove it."""
    t0 = time.monotonic()
    bindir = pg_bindir()
    uid, gid = _unprivileged_user() if os.geteuid() == 0 else (None, None)
    _reap_orphans(bindir, uid, gid)
    # Not under pytest's basetemp: that is 0700 and root's, and the cluster's user must reach it.
    root = Path(tempfile.mkdtemp(prefix=_PREFIX))
    (root / "owner").write_text(str(os.getpid()))
    data_dir, socket_dir = root / "data", root / "sock"
    socket_dir.mkdir(mode=0o700)
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
        os.chown(socket_dir, uid, gid)
    port = 0
    try:
        r = _run_as(
            uid,
            gid,
            [
                *(str(bindir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust"),
                *("--no-sync", "--no-instructions", "--encoding=UTF8", "--locale=C"),
            ],
        )
        if r.returncode != 0:
            raise PgClusterError(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        (data_dir / "pg_hba.conf").write_text(_HBA)
        port = _start(bindir, uid, gid, root, start_timeout)
        cluster = PgCluster(
            host="127.0.0.1",
            port=port,
            socket_dir=socket_dir,
            data_dir=data_dir,
            superuser=SUPERUSER,
            app_role=APP_ROLE,
            app_password=secrets.token_urlsafe(18),
            app_database=APP_DATABASE,
            start_s=0.0,
        )
        with cluster.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(cluster.app_password)
                )
            )
        cluster.create_database(APP_DATABASE)
        yield dataclasses.replace(cluster, start_s=time.monotonic() - t0)
    finally:
        if port:
            _stop(bindir, uid, gid, data_dir)
        shutil.rmtree(root, ignore_errors=True)


def _start(bindir: Path, uid: int | None, gid: int | None, root: Path, timeout: float) -> int:
    """pg_ctl start on a free port; returns the port."""
    data_dir, log_path = root / "data", root / "postgres.log"
    for attempt in range(5):  # a port found free may be taken before postgres binds it
        port = _free_port()
        with (data_dir / "postgresql.conf").open("a") as f:
            f.write(_conf(port, root / "sock"))  # later settings win
        argv = [
            str(bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(data_dir),
            "-l",
            str(log_path),
        ]
        r = _run_as(uid, gid, argv)
        if r.returncode == 0:
            return port
        if attempt == 4 or "could not bind" not in _read(log_path):
            raise PgClusterError(f"pg_ctl start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{_read(log_path)}")
    raise AssertionError("unreachable")


def _stop(bindir: Path, uid: int | None, gid: int | None, data_dir: Path) -> None:
    r = _run_as(uid, gid, [str(bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(data_dir)])
    if r.returncode != 0 and (data_dir / "postmaster.pid").exists():
        _run_as(uid, gid, [str(bindir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(data_dir)])


def _reap_orphans(bindir: Path, uid: int | None, gid: int | None) -> None:
    """Stop and remove clusters left by test runs that were killed before their clean-up ran."""
    for root in Path(tempfile.gettempdir()).glob(_PREFIX + "*"):
        try:
            owner = int((root / "owner").read_text())
            os.kill(owner, 0)
            continue  # its test run is still going
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # not ours to judge (unreadable, or being set up right now)
        if (root / "data" / "postmaster.pid").exists():
            _stop(bindir, uid, gid, root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL cluster for the whole test session."""
    with run_pg_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database owned by `app` for one test; dropped afterwards."""
    name = pg_cluster.create_database()
    yield name
    pg_cluster.drop_database(name)
