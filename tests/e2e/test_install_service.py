"""goex install-service / uninstall-service: the systemd user units, checked by systemd-analyze and run.

`systemd-analyze verify --user` loads the units as a user manager would (unknown keys, bad values, a
missing or non-executable ExecStart program, a timer without its service all fail it). No user manager
runs in the test container, so the units are then run the way it would run them: goexd.service's
ExecStart on goexd.socket's ListenStream socket (tests/systemd_like.py), and goexd-gc.service's
ExecStart with its Environment, which reaches goexd through that socket.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from goex.cli._service_units import MARKER, UNIT_NAMES
from tests.systemd_like import Systemd

BIN = Path(sys.executable).parent
GOEX, GOEXD = BIN / "goex", BIN / "goexd"


def xdg_env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_STATE_HOME": str(root / "state"),
        "XDG_RUNTIME_DIR": str(root / "rt"),
    }


def goex(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GOEX), *args], env=env, capture_output=True, text=True, timeout=120)


def verify(unit_dir: Path, runtime: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify --user on every unit in `unit_dir` (scripts/install-system-deps.sh installs it); it
    warns (exit 0) of unknown keys, so a clean result is exit 0 and nothing said."""
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        ["systemd-analyze", "verify", "--user", *(f"./{n}" for n in UNIT_NAMES)],
        cwd=unit_dir,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def expand(value: str, runtime: Path) -> str:
    """The specifiers the units use: %t (the runtime dir) and %% (a percent sign)."""
    return value.replace("%%", "\0").replace("%t", str(runtime)).replace("\0", "%")


def test_written_units_verify_and_point_at_the_installed_programs(tmp_path: Path) -> None:
    env = xdg_env(tmp_path)
    done = goex(env, "install-service")
    assert done.returncode == 0, done.stderr
    unit_dir = tmp_path / "config" / "systemd" / "user"
    assert sorted(p.name for p in unit_dir.iterdir()) == sorted(UNIT_NAMES)
    assert "systemctl --user daemon-reload && systemctl --user enable --now goexd.socket goexd-gc.timer" in done.stdout
    checked = verify(unit_dir, tmp_path / "rt")
    assert (checked.returncode, checked.stderr.strip(), checked.stdout.strip()) == (0, "", "")

    socket_unit = unit(unit_dir / "goexd.socket")
    assert socket_unit["Socket"]["ListenStream"] == "%t/goex/goexd.sock"  # goex's default: $XDG_RUNTIME_DIR/goex
    assert socket_unit["Socket"]["SocketMode"] == "0600" and socket_unit["Socket"]["DirectoryMode"] == "0700"
    service = unit(unit_dir / "goexd.service")["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert shlex.split(service["ExecStart"]) == [str(GOEXD), "--state-dir", str(tmp_path / "state" / "goex")]
    gc = unit(unit_dir / "goexd-gc.service")
    assert shlex.split(gc["Service"]["ExecStart"]) == [str(GOEX), "gc"]
    assert gc["Unit"]["Requires"] == "goexd.socket"  # not goexd.service: the socket starts it
    assert unit(unit_dir / "goexd-gc.timer")["Timer"]["OnCalendar"] == "daily"


def test_verify_fails_on_a_unit_whose_program_is_gone(tmp_path: Path) -> None:
    """The check can fail: a goexd that is not executable any more (uninstalled, say)."""
    fake = tmp_path / "bin" / "goexd"
    fake.parent.mkdir()
    shutil.copy(GOEXD, fake)
    done = goex(xdg_env(tmp_path), "install-service", "--goexd", str(fake))
    assert done.returncode == 0, done.stderr
    fake.chmod(0o644)
    checked = verify(tmp_path / "config" / "systemd" / "user", tmp_path / "rt")
    assert checked.returncode != 0 and str(fake) in checked.stderr


def test_the_units_run_goexd_on_its_socket_and_gc_through_it(tmp_path: Path) -> None:
    """goexd.service's ExecStart, started on goexd.socket's socket as systemd starts it, says READY=1 and
    serves; goexd-gc.service's ExecStart, with its Environment, reaches it there."""
    env = xdg_env(tmp_path)
    assert goex(env, "install-service").returncode == 0
    unit_dir = tmp_path / "config" / "systemd" / "user"
    (tmp_path / "sd").mkdir()
    exec_start = shlex.split(unit(unit_dir / "goexd.service")["Service"]["ExecStart"])
    sd = Systemd(tmp_path / "sd", goexd=exec_start)
    try:
        listen = expand(unit(unit_dir / "goexd.socket")["Socket"]["ListenStream"], sd.runtime)
        assert listen == str(sd.socket_path)
        sd.start()
        assert "READY=1" in sd.states(), sd.log.read_text()
        gc = unit(unit_dir / "goexd-gc.service")["Service"]
        name, _, value = gc["Environment"].partition("=")
        gc_env = {**os.environ, name: expand(value, sd.runtime), "GOEX_CLI_STATE": str(tmp_path / "cli.json")}
        ran = subprocess.run(shlex.split(gc["ExecStart"]), env=gc_env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert (tmp_path / "state" / "goex" / "journal.sqlite3").exists()  # the state dir the unit names
        assert sd.stop() == 0, sd.log.read_text()
    finally:
        sd.close()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    done = goex(xdg_env(tmp_path), "install-service", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "config").exists()
    for name in UNIT_NAMES:
        assert f"# {tmp_path / 'config' / 'systemd' / 'user' / name}\n{MARKER}" in done.stdout


def test_a_unit_file_goex_did_not_write_is_left_alone(tmp_path: Path) -> None:
    env = xdg_env(tmp_path)
    unit_dir = tmp_path / "config" / "systemd" / "user"
    unit_dir.mkdir(parents=True)
    mine = "[Service]\nExecStart=/usr/bin/true\n"
    (unit_dir / "goexd.service").write_text(mine)
    refused = goex(env, "install-service")
    assert refused.returncode == 1 and "not written by goex install-service" in refused.stderr
    assert sorted(p.name for p in unit_dir.iterdir()) == ["goexd.service"]  # nothing written
    assert goex(env, "install-service", "--force").returncode == 0
    assert (unit_dir / "goexd.service").read_text().startswith(MARKER)

    (unit_dir / "goexd-gc.timer").write_text("[Timer]\nOnCalendar=hourly\n")  # replaced by hand
    removed = goex(env, "uninstall-service")
    assert removed.returncode == 0, removed.stderr
    assert sorted(p.name for p in unit_dir.iterdir()) == ["goexd-gc.timer"]
    assert "goexd-gc.timer was not written by goex install-service: left alone" in removed.stderr
    again = goex(env, "uninstall-service")
    assert again.returncode == 0 and "no goex units" in again.stdout


def test_missing_goexd_and_json_are_refused(tmp_path: Path) -> None:
    env = xdg_env(tmp_path)
    missing = goex(env, "install-service", "--goexd", str(tmp_path / "nope"))
    assert missing.returncode == 1 and f"goexd {tmp_path / 'nope'} is not an executable file" in missing.stderr
    prefix = goex(env, "install-service", "--prefix", str(tmp_path))
    assert prefix.returncode == 1 and f"goex {tmp_path / 'bin' / 'goex'} is not an executable file" in prefix.stderr
    as_json = goex(env, "--json", "install-service")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["code"] == "invalid_argument"
    assert not (tmp_path / "config").exists()


def test_enable_without_a_user_manager_says_so(tmp_path: Path) -> None:
    """--enable runs systemctl --user; here no user manager answers: exit 1 with systemctl's words, the units
    written all the same."""
    env = xdg_env(tmp_path)
    (tmp_path / "rt").mkdir(mode=0o700)
    done = goex(env, "install-service", "--enable")
    assert done.returncode == 1
    assert "systemctl --user daemon-reload failed:" in done.stderr
    assert (tmp_path / "config" / "systemd" / "user" / "goexd.socket").exists()
