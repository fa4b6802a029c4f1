"""The file inverse strategy through a real goexd and the `goex` command: --fs-strategy inverse,
`goex run --inverse`, `goex run/python --test`, undo verified and not verified, TestReversibility
for shell and python actions on versioned and inverse workspaces (never touching them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc

import goex
from goex import Python, Shell, Verdict
from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.corpus import fs_cases
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
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
    _, err = run_goex(
        shared_daemon, tmp_path, "run", "--inverse", "sed -i '$ d' b.txt", "--", "sh", "-c", "echo more >> b.txt"
    )
    assert "reversible, test passed" in err, err  # goex's report: on stderr
    assert (ws / "b.txt").read_text() == "beta\nmore\n"
    out, err = run_goex(shared_daemon, tmp_path, "undo")
    assert out.startswith("undone act_") and "verified: ran the inverse" in err, (out, err)
    assert fingerprint(ws) == before
    # The undo's overlay dir (its apply intent, kept for a crash until the journal has the undo) is gone.
    assert not [p for p in (shared_daemon.state_dir / "overlays").iterdir() if p.name.endswith(".undo")]

    # python, with a python inverse
    _, err = run_goex(
        shared_daemon,
        tmp_path,
        "python",
        "--inverse",
        "import os; os.remove('p.txt')",
        "open('p.txt', 'w').write('py')",
    )
    assert "test passed" in err and (ws / "p.txt").read_text() == "py"
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


def _submit(d: DaemonProcess, session: str, action: str, inverse: str, approval: str = "") -> apb.SubmitActionResponse:
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", action]))
    undo = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", inverse]))
    req = apb.SubmitActionRequest(session_id=session, spec=spec, inverse=undo, approval=approval)
    return d.actions.SubmitAction(req, timeout=120)


def _inverse_session(d: DaemonProcess, ws: Path, policy: str = "") -> str:
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)), strategy=pb.UNDO_STRATEGY_INVERSE)
    req = spb.CreateSessionRequest(resources=[spec], policy_toml=policy)
    return str(d.sessions.CreateSession(req, timeout=60).session.id)


def test_a_failed_pair_is_refused_by_default(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    session = _inverse_session(shared_daemon, ws)
    action = _submit(shared_daemon, session, "chmod 600 a.txt", "true", approval="ann: sure").action
    assert action.state == pb.ACTION_STATE_BLOCKED, action
    assert 'fs.failed_inverse = "deny"' in action.error and "a.txt: mode 0600 where 0644 was" in action.error
    assert fingerprint(ws) == before
    shared_daemon.sessions.CloseSession(spb.CloseSessionRequest(session_id=session), timeout=60)


def test_the_policy_can_let_a_failed_pair_run_flagged_undone_from_snapshots(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[fs]\nfailed_inverse = "approval"\n')
    (tmp_path / "goexd").mkdir()
    d = DaemonProcess(tmp_path / "goexd", env={"GOEXD_POLICY__FILE": str(policy_file)}).start()
    try:
        ws = _workspace(tmp_path)
        before = fingerprint(ws)
        session = _inverse_session(d, ws)
        refused = _submit(d, session, "chmod 600 a.txt", "true").action
        assert refused.state == pb.ACTION_STATE_BLOCKED and "explicit approval" in refused.error, refused.error
        flagged = _submit(d, session, "chmod 600 a.txt", "true", approval="ann: the mode does not matter").action
        assert flagged.state == pb.ACTION_STATE_EXECUTED, flagged.error
        assert flagged.reversibility.verdict == pb.VERDICT_FAILED
        assert flagged.reversibility.detail.startswith("flagged: its inverse failed"), flagged.reversibility.detail
        assert "approved: ann: the mode does not matter" in flagged.reversibility.detail
        assert (ws / "a.txt").stat().st_mode & 0o777 == 0o600
        (undone,) = d.actions.UndoAction(apb.UndoActionRequest(session_id=session), timeout=120).undone
        assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
        assert fingerprint(ws) == before  # from the snapshots: its wrong inverse was not run
        d.sessions.CloseSession(spb.CloseSessionRequest(session_id=session), timeout=60)
        # A session's policy can only narrow: with its own deny, even an approval does not run it.
        strict = _inverse_session(d, ws, policy='[fs]\nfailed_inverse = "deny"\n')
        denied = _submit(d, strict, "chmod 600 a.txt", "true", approval="ann: again").action
        assert denied.state == pb.ACTION_STATE_BLOCKED and 'fs.failed_inverse = "deny"' in denied.error
        assert fingerprint(ws) == before
    finally:
        assert d.stop() == 0


def test_bad_inverses_are_refused_naming_the_field_and_nothing_is_recorded(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    ws = _workspace(tmp_path)
    before = fingerprint(ws)
    session = _inverse_session(shared_daemon, ws)
    spec = pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "echo x > n.txt"]))
    sql = pb.ActionSpec(sql=pb.SqlAction(sql="DELETE FROM t"))
    networked = pb.ActionSpec(shell=pb.ShellAction(argv=["rm", "n.txt"]))
    networked.egress.hosts.append("example.com")
    empty = pb.ActionSpec(shell=pb.ShellAction(argv=[]))
    for inverse, field in ((sql, "inverse"), (networked, "inverse.egress"), (empty, "inverse")):
        req = apb.SubmitActionRequest(session_id=session, spec=spec, inverse=inverse)
        code, msg = status_of(lambda r=req: shared_daemon.actions.SubmitAction(r, timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(field), msg
        test = apb.TestReversibilityRequest(session_id=session, spec=spec, inverse=inverse)
        if field == "inverse.egress":  # a test can say so: it cannot try what needs the network
            tried = shared_daemon.actions.TestReversibility(test, timeout=60).reversibility
            assert tried.verdict == pb.VERDICT_UNKNOWN and "reaches the network" in tried.detail, tried.detail
            continue
        code, msg = status_of(lambda r=test: shared_daemon.actions.TestReversibility(r, timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(field), msg
    listed = shared_daemon.actions.ListActions(apb.ListActionsRequest(session_id=session), timeout=10).actions
    assert list(listed) == []
    assert fingerprint(ws) == before
    shared_daemon.sessions.CloseSession(spb.CloseSessionRequest(session_id=session), timeout=60)
