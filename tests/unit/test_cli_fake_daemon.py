"""The goex CLI end to end against the in-memory fake goexd (see fake_goexd.py for the argv script)."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.cli._app import App
from goex.cli.main import main
from tests.unit.fake_goexd import FakeGoexd


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGoexd]:
    with tempfile.TemporaryDirectory(prefix="gx", dir="/tmp") as d, FakeGoexd(Path(d) / "goexd.sock") as server:
        monkeypatch.setenv("GOEX_SOCKET", str(server.socket_path))
        monkeypatch.setenv("GOEX_CLI_STATE", str(tmp_path / "state" / "cli.json"))
        yield server


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, code: int = 0) -> tuple[str, str]:
        rc = main(list(argv))
        out, err = self.capsys.readouterr()
        assert rc == code, f"goex {' '.join(argv)} -> {rc}\nstdout: {out}\nstderr: {err}"
        assert "Traceback" not in err
        return out, err

    def json(self, *argv: str, code: int = 0) -> dict[str, object]:
        out, err = self("--json", *argv, code=code)
        assert err == ""
        data = json.loads(out)
        assert isinstance(data, dict)
        return data


@pytest.fixture
def goex(fake: FakeGoexd, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    run = Run(capsys)
    (tmp_path / "ws").mkdir()
    return run


@pytest.fixture
def session(goex: Run, tmp_path: Path) -> str:
    out, _ = goex("session", "open", "--fs", str(tmp_path / "ws"), "--label", "demo", "--memory", "512M")
    return out.strip()


def test_session_open_prints_id_and_remembers_it(goex: Run, session: str, tmp_path: Path, fake: FakeGoexd) -> None:
    assert session == "s1"
    state = json.loads((tmp_path / "state" / "cli.json").read_text())
    assert state == {"session": "s1"}
    out, _ = goex("session", "list")
    assert "* " in out.splitlines()[1] or out.splitlines()[1].startswith("*")
    assert "demo" in out
    out, _ = goex("session", "show")
    assert "s1" in out and "512.0 MiB" in out
    req = fake.state.requests[0]
    assert req.limits.memory_bytes == 512 << 20  # type: ignore[attr-defined]


def test_session_open_json(goex: Run, tmp_path: Path) -> None:
    data = goex.json("session", "open", "--fs", str(tmp_path / "ws"))
    assert set(data) == {"session"}
    assert data["session"]["state"] == "SESSION_STATE_OPEN"  # type: ignore[index]


def test_session_open_needs_a_resource(goex: Run) -> None:
    goex("session", "open", code=2)


def test_run_prints_output_exit_and_changes(goex: Run, session: str) -> None:
    out, err = goex("run", "--", "out:hello", "err:warn", "A:a.txt", "M:b.txt", "D:c.txt", "T:l", "P:x.sh")
    lines = out.splitlines()
    assert lines[0] == "hello"
    assert lines[1].startswith("action a2: executed, exit 0")
    assert lines[2:] == ["A a.txt", "M b.txt", "D c.txt", "T l", "P x.sh"]
    assert err == "warn\n"


def test_run_exit_codes(goex: Run, session: str) -> None:
    goex("run", "--", "exit:3", code=3)
    goex("run", "--", "signal:9", code=137)
    out, err = goex("run", "--", "timeout", "A:half.txt", code=124)
    assert "rolled back" in err
    assert out.splitlines()[1:] == ["changes before the rollback:", "A half.txt"]
    _, err = goex("run", "--", "block", code=125)
    assert "blocked: policy forbids" in err


def test_run_quiet_and_json(goex: Run, session: str) -> None:
    out, _ = goex("run", "-q", "--", "out:only", "A:a")
    assert out == "only\n"
    data = goex.json("run", "--", "out:hi", "exit:2", code=2)
    action = data["action"]
    assert isinstance(action, dict)
    assert base64.b64decode(action["exec"]["stdout"]) == b"hi\n"
    assert action["exec"]["exit_code"] == 2
    assert action["state"] == "ACTION_STATE_EXECUTED"


def test_run_detach(goex: Run, session: str) -> None:
    out, err = goex("run", "--detach", "--", "out:later")
    action_id = out.strip()
    assert "goex show" in err
    data = goex.json("show", action_id)
    assert data["action"]["state"] == "ACTION_STATE_PROPOSED"  # type: ignore[index]


def test_run_streams_live_on_a_terminal(goex: Run, session: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(App, "stdout_is_tty", property(lambda self: True))
    out, err = goex("run", "--", "out:one", "out:two", "err:three", "A:new.txt", "exit:4", code=4)
    assert out.splitlines()[:2] == ["one", "two"]  # printed once, from the stream
    assert out.count("one") == 1
    assert "A new.txt" in out
    assert err == "three\n"


def test_python(goex: Run, session: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = goex("python", "print(42)")
    assert out.startswith("print(42)\n")  # the fake echoes the code
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    out, _ = goex("python", "-")
    assert out.startswith("from stdin\n")


def test_log_show_undo_commit(goex: Run, session: str) -> None:
    for i in range(3):
        goex("run", "--", f"out:{i}", f"A:f{i}")
    out, _ = goex("log")
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["SEQ", "ID", "KIND", "STATE"]
    assert len(rows) == 3 and "+1 ~0 -0" in rows[0] and "executed" in rows[0]
    data = goex.json("log")
    ids = [a["id"] for a in data["actions"]]  # type: ignore[union-attr]
    assert len(ids) == 3

    out, _ = goex("show", ids[0])
    assert "A f0" in out and "--- stdout" in out and "exit 0" in out

    _, err = goex("undo", ids[0], code=1)
    assert err.startswith("error: ") and "cascade" in err
    out, _ = goex("undo")
    assert out.startswith(f"undone {ids[2]}")
    out, _ = goex("commit", "--up-to", ids[0])
    assert out.startswith(f"committed {ids[0]}")
    data = goex.json("undo-to", ids[0])
    assert [a["id"] for a in data["undone"]] == [ids[1]]  # type: ignore[union-attr]
    _, err = goex("commit")
    assert "nothing to commit" in err
    out, _ = goex("log", "--state", "undone")
    assert len(out.splitlines()) == 3


def test_close_refuses_then_commits(goex: Run, session: str, tmp_path: Path) -> None:
    goex("run", "--", "A:x")
    _, err = goex("session", "close", code=1)
    assert err.startswith("error: ") and "pending" in err and "--commit-all" in err
    out, _ = goex("session", "close", "--commit-all")
    assert out.startswith("closed s1; committed 1 pending action")
    assert json.loads((tmp_path / "state" / "cli.json").read_text()) == {}
    goex("log", code=1)  # no current session any more


def test_session_flag_overrides_current(goex: Run, session: str, tmp_path: Path) -> None:
    (tmp_path / "ws2").mkdir()
    other = goex("session", "open", "--fs", str(tmp_path / "ws2"))[0].strip()
    goex("run", "--session", session, "--", "out:in-first")
    data = goex.json("log", "--session", session)
    assert len(data["actions"]) == 1  # type: ignore[arg-type]
    assert goex.json("log")["actions"] == []  # the current session is the newer one
    goex("session", "use", session)
    assert len(goex.json("log")["actions"]) == 1  # type: ignore[arg-type]
    assert other != session


def test_unknown_ids(goex: Run, session: str) -> None:
    _, err = goex("show", "nope", code=1)
    assert err == "error: action 'nope' not found\n"
    data = goex.json("show", "nope", code=1)
    assert data == {"error": {"code": "NOT_FOUND", "message": "action 'nope' not found"}}


def test_secrets(goex: Run, fake: FakeGoexd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"s3cret\n")))
    out, _ = goex(
        "secret",
        "put",
        "gh",
        "--kind",
        "bearer",
        "--header",
        "Authorization: Bearer {value}",
        "--host",
        "api.github.com",
    )
    assert out == "stored gh (bearer)\n"
    req = fake.state.requests[-1]
    assert req.value == b"s3cret"  # type: ignore[attr-defined]
    assert req.info.injection.header.template == "Bearer {value}"  # type: ignore[attr-defined]
    assert list(req.info.allowed_hosts) == ["api.github.com"]  # type: ignore[attr-defined]

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"again")))
    _, err = goex("secret", "put", "gh", code=1)
    assert "exists" in err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"pw")))
    goex("secret", "put", "gh", "--overwrite", "--kind", "basic", "--username", "ann")
    assert dict(fake.state.requests[-1].values) == {"username": b"ann", "password": b"pw"}  # type: ignore[attr-defined]

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    _, err = goex("secret", "put", "empty", code=1)
    assert "empty secret" in err

    out, _ = goex("secret", "list")
    assert "gh" in out and "basic" in out
    data = goex.json("secret", "list")
    assert [s["name"] for s in data["secrets"]] == ["gh"]  # type: ignore[union-attr]
    assert goex.json("secret", "delete", "gh") == {}
    goex("secret", "delete", "gh", code=1)


def test_secret_prompt_when_stdin_is_a_terminal(goex: Run, fake: FakeGoexd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "typed")
    goex("secret", "put", "k", "--env", "API_KEY")
    req = fake.state.requests[-1]
    assert req.value == b"typed" and req.info.injection.env.variable == "API_KEY"  # type: ignore[attr-defined]


def test_policy_check(goex: Run, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[fs]\n")
    bad.write_text("[fs]\nbad = 1\n")
    out, _ = goex("policy", "check", str(good))
    assert out == f"{good}: ok\n"
    out, _ = goex("policy", "check", str(bad), code=1)
    assert out == f"{bad}:2: unknown key 'bad'\n"
    data = goex.json("policy", "check", str(bad), code=1)
    assert data["ok"] is False and data["errors"] == [{"line": 2, "message": "unknown key 'bad'"}]
    _, err = goex("policy", "check", str(tmp_path / "missing.toml"), code=1)
    assert err.startswith("error: cannot read")


def test_admin_commands(goex: Run) -> None:
    out, _ = goex("health")
    assert out.startswith("ok  goexd 0.0-fake, up 1h 02m")
    assert "journal" in out
    data = goex.json("health")
    assert data["ok"] is True and data["version"] == "0.0-fake"
    out, _ = goex("stats")
    assert "open sessions" in out and "2.0 KiB" in out
    assert goex.json("stats")["actions_by_state"] == {"executed": "2"}  # uint64 is a string in JSON
    out, _ = goex("gc", "--dry-run")
    assert out.startswith("would remove 0 snapshots")
    assert goex.json("gc")["snapshots_removed"] == 3
