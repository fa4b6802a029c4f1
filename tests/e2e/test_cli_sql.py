"""`goex sql` and `goex describe` against the real daemon, as a user types them."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.daemon_process import DaemonProcess

GOEX = Path(sys.executable).with_name("goex")


def goex(daemon: DaemonProcess, tmp_path: Path, *argv: str, code: int = 0) -> str:
    env = {**os.environ, "GOEX_SOCKET": str(daemon.socket), "GOEX_CLI_STATE": str(tmp_path / "cli.json")}
    env["COLUMNS"] = "200"  # tables as wide as off a terminal, whatever width the test run itself has
    done = subprocess.run([str(GOEX), *argv], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == code, (argv, done.returncode, done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_sql_describe_undo_and_commit_from_the_cli(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    goex(shared_daemon, tmp_path, "session", "open", "--db", f"sqlite://{db}")
    out = goex(
        shared_daemon, tmp_path, "sql", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)"
    )
    assert "executed" in out
    assert "3 rows affected" in goex(
        shared_daemon, tmp_path, "sql", "INSERT INTO users (name, balance) VALUES ('ann', 1), ('bob', 2), ('cy', 3)"
    )
    bump = goex(shared_daemon, tmp_path, "sql", "UPDATE users SET balance = 9 WHERE name = ?", "--param", "bob")
    assert bump.startswith("1 row affected\n")
    table = goex(shared_daemon, tmp_path, "sql", "SELECT name, balance FROM users ORDER BY id")
    assert "ann" in table and "balance" in table
    described = goex(shared_daemon, tmp_path, "describe")
    assert described.startswith("== db ==") and "TABLE users" in described
    assert "undone" in goex(shared_daemon, tmp_path, "undo")
    err = goex(shared_daemon, tmp_path, "sql", "ATTACH DATABASE 'x.db' AS x", code=1)
    assert "privileged" in err
    response = json.loads(goex(shared_daemon, tmp_path, "--json", "sql", "SELECT count(*) AS n FROM users"))
    assert response["action"]["sql"]["columns"] == ["n"]
    goex(shared_daemon, tmp_path, "session", "close", "--commit-all")
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT count(*) FROM users").fetchone() == (3,)


def test_sql_with_an_inverse_on_the_inverse_strategy(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
        setup.execute("INSERT INTO t VALUES (1)")
    goex(shared_daemon, tmp_path, "session", "open", "--db", f"sqlite://{db}", "--db-strategy", "inverse")
    ok = goex(shared_daemon, tmp_path, "--json", "sql", "UPDATE t SET x = x + 5", "--inverse", "UPDATE t SET x = x - 5")
    assert json.loads(ok)["action"]["reversibility"]["verdict"] == "passed"
    # The same pair again: the test's verdict (here remembered from the first) is said on the terminal's report.
    again = goex(shared_daemon, tmp_path, "sql", "UPDATE t SET x = x + 5", "--inverse", "UPDATE t SET x = x - 5")
    assert re.search(r"^reversibility\s+reversible, test passed", again, re.M), again
    goex(shared_daemon, tmp_path, "undo")
    blocked = goex(shared_daemon, tmp_path, "sql", "DELETE FROM t", "--inverse", "SELECT 1", code=125)
    assert "reversibility test" in blocked
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT x FROM t").fetchall() == [(6,)]
