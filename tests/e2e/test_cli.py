"""The `goex` command line against a real goexd process.

Most tests drive `goex.cli.main.main(argv)` in-process (GOEX_SOCKET and GOEX_CLI_STATE
set, cwd = the test's tmp dir); the issue's flow, live output on a terminal and Ctrl-C
run the installed `goex` script as a subprocess. One daemon serves the whole module;
every test works on its own project directory.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.protobuf.message import Message

import goex
from goex.cli import _json as cli_json
from goex.cli.main import main
from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as xpb
from goex.v1 import sessions_pb2 as spb
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import describe_diff, fingerprint

GOEX = Path(sys.executable).with_name("goex")  # the console script installed in the venv
SESSION_ID = re.compile(r"ses_[0-9a-f]{16}")
ACTION_ID = re.compile(r"act_[0-9a-f]{16}")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def make_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "b.txt").write_text("bee\n")
    (root / "keep.txt").write_text("keep\n")
    (root / "sub").mkdir()
    (root / "sub" / "c.bin").write_bytes(bytes(range(256)))
    return root


class Goex:
    """`goex ARGV...` in-process; checks the exit status and that no traceback leaked."""

    def __init__(self, capsys: pytest.CaptureFixture[str], state: Path) -> None:
        self.capsys = capsys
        self.state_file = state

    def __call__(self, *argv: str, code: int = 0) -> tuple[str, str]:
        rc = main(list(argv))
        out, err = self.capsys.readouterr()
        assert rc == code, f"goex {' '.join(argv)} -> {rc}\nstdout: {out}\nstderr: {err}"
        assert "Traceback" not in out + err
        return out, err

    def json(self, *argv: str, code: int = 0) -> dict[str, Any]:
        """`goex --json ARGV...`: stdout must be exactly one JSON object, stderr empty."""
        out, err = self(*argv, "--json", code=code) if "--" not in argv else self("--json", *argv, code=code)
        assert err == ""
        data = json.loads(out)  # the whole of stdout: one value, nothing before or after
        assert isinstance(data, dict)
        return data

    def error(self, *argv: str, code: int = 1) -> str:
        """A failing command: exactly one `error: ...` line on stderr, nothing on stdout."""
        out, err = self(*argv, code=code)
        assert out == ""
        [line] = err.splitlines()
        assert line.startswith("error: "), err
        return line.removeprefix("error: ")

    def usage(self, *argv: str) -> str:
        """A usage error: exit 2, one `error: ...` line on stderr (after the usage, if argparse found it)."""
        out, err = self(*argv, code=2)
        assert out == ""
        *usage, last = err.splitlines()
        assert last.startswith("error: "), err
        assert not usage or usage[0].startswith("usage: goex"), err
        return last.removeprefix("error: ")

    @property
    def current(self) -> str | None:
        if not self.state_file.exists():
            return None
        value = json.loads(self.state_file.read_text()).get("session")
        return value if isinstance(value, str) else None


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "cli.json"


@pytest.fixture
def env(shared_daemon: DaemonProcess, state_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOEX_SOCKET", str(shared_daemon.socket))
    monkeypatch.setenv("GOEX_CLI_STATE", str(state_file))
    monkeypatch.delenv("GOEX_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def goex_cli(env: None, capsys: pytest.CaptureFixture[str], state_file: Path) -> Goex:
    return Goex(capsys, state_file)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "myproject")


@pytest.fixture
def client(shared_daemon: DaemonProcess) -> Iterator[goex.Client]:
    with goex.Client(shared_daemon.socket, timeout=60) as c:
        yield c


@pytest.fixture
def session(goex_cli: Goex, project: Path, client: goex.Client) -> Iterator[str]:
    out, _ = goex_cli("session", "open", "--fs", "./myproject")
    sid = out.strip()
    yield sid
    if client.get_session(sid).state is goex.SessionState.OPEN:
        client.close_session(sid, "undo")


SCHEMA = json.loads(cli_json.SCHEMA_PATH.read_text())  # the file shipped with the client


def matches_schema(data: dict[str, Any], command: str) -> None:
    """`data` is valid output of `goex COMMAND --json` by the shipped JSON Schema (docs/cli-json.md)."""
    schema = cli_json.command_schema(SCHEMA, command)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def same_as(data: dict[str, Any], response: Message, command: str) -> None:
    """`data` is the --json document of exactly `response`, valid for `command`."""
    matches_schema(data, command)
    assert data == cli_json.response_document(response)


# ---------------------------------------------------------------- the issue's flow


def test_issue_flow_with_the_installed_goex(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    project = make_project(tmp_path / "myproject")
    before = fingerprint(project)
    state = tmp_path / "state" / "cli.json"
    environ = {**os.environ, "GOEX_SOCKET": str(shared_daemon.socket), "GOEX_CLI_STATE": str(state)}
    environ.pop("GOEX_DEBUG", None)

    def run(*argv: str, code: int = 0) -> tuple[str, str]:
        p = subprocess.run([str(GOEX), *argv], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)
        assert p.returncode == code, f"goex {argv} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        assert "Traceback" not in p.stderr
        return p.stdout, p.stderr

    out, _ = run("session", "open", "--fs", "./myproject")
    assert SESSION_ID.fullmatch(out.rstrip("\n")) and out.endswith("\n") and out.count("\n") == 1
    sid = out.strip()
    assert json.loads(state.read_text()) == {"session": sid}

    out, err = run("run", "--", "sh", "-c", "echo hi > a.txt && rm b.txt")
    headline, *changes = err.splitlines()  # goex's own report: on stderr
    m = re.fullmatch(r"action (act_[0-9a-f]{16}): executed, exit 0, \d+ ms", headline)
    assert m, headline
    action_id = m.group(1)
    assert changes == ["A a.txt", "D b.txt"]
    assert out == ""  # the command printed nothing
    assert (project / "a.txt").read_text() == "hi\n" and not (project / "b.txt").exists()

    out, _ = run("log")
    header, row = out.splitlines()
    assert header.split() == ["SEQ", "ID", "KIND", "STATE", "CHANGES", "RUN", "MS", "TOTAL", "MS", "VERDICT", "WHAT"]
    assert row.split()[:5] == ["1", action_id, "shell", "executed", "+1"]
    assert "+1 ~0 -1" in row and row.endswith("sh -c 'echo hi > a.txt && rm b.txt'")

    out, _ = run("undo")
    assert out == f"undone {action_id} (seq 1)  sh -c 'echo hi > a.txt && rm b.txt'\n"
    after = fingerprint(project)
    assert after == before, describe_diff(before, after)

    _, err = run("run", "--", "sh", "-c", "echo kept > kept.txt")
    kept_id = ACTION_ID.search(err).group(0)  # type: ignore[union-attr]
    out, _ = run("commit")
    assert out == f"committed {kept_id} (seq 2)  sh -c 'echo kept > kept.txt'\n"
    out, _ = run("log")
    assert [line.split()[3] for line in out.splitlines()[1:]] == ["undone", "committed"]
    out, _ = run("session", "close")
    assert out == f"closed {sid}\n"
    assert json.loads(state.read_text()) == {}
    assert (project / "kept.txt").read_text() == "kept\n"


def test_session_open_resolves_a_relative_path_and_remembers_the_session(
    goex_cli: Goex, project: Path, client: goex.Client
) -> None:
    out, err = goex_cli("session", "open", "--fs", "./myproject", "--label", "demo", "--memory", "256M")
    sid = out.strip()
    assert SESSION_ID.fullmatch(sid) and err == "" and goex_cli.current == sid
    s = client.get_session(sid)
    assert s.resources[0].uri == str(project) and s.label == "demo" and s.limits.memory_bytes == 256 << 20

    out, _ = goex_cli("session", "list")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "LABEL"]
    [mine] = [r for r in rows if sid in r]
    assert mine.startswith("*") and "open" in mine and "demo" in mine and f"fs={project}" in mine
    out, _ = goex_cli("session", "show")
    assert f"session      {sid}" in out and "256.0 MiB" in out and str(project) in out
    out, _ = goex_cli("session", "describe")
    assert out.startswith("== fs ==\n") and str(project) in out
    client.close_session(sid)


def test_run_prints_output_exit_status_and_changes(goex_cli: Goex, session: str, project: Path) -> None:
    out, err = goex_cli("run", "--", "sh", "-c", "echo out; echo err >&2; echo more >> keep.txt; exit 3", code=3)
    assert out == "out\n"  # stdout: the command's own, nothing else
    first, headline, *changes = err.splitlines()
    assert first == "err"
    assert re.fullmatch(r"action act_[0-9a-f]{16}: executed, exit 3, \d+ ms", headline)
    assert changes == ["M keep.txt"]

    out, err = goex_cli("run", "-q", "--", "sh", "-c", "printf 'no newline'; touch q.txt")
    assert (out, err) == ("no newline", "")  # --quiet: only the command's output, byte for byte

    out, err = goex_cli("python", "print(6 * 7); open('py.txt', 'w').write('x')")
    assert out == "42\n" and err.splitlines()[1:] == ["A py.txt"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO("import sys; print('from stdin'); sys.exit(5)"))
        out, _ = goex_cli("python", "-", code=5)
    assert out.startswith("from stdin\n")

    out, err = goex_cli("run", "--detach", "--", "sh", "-c", "echo later > later.txt")
    action_id = out.strip()
    assert ACTION_ID.fullmatch(action_id) and f"goex show {action_id}" in err
    out, _ = goex_cli("show", action_id)  # waits for nothing: it may still be running
    assert re.search(rf"^action +{action_id}$", out, re.M)


def test_run_exit_status_conventions(goex_cli: Goex, session: str, project: Path, client: goex.Client) -> None:
    before = fingerprint(project)
    goex_cli("run", "--", "sh", "-c", "exit 7", code=7)
    _, err = goex_cli("run", "--", "sh", "-c", "kill -9 $$", code=128 + 9)
    assert "killed by signal 9" in err.splitlines()[0]

    out, err = goex_cli("run", "--timeout", "500ms", "--", "sh", "-c", "echo x > half.txt; sleep 5", code=124)
    assert out == ""
    assert err.splitlines()[1].startswith("failed (rolled back): wall-clock timeout")
    assert err.splitlines()[2:] == ["changes before the rollback:", "A half.txt"]

    out, err = goex_cli("run", "--", "/nonexistent-binary", code=125)
    assert "failed, failed to start (bwrap: execvp /nonexistent-binary" in err
    assert any(line.startswith("failed (rolled back): bwrap: execvp /nonexistent-binary") for line in err.splitlines())

    assert goex_cli.usage("run") == "nothing to run: goex run [options] -- ARGV..."
    assert "soon" in goex_cli.usage("run", "--timeout", "soon", "--", "true")
    first_pending = client.list_actions(session, states=["executed"])[0]
    goex_cli("undo", "--cascade", first_pending.id)  # exit 7 and kill -9 ran to completion: pending
    after = fingerprint(project)
    assert after == before, describe_diff(before, after)


def test_log_show_undo_cascade_undo_to_and_commit(goex_cli: Goex, session: str, project: Path) -> None:
    original = fingerprint(project)
    ids = []
    for i in range(3):
        # Each also appends to shared.txt: an older action is refused only where a later one changed its paths.
        _, err = goex_cli("run", "--", "sh", "-c", f"echo {i} > f{i}.txt; echo {i} >> shared.txt; echo out{i}")
        ids.append(ACTION_ID.search(err).group(0))  # type: ignore[union-attr]
    out, _ = goex_cli("log")
    rows = out.splitlines()[1:]
    assert [r.split()[:4] for r in rows] == [[str(i + 1), ids[i], "shell", "executed"] for i in range(3)]

    out, _ = goex_cli("show", ids[0])
    assert re.search(rf"^action +{ids[0]}$", out, re.M) and re.search(r"^exit +exit 0\b", out, re.M)
    assert "\nA f0.txt\n" in out
    assert "--- stdout\nout0\n" in out

    assert "shared.txt; undo the later actions first (cascade)" in goex_cli.error("undo", ids[1])
    out, _ = goex_cli("undo", ids[1], "--cascade")
    assert [line.split()[1] for line in out.splitlines()] == [ids[2], ids[1]]
    out, _ = goex_cli("run", "--", "sh", "-c", "rm -r sub")
    out, _ = goex_cli("undo-to", ids[0])
    assert out.startswith("undone act_") and len(out.splitlines()) == 1
    _, err = goex_cli("undo-to", ids[0])
    assert err == "nothing to undo after that action\n"
    out, _ = goex_cli("commit", "--up-to", ids[0])
    assert out.startswith(f"committed {ids[0]} (seq 1)")
    _, err = goex_cli("commit")
    assert err == "nothing to commit\n"
    assert "no pending action" in goex_cli.error("undo")
    out, _ = goex_cli("log", "--state", "undone")
    assert len(out.splitlines()) == 1 + 3
    # Only the committed first action is left: the rest was undone byte for byte.
    assert (project / "f0.txt").read_text() == "0\n" and (project / "shared.txt").read_text() == "0\n"
    after = fingerprint(project)
    del after["f0.txt"], after["shared.txt"]
    assert after == original, describe_diff(original, after)


def test_cancel_command(goex_cli: Goex, session: str, project: Path, client: goex.Client) -> None:
    before = fingerprint(project)
    out, _ = goex_cli("run", "--detach", "--", "sh", "-c", "echo x > half.txt; sleep 30")
    action_id = out.strip()
    wait_until_running(client, action_id)
    out, err = goex_cli("cancel", action_id)
    assert re.fullmatch(rf"action {action_id}: failed, cancelled, \d+ ms\n", out), out
    assert "rolled back" in err
    assert fingerprint(project) == before
    assert goex_cli.error("cancel", action_id) == f"action {action_id} is not running (it is failed)"


def wait_until_running(client: goex.Client, action_id: str) -> None:
    for event in client.watch_action(action_id, timeout=30):
        if isinstance(event, goex.StateEvent) and event.state is goex.ActionState.RUNNING:
            return
    raise AssertionError(f"{action_id} never ran")


def test_close_refuses_with_pending_then_undo_all_or_commit_all(
    goex_cli: Goex, session: str, project: Path, tmp_path: Path
) -> None:
    before = fingerprint(project)
    goex_cli("run", "--", "sh", "-c", "echo hi > a.txt && rm b.txt")
    message = goex_cli.error("session", "close")
    assert "1 pending action" in message and "--commit-all or --undo-all" in message
    assert "not allowed with" in goex_cli.usage("session", "close", "--commit-all", "--undo-all")
    out, _ = goex_cli("session", "close", "--undo-all")
    assert out == f"closed {session}; undid 1 pending action\n"
    assert fingerprint(project) == before and goex_cli.current is None
    assert "no session selected" in goex_cli.error("log")

    other = make_project(tmp_path / "other")
    sid = goex_cli("session", "open", "--fs", str(other))[0].strip()
    goex_cli("run", "--", "touch", "new.txt")
    out, _ = goex_cli("session", "close", "--commit-all")
    assert out == f"closed {sid}; committed 1 pending action\n"
    assert (other / "new.txt").exists()
    assert "already closed" in goex_cli.error("session", "close", sid)
    assert "is closed" in goex_cli.error("session", "use", sid)


def test_session_flag_overrides_the_current_session(goex_cli: Goex, session: str, tmp_path: Path) -> None:
    make_project(tmp_path / "second")
    second = goex_cli("session", "open", "--fs", "second")[0].strip()
    assert goex_cli.current == second != session
    goex_cli("run", "--session", session, "--", "touch", "in-first")
    assert (tmp_path / "myproject" / "in-first").exists() and not (tmp_path / "second" / "in-first").exists()
    assert len(goex_cli.json("log", "--session", session)["actions"]) == 1
    assert goex_cli.json("log")["actions"] == []  # the current one is still the second
    assert len(goex_cli.json("--session", session, "log")["actions"]) == 1  # before the command too
    goex_cli("commit", "--session", session)
    assert goex_cli.error("log", "--session", "ses_0000000000000000") == "session 'ses_0000000000000000' not found"
    goex_cli("session", "use", session)
    assert goex_cli.current == session
    assert [a["state"] for a in goex_cli.json("log")["actions"]] == ["committed"]
    goex_cli("session", "close", second)
    assert goex_cli.current == session  # closing another session keeps the current one


# ---------------------------------------------------------------- --json


def test_every_command_prints_one_json_object_with_the_response_fields(
    goex_cli: Goex, project: Path, client: goex.Client, tmp_path: Path
) -> None:
    j = goex_cli.json
    opened = j("session", "open", "--fs", "./myproject", "--label", "j")
    sid = opened["session"]["id"]
    assert goex_cli.current == sid and opened["session"]["state"] == "open" and opened["json_version"] == 1
    same_as(opened, spb.CreateSessionResponse(session=client.get_session(sid).proto), "session open")

    same_as(j("session", "show"), spb.GetSessionResponse(session=client.get_session(sid).proto), "session show")
    same_as(j("session", "use", sid), spb.GetSessionResponse(session=client.get_session(sid).proto), "session use")
    listed = j("session", "list")
    matches_schema(listed, "session list")
    assert sid in [s["id"] for s in listed["sessions"]]
    described = j("session", "describe")
    descriptions = spb.DescribeSessionResponse(resources=[d.proto for d in client.describe_session(sid)])
    same_as(described, descriptions, "session describe")

    ran = j("run", "--", "sh", "-c", "echo hi > a.txt && rm b.txt && echo out && exit 3", code=3)
    action_id = ran["action"]["id"]
    same_as(ran, apb.SubmitActionResponse(action=client.get_action(action_id).proto), "run")
    assert ran["action"]["exec"]["stdout"] == "out\n" and "stdout_base64" not in ran["action"]["exec"]
    assert ran["action"]["exec"]["exit_code"] == 3 and ran["action"]["seq"] == 1
    assert [(c["kind"], c["path"]) for c in ran["action"]["changes"]["changes"]] == [
        ("added", "a.txt"),
        ("deleted", "b.txt"),
    ]
    timings = ran["action"]["timings"]
    assert isinstance(timings["total_ms"], float) and 0 < timings["run_ms"] <= timings["total_ms"] < 60_000
    py = j("python", "print(1)")
    assert py["action"]["kind"] == "python" and py["action"]["state"] == "executed"
    matches_schema(py, "python")

    same_as(j("show", action_id), apb.GetActionResponse(action=client.get_action(action_id).proto), "show")
    same_as(j("log"), apb.ListActionsResponse(actions=[a.proto for a in client.list_actions(sid)]), "log")
    filtered = j("log", "--state", "executed")
    assert [a["seq"] for a in filtered["actions"]] == [1, 2]

    detached = j("run", "--detach", "--", "sleep", "30")
    assert detached["action"]["state"] == "proposed"
    matches_schema(detached, "run")
    wait_until_running(client, detached["action"]["id"])
    cancelled = j("cancel", detached["action"]["id"])
    matches_schema(cancelled, "cancel")
    assert cancelled["action"]["id"] == detached["action"]["id"]
    assert cancelled["action"]["state"] == "running"  # as it was when the cancel arrived

    undone = j("undo")
    matches_schema(undone, "undo")
    assert [a["seq"] for a in undone["undone"]] == [2]
    assert [a["state"] for a in undone["undone"]] == ["undone"]
    goex_cli("run", "--", "touch", "x")
    undone_to = j("undo-to", action_id)
    matches_schema(undone_to, "undo-to")
    assert [a["seq"] for a in undone_to["undone"]] == [4]
    committed = j("commit")
    matches_schema(committed, "commit")
    assert [a["id"] for a in committed["committed"]] == [action_id]
    assert j("commit") == {"json_version": 1, "committed": []}

    closed = j("session", "close")
    same_as(closed, spb.CloseSessionResponse(session=client.get_session(sid).proto), "session close")
    assert goex_cli.current is None

    health = j("health")
    matches_schema(health, "health")
    assert health["ok"] is True and {c["name"] for c in health["components"]} == {
        "journal",
        "sandbox",
        "snapshots",
        "vault",
        "egress",
    }
    assert isinstance(health["uptime_ms"], float) and health["uptime_ms"] > 0
    stats = j("stats")
    matches_schema(stats, "stats")
    assert stats["actions_by_state"]["committed"] >= 1  # numbers are JSON numbers
    matches_schema(j("gc", "--dry-run"), "gc")

    # Failures: one JSON object too, with the status as a word; nothing on stderr.
    missing = j("show", "act_0000000000000000", code=1)
    matches_schema(missing, "show")
    assert missing == {
        "json_version": 1,
        "error": {"code": "not_found", "message": "action 'act_0000000000000000' not found", "action_id": None},
        "action": None,
    }
    assert j("secret", "delete", "nope", code=1)["error"]["code"] == "not_found"
    (tmp_path / "p.toml").write_text('[sql]\nwrite = "allow"\n[files]\n')
    checked = j("policy", "check", "p.toml", code=1)
    matches_schema(checked, "policy check")
    assert checked["errors"] == [{"line": 3, "message": checked["errors"][0]["message"]}]
    assert "files: unknown key" in checked["errors"][0]["message"]
    assert j("log", code=1)["error"]["code"] == "failed_precondition"  # no current session
    assert j("run", code=2)["error"]["code"] == "invalid_argument"


# ---------------------------------------------------------------- errors


def test_errors_are_one_line_and_exit_1(
    goex_cli: Goex, session: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert goex_cli.error("show", "act_0000000000000000") == "action 'act_0000000000000000' not found"
    assert goex_cli.error("cancel", "act_0000000000000000") == "action 'act_0000000000000000' not found"
    assert goex_cli.error("session", "use", "ses_0000000000000000") == "session 'ses_0000000000000000' not found"
    assert goex_cli.error("show", "not an id").startswith("action_id: ")
    assert goex_cli.error("session", "open", "--fs", "missing").startswith("resources[0].fs.path: ")
    assert "held by open session" in goex_cli.error("session", "open", "--fs", "myproject/sub")
    assert "no pending action" in goex_cli.error("undo")

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"tok\n")))
    assert goex_cli.error("secret", "put", "gh", "--env", "GH_TOKEN") == (
        "value: is shorter than 6 bytes: too short to be redacted reliably from output"
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"long-enough-token\n")))
    assert goex_cli.error("secret", "put", "a/b") == "info.name: 'a/b' contains a path separator or a control character"

    assert goex_cli.error("policy", "check", str(tmp_path / "none.toml")).startswith("cannot read ")

    monkeypatch.setenv("GOEX_SOCKET", str(tmp_path / "nowhere.sock"))
    message = goex_cli.error("health")
    assert message == f"goexd is not running: no socket at {tmp_path / 'nowhere.sock'}; start it with `goexd`"
    assert goex_cli.error("log") == message
    assert goex_cli.error("--socket", str(tmp_path / "other.sock"), "stats").startswith("goexd is not running")


# ---------------------------------------------------------------- secrets


# These use a goexd of their own: once its vault knows a value (deleted ones stay known to
# the redactor for days), goexd holds back the tail of live output, which the shared
# daemon's terminal tests would notice.


@pytest.fixture
def own_daemon(goex_cli: Goex, daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[goex.Client]:
    """`goex_cli` talks to `daemon` instead of the shared goexd; a client of it."""
    monkeypatch.setenv("GOEX_SOCKET", str(daemon.socket))
    with goex.Client(daemon.socket, timeout=60) as c:
        yield c


def stdin_bytes(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_secret_put_list_delete(goex_cli: Goex, own_daemon: goex.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    client = own_daemon
    token, password = b"ghp-cli-e2e-token-1", b"cli-e2e-db-password"
    outputs: list[str] = []

    stdin_bytes(monkeypatch, token + b"\n")
    out, err = goex_cli(
        "secret", "put", "cli-gh", "--kind", "bearer", "--header", "Authorization: Bearer {value}",
        "--host", "api.github.com",
    )  # fmt: skip
    assert (out, err) == ("stored cli-gh (bearer)\n", "")
    stdin_bytes(monkeypatch, password + b"\n")
    put = goex_cli.json("secret", "put", "cli-db", "--kind", "basic", "--username", "ann", "--host", "db.example")
    stored = next(s for s in client.list_secrets() if s.name == "cli-db")
    same_as(put, xpb.PutSecretResponse(info=stored.proto), "secret put")
    assert sorted(put["info"]["parts"]) == ["password", "username"]  # names of parts, never values

    stdin_bytes(monkeypatch, b"another-token-value\n")
    assert "already exists" in goex_cli.error("secret", "put", "cli-gh")
    stdin_bytes(monkeypatch, token + b"\n")
    goex_cli("secret", "put", "cli-gh", "--kind", "bearer", "--header", "Authorization: Bearer {value}", "--overwrite")

    out, _ = goex_cli("secret", "list")
    outputs.append(out)
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "KIND", "INJECTION", "HOSTS", "EXPIRES", "UPDATED"]  # no PROBLEM: all usable
    [gh] = [r.split() for r in rows if r.startswith("cli-gh ")]
    assert gh[:7] == ["cli-gh", "bearer", "header", "Authorization:", "Bearer", "{value}", "-"]  # hosts replaced
    assert gh[7] == "-"  # no expiry: not an oauth2 secret
    [db] = [r.split() for r in rows if r.startswith("cli-db ")]
    assert db[:2] == ["cli-db", "basic"] and db[-4:-2] == ["db.example", "-"]  # then UPDATED: date and time
    listed = goex_cli.json("secret", "list")
    same_as(listed, xpb.ListSecretsResponse(secrets=[s.proto for s in client.list_secrets()]), "secret list")
    mine = {s["name"]: s for s in listed["secrets"]}
    assert mine["cli-gh"]["kind"] == "bearer" and mine["cli-gh"]["parts"] == ["value"]
    assert mine["cli-gh"]["problem"] == "" and mine["cli-gh"]["expires_at"] is None
    outputs.append(json.dumps(listed))

    out, err = goex_cli("secret", "delete", "cli-gh")
    assert (out, err) == ("deleted cli-gh\n", "")
    assert goex_cli.json("secret", "delete", "cli-db") == {"json_version": 1}
    assert goex_cli.error("secret", "delete", "cli-gh") == "secret 'cli-gh' not found"
    assert client.list_secrets() == []
    for text in outputs:
        assert token.decode() not in text and password.decode() not in text


def test_secret_rotate_key(
    goex_cli: Goex, daemon: DaemonProcess, own_daemon: goex.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin_bytes(monkeypatch, b"kept-across-rotations\n")
    goex_cli("secret", "put", "kept", "--env", "KEPT")
    key_file = daemon.state_dir / "vault.key"
    first = key_file.read_bytes()

    out, err = goex_cli("secret", "rotate-key")
    assert (out, err) == ("vault re-encrypted under a new random key\n", "")
    second = key_file.read_bytes()
    assert second != first
    assert goex_cli.json("secret", "rotate-key") == {"json_version": 1}
    assert key_file.read_bytes() not in (first, second)

    # A key-file vault has no passphrase to change: goexd refuses, the key stays.
    stdin_bytes(monkeypatch, b"a new passphrase\n")
    message = goex_cli.error("secret", "rotate-key", "--passphrase")
    assert message == "new_passphrase: the vault uses a keyfile key; rotation makes a new random key"
    stdin_bytes(monkeypatch, b"a new passphrase\n")
    assert goex_cli.json("secret", "rotate-key", "--passphrase", code=1)["error"]["code"] == "invalid_argument"
    stdin_bytes(monkeypatch, b"")
    assert goex_cli.error("secret", "rotate-key", "--passphrase") == "empty passphrase"

    # The vault opens with the rotated key after a restart.
    assert daemon.stop() == 0
    daemon.start()
    out, _ = goex_cli("secret", "list")
    assert [r.split()[:3] for r in out.splitlines()[1:]] == [["kept", "generic", "env"]]


# ---------------------------------------------------------------- a terminal: live output and Ctrl-C


class Terminal:
    """The installed `goex` with its stdout on a pseudo-terminal (stderr captured apart)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        self.master = master
        # As a terminal's shell would start it: a suite run in the background of a non-interactive
        # shell (`make test &`) has SIGINT ignored, which exec passes on, and Python then leaves
        # Ctrl-C ignored in the CLI too. A handler (unlike "ignore") is reset to the default by exec.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.proc = subprocess.Popen(
                [str(GOEX), *argv], cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        os.close(slave)
        self.seen = b""

    def read_until(self, done: Callable[[bytes], bool], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while not done(self.seen) and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
        return self.text

    @property
    def text(self) -> str:
        return ANSI.sub("", self.seen.decode(errors="replace")).replace("\r\n", "\n")

    def finish(self) -> tuple[int, str, str]:
        rc = self.proc.wait(30)
        self.read_until(lambda _: False, timeout=0.3)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        os.close(self.master)
        return rc, self.text, err


def test_live_output_on_a_terminal(env: None, session: str, tmp_path: Path) -> None:
    term = Terminal(["run", "--", "sh", "-c", "echo one; sleep 0.5; echo two; touch t.txt; exit 4"], tmp_path)
    term.read_until(lambda seen: b"one" in seen)
    assert term.proc.poll() is None and "two" not in term.text  # "one" arrived while it still ran
    rc, out, err = term.finish()
    assert rc == 4
    assert out == "one\ntwo\n"  # printed live, not again at the end; goex's report is on stderr
    headline, change = err.splitlines()  # stderr is not a terminal here: no "pending: ..." hint
    assert re.fullmatch(r"action act_[0-9a-f]{16}: executed, exit 4, \d+ ms", headline)
    assert change == "A t.txt"


def test_ctrl_c_during_a_live_run_cancels_the_action(
    env: None, session: str, project: Path, tmp_path: Path, client: goex.Client
) -> None:
    before = fingerprint(project)
    term = Terminal(["run", "--", "sh", "-c", "echo started; echo x > half.txt; rm b.txt; sleep 30"], tmp_path)
    term.read_until(lambda seen: b"started" in seen)
    assert term.proc.poll() is None
    t0 = time.monotonic()
    term.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
    rc, out, err = term.finish()
    assert time.monotonic() - t0 < 10
    assert rc == 130 and out == "started\n"
    m = re.fullmatch(r"error: interrupted; cancelled action (act_[0-9a-f]{16}) \(failed, rolled back\)\n", err)
    assert m, err
    action = client.get_action(m.group(1))
    assert action.state is goex.ActionState.FAILED and action.exec is not None
    assert action.exec.termination is goex.Termination.CANCELLED
    after = fingerprint(project)
    assert after == before, describe_diff(before, after)
