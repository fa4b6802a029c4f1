"""The workspace at its real path (issue 19): inside the sandbox the workspace is also mounted at
the path it has on the host, writable, and commands start there, so absolute paths, venvs
(absolute shebangs) and build caches inside it work; /workspace stays as an alias of the same tree.

Each test goes through a real goexd in both modes of the suite (root over a root-owned workspace;
the unprivileged goex-sec over its own) and both file isolations (`overlay`: the run writes an
overlay, goexd applies it; `direct`: the run writes the workspace). The negative side: the real
path brings nothing else of the host with it: its parent directories are empty and read-only in
the sandbox (a sibling of the workspace, goexd's state dir beside it: absent), its `.git` is
read-only there too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.conftest import (
    MODES,
    SharedDaemons,
    action_spec,
    close_session,
    make_workspace,
    result_of,
    run_action,
    sec_session,
)
from tests.security.probes import readable, visibility_script, visible

ISOLATIONS = ("overlay", "direct")
PYTHON = "/usr/bin/python3"  # the system python, visible in every sandbox
GRANTED = "example.com"  # a host actions may name (nothing connects to it): the egress forwarder is in


def config(isolation: str) -> str:
    return f'[fs]\nisolation = "{isolation}"\n[egress]\nallowed_hosts = ["{GRANTED}"]\n'


@pytest.fixture(scope="module", params=[(m, i) for m in MODES for i in ISOLATIONS], ids="-".join)
def daemon(request: pytest.FixtureRequest, shared_sec_daemons: SharedDaemons) -> Iterator[DaemonProcess]:
    """The suite's goexd of this mode with this isolation (`overlay`, not `auto`: no silent fallback)."""
    mode, isolation = request.param
    d = shared_sec_daemons.get(mode, config(isolation), ())
    seen = len(d.log())
    yield d
    assert d.proc is not None and d.proc.poll() is None, f"goexd ({mode}) died during the tests:\n{d.log()}"
    assert "Traceback" not in d.log()[seen:], d.log()[seen:]


@pytest.fixture(scope="module", params=MODES)
def overlay_daemon(request: pytest.FixtureRequest, shared_sec_daemons: SharedDaemons) -> DaemonProcess:
    """The same daemon as `daemon`'s overlay one (reversibility trials need an overlay)."""
    return shared_sec_daemons.get(request.param, config("overlay"), ())


@pytest.fixture
def ws(daemon: DaemonProcess) -> Iterator[Path]:
    with make_workspace(daemon.uid, daemon.gid) as path:
        yield path


def changed_paths(action: pb.Action) -> list[str]:
    return sorted(c.path for c in action.changes.changes)


def undo(d: DaemonProcess, session: str, action_id: str) -> pb.Action:
    (undone,) = d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=action_id), timeout=60).undone
    return undone


def test_a_write_to_the_real_path_lands_in_the_workspace_is_in_the_change_set_and_is_undone(
    daemon: DaemonProcess, ws: Path
) -> None:
    session = sec_session(daemon, ws)
    try:
        script = (
            f"pwd; echo x > {ws}/abs.txt; cat /workspace/abs.txt; echo y > /workspace/alias.txt; cat {ws}/alias.txt"
        )
        action = run_action(daemon, session, script)
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        r = result_of(action)
        assert (r.code, r.out) == (0, f"{ws}\nx\ny\n"), r  # starts at the real path; one tree, two names
        assert changed_paths(action) == ["abs.txt", "alias.txt"]
        assert (ws / "abs.txt").read_text() == "x\n"
        undone = undo(daemon, session, action.id)
        assert undone.state == pb.ACTION_STATE_UNDONE, undone.error
        assert sorted(p.name for p in ws.iterdir()) == ["README"]
    finally:
        close_session(daemon, session)


def test_behind_the_egress_forwarder_too(daemon: DaemonProcess, ws: Path) -> None:
    session = sec_session(daemon, ws)
    try:
        action = run_action(daemon, session, f"pwd; echo x > {ws}/net.txt; echo $HTTPS_PROXY", network=[GRANTED])
        r = result_of(action)
        assert (r.code, r.out) == (0, f"{ws}\nhttp://127.0.0.1:3128\n"), r  # started by the forwarder, there
        assert changed_paths(action) == ["net.txt"]
    finally:
        close_session(daemon, session)


def test_a_venv_made_in_the_workspace_runs_its_console_script(daemon: DaemonProcess, ws: Path) -> None:
    session = sec_session(daemon, ws)
    try:
        # A console script as pip writes one: its shebang names the venv's python by absolute path.
        make = (
            f"{PYTHON} -m venv --without-pip .venv && "
            f"printf '#!{ws}/.venv/bin/python\\nimport sys\\nprint(sys.prefix, sys.executable)\\n' > .venv/bin/hello"
            " && chmod 755 .venv/bin/hello"
        )
        made = run_action(daemon, session, make)
        assert made.state == pb.ACTION_STATE_EXECUTED and result_of(made).code == 0, result_of(made)
        assert "#!" + str(ws) in (ws / ".venv" / "bin" / "hello").read_text()
        # A later action (over the applied venv, in overlay mode) runs it, by its relative and its absolute name.
        ran = result_of(run_action(daemon, session, f".venv/bin/hello && {ws}/.venv/bin/hello"))
        want = f"{ws}/.venv {ws}/.venv/bin/python\n"
        assert (ran.code, ran.out) == (0, want * 2), ran
        # A build cache written through the absolute path (byte code, as tools keyed by path write it).
        script = f"mkdir lib && echo 'x = 1' > lib/m.py && {ws}/.venv/bin/python -m compileall -q {ws}/lib"
        built = run_action(daemon, session, script)
        paths = changed_paths(built)
        assert result_of(built).code == 0 and paths[-1] == "lib/m.py", (result_of(built), paths)
        assert len(paths) == 2 and paths[0].startswith("lib/__pycache__/m.") and paths[0].endswith(".pyc"), paths
    finally:
        close_session(daemon, session)


def test_nothing_else_under_the_workspaces_parent_comes_with_it(daemon: DaemonProcess, ws: Path) -> None:
    parent = ws.parent  # root-owned, 0755, on the host: the workspace, a sibling dir and a file beside it
    (parent / "sibling").mkdir()
    (parent / "sibling" / "secret").write_text("SIBLING-SECRET\n")
    (parent / "beside.txt").write_text("BESIDE\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for p in (ws / ".git", ws / ".git" / "HEAD"):
        os.chown(p, daemon.uid, daemon.gid)
    state = daemon.state_dir
    session = sec_session(daemon, ws)
    try:
        control = ws / "README"
        hidden = [
            parent / "sibling",
            parent / "sibling" / "secret",
            parent / "beside.txt",
            state,
            state / "journal.sqlite3",
        ]
        seen = result_of(run_action(daemon, session, visibility_script([*hidden, control])))
        assert str(control) in visible(seen.out) and str(control) in readable(seen.out), f"the control failed:\n{seen}"
        assert visible(seen.out) == {str(control)}, seen.out
        tries = (
            f"ls -A {parent}; ls -A /var/tmp | grep -c . ;"  # only the path down to the workspace
            f" for t in {parent}/planted {parent}/sibling/x {parent.parent}/planted {ws}/.git/HEAD {ws}/.git/x; do"
            "   (echo pwned >> $t) 2>/dev/null && echo wrote $t; done;"
            f" mkdir {parent}/d 2>/dev/null && echo made; rmdir {ws} 2>/dev/null && echo removed; true"
        )
        r = result_of(run_action(daemon, session, tries))
        assert (r.code, r.out) == (0, "ws\n1\n"), r
        assert sorted(p.name for p in parent.iterdir()) == ["beside.txt", "sibling", "ws"]
        assert (ws / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n" and not (ws / ".git" / "x").exists()
        assert not (parent.parent / "planted").exists()
    finally:
        close_session(daemon, session)


def test_a_reversibility_trial_runs_at_the_real_path_too(overlay_daemon: DaemonProcess) -> None:
    with make_workspace(overlay_daemon.uid, overlay_daemon.gid) as ws:
        _trial_at_the_real_path(overlay_daemon, ws)


def _trial_at_the_real_path(daemon: DaemonProcess, ws: Path) -> None:
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)), strategy=pb.UNDO_STRATEGY_INVERSE)
    session = daemon.sessions.CreateSession(spb.CreateSessionRequest(resources=[spec]), timeout=60).session.id
    try:
        # The trial runs over a throwaway overlay: writes through the real path land in it, so the
        # inverse (through the alias) finds them, and a wrong one is caught there, not on the host.
        def trial(action: str, inverse: str) -> pb.Reversibility:
            req = apb.TestReversibilityRequest(
                session_id=session, spec=action_spec(action), inverse=action_spec(inverse)
            )
            found: pb.Reversibility = daemon.actions.TestReversibility(req, timeout=120).reversibility
            return found

        good = trial(f"test $(pwd) = {ws} && echo x > {ws}/t.txt", "rm /workspace/t.txt")
        assert good.verdict == pb.VERDICT_PASSED, good.detail
        bad = trial(f"echo x > {ws}/t.txt; echo y > {ws}/README", "rm /workspace/t.txt")
        assert bad.verdict == pb.VERDICT_FAILED and "README: contents differ" in bad.detail, bad.detail
        assert sorted(p.name for p in ws.iterdir()) == ["README"]
        assert (ws / "README").read_text() == "a workspace of the security suite\n"
    finally:
        close_session(daemon, session)
