"""The file inverse strategy through a real goexd and the `goex` command: --fs-strategy inverse,
`goex run --inverse`, `goex run/python --test`, undo verified and not verified, TestReversibility
for shell and python actions on versioned and inverse workspaces (never touching them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import goex
from goex import Python, Shell, Verdict
from tests.corpus import fs_cases
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import fingerprint

GOEX = Path(sys.executable).with_name("goex")


def run_goex(daemon: DaemonProcess, tmp_path: Path, *argv: str, code: int = 0) -> tuple[str, str]:
    env = {**os.environ, "GOEX_SOCKET": str(daemon.socket), "GOEX_CLI_STATE": str(tmp_path / "cli.json")}
    env["COLUMNS"] = "400"
    done = subprocess.run([str(GOEX), *argv], env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == code, (argv, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout, done.stderr


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "projects" / "ws"
    ws.mkdir(parents=True)
    fs_cases.seed(ws)
    return ws


def test_inverse_strategy_from_the_cli(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    run_goex(shared_daemon, tmp_path, "session", "open", "--fs", str(ws), "--fs-strategy", "inverse")

    # A pair that does not restore the tree is blocked with the diff, and never reaches the workspace.
    out, err = run_goex(
        shared_daemon, tmp_path, "run", "--inverse", "chmod 640 a.txt", "--", "sh", "-c", "chmod 600 a.txt", code=125
    )
    assert "blocked" in err and "a.txt: mode 0640 where 0644 was" in err, err
    assert fingerprint(ws) == before
    # An action that writes and has no inverse: blocked too.
    _, err = run_goex(shared_daemon, tmp_path, "run", "--", "sh", "-c", "echo x > n.txt", code=125)
    assert "has no inverse" in err, err

    # A right pair runs, says its test passed, and its undo runs the inverse and verifies it.
    out, _ = run_goex(
        shared_daemon, tmp_path, "run", "--inverse", "sed -i '$ d' b.txt", "--", "sh", "-c", "echo more >> b.txt"
    )
    assert "reversible, test passed" in out, out
    assert (ws / "b.txt").read_text() == "beta\nmore\n"
    out, err = run_goex(shared_daemon, tmp_path, "undo")
    assert out.startswith("undone act_") and "verified: ran the inverse" in err, (out, err)
    assert fingerprint(ws) == before

    # python, with a python inverse
    out, _ = run_goex(
        shared_daemon,
        tmp_path,
        "python",
        "--inverse",
        "import os; os.remove('p.txt')",
        "open('p.txt', 'w').write('py')",
    )
    assert "test passed" in out and (ws / "p.txt").read_text() == "py"
    run_goex(shared_daemon, tmp_path, "undo")
    assert fingerprint(ws) == before

    # A pair right on the trial but not at the undo (its inverse copies from a file the person changed
    # meanwhile): the undo says NOT verified (exit 3), and the pre-action version is kept as a set-aside.
    (ws / "src.txt").write_text("alpha\n")
    before = fingerprint(ws)
    run_goex(shared_daemon, tmp_path, "run", "--inverse", "cp src.txt a.txt", "--", "sh", "-c", "echo z > a.txt")
    (ws / "src.txt").write_text("something else\n")
    out, err = run_goex(shared_daemon, tmp_path, "undo", code=3)
    assert "NOT verified" in err and "a.txt: contents differ" in err and "goex set-aside restore" in err, err
    assert (ws / "a.txt").read_text() == "something else\n"
    kept = err.split("goex set-aside restore ")[1].split()[0]
    run_goex(shared_daemon, tmp_path, "set-aside", "restore", kept)
    assert (ws / "a.txt").read_text() == "alpha\n"
    run_goex(shared_daemon, tmp_path, "session", "close")


def test_test_flag_tries_pairs_on_a_versioned_workspace_without_touching_it(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    run_goex(shared_daemon, tmp_path, "session", "open", "--fs", str(ws))
    out, _ = run_goex(shared_daemon, tmp_path, "run", "--test", "--inverse", "ln -s a.txt link", "--", "rm", "link")
    assert "reversible, test passed" in out, out
    out, _ = run_goex(
        shared_daemon, tmp_path, "run", "--test", "--inverse", "cp a.txt link", "--", "rm", "link", code=3
    )
    assert "test failed" in out and "link: a file where a symlink was" in out, out
    out, _ = run_goex(shared_daemon, tmp_path, "python", "--test", "open('n', 'w').write('x')", code=4)
    assert "test unknown" in out and "no inverse to try" in out, out
    assert fingerprint(ws) == before
    assert run_goex(shared_daemon, tmp_path, "log")[0].count("act_") == 0  # a test is not an action
    run_goex(shared_daemon, tmp_path, "session", "close")


def test_test_reversibility_for_shell_and_python_on_both_strategies(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    for strategy in ("versioned", "inverse"):
        ws = _workspace(tmp_path / strategy)
        before = fingerprint(ws)
        with goex.Client(shared_daemon.socket, timeout=60) as client:
            session = client.create_session(resources=[goex.ResourceSpec.fs(ws, strategy=strategy)])
            try:
                for action, right, wrong in (
                    (
                        Shell(["sh", "-c", "rm d/c.txt"]),
                        Shell(["sh", "-c", "printf 'see\\n' > d/c.txt"]),
                        Shell(["true"]),
                    ),
                    (
                        Python("import os; os.chmod('run.sh', 0o644)"),
                        Python("import os; os.chmod('run.sh', 0o755)"),
                        Python("import os; os.chmod('run.sh', 0o775)"),
                    ),
                ):
                    ok = client.test_reversibility(session.id, action, inverse=right)
                    assert ok.verdict is Verdict.PASSED, (strategy, ok.detail)
                    bad = client.test_reversibility(session.id, action, inverse=wrong)
                    assert bad.verdict is Verdict.FAILED, (strategy, bad.detail)
                assert fingerprint(ws) == before
                assert client.list_actions(session.id) == []
            finally:
                client.close_session(session.id, "commit")
