"""CLI argument parsing, unit parsing, rendering helpers and error output (no daemon needed)."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import goex
from goex.cli import _render
from goex.cli._app import App, UsageError, limits_from_args
from goex.cli._state import CliState
from goex.cli._units import format_bytes, format_duration, parse_duration, parse_size
from goex.cli.cmd_http import http_from_args, print_http_result
from goex.cli.cmd_log import render_action
from goex.cli.cmd_run import egress_from_args, print_egress, print_summary
from goex.cli.cmd_secret import expiry_text, open_browser, parse_header, parse_query
from goex.cli.cmd_session import cmd_describe, render_descriptions, resources_from_args
from goex.cli.cmd_sql import limits_from_sql_args, print_sql_result, sql_from_args
from goex.cli.main import build_parser, main
from goex.v1 import actions_pb2, secrets_pb2, sessions_pb2
from goex.v1 import types_pb2 as pb


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real daemon, no real state file."""
    monkeypatch.setenv("GOEX_SOCKET", str(tmp_path / "missing.sock"))
    monkeypatch.setenv("GOEX_CLI_STATE", str(tmp_path / "cli.json"))
    return tmp_path


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("512M", 512 * 1024**2),
        ("512m", 512 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("512MB", 512 * 1024**2),
        ("64K", 64 * 1024),
        ("1.5G", 3 * 1024**3 // 2),
        ("2T", 2 * 1024**4),
        (" 8 k ", 8 * 1024),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "12X", "1.2.3", "0", "0.1"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30", 30.0), ("1.5", 1.5), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0)],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "-3", "0", "3d", "1m30s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_formatting() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(512 * 1024**2) == "512.0 MiB"
    assert format_duration(0.25) == "250 ms"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(3725) == "1h 02m"
    assert format_duration(None) == "-"


# ---------------------------------------------------------------- argument parsing


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_run_takes_argv_after_double_dash() -> None:
    args = parse("run", "--detach", "--", "sh", "-c", "echo --json")
    assert args.argv == ["--", "sh", "-c", "echo --json"]
    assert args.detach and not getattr(args, "json", False)


def test_run_without_double_dash_stops_at_first_word() -> None:
    args = parse("run", "ls", "-l")
    assert args.argv == ["ls", "-l"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--socket", "/s", "--session", "S", "log"],
        ["log", "--json", "--socket", "/s", "--session", "S"],
        ["--json", "log", "--socket", "/s", "--session", "S"],
    ],
)
def test_global_flags_work_before_and_after_the_command(argv: list[str]) -> None:
    args = parse(*argv)
    assert (args.json, args.socket, args.session) == (True, "/s", "S")


def test_global_flags_on_nested_commands() -> None:
    args = parse("session", "close", "--json", "--undo-all")
    assert args.json and args.undo_all and not args.commit_all
    args = parse("--session", "S", "secret", "put", "k", "--header", "X: {value}", "--host", "a", "--host", "b")
    assert args.session == "S" and args.hosts == ["a", "b"]


@pytest.mark.parametrize("command", [["run", "--", "curl", "x"], ["python", "import urllib"]])
def test_run_and_python_secrets_and_allowed_hosts_become_egress(command: list[str]) -> None:
    verb, *rest = command
    args = parse(verb, "--secret", "gh", "--allow-host", "pypi.org", "--secret", "npm", *rest)
    assert egress_from_args(args) == goex.Egress(secrets=["gh", "npm"], hosts=["pypi.org"])
    assert egress_from_args(parse(verb, "--allow-host", "a.example", *rest)) == goex.Egress(hosts=["a.example"])
    assert egress_from_args(parse(*command)) is None  # no flags: no network
    with pytest.raises(UsageError, match="--secret needs a non-empty value"):
        egress_from_args(parse(verb, "--secret", " ", *rest))


def test_flags_after_the_double_dash_belong_to_the_command() -> None:
    args = parse("run", "--", "curl", "--secret", "x")
    assert args.argv == ["--", "curl", "--secret", "x"] and egress_from_args(args) is None


def test_secret_oauth_flags() -> None:
    args = parse(
        "secret", "oauth", "gh",
        "--auth-url", "https://github.com/login/oauth/authorize",
        "--token-url", "https://github.com/login/oauth/access_token",
        "--client-id", "cid",
        "--scope", "repo", "--scope", "read:org",
        "--host", "api.github.com",
        "--client-secret-stdin", "--overwrite", "--no-browser", "--timeout", "300",
    )  # fmt: skip
    assert args.name == "gh" and args.client_id == "cid"
    assert args.authorization_url == "https://github.com/login/oauth/authorize"
    assert args.token_url == "https://github.com/login/oauth/access_token"
    assert args.scopes == ["repo", "read:org"] and args.hosts == ["api.github.com"]
    assert args.client_secret_stdin and args.overwrite and args.no_browser and args.timeout == "300"
    defaults = parse("secret", "oauth", "x", "--auth-url", "a", "--token-url", "t", "--client-id", "c")
    assert defaults.scopes == [] and defaults.hosts == [] and defaults.timeout is None
    assert not (defaults.client_secret_stdin or defaults.overwrite or defaults.no_browser)


def test_secret_oauth_checks_its_input_before_calling_goexd(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["secret", "oauth", "gh", "--auth-url", "a", "--token-url", "t", "--client-id", "c"]
    assert main([*base, "--timeout", "soon"]) == 2
    assert "--timeout: invalid duration 'soon'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    assert main([*base, "--client-secret-stdin"]) == 1
    assert capsys.readouterr().err == "error: empty client secret\n"
    # Then goexd (not running here) is asked.
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"client-secret\n")))
    assert main([*base, "--client-secret-stdin"]) == 1
    assert capsys.readouterr().err.startswith("error: goexd is not running")


def test_rotate_key_flags() -> None:
    assert not parse("secret", "rotate-key").passphrase
    assert parse("secret", "rotate-key", "--passphrase").passphrase


def test_session_open_limits() -> None:
    args = parse("session", "open", "--fs", ".", "--timeout", "30", "--memory", "512M", "--max-procs", "64")
    assert limits_from_args(args) == goex.Limits(timeout=30.0, memory_bytes=512 << 20, max_processes=64)
    assert limits_from_args(parse("session", "open", "--fs", ".")) is None
    with pytest.raises(UsageError, match="invalid size"):
        limits_from_args(parse("session", "open", "--memory", "lots"))


def test_sql_flags() -> None:
    args = parse(
        "sql", "UPDATE users SET balance = balance + ? WHERE id = ?",
        "--param", "500", "--param", "7",
        "--inverse", "UPDATE users SET balance = balance - 500 WHERE id = 7",
        "-m", "bonus", "--resource", "app", "--timeout", "2m", "--detach", "--json",
    )  # fmt: skip
    assert (args.description, args.resource, args.detach, args.json) == ("bonus", "app", True, True)
    body, inverse = sql_from_args(args)
    assert body == goex.Sql("UPDATE users SET balance = balance + ? WHERE id = ?", ["500", "7"])
    # The inverse has no parameters of its own.
    assert inverse == goex.Sql("UPDATE users SET balance = balance - 500 WHERE id = 7")
    assert limits_from_sql_args(args) == goex.Limits(timeout=120.0)

    plain = parse("sql", "SELECT * FROM users")
    assert sql_from_args(plain) == (goex.Sql("SELECT * FROM users"), None)
    assert limits_from_sql_args(plain) is None
    assert not (plain.detach or plain.quiet or plain.description or plain.resource)


def test_sql_from_stdin_and_after_double_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    script = "CREATE TABLE users (id INTEGER PRIMARY KEY, balance INTEGER);\nINSERT INTO users VALUES (1, 0);\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    assert sql_from_args(parse("sql", "-"))[0] == goex.Sql(script)
    # SQL that starts with "-" (a comment) goes after --, as in `goex run`.
    args = parse("sql", "--param", "1", "--", "-- first user\nSELECT * FROM users WHERE id = ?")
    assert sql_from_args(args)[0] == goex.Sql("-- first user\nSELECT * FROM users WHERE id = ?", ["1"])


def test_sql_input_is_checked_before_goexd_is_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for argv, message in [
        (["sql", "  "], "error: no SQL given"),
        (["sql", "DELETE FROM t", "--inverse", ""], "error: --inverse needs SQL"),
        (["sql", "DELETE FROM t", "--timeout", "soon"], "error: --timeout: invalid duration 'soon'"),
    ]:
        assert main(["--session", "S", *argv]) == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith(message)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["--session", "S", "sql", "-"]) == 2
    # Then the session is needed, then goexd (not running here).
    assert main(["sql", "SELECT 1"]) == 1
    assert "goex session open" in capsys.readouterr().err
    assert main(["--session", "S", "--json", "sql", "SELECT 1"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "unavailable"


def test_session_open_db_strategy() -> None:
    args = parse("session", "open", "--db", "sqlite:///tmp/app.db", "--db-strategy", "inverse", "--fs", ".")
    [db] = resources_from_args(args)
    assert db == goex.ResourceSpec.db("sqlite:///tmp/app.db", strategy="inverse")
    assert db.to_proto().strategy == pb.UNDO_STRATEGY_INVERSE and db.to_proto().db.url == "sqlite:///tmp/app.db"
    args = parse(
        "session", "open", "--db", "postgresql://app@db/shop", "--db", "sqlite:///a.db",
        "--db-secret", "pg", "--db-strategy", "clone",
    )  # fmt: skip
    pg, lite = resources_from_args(args)
    assert (pg.location, pg.secret, pg.strategy) == ("postgresql://app@db/shop", "pg", goex.UndoStrategy.CLONE)
    assert lite.strategy is goex.UndoStrategy.CLONE
    # No flag: the daemon's default for the kind (transaction).
    [default] = resources_from_args(parse("session", "open", "--db", "sqlite:///a.db"))
    assert default.strategy is goex.UndoStrategy.UNSPECIFIED
    assert default.to_proto().strategy == pb.UNDO_STRATEGY_UNSPECIFIED
    assert resources_from_args(parse("session", "open", "--fs", ".")) == []
    with pytest.raises(UsageError, match="--db-strategy needs --db"):
        resources_from_args(parse("session", "open", "--fs", ".", "--db-strategy", "clone"))
    with pytest.raises(UsageError, match="at least one resource"):
        resources_from_args(parse("session", "open"))


def test_describe_is_session_describe_of_the_current_session() -> None:
    top = parse("describe", "--samples")
    assert top.handler is cmd_describe and top.samples and not hasattr(top, "id")
    nested = parse("session", "describe", "ses_1")
    assert nested.handler is cmd_describe and nested.id == "ses_1" and not nested.samples
    assert parse("--session", "ses_2", "describe").session == "ses_2"


@pytest.mark.parametrize(
    "argv",
    [
        ["session", "close", "--commit-all", "--undo-all"],
        ["secret", "put", "k", "--env", "X", "--header", "A: b"],
        ["log", "--state", "bogus"],
        ["secret", "oauth", "gh", "--client-id", "c", "--service"],  # no service named
        ["secret", "rotate-key", "--passphrase", "hunter22"],  # never from argv
        ["run", "--secret"],
        ["sql"],
        ["sql", "SELECT 1", "--param"],
        ["session", "open", "--db", "sqlite:///a.db", "--db-strategy", "versioned"],
        ["describe", "ses_1"],  # the top-level one describes the current (or --session) session
        ["nope"],
    ],
)
def test_usage_errors_exit_2_with_one_red_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: goex")
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err


def test_usage_error_in_json_mode_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "log", "--state", "bogus"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["code"] == "invalid_argument"
    assert err == ""


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "session open" in capsys.readouterr().out
    assert main([]) == 0  # bare `goex`: the help, on stdout
    out, err = capsys.readouterr()
    assert out.startswith("usage: goex") and "set-aside" in out and err == ""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("goex ")
    assert main(["run", "--help"]) == 0
    assert "128+N" in capsys.readouterr().out


def test_secret_injection_flags() -> None:
    assert parse_header("Authorization: Bearer {value}") == goex.Injection.header("Authorization", "Bearer {value}")
    assert parse_header("X-Api-Key") == goex.Injection.header("X-Api-Key", "{value}")
    assert parse_query("api_key") == goex.Injection.query("api_key", "{value}")
    assert parse_query("key=k-{value}") == goex.Injection.query("key", "k-{value}")
    for bad in ("", ": x", "Bad Name: x", "X:"):
        with pytest.raises(UsageError):
            parse_header(bad)


def test_secret_value_never_comes_from_argv() -> None:
    with pytest.raises(UsageError):
        parse("secret", "put", "k", "s3cret")
    with pytest.raises(UsageError):
        parse(
            "secret", "oauth", "gh", "--auth-url", "a", "--token-url", "t", "--client-id", "c", "--client-secret", "x"
        )


def test_the_browser_cannot_write_on_stdout(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--json owns stdout: what a browser launcher prints goes to stderr."""
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        subprocess.run(["sh", "-c", "echo Opening in existing browser session."], check=True)
        return True

    monkeypatch.setattr("webbrowser.open", fake_open)
    assert open_browser("https://idp.example/auth")
    print("after")  # our own stdout is back
    out, err = capfd.readouterr()
    assert opened == ["https://idp.example/auth"]
    assert out == "after\n" and err == "Opening in existing browser session.\n"


# ---------------------------------------------------------------- errors without a daemon


def test_daemon_not_running_is_one_red_line(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    assert main(["health"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: goexd is not running")
    assert str(isolated / "missing.sock") in err


def test_daemon_not_running_in_json_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--json"]) == 1
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert error["code"] == "unavailable"
    assert "goexd" in error["message"]
    assert err == ""


def test_socket_flag_beats_the_environment(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--socket", str(tmp_path / "other.sock"), "health"]) == 1
    assert "other.sock" in capsys.readouterr().err


def test_commands_needing_a_session_say_how_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log"]) == 1
    assert "goex session open" in capsys.readouterr().err
    assert main(["--json", "run", "--", "true"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "failed_precondition"


def test_empty_run_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--session", "S", "run", "--"]) == 2


# ---------------------------------------------------------------- state file


def test_state_file(isolated: Path) -> None:
    state = CliState()
    assert state.path == isolated / "cli.json"
    assert state.session is None
    state.set_session("s1")
    assert CliState().session == "s1"
    assert not state.forget_session("s2")
    assert state.forget_session("s1")
    assert state.session is None
    state.path.write_text("{not json")
    assert state.session is None  # damaged file: as if empty


def test_state_path_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GOEX_CLI_STATE")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert CliState().path == tmp_path / "xdg" / "goex" / "cli.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert CliState().path == tmp_path / "home" / ".local" / "state" / "goex" / "cli.json"


# ---------------------------------------------------------------- rendering helpers


def action(**fields: object) -> goex.Action:
    return goex.Action.from_proto(pb.Action(id="a1", **fields))  # type: ignore[arg-type]


def test_emit_prints_exactly_the_response_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    app = App(argparse.Namespace(json=True))
    msg = pb.Action(id="a1", session_id="s1", state=pb.ACTION_STATE_EXECUTED)
    msg.exec.stdout = b"hi\n"
    app.emit(actions_pb2.GetActionResponse(action=msg))
    out = capsys.readouterr().out
    data = json.loads(out)
    assert set(data) == {"json_version", "action"} and data["json_version"] == 1
    assert data["action"]["session_id"] == "s1"  # proto field names, not camelCase
    assert data["action"]["state"] == "executed"  # enums as lower-case words
    assert data["action"]["exec"]["stdout"] == "hi\n"  # bytes as text
    assert "stdout_base64" not in data["action"]["exec"]  # only when they are not UTF-8
    assert data["action"]["exec"]["exit_code"] == 0
    assert data["action"]["sql"] is None and data["action"]["timings"] is None  # unset messages: null


def test_change_lines_are_capped_with_a_count() -> None:
    cs = pb.ChangeSet(added=1, modified=1, deleted=1, total=1237, truncated=True)
    cs.changes.add(kind=pb.CHANGE_KIND_ADDED, path="a.txt")
    cs.changes.add(kind=pb.CHANGE_KIND_MODIFIED, path="b.txt")
    cs.changes.add(kind=pb.CHANGE_KIND_DELETED, path="c.txt")
    cs.changes.add(kind=pb.CHANGE_KIND_TYPE_CHANGED, path="link")
    cs.changes.add(kind=pb.CHANGE_KIND_MODE_CHANGED, path="run.sh")
    lines = [t.plain for t in _render.change_lines(goex.ChangeSet.from_proto(cs))]
    assert lines == ["A a.txt", "M b.txt", "D c.txt", "T link", "P run.sh", "... and 1232 more"]
    limited = [t.plain for t in _render.change_lines(goex.ChangeSet.from_proto(cs), limit=1)]
    assert limited == ["A a.txt", "... and 1236 more"]
    assert _render.change_lines(None) == []


def test_paths_are_not_rich_markup() -> None:
    cs = pb.ChangeSet(total=1)
    cs.changes.add(kind=pb.CHANGE_KIND_ADDED, path="[red]x[/red]")
    assert _render.change_lines(goex.ChangeSet.from_proto(cs))[0].plain == "A [red]x[/red]"


def _exec(**fields: object) -> pb.ExecResult:
    return pb.ExecResult(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "exec_fields", "expected"),
    [
        (pb.ACTION_STATE_EXECUTED, {"termination": pb.TERMINATION_EXITED, "exit_code": 0}, 0),
        (pb.ACTION_STATE_EXECUTED, {"termination": pb.TERMINATION_EXITED, "exit_code": 3}, 3),
        (pb.ACTION_STATE_EXECUTED, {"termination": pb.TERMINATION_SIGNALED, "signal": 9}, 137),
        (pb.ACTION_STATE_FAILED, {"termination": pb.TERMINATION_TIMEOUT}, 124),
        (pb.ACTION_STATE_FAILED, {"termination": pb.TERMINATION_OOM}, 125),
        (pb.ACTION_STATE_FAILED, {"termination": pb.TERMINATION_SPAWN_FAILED}, 125),
        (pb.ACTION_STATE_FAILED, {"termination": pb.TERMINATION_EXITED, "exit_code": 0}, 125),
        (pb.ACTION_STATE_INTERRUPTED, None, 125),
        (pb.ACTION_STATE_BLOCKED, None, 125),
        (pb.ACTION_STATE_EXECUTED, None, 0),
        (pb.ACTION_STATE_COMMITTED, {"termination": pb.TERMINATION_EXITED, "exit_code": 1}, 1),
    ],
)
def test_run_exit_status(state: int, exec_fields: dict[str, object] | None, expected: int) -> None:
    fields: dict[str, object] = {"state": state}
    if exec_fields is not None:
        fields["exec"] = _exec(**exec_fields)
    assert _render.exit_status(action(**fields)) == expected


def test_headline() -> None:
    msg = pb.Action(id="a7", state=pb.ACTION_STATE_EXECUTED, exec=_exec(termination=pb.TERMINATION_EXITED, exit_code=2))
    msg.timings.total.FromMilliseconds(41)
    assert _render.action_headline(goex.Action.from_proto(msg)).plain == "action a7: executed, exit 2, 41 ms"
    timeout = _exec(termination=pb.TERMINATION_TIMEOUT, detail="limit 1s")
    assert _render.termination_text(goex.ExecResult.from_proto(timeout)) == "timed out (limit 1s)"
    cancelled = _exec(termination=pb.TERMINATION_CANCELLED, detail="cancelled")
    assert _render.termination_text(goex.ExecResult.from_proto(cancelled)) == "cancelled"  # said once


def test_long_change_lines_are_not_wrapped() -> None:
    out = io.StringIO()
    app = App(argparse.Namespace(), stdout=out)
    path = "deep/" * 100 + "file.txt"
    cs = pb.ChangeSet(total=1)
    cs.changes.add(kind=pb.CHANGE_KIND_ADDED, path=path)
    for line in _render.change_lines(goex.ChangeSet.from_proto(cs)):
        app.out.print(line)
    assert out.getvalue() == f"A {path}\n"


def egress_action() -> goex.Action:
    msg = pb.Action(id="a8", kind=pb.ACTION_KIND_SHELL, state=pb.ACTION_STATE_EXECUTED)
    msg.spec.shell.argv.extend(["curl", "https://api.github.com/user"])
    msg.spec.egress.secrets.append("gh")
    msg.exec.termination = pb.TERMINATION_EXITED
    msg.exec.stdout = b"{}\n"
    msg.egress.add(
        method="GET",
        url="https://api.github.com/user",
        host="api.github.com",
        status=200,
        decision=pb.EGRESS_DECISION_ALLOWED,
    )
    msg.egress.add(
        method="POST",
        url="https://[red]evil.example/?t=goex-secret:gh",
        host="evil.example",
        decision=pb.EGRESS_DECISION_REFUSED,
        reason="not an allowed host of secret gh",
    )
    return goex.Action.from_proto(msg)


def test_egress_table() -> None:
    out = io.StringIO()
    print_egress(App(argparse.Namespace(), stderr=out), egress_action())  # goex's report: on stderr
    header, allowed, refused = out.getvalue().splitlines()
    assert header.split() == ["METHOD", "URL", "STATUS", "DECISION", "REASON"]
    assert allowed.split() == ["GET", "https://api.github.com/user", "200", "allowed", "-"]
    # Daemon text is not markup; a refused request has no status.
    assert refused.split()[:4] == ["POST", "https://[red]evil.example/?t=goex-secret:gh", "-", "refused"]
    assert refused.endswith("  not an allowed host of secret gh")
    empty = io.StringIO()
    print_egress(App(argparse.Namespace(), stderr=empty), action(state=pb.ACTION_STATE_EXECUTED))
    assert empty.getvalue() == ""


def test_show_lists_the_egress_after_the_output() -> None:
    out = io.StringIO()
    render_action(App(argparse.Namespace(), stdout=out), egress_action())
    text = out.getvalue()
    assert "network   egress proxy: secrets gh\n" in text
    tail = text[text.index("--- stdout") :].splitlines()
    assert tail[:3] == ["--- stdout", "{}", "--- egress (2 requests)"]
    assert tail[3].split() == ["METHOD", "URL", "STATUS", "DECISION", "REASON"] and len(tail) == 6


def test_secret_expiry_text() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def info(**fields: object) -> goex.SecretInfo:
        msg = secrets_pb2.SecretInfo(name="gh", kind=secrets_pb2.SECRET_KIND_OAUTH2, **fields)  # type: ignore[arg-type]
        return goex.SecretInfo.from_proto(msg)

    def at(dt: datetime) -> Timestamp:
        t = Timestamp()
        t.FromDatetime(dt)
        return t

    later, earlier = now + timedelta(hours=1), now - timedelta(hours=1)
    assert expiry_text(info(), now).plain == "-"
    assert expiry_text(info(expires_at=at(later)), now).plain == _render.format_time(later)
    assert expiry_text(info(expires_at=at(later), refreshable=True), now).plain.endswith(" (refreshable)")
    assert expiry_text(info(expires_at=at(earlier)), now).plain.endswith(" (expired)")
    # Refreshed on use: an expired access token with a refresh token is no alarm.
    assert expiry_text(info(expires_at=at(earlier), refreshable=True), now).plain.endswith(" (refreshable)")


# ---------------------------------------------------------------- goex sql / goex describe output


def sql_action(state: int = pb.ACTION_STATE_EXECUTED, **sql: object) -> goex.Action:
    msg = pb.Action(id="a9", kind=pb.ACTION_KIND_SQL, state=state, resource="db")
    msg.spec.sql.sql = "SELECT id, name FROM users"
    if sql:
        msg.sql.CopyFrom(pb.SqlResult(**sql))  # type: ignore[arg-type]
    msg.timings.total.FromMilliseconds(3)
    return goex.Action.from_proto(msg)


def sql_rows(*rows: tuple[str | None, ...]) -> list[pb.SqlRow]:
    return [pb.SqlRow(values=[v or "" for v in row], is_null=[v is None for v in row]) for row in rows]


def sql_output(a: goex.Action) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    app = App(argparse.Namespace(), stdout=out, stderr=err)
    print_sql_result(app, a)
    print_summary(app, a)
    return out.getvalue(), err.getvalue(), _render.exit_status(a)


def test_sql_query_prints_a_table_then_the_summary() -> None:
    a = sql_action(
        columns=["id", "name"],
        rows=sql_rows(("1", "[red]ann"), ("2", None)),
        total_rows=2,
    )
    out, err, status = sql_output(a)
    lines = out.splitlines()
    cells = [line.replace("│", " ").replace("┃", " ").split() for line in lines if line[:1] in ("│", "┃")]
    assert cells == [
        ["id", "name"],
        ["1", "[red]ann"],  # daemon text is not markup
        ["2", "NULL"],
    ]
    assert err == "action a9: executed, 3 ms\n"  # goex's report: on stderr
    assert "more rows" not in out and "affected" not in out and status == 0


def test_sql_query_capped_by_goexd_says_how_many_more_rows() -> None:
    a = sql_action(columns=["n"], rows=sql_rows(("1",), ("2",)), total_rows=1002, truncated=True)
    out, _, _ = sql_output(a)
    assert out.splitlines()[-1] == "... 1000 more rows"
    one_more = sql_action(columns=["n"], rows=sql_rows(("1",)), total_rows=2, truncated=True)
    assert "... 1 more row\n" in sql_output(one_more)[0]


def test_sql_statement_prints_the_affected_rows() -> None:
    out, err, status = sql_output(sql_action(affected_rows=3, total_rows=0))
    assert (out, err, status) == ("3 rows affected\n", "action a9: executed, 3 ms\n", 0)
    out, _, _ = sql_output(sql_action(affected_rows=1))
    assert out.startswith("1 row affected\n")
    # An empty query result is still a table (its header), not "0 rows affected".
    out, _, _ = sql_output(sql_action(columns=["id"], total_rows=0))
    assert "id" in out and "affected" not in out


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (pb.ACTION_STATE_FAILED, "failed (rolled back)"),
        (pb.ACTION_STATE_BLOCKED, "blocked"),
        (pb.ACTION_STATE_INTERRUPTED, "interrupted (rolled back)"),
    ],
)
def test_sql_action_that_did_not_complete(state: int, reason: str) -> None:
    msg = sql_action(state).proto
    msg.error = "database is locked"
    a = goex.Action.from_proto(msg)
    out, err, status = sql_output(a)
    assert out == ""
    assert err.splitlines() == [f"action a9: {a.state}, 3 ms", f"{reason}: database is locked"]
    assert status == _render.EXIT_NOT_COMPLETED


def test_show_renders_sql_rows_like_goex_sql() -> None:
    a = sql_action(columns=["n"], rows=sql_rows(("41",)), total_rows=5, truncated=True, affected_rows=0)
    out = io.StringIO()
    render_action(App(argparse.Namespace(), stdout=out), a)
    text = out.getvalue()
    assert "rows      5 returned, 0 affected\n" in text
    assert text.splitlines()[-1] == "... 4 more rows" and "41" in text


def test_describe_prints_each_resource_under_its_name() -> None:
    out = io.StringIO()
    described = [
        goex.ResourceDescription.from_proto(sessions_pb2.ResourceDescription(resource=name, text=text))
        for name, text in [("fs", "directory /w\n  a.txt"), ("db", "table users (id INTEGER, balance INTEGER)")]
    ]
    render_descriptions(App(argparse.Namespace(), stdout=out), described)
    assert out.getvalue() == (
        "== fs ==\ndirectory /w\n  a.txt\n\n== db ==\ntable users (id INTEGER, balance INTEGER)\n"
    )


# ---------------------------------------------------------------- goex session open --http / goex http


def test_session_open_http_resources() -> None:
    args = parse(
        "session", "open", "--http", "items=http://127.0.0.1:3000", "--http", "https://api.example/v1?x=a=b",
        "--http-secret", "tok", "--http-rules", "s3", "--http-strategy", "confine",
    )  # fmt: skip
    named, bare = resources_from_args(args)
    assert named == goex.ResourceSpec.http(
        "http://127.0.0.1:3000", name="items", secret="tok", strategy="confine", rules="s3"
    )
    # A bare URL (its '=' comes after "https:") keeps the daemon's default name.
    assert (bare.name, bare.location, bare.secret, bare.rules) == ("", "https://api.example/v1?x=a=b", "tok", "s3")
    msg = named.to_proto()
    assert (msg.name, msg.http.base_url, msg.http.secret, msg.http.rules) == (
        "items",
        "http://127.0.0.1:3000",
        "tok",
        "s3",
    )
    assert msg.strategy == pb.UNDO_STRATEGY_CONFINE
    # The spelling --secret is --http-secret; no flags: the daemon's defaults.
    [aliased] = resources_from_args(parse("session", "open", "--http", "http://h", "--secret", "tok"))
    assert aliased == goex.ResourceSpec.http("http://h", secret="tok")
    assert aliased.strategy is goex.UndoStrategy.UNSPECIFIED and aliased.rules == ""
    [inverse] = resources_from_args(parse("session", "open", "--http", "a=http://h", "--http-strategy", "inverse"))
    assert inverse.strategy is goex.UndoStrategy.INVERSE and inverse.name == "a"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fs", ".", "--http-rules", "s3"], "--http-rules needs --http BASE_URL"),
        (["--fs", ".", "--http-strategy", "confine"], "--http-strategy needs --http BASE_URL"),
        (["--fs", ".", "--secret", "tok"], "--http-secret needs --http BASE_URL"),
        (["--http", "items="], "--http 'items=': no base URL"),
        (["--http", " "], "no base URL"),
    ],
)
def test_session_open_http_flags_are_checked(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        resources_from_args(parse("session", "open", *flags))


def test_http_flags() -> None:
    args = parse(
        "http", "post", "/items", "--json", '{"name": "x"}',
        "--query", "dry=0", "--query", "tag=a=b", "--query", "empty=",
        "--header", "Accept: application/json", "--header", "X-Trace:  t1 ",
        "--inverse-method", "delete", "--inverse-path", "/items/by-name/x", "--inverse-json", "{}",
        "--resource", "items", "-m", "add x", "--approve", "ann: ok", "--timeout", "2m", "--detach", "-q",
    )  # fmt: skip
    request, inverse = http_from_args(args)
    assert request == goex.Http(
        "POST",
        "/items",
        query={"dry": "0", "tag": "a=b", "empty": ""},
        headers={"Accept": "application/json", "X-Trace": "t1"},
        json='{"name": "x"}',
    )
    assert inverse == goex.Http("DELETE", "/items/by-name/x", json="{}")
    assert (args.resource, args.description, args.approve, args.detach, args.quiet) == (
        "items", "add x", "ann: ok", True, True
    )  # fmt: skip
    assert limits_from_sql_args(args) == goex.Limits(timeout=120.0)
    # Here --json is the request's body: it does not ask for JSON output.
    assert not hasattr(args, "json")
    plain = parse("http", "GET", "/items")
    assert http_from_args(plain) == (goex.Http("GET", "/items"), None)
    assert not (plain.detach or plain.quiet or plain.resource or plain.approve)


def test_http_json_output_goes_before_the_command() -> None:
    args = parse("--json", "http", "PUT", "/items/1", "--json", "{}")
    assert args.json is True and args.json_body == "{}"
    assert App(args).json
    assert not App(parse("http", "PUT", "/items/1", "--json", "{}")).json
    # The other commands keep --json after the command.
    assert parse("sql", "SELECT 1", "--json").json is True
    assert parse("session", "open", "--fs", ".", "--json").json is True


def test_http_raw_bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert http_from_args(parse("http", "PUT", "/t", "--body", "é"))[0].body == "é".encode()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    from_file = http_from_args(parse("http", "PUT", "/blob", "--body-file", str(blob)))[0]
    assert from_file.body == bytes(range(256)) and from_file.json is None
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\x00\x01raw")))
    assert http_from_args(parse("http", "PUT", "/b", "--body-file", "-"))[0].body == b"\x00\x01raw"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"from": "stdin"}\n')))
    assert http_from_args(parse("http", "POST", "/b", "--json", "-"))[0].json == '{"from": "stdin"}\n'
    # A path starting with '-' goes after --.
    assert http_from_args(parse("http", "GET", "--", "-x"))[0].path == "-x"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["POST", "/i", "--json", "{}", "--body", "x"], "give one request body: --json and --body both given"),
        (["POST", "/i", "--body", "x", "--body-file", "f"], "give one request body: --body and --body-file both given"),
        (["GET", "/i", "--query", "limit"], "invalid --query 'limit': expected K=V"),
        (["GET", "/i", "--query", "=1"], "invalid --query '=1': expected K=V"),
        (["GET", "/i", "--query", "a=1", "--query", "a=2"], "--query a given twice"),
        (["GET", "/i", "--header", "Accept application/json"], "invalid --header 'Accept application/json'"),
        (["GET", "/i", "--header", ": x"], "invalid --header ': x'"),
        (["GET", "/i", "--header", "X-A: 1", "--header", "x-a: 2"], "--header x-a given twice"),
        (["GET", "/i?limit=1"], "PATH '/i?limit=1' carries a query: give its parameters with --query K=V"),
        (["GET", " "], "PATH is empty"),
        (["GE T", "/i"], "METHOD 'GE T' is not an HTTP method"),
        (["POST", "/i", "--inverse-method", "DELETE"], "--inverse-method and --inverse-path go together"),
        (["POST", "/i", "--inverse-path", "/i/1"], "--inverse-method and --inverse-path go together"),
        (["POST", "/i", "--inverse-json", "{}"], "--inverse-json needs --inverse-method and --inverse-path"),
        (["GET", "/i", "--timeout", "soon"], "--timeout: invalid duration 'soon'"),
    ],
)
def test_http_input_is_checked_before_goexd_is_asked(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # goexd is not running here: had the CLI asked it, the exit status would be 1.
    assert main(["--session", "S", "http", *flags]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"error: {message}")


def test_http_usage_errors_in_json_mode_follow_the_global_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # --json after `http` is the request's body: a usage error is not reported as JSON.
    assert main(["http", "POST", "--json", "{}"]) == 2  # PATH missing
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1].startswith("error: ")
    assert main(["--json", "http", "POST", "/i", "--json", "{}", "--body", "x"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["error"] == {
        "code": "invalid_argument",
        "message": "give one request body: --json and --body both given",
        "action_id": None,
    }
    assert err == ""
    assert main(["--session", "S", "--json", "http", "GET"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "invalid_argument"
    # Valid input: then goexd (not running here) is asked.
    assert main(["--session", "S", "--json", "http", "GET", "/items"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "unavailable"
    assert main(["--session", "S", "http", "GET", "/items", "--json", "{}"]) == 1
    assert capsys.readouterr().err.startswith("error: goexd is not running")


def http_action(
    state: int = pb.ACTION_STATE_EXECUTED,
    *,
    status: int = 201,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    truncated: bool = False,
) -> goex.Action:
    msg = pb.Action(id="a5", kind=pb.ACTION_KIND_HTTP, state=state, resource="items")
    msg.spec.http.method = "POST"
    msg.spec.http.path = "/items"
    msg.spec.http.json = '{"name": "x"}'
    msg.http.CopyFrom(pb.HttpResult(status=status, headers=headers or {}, body=body, body_truncated=truncated))
    msg.inverse.http.method = "DELETE"
    msg.inverse.http.path = "/items/7"
    msg.inverse.http.query["force"] = "1"
    msg.reversibility.CopyFrom(
        pb.Reversibility(
            reversibility_class=pb.REVERSIBILITY_CLASS_REVERSIBLE,
            verdict=pb.VERDICT_UNTESTED,
            detail="inverse derived from the response",
        )
    )
    msg.timings.total.FromMilliseconds(12)
    return goex.Action.from_proto(msg)


def http_output(a: goex.Action) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    app = App(argparse.Namespace(), stdout=out, stderr=err)
    print_http_result(app, a)
    print_summary(app, a)
    return out.getvalue(), err.getvalue()


def test_http_result_prints_status_headers_body_then_reversibility_and_inverse() -> None:
    a = http_action(
        headers={"location": "/items/7", "content-type": "application/json; charset=utf-8"},
        body=b'{"name":"[red]x","id":7}',
    )
    out, err = http_output(a)
    assert err == "action a5: executed, HTTP 201, 12 ms\n"  # goex's report: on stderr
    lines = out.splitlines()
    assert lines[0] == "201 Created"
    assert [line.split(None, 1) for line in lines[1:4]] == [
        ["HEADER", "VALUE"],
        ["content-type", "application/json; charset=utf-8"],
        ["location", "/items/7"],
    ]
    # JSON pretty-printed, its text never markup.
    assert lines[4:8] == ["{", '  "name": "[red]x",', '  "id": 7', "}"]
    assert lines[8:] == [
        "reversibility  reversible, untested: inverse derived from the response",
        "inverse        DELETE /items/7?force=1",
    ]
    assert _render.exit_status(a) == 0


def test_http_bodies_text_binary_and_truncated() -> None:
    text = http_action(status=200, headers={"content-type": "text/plain"}, body=b"hello\nworld\n")
    assert _render.http_body_text(text.http) is not None  # type: ignore[arg-type]
    out, _ = http_output(text)
    assert out.splitlines()[:5] == ["200 OK", "HEADER        VALUE", "content-type  text/plain", "hello", "world"]
    binary = http_action(status=200, headers={"content-type": "image/png"}, body=b"\x89PNG\r\n\x1a\n" + b"x" * 92)
    assert "100 bytes of image/png\n" in http_output(binary)[0]
    undeclared = http_action(status=200, body=bytes(range(256)))
    assert "256 bytes of binary data\n" in http_output(undeclared)[0]
    latin = http_action(
        status=200, headers={"content-type": "text/plain; charset=latin-1"}, body="café".encode("latin-1")
    )
    assert "café\n" in http_output(latin)[0]
    # Capped by goexd: no longer JSON, shown as text with a note.
    capped = http_action(
        status=200, headers={"content-type": "application/json"}, body=b'[{"id": 1}, {"id', truncated=True
    )
    out, _ = http_output(capped)
    assert '[{"id": 1}, {"id\n... body truncated by goexd: first 16 bytes shown\n' in out
    # JSON without a JSON content type is still recognised.
    sniffed = http_action(status=200, headers={"content-type": "text/plain"}, body=b'{"a":[1]}')
    assert '{\n  "a": [\n    1\n  ]\n}\n' in http_output(sniffed)[0]
    empty = http_action(status=204)
    out, _ = http_output(empty)
    assert out.splitlines()[0] == "204 No Content" and "HEADER" not in out


def test_http_action_that_did_not_complete() -> None:
    msg = http_action(pb.ACTION_STATE_FAILED, status=404, body=b"{}").proto
    msg.error = "the service answered 404 Not Found"
    msg.ClearField("inverse")
    msg.ClearField("reversibility")
    a = goex.Action.from_proto(msg)
    out, err = http_output(a)
    assert out.splitlines() == ["404 Not Found", "{}"]
    # A request sent is not taken back: no "(rolled back)" for http.
    assert err.splitlines() == ["action a5: failed, HTTP 404, 12 ms", "failed: the service answered 404 Not Found"]
    assert _render.exit_status(a) == _render.EXIT_NOT_COMPLETED
    blocked = goex.Action.from_proto(
        pb.Action(id="a6", kind=pb.ACTION_KIND_HTTP, state=pb.ACTION_STATE_BLOCKED, error="no")
    )
    out, err = http_output(blocked)
    assert out == "" and err == "action a6: blocked\nblocked: no\n"
    assert _render.exit_status(blocked) == _render.EXIT_NOT_COMPLETED


def test_show_and_log_render_http_actions() -> None:
    a = http_action(headers={"content-type": "application/json"}, body=b'{"id":7}')
    out = io.StringIO()
    render_action(App(argparse.Namespace(), stdout=out), a)
    text = out.getvalue()
    assert "command        POST /items\n" in text and "kind           http\n" in text
    assert "inverse        DELETE /items/7?force=1\n" in text
    assert "reversibility  reversible, untested: inverse derived from the response\n" in text
    assert "status         201 Created\n" in text
    tail = text[text.index("--- headers") :].splitlines()
    assert tail == [
        "--- headers",
        "HEADER        VALUE",
        "content-type  application/json",
        "--- body",
        "{",
        '  "id": 7',
        "}",
    ]
