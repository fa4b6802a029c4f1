"""Privileged SQL runs nowhere the policy refuses it: not in a reversibility test, not as a client inverse.

Trial 15b's finding 1: the policy's `sql.privileged = "deny"` held for the action of a real run only.
TestReversibility ran whatever it was given (on a clone or in a rolled-back transaction, where SQLite's
ATTACH still writes a file and VACUUM INTO copies the database anywhere goexd may write), and a client
inverse was never classified: it ran in the test before the action and again at undo. Each test here
tries one forbidden thing through the real goexd, as root and as an unprivileged user, and checks that
nothing happened: no file, no extension, no publication, no default privilege, the action not run. The
target directory belongs to the daemon's own user, so a refusal is the policy's, not the file system's;
a control in each engine shows a lawful pair in the same session runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import psycopg
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import put_pg_secret, status_of
from tests.security.conftest import close_session
from tests.services.postgres import PgCluster

PRIVILEGED = "[policy rule sql.privileged]"


def sql(text: str) -> pb.ActionSpec:
    return pb.ActionSpec(sql=pb.SqlAction(sql=text))


@contextlib.contextmanager
def daemon_owned_dir(d: DaemonProcess) -> Iterator[Path]:
    """A fresh directory the daemon's user owns: it could write there, were it made to."""
    path = Path(tempfile.mkdtemp(prefix="goex-sqlpol-", dir="/var/tmp"))
    path.chmod(0o755)
    os.chown(path, d.uid, d.gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tried(d: DaemonProcess, session: str, action: str, inverse: str) -> pb.Reversibility:
    req = apb.TestReversibilityRequest(session_id=session, spec=sql(action), inverse=sql(inverse))
    return d.actions.TestReversibility(req, timeout=60).reversibility


def _refused(call: Callable[[], object], says: str) -> str:
    """The call's PERMISSION_DENIED message: the privileged rule named, and `says`."""
    code, msg = status_of(call)
    assert code == grpc.StatusCode.PERMISSION_DENIED, (code, msg)
    assert PRIVILEGED in msg and says in msg, msg
    return msg


def refused_test(d: DaemonProcess, session: str, action: str, inverse: str) -> str:
    return _refused(lambda: tried(d, session, action, inverse), "nothing was run")


def submitted(d: DaemonProcess, session: str, action: str, inverse: str) -> pb.Action:
    req = apb.SubmitActionRequest(session_id=session, spec=sql(action), inverse=sql(inverse))
    return d.actions.SubmitAction(req, timeout=60).action


def refused_submit(d: DaemonProcess, session: str, action: str, inverse: str) -> str:
    return _refused(lambda: submitted(d, session, action, inverse), "recorded as blocked action")


# ---------------------------------------------------------------- SQLite


class Lite(NamedTuple):
    d: DaemonProcess
    session: str
    db: Path
    out: Path  # a directory the daemon's user may write to: where the attacks aim

    def value(self) -> int:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            row = conn.execute("SELECT a FROM t").fetchone()
        return int(row[0])

    def journal_mode(self) -> str:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


@pytest.fixture
def lite(sec_daemon: DaemonProcess) -> Iterator[Lite]:
    with daemon_owned_dir(sec_daemon) as root:
        db = root / "app.db"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (0);")
        os.chown(db, sec_daemon.uid, sec_daemon.gid)
        out = root / "out"
        out.mkdir()
        os.chown(out, sec_daemon.uid, sec_daemon.gid)
        spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{db}"), strategy=pb.UNDO_STRATEGY_INVERSE)
        session = sec_daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60).session
        try:
            yield Lite(sec_daemon, session.id, db, out)
        finally:
            close_session(sec_daemon, session.id)


def _attach(path: Path) -> str:
    return f"ATTACH DATABASE '{path}' AS o; CREATE TABLE o.x (v); INSERT INTO o.x VALUES ('chosen content')"


def test_sqlite_attach_in_a_test_writes_no_file(lite: Lite) -> None:
    target = lite.out / "owned.db"
    msg = refused_test(lite.d, lite.session, _attach(target), "SELECT 1")
    assert "statement 1 is privileged (ATTACH" in msg, msg
    msg = refused_test(lite.d, lite.session, "UPDATE t SET a = 1", "UPDATE t SET a = 0; " + _attach(target))
    assert "statement 2 of the inverse (inverse.sql.sql) is privileged (ATTACH" in msg, msg
    assert not target.exists() and list(lite.out.iterdir()) == []
    assert lite.value() == 0


def test_sqlite_vacuum_into_in_a_test_copies_nothing(lite: Lite) -> None:
    leak = lite.out / "leak.db"
    refused_test(lite.d, lite.session, f"VACUUM INTO '{leak}'", "SELECT 1")
    msg = refused_test(lite.d, lite.session, "UPDATE t SET a = 1", f"UPDATE t SET a = 0; VACUUM INTO '{leak}'")
    assert "inverse.sql.sql" in msg, msg
    assert list(lite.out.iterdir()) == []


def test_sqlite_privileged_pragma_in_a_test_or_an_inverse_is_refused(lite: Lite) -> None:
    mode = lite.journal_mode()
    refused_test(lite.d, lite.session, "PRAGMA journal_mode = DELETE", "SELECT 1")
    msg = refused_submit(lite.d, lite.session, "UPDATE t SET a = 1", "UPDATE t SET a = 0; PRAGMA journal_mode = DELETE")
    assert "inverse.sql.sql" in msg and "PRAGMA journal_mode" in msg, msg
    assert lite.journal_mode() == mode and lite.value() == 0


def test_sqlite_attach_in_an_inverse_is_refused_at_submit(lite: Lite) -> None:
    """The reproduction of finding 1: a lawful action whose inverse ATTACHes and writes a file."""
    target = lite.out / "owned.db"
    msg = refused_submit(lite.d, lite.session, "UPDATE t SET a = 1", "UPDATE t SET a = 0; " + _attach(target))
    assert "statement 2 of the inverse (inverse.sql.sql) is privileged" in msg, msg
    msg = refused_submit(lite.d, lite.session, "UPDATE t SET a = 1", f"VACUUM INTO '{lite.out / 'leak.db'}'")
    assert "inverse.sql.sql" in msg, msg
    assert list(lite.out.iterdir()) == [] and lite.value() == 0  # neither the test nor the action ran


def test_sqlite_lawful_pair_runs_and_a_bad_inverse_names_its_field(lite: Lite) -> None:
    """Controls: the session runs a lawful pair; a syntax error in the inverse names inverse.sql.sql."""
    assert tried(lite.d, lite.session, "UPDATE t SET a = 1", "UPDATE t SET a = 0").verdict == pb.VERDICT_PASSED
    code, msg = status_of(lambda: submitted(lite.d, lite.session, "UPDATE t SET a = 1", "DELETE FROM WHERE"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("inverse.sql.sql: "), msg
    done = submitted(lite.d, lite.session, "UPDATE t SET a = 1", "UPDATE t SET a = 0")
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    assert lite.value() == 1


# ---------------------------------------------------------------- PostgreSQL


class Pg(NamedTuple):
    d: DaemonProcess
    session: str
    conn: psycopg.Connection[Any]  # the database's owner, autocommit
    out: Path

    def one(self, query: str) -> Any:
        row = self.conn.execute(query).fetchone()
        assert row is not None
        return row[0]


@contextlib.contextmanager
def pg_session(d: DaemonProcess, cluster: PgCluster, database: str, policy: str = "") -> Iterator[Pg]:
    """A session with the inverse strategy on `database` (one table, t), its own policy `policy`."""
    secret = put_pg_secret(d, cluster, f"sqlpol-{secrets.token_hex(4)}")
    # The owner of the database is made a superuser for these tests: whatever got through would then run.
    with cluster.connect() as su:
        su.execute(f'ALTER ROLE "{cluster.app_role}" SUPERUSER')
    try:
        with cluster.connect_app(database) as conn, daemon_owned_dir(d) as out:
            out.chmod(0o777)  # the server's own user could write here too (COPY ... TO PROGRAM/file)
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, qty int); INSERT INTO t VALUES (1, 1)")
            db = pb.DbResourceSpec(url=cluster.app_dsn_for(database), secret=secret)
            spec = pb.ResourceSpec(db=db, strategy=pb.UNDO_STRATEGY_INVERSE)
            req = spb.CreateSessionRequest(resources=[spec], policy_toml=policy)
            session = d.sessions.CreateSession(req, timeout=60).session
            try:
                yield Pg(d, session.id, conn, out)
            finally:
                close_session(d, session.id)
    finally:
        with cluster.connect() as su:
            su.execute(f'ALTER ROLE "{cluster.app_role}" NOSUPERUSER')
        d.secrets.DeleteSecret(secpb.DeleteSecretRequest(name=secret))


@pytest.fixture
def pg(sec_daemon: DaemonProcess, pg_cluster: PgCluster, pg_database: str) -> Iterator[Pg]:
    with pg_session(sec_daemon, pg_cluster, pg_database) as found:
        yield found


@pytest.fixture
def pg_lifting(sec_daemon: DaemonProcess, pg_cluster: PgCluster, pg_database: str) -> Iterator[Pg]:
    """A session whose own policy tries to allow what the daemon's refuses or holds."""
    policy = '[sql]\nprivileged = "allow"\nirreversible = "allow"\n'
    with pg_session(sec_daemon, pg_cluster, pg_database, policy) as found:
        yield found


def test_postgres_privileged_ddl_is_never_tested(pg: Pg) -> None:
    for action in (
        "CREATE EXTENSION citext",
        "CREATE PUBLICATION pub FOR TABLE t",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
    ):
        refused_test(pg.d, pg.session, action, "SELECT 1")
        msg = refused_test(pg.d, pg.session, "UPDATE t SET qty = 2", f"UPDATE t SET qty = 1; {action}")
        assert "statement 2 of the inverse (inverse.sql.sql) is privileged" in msg, msg
    assert pg.one("SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 0
    assert pg.one("SELECT count(*) FROM pg_publication") == 0
    assert pg.one("SELECT count(*) FROM pg_default_acl") == 0


def test_postgres_privileged_inverse_is_refused_at_submit(pg: Pg) -> None:
    for inverse in ("CREATE EXTENSION citext", "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC"):
        msg = refused_submit(pg.d, pg.session, "UPDATE t SET qty = 2", f"UPDATE t SET qty = 1; {inverse}")
        assert "inverse.sql.sql" in msg, msg
    assert pg.one("SELECT qty FROM t") == 1  # the action did not run either
    assert pg.one("SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 0
    assert pg.one("SELECT count(*) FROM pg_default_acl") == 0


def test_postgres_copy_program_and_file_are_refused_everywhere(pg: Pg) -> None:
    made = pg.out / "made"
    for copy in (
        f"COPY t TO PROGRAM 'touch {made}'",
        f"COPY t FROM PROGRAM 'touch {made}'",
        f"COPY t TO '{pg.out / 'rows.csv'}'",
        "COPY t FROM '/etc/hostname'",
    ):
        refused_test(pg.d, pg.session, copy, "SELECT 1")
        refused_test(pg.d, pg.session, "UPDATE t SET qty = 2", f"UPDATE t SET qty = 1; {copy}")
        refused_submit(pg.d, pg.session, "UPDATE t SET qty = 2", f"UPDATE t SET qty = 1; {copy}")
    assert list(pg.out.iterdir()) == []
    assert pg.one("SELECT count(*) FROM t") == 1 and pg.one("SELECT qty FROM t") == 1


def test_postgres_sql_built_at_run_time_is_refused_everywhere(pg: Pg) -> None:
    """A DO block (or a function it creates) hiding privileged SQL in a string EXECUTEd at run time: the classifier
    cannot see the string, so the body itself counts as privileged, in the action, the inverse and a test."""
    hidden = "DO $$BEGIN EXECUTE 'CREATE ' || 'EXTENSION citext'; END$$"
    maker = "CREATE FUNCTION hide() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE 'CREATE EXTENSION citext'; END$$"
    for bad in (hidden, maker):
        refused_test(pg.d, pg.session, bad, "SELECT 1")
        msg = refused_submit(pg.d, pg.session, "UPDATE t SET qty = 2", f"UPDATE t SET qty = 1; {bad}")
        assert "builds SQL at run time" in msg, msg
        msg = refused_submit(pg.d, pg.session, bad, "SELECT 1")
        assert "builds SQL at run time" in msg, msg
    assert pg.one("SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 0
    assert pg.one("SELECT count(*) FROM pg_proc WHERE proname = 'hide'") == 0
    assert pg.one("SELECT qty FROM t") == 1


def test_postgres_lawful_pair_runs(pg: Pg) -> None:
    """The control: in the same session a lawful pair is tested and runs, and a bad inverse names its field."""
    assert tried(pg.d, pg.session, "UPDATE t SET qty = 2", "UPDATE t SET qty = 1").verdict == pb.VERDICT_PASSED
    code, msg = status_of(lambda: submitted(pg.d, pg.session, "UPDATE t SET qty = 2", "DELETE FROM WHERE"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("inverse.sql.sql: "), msg
    done = submitted(pg.d, pg.session, "UPDATE t SET qty = 2", "UPDATE t SET qty = 1")
    assert done.state == pb.ACTION_STATE_EXECUTED, done.error
    assert pg.one("SELECT qty FROM t") == 2


def test_a_session_policy_cannot_lift_the_daemons_sql_rules(pg_lifting: Pg) -> None:
    """The session's own `[sql] privileged/irreversible = "allow"` is clipped to the daemon's (deny; approval)."""
    pg = pg_lifting
    msg = refused_test(pg.d, pg.session, "UPDATE t SET qty = 2", "UPDATE t SET qty = 1; CREATE EXTENSION citext")
    assert "the daemon's policy" in msg, msg
    code, msg = status_of(
        lambda: submitted(pg.d, pg.session, "UPDATE t SET qty = 2; NOTIFY ch", "UPDATE t SET qty = 1")
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "[policy rule sql.irreversible]" in msg, msg
    assert "the daemon's policy" in msg, msg
    assert pg.one("SELECT qty FROM t") == 1
    assert pg.one("SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 0
