"""Issue 19, the client side, as scripts use it: the installed `goex` run as a subprocess against a real goexd.

- piped output: the command's stdout and stderr byte for byte, goex's own report on stderr;
- `--json`: jq over the output, the shipped JSON Schema, text and bytes that are not UTF-8;
- cancel follows the caller: SIGINT without a terminal (`timeout -s INT`), SIGTERM and SIGHUP cancel the action
  in goexd and goex exits 128+N naming it; in Python, KeyboardInterrupt and the client's timeout do the same;
  no sandbox process is left.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import goex
from goex.cli import _json as cli_json
from tests.daemon_process import DaemonProcess
from tests.fs_fingerprint import describe_diff, fingerprint

GOEX = Path(sys.executable).with_name("goex")  # the console script installed in the venv
SCHEMA = json.loads(cli_json.SCHEMA_PATH.read_text())
BINARY = b"\xff\xfeno newline\x00\x01 at the end"  # not UTF-8, a NUL, no final newline

# How long goexd may take to stop an action and roll it back once goex was signalled.
CANCEL_BOUND_S = 10.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "x.bin").write_bytes(BINARY)
    (root / "keep.txt").write_text("keep\n")
    return root


@pytest.fixture
def client(shared_daemon: DaemonProcess) -> Iterator[goex.Client]:
    with goex.Client(shared_daemon.socket, timeout=60) as c:
        yield c


@pytest.fixture
def session(client: goex.Client, project: Path) -> Iterator[str]:
    sid = client.create_session(fs=project).id
    yield sid
    if client.get_session(sid).state is goex.SessionState.OPEN:
        client.close_session(sid, "undo")


@pytest.fixture
def environ(shared_daemon: DaemonProcess, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOEX_")}
    return env | {"GOEX_SOCKET": str(shared_daemon.socket), "GOEX_CLI_STATE": str(tmp_path / "cli.json")}


def goex_run(environ: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(GOEX), *argv], env=environ, cwd=cwd, capture_output=True, timeout=60)


def jq(filter_: str, document: bytes) -> Any:
    """`jq -c FILTER` over `document`, as a script would read it."""
    p = subprocess.run(["jq", "-c", filter_], input=document, capture_output=True, check=True)
    return json.loads(p.stdout)


def valid(document: bytes, command: str) -> dict[str, Any]:
    data = json.loads(document)
    jsonschema.validate(data, cli_json.command_schema(SCHEMA, command), cls=jsonschema.Draft202012Validator)
    assert isinstance(data, dict)
    return data


# ---------------------------------------------------------------- piped output


def test_piped_stdout_is_the_commands_own_bytes(
    environ: dict[str, str], session: str, project: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "out"
    with out_file.open("wb") as out:
        p = subprocess.run(
            [str(GOEX), "--session", session, "run", "--", "sh", "-c", "cat x.bin; printf 'warn\\377' >&2"],
            env=environ,
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    assert p.returncode == 0
    assert out_file.read_bytes() == BINARY  # `goex run -- cat x.bin > out` is `cat x.bin > out`
    assert p.stderr.startswith(b"warn\xff\n")  # the command's stderr first, byte for byte (then a line end)
    headline, *rest = p.stderr[len(b"warn\xff\n") :].decode().splitlines()
    assert headline.startswith("action act_") and ": executed, exit 0, " in headline and rest == []

    quiet = goex_run(environ, tmp_path, "--session", session, "run", "-q", "--", "sh", "-c", "cat x.bin; echo e >&2")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, BINARY, b"e\n")  # -q: nothing of goex's own


def test_exit_statuses_when_piped(environ: dict[str, str], session: str, tmp_path: Path) -> None:
    def status(*argv: str) -> int:
        return goex_run(environ, tmp_path, "--session", session, *argv).returncode

    assert status("run", "--", "sh", "-c", "exit 7") == 7  # the command's own
    assert status("run", "--", "sh", "-c", "kill -TERM $$") == 128 + 15
    assert status("run", "--timeout", "300ms", "--", "sleep", "5") == 124
    assert status("run", "--", "/nonexistent-binary") == 125
    assert status("run", "--detach", "--", "true") == 0
    assert status("run") == 2  # usage
    assert status("--session", "ses_0000000000000000", "run", "--", "true") == 1


# ---------------------------------------------------------------- --json


def test_json_is_read_with_jq_and_matches_the_schema(
    environ: dict[str, str], session: str, project: Path, tmp_path: Path
) -> None:
    command = ["sh", "-c", "echo héllo; echo x > a.txt"]
    p = goex_run(environ, tmp_path, "--session", session, "--json", "run", "--", *command)
    assert p.returncode == 0 and p.stderr == b""
    valid(p.stdout, "run")
    assert jq(".json_version", p.stdout) == 1
    assert jq(".action.state", p.stdout) == "executed"
    assert jq(".action.kind", p.stdout) == "shell"
    assert jq(".action.exec.stdout", p.stdout) == "héllo\n"  # text as text
    assert jq(".action.exec.stdout_base64", p.stdout) is None  # only for bytes that are not UTF-8
    assert jq(".action.exec.exit_code", p.stdout) == 0
    assert jq(".action.exec.stdout_total_bytes | type", p.stdout) == "number"
    assert jq(".action.seq | type", p.stdout) == "number"
    assert jq(".action.timings.total_ms | type", p.stdout) == "number"
    assert jq("[.action.changes.changes[] | [.kind, .path]]", p.stdout) == [["added", "a.txt"]]
    assert jq('.action.created_at | test("^[0-9-]+T[0-9:.]+Z$")', p.stdout) is True

    p = goex_run(environ, tmp_path, "--session", session, "--json", "run", "--", "cat", "x.bin")
    data = valid(p.stdout, "run")
    exec_ = data["action"]["exec"]
    assert base64.b64decode(exec_["stdout_base64"]) == BINARY  # the exact bytes
    assert exec_["stdout"] == BINARY.decode("utf-8", "replace")  # and readable text beside them

    p = goex_run(environ, tmp_path, "--session", session, "--json", "log")
    valid(p.stdout, "log")
    assert jq("[.actions[].seq]", p.stdout) == [1, 2]

    p = goex_run(environ, tmp_path, "--json", "show", "act_0000000000000000")
    assert p.returncode == 1
    valid(p.stdout, "show")
    assert jq(".error.code", p.stdout) == "not_found"


def test_json_for_a_command_that_fails_to_start_and_one_that_times_out(
    environ: dict[str, str], session: str, tmp_path: Path
) -> None:
    p = goex_run(environ, tmp_path, "--session", session, "--json", "run", "--timeout", "300ms", "--", "sleep", "5")
    assert p.returncode == 124
    data = valid(p.stdout, "run")
    assert data["action"]["state"] == "failed" and data["action"]["exec"]["termination"] == "timeout"
    assert data["action"]["id"].startswith("act_")


# ---------------------------------------------------------------- cancel follows the caller


def _marker() -> str:
    """A sleep length no other test uses: how its sandboxed process is found in /proc."""
    return f"29.{time.monotonic_ns() % 1_000_000:06d}"


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in argv:
            found.append(int(entry.name))
    return found


def _wait_running(client: goex.Client, session: str, timeout: float = 30) -> goex.Action:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = client.list_actions(session, states=["running"])
        if running:
            return running[-1]
        time.sleep(0.05)
    raise AssertionError("the action never ran")


def _assert_cancelled(client: goex.Client, action_id: str, marker: str, project: Path, before: Any) -> None:
    action = client.get_action(action_id)
    assert action.state is goex.ActionState.FAILED, action
    assert action.exec is not None and action.exec.termination is goex.Termination.CANCELLED
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker) == [], "a sandboxed process outlived the cancel"
    after = fingerprint(project)
    assert after == before, describe_diff(before, after)  # rolled back


def _popen(argv: list[str], environ: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    # As a script's shell starts it: SIGINT at its default (a suite run in the background of a
    # non-interactive shell has it ignored, which exec would pass on; a handler is reset by exec).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            argv, env=environ, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigint_from_timeout_without_a_terminal_cancels_the_action(
    environ: dict[str, str], session: str, project: Path, client: goex.Client, tmp_path: Path
) -> None:
    before, marker = fingerprint(project), _marker()
    argv = ["sh", "-c", f"echo x > half.txt; rm keep.txt; sleep {marker}"]
    goex_argv = [str(GOEX), "--session", session, "--json", "run", "--", *argv]
    cmd = ["timeout", "-s", "INT", "--preserve-status", "3", *goex_argv]
    t0 = time.monotonic()
    proc = _popen(cmd, environ, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 3 + CANCEL_BOUND_S
    assert proc.returncode == 130, (out, err)
    data = valid(out, "run")
    assert data["error"]["code"] == "cancelled"
    action_id = data["error"]["action_id"]
    assert action_id and data["action"]["id"] == action_id  # the id, also on a cancel
    assert data["action"]["state"] == "failed" and data["action"]["exec"]["termination"] == "cancelled"
    assert err == b""
    _assert_cancelled(client, action_id, marker, project, before)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_a_signal_to_goex_cancels_the_action(
    sig: signal.Signals, environ: dict[str, str], session: str, project: Path, client: goex.Client, tmp_path: Path
) -> None:
    before, marker = fingerprint(project), _marker()
    argv = ["sh", "-c", f"echo x > half.txt; sleep {marker}"]
    proc = _popen([str(GOEX), "--session", session, "run", "--", *argv], environ, tmp_path)
    running = _wait_running(client, session)
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < CANCEL_BOUND_S
    assert proc.returncode == 128 + sig, err
    assert out == b""
    assert err.decode() == f"error: interrupted; cancelled action {running.id} (failed, rolled back)\n"
    _assert_cancelled(client, running.id, marker, project, before)


def test_detached_actions_are_not_cancelled_by_a_signal(
    environ: dict[str, str], session: str, client: goex.Client, tmp_path: Path
) -> None:
    p = goex_run(environ, tmp_path, "--session", session, "run", "--detach", "--", "sleep", "1")
    action_id = p.stdout.decode().strip()
    final = client.wait(action_id, timeout=30)
    assert final.state is goex.ActionState.EXECUTED


# ---------------------------------------------------------------- the Python client


def test_keyboard_interrupt_in_the_python_client_cancels_the_action(
    client: goex.Client, session: str, project: Path
) -> None:
    before, marker = fingerprint(project), _marker()
    main_thread = threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt() -> None:
        _wait_running(client, session)
        assert main_thread.ident is not None
        signal.pthread_kill(main_thread.ident, signal.SIGINT)  # Ctrl-C, to this process's main thread

    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            client.run_shell(session, ["sh", "-c", f"echo x > half.txt; sleep {marker}"])
    finally:
        helper.join()
        signal.signal(signal.SIGINT, previous)
    final = goex.interrupted_action(caught.value)
    assert final is not None and final.state is goex.ActionState.FAILED
    assert any(f"action {final.id} was cancelled: failed" in note for note in caught.value.__notes__)
    _assert_cancelled(client, final.id, marker, project, before)


def test_client_timeout_cancels_the_action(shared_daemon: DaemonProcess, session: str, project: Path) -> None:
    before, marker = fingerprint(project), _marker()
    with goex.Client(shared_daemon.socket, timeout=2) as short:
        t0 = time.monotonic()
        with pytest.raises(goex.DeadlineExceeded) as caught:
            short.run_shell(session, ["sh", "-c", f"echo x > half.txt; sleep {marker}"])
        assert time.monotonic() - t0 < 2 + CANCEL_BOUND_S
    action_id = caught.value.action_id
    assert action_id is not None and action_id in str(caught.value)
    final = goex.interrupted_action(caught.value)
    assert final is not None and final.id == action_id and final.state is goex.ActionState.FAILED
    with goex.Client(shared_daemon.socket, timeout=60) as c:
        _assert_cancelled(c, action_id, marker, project, before)


def test_cancelling_an_asyncio_task_cancels_the_action(
    shared_daemon: DaemonProcess, client: goex.Client, session: str, project: Path
) -> None:
    before, marker = fingerprint(project), _marker()

    async def cancelled_run() -> BaseException:
        async with goex.AsyncClient(shared_daemon.socket, timeout=60) as aio:
            task = asyncio.create_task(aio.run_shell(session, ["sh", "-c", f"echo x > half.txt; sleep {marker}"]))
            while not await aio.list_actions(session, states=["running"]):
                await asyncio.sleep(0.05)
            task.cancel()  # as asyncio.run does on Ctrl-C, or asyncio.timeout() when it expires
            try:
                await task
            except asyncio.CancelledError as exc:
                return exc
            raise AssertionError("the task was not cancelled")

    exc = asyncio.run(cancelled_run())
    final = goex.interrupted_action(exc)
    assert final is not None and final.state is goex.ActionState.FAILED
    _assert_cancelled(client, final.id, marker, project, before)


# ---------------------------------------------------------------- sessions per directory


def test_the_session_is_the_one_whose_workspace_holds_the_current_directory(
    environ: dict[str, str], client: goex.Client, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        (root / "src").mkdir(parents=True)
    opened = {}
    for root in (first, second):  # the second open is the remembered "current" one
        p = goex_run(environ, tmp_path, "session", "open", "--fs", str(root))
        assert p.returncode == 0, p.stderr
        opened[root] = p.stdout.decode().strip()
    try:

        def session_of(cwd: Path, *flags: str) -> str:
            p = goex_run(environ, cwd, *flags, "--json", "run", "--", "true")
            assert p.returncode == 0, p.stdout + p.stderr
            return str(json.loads(p.stdout)["action"]["session_id"])

        assert session_of(first) == opened[first]  # not the remembered one: the directory's
        assert session_of(first / "src") == opened[first]  # below the workspace root too
        assert session_of(second / "src") == opened[second]
        assert session_of(tmp_path) == opened[second]  # in no workspace: the remembered one
        assert session_of(first, "--session", opened[second]) == opened[second]  # --session wins
        listed = goex_run(environ, first / "src", "session", "list").stdout.decode().splitlines()
        [marked] = [line for line in listed if line.startswith("*")]
        assert opened[first] in marked  # `session list` marks the directory's session
    finally:
        for sid in opened.values():
            client.close_session(sid, "undo")


# ---------------------------------------------------------------- ACTION as a seq, a prefix or `last`


def test_actions_are_named_by_seq_prefix_or_last(
    environ: dict[str, str], session: str, client: goex.Client, tmp_path: Path
) -> None:
    def goex_(*argv: str) -> subprocess.CompletedProcess[bytes]:
        return goex_run(environ, tmp_path, "--session", session, *argv)

    for name in ("one", "two"):
        assert goex_("run", "--", "touch", name).returncode == 0
    first, second = (a.id for a in client.list_actions(session))

    def shown(ref: str) -> str:
        p = goex_("--json", "show", ref)
        assert p.returncode == 0, p.stdout
        return str(json.loads(p.stdout)["action"]["id"])

    assert shown("1") == first and shown("2") == second and shown("last") == second
    # A prefix with or without "act_" (without it, digits alone would be a seq number: take one with a letter).
    bare = next((second[4:n] for n in range(8, 21) if not second[4:n].isdigit()), second)
    assert shown(second[:10]) == second and shown(bare) == second
    missing = goex_("--json", "show", "99")
    assert missing.returncode == 1 and jq(".error.code", missing.stdout) == "not_found"
    short = goex_("--json", "show", second[:6])  # "act_" and 2 digits: goexd wants 4 hex digits at least
    assert short.returncode == 1 and jq(".error.code", short.stdout) == "invalid_argument"
    cancelled = goex_("cancel", "last")  # cancel takes no session in goexd: the CLI looks `last` up
    assert cancelled.returncode == 1 and f"action {second} is not running".encode() in cancelled.stderr
    assert goex_("diff", "1", "--stat").stdout.decode().strip().endswith("0 deletions(-)")
    assert goex_("undo", "last").returncode == 0
    assert client.get_action(second).state is goex.ActionState.UNDONE
    assert goex_("commit", "--up-to", "1").returncode == 0
    assert client.get_action(first).state is goex.ActionState.COMMITTED


# ---------------------------------------------------------------- session open: reuse, warnings


def test_session_open_reuse_and_create_session_reuse(
    environ: dict[str, str], client: goex.Client, tmp_path: Path
) -> None:
    ws, db = tmp_path / "reused", tmp_path / "shop.db"
    ws.mkdir()
    p = goex_run(environ, tmp_path, "session", "open", "--fs", str(ws), "--db", f"sqlite://{db}")
    assert p.returncode == 0, p.stderr
    sid = p.stdout.decode().strip()
    try:
        held = goex_run(environ, tmp_path, "session", "open", "--fs", str(ws))
        assert held.returncode == 1 and b"held by open session" in held.stderr  # without --reuse
        # Only the same resources are reused: the workspace alone is another set, refused naming the session.
        partial = goex_run(environ, tmp_path, "session", "open", "--reuse", "--fs", str(ws))
        assert partial.returncode == 1 and b"not exactly the resources asked" in partial.stderr
        assert sid.encode() in partial.stderr
        again = goex_run(environ, ws, "session", "open", "--reuse", "--fs", ".", "--db", f"sqlite://{db}")
        assert (again.returncode, again.stdout.decode().strip()) == (0, sid)
        # The Python client, get-or-create: a symlinked path to the same workspace is the same resource.
        (tmp_path / "link").symlink_to(ws)
        same = client.create_session(fs=tmp_path / "link", db=f"sqlite://{db}", reuse=True)
        assert (same.id, same.reused) == (sid, True)
    finally:
        client.close_session(sid, "undo")
    fresh = client.create_session(fs=ws, db=f"sqlite://{db}", reuse=True)  # none open: a new one
    assert fresh.id != sid
    client.close_session(fresh.id)


STRANGER = 4242  # a uid no one on the host has: an unpacked tarball's


def test_session_open_says_what_goexd_warns_of(environ: dict[str, str], client: goex.Client, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the suite runs as root (make test): chown to a stranger's uid needs it")
    ws = tmp_path / "tarball"
    ws.mkdir()
    (ws / "theirs.txt").write_text("x\n")
    os.chown(ws / "theirs.txt", STRANGER, STRANGER)
    os.chmod(ws / "theirs.txt", 0o644)
    p = goex_run(environ, tmp_path, "session", "open", "--fs", str(ws))
    assert p.returncode == 0, p.stderr
    sid = p.stdout.decode().strip()  # stdout: the id alone
    try:
        [warning] = p.stderr.decode().splitlines()
        assert warning.startswith("warning: ") and "theirs.txt" in warning
        client.close_session(sid)
        p = goex_run(environ, tmp_path, "--json", "session", "open", "--fs", str(ws))
        data = valid(p.stdout, "session open")
        sid = data["session"]["id"]
        assert len(data["warnings"]) == 1 and "theirs.txt" in data["warnings"][0]
    finally:
        client.close_session(sid)


# ---------------------------------------------------------------- goex stop


def test_goex_stop_says_what_it_interrupts(daemon: DaemonProcess, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOEX_")}
    env |= {"GOEX_SOCKET": str(daemon.socket), "GOEX_CLI_STATE": str(tmp_path / "cli.json")}
    ws = tmp_path / "ws"
    ws.mkdir()
    with goex.Client(daemon.socket, timeout=60) as c:
        sid = c.create_session(fs=ws).id
        running = c.run_shell(sid, ["sleep", "30"], detach=True)
        _wait_running(c, sid)
    assert goex_run(env, tmp_path, "stop", "--drain-timeout", "5s").returncode == 2  # goes with --drain only
    p = goex_run(env, tmp_path, "--json", "stop")
    assert p.returncode == 0, p.stdout + p.stderr
    data = valid(p.stdout, "stop")
    [interrupted] = data["interrupted"]
    assert (interrupted["kind"], interrupted["action_ids"]) == ("running", [running.id])
    assert data["summary"].startswith("1 action(s) interrupted") and data["draining"] is False
    assert daemon.proc is not None and daemon.proc.wait(30) == 0


def test_a_signal_cancels_a_running_sql_statement(environ: dict[str, str], client: goex.Client, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    sid = client.create_session(db=f"sqlite://{db}").id
    try:
        forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) INSERT INTO t SELECT i FROM n"
        proc = _popen([str(GOEX), "--session", sid, "sql", forever], environ, tmp_path)
        running = _wait_running(client, sid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < CANCEL_BOUND_S
        assert proc.returncode == 143, err
        assert err.decode() == f"error: interrupted; cancelled action {running.id} (failed, rolled back)\n"
        final = client.get_action(running.id)
        assert final.state is goex.ActionState.FAILED and "cancelled" in final.error
    finally:
        client.close_session(sid, "undo")
    with sqlite3.connect(db) as after:
        assert after.execute("SELECT count(*) FROM t").fetchone() == (0,)  # rolled back
