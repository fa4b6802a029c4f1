"""`make dist`'s wheels, installed as a user would install them: into a fresh venv without the test stack
(pip), and with pipx; goexd from them serves, the CLI from them drives it, install-service points at them.

The wheels are built by the script `make dist` runs (scripts/build-dist.sh), each from its sdist. The
fresh venv gets its dependencies from the package index (as a user's pip would), nothing from the repo.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.e2e.test_install_service import unit, verify
from tests.systemd_like import Systemd

REPO = Path(__file__).resolve().parents[2]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter the dev venv was made from
# What the dev extra brings in and a user's install must not.
# (jsonschema is goexd's own since the planner checks model answers with it.) Nor does a plain install bring the
# embedded model's server: it is the local-llm extra.
TEST_STACK = {"pytest", "hypothesis", "grpcio-tools", "mypy", "ruff", "django", "moto", "boto3", "build", "xllamacpp"}
TIMEOUT = 600


def run(*argv: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without what would point Python at the repo or the dev venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = run(REPO / "scripts" / "build-dist.sh", out, env={**os.environ, "PYTHON": sys.executable}, timeout=TIMEOUT)
    assert built.returncode == 0, built.stdout + built.stderr
    names = sorted(p.name for p in out.iterdir())
    version = run(sys.executable, "-c", "import goex; print(goex.__version__)").stdout.strip()
    assert names == [
        f"goex_client-{version}-py3-none-any.whl",
        f"goex_client-{version}.tar.gz",
        f"goexd-{version}-py3-none-any.whl",
        f"goexd-{version}.tar.gz",
    ]
    return out


def wheel(wheels: Path, name: str) -> Path:
    (found,) = wheels.glob(f"{name}-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with both wheels installed by pip, no extras."""
    path = tmp_path_factory.mktemp("venv") / "goex"
    made = run(BASE_PYTHON, "-m", "venv", path, env=clean_env())
    assert made.returncode == 0, made.stderr
    pip = path / "bin" / "pip"
    both = (wheel(wheels, "goex_client"), wheel(wheels, "goexd"))
    got = run(pip, "install", "-q", *both, env=clean_env(), timeout=TIMEOUT)
    assert got.returncode == 0, got.stderr
    return path


def test_the_wheels_install_without_the_test_stack(venv: Path) -> None:
    listed = run(venv / "bin" / "pip", "list", "--format=json", env=clean_env())
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"goexd", "goex-client", "grpcio", "pygit2", "pyseccomp"} <= names
    assert names & TEST_STACK == set()


def test_entry_points_and_package_data_come_from_the_venv(venv: Path) -> None:
    bin_dir = venv / "bin"
    assert run(bin_dir / "goex", "--version", env=clean_env()).stdout == "goex 0.1.0\n"
    helped = run(bin_dir / "goexd", "--help", env=clean_env())
    assert helped.returncode == 0 and "--socket" in helped.stdout
    # What is read from the package at run time: the shipped HTTP rule sets, the --json schema, the egress
    # forwarder's source (run in sandboxes), the generated stubs; all from the venv, not the repo.
    code = (
        "import json, goex, goexd, goex.v1.actions_pb2 as a\n"
        "from goexd.resources.http.rules import shipped_rule_files\n"
        "from goexd.sandbox.egress_forwarder import SOURCE\n"
        "from goex.cli._json import SCHEMA_PATH\n"
        "from goexd.planner.functions import load_sets\n"
        "print(json.dumps({'rules': sorted(f.name for f in shipped_rule_files()), 'functions': sorted(load_sets([])),\n"
        "  'schema': json.loads(SCHEMA_PATH.read_text())['title'], 'forwarder': len(SOURCE),\n"
        "  'files': [goex.__file__, goexd.__file__, a.__file__]}))\n"
    )
    got = run(bin_dir / "python", "-c", code, env=clean_env())
    assert got.returncode == 0, got.stderr
    found = json.loads(got.stdout)
    assert found["rules"] == ["generic.toml", "rest.toml", "s3.toml", "slack.toml"] and found["functions"] == ["slack"]
    assert found["schema"].startswith("goex --json output") and found["forwarder"] > 1000
    assert all(f.startswith(str(venv)) for f in found["files"]), found["files"]


class VenvDaemon(DaemonProcess):
    """goexd as the venv's console script runs it."""

    def __init__(self, root: Path, goexd: Path) -> None:
        super().__init__(root, env=clean_env())
        self.program = goexd

    @property
    def argv(self) -> list[str]:
        return [str(self.program), *super().argv[3:]]  # its options, without `python -m goexd.main`


@pytest.fixture(scope="module")
def venv_daemon(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VenvDaemon]:
    daemon = VenvDaemon(tmp_path_factory.mktemp("goexd"), venv / "bin" / "goexd").start()
    yield daemon
    assert daemon.stop() == 0, daemon.log()
    assert "Traceback" not in daemon.log(), daemon.log()


def test_goexd_from_the_venv_serves_the_cli_from_the_venv(venv: Path, venv_daemon: VenvDaemon, tmp_path: Path) -> None:
    assert venv_daemon.proc is not None
    exe = os.readlink(f"/proc/{venv_daemon.proc.pid}/exe")
    cmdline = Path(f"/proc/{venv_daemon.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1].decode() == str(venv / "bin" / "goexd"), (exe, cmdline)
    env = clean_env(GOEX_SOCKET=str(venv_daemon.socket), GOEX_CLI_STATE=str(tmp_path / "cli.json"))
    goex = venv / "bin" / "goex"
    health = run(goex, "health", env=env)
    assert health.returncode == 0 and health.stdout.startswith("ok  goexd 0.1.0"), health.stdout + health.stderr
    ws = tmp_path / "ws"
    ws.mkdir()
    assert run(goex, "session", "open", "--fs", ws, env=env).returncode == 0
    assert run(goex, "run", "--", "true", env=env).returncode == 0
    made = run(goex, "run", "--", "sh", "-c", "echo hi > hi.txt && cat hi.txt", env=env)
    assert (made.returncode, made.stdout) == (0, "hi\n"), made.stderr
    assert run(goex, "undo", env=env).returncode == 0
    assert not (ws / "hi.txt").exists()
    # No endpoint configured and no embedded model (the local-llm extra): a prompt fails saying both ways out.
    prompted = run(goex, "prompt", "write a joke into joke.txt", env=env)
    assert prompted.returncode == 125, prompted.stdout + prompted.stderr
    assert "[planner] base_url" in prompted.stderr and "goexd[local-llm]" in prompted.stderr, prompted.stderr
    assert run(goex, "session", "close", "--commit-all", env=env).returncode == 0


def test_install_service_from_the_venv_runs_the_venvs_goexd(venv: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    env = clean_env(XDG_STATE_HOME=str(tmp_path / "state"))
    written = run(venv / "bin" / "goex", "install-service", "--unit-dir", units, env=env)
    assert written.returncode == 0, written.stderr
    checked = verify(units, tmp_path / "rt")
    assert (checked.returncode, checked.stderr.strip()) == (0, "")
    exec_start = shlex.split(unit(units / "goexd.service")["Service"]["ExecStart"])
    assert exec_start[0] == str(venv / "bin" / "goexd")
    (tmp_path / "sd").mkdir()
    sd = Systemd(tmp_path / "sd", goexd=exec_start)
    try:
        sd.start()  # socket activation, as goexd.socket starts it
        assert "READY=1" in sd.states(), sd.log.read_text()
        gc = unit(units / "goexd-gc.service")["Service"]
        ran = run(*shlex.split(gc["ExecStart"]), env=clean_env(GOEX_SOCKET=str(sd.socket_path)))
        assert ran.returncode == 0, ran.stderr
        assert sd.stop() == 0, sd.log.read_text()
    finally:
        sd.close()


def test_pipx_installs_goex_and_goexd_as_tools(wheels: Path, tmp_path: Path, venv_daemon: VenvDaemon) -> None:
    """pipx (from the package index, into a venv of its own) installs each wheel as a tool; their links sit side
    by side, so install-service finds goexd beside goex."""
    tools = tmp_path / "tools"
    assert run(BASE_PYTHON, "-m", "venv", tools, env=clean_env()).returncode == 0
    got = run(tools / "bin" / "pip", "install", "-q", "pipx", env=clean_env(), timeout=TIMEOUT)
    assert got.returncode == 0, got.stderr
    bin_dir = tmp_path / "bin"
    env = clean_env(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(bin_dir), PIPX_MAN_DIR=str(tmp_path / "man"))
    pipx = tools / "bin" / "pipx"
    first = run(pipx, "install", wheel(wheels, "goex_client"), env=env, timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    # goexd needs goex-client, which is not on the index: pip finds it beside the wheel.
    second = run(pipx, "install", f"--pip-args=--find-links={wheels}", wheel(wheels, "goexd"), env=env, timeout=TIMEOUT)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in bin_dir.iterdir()) == ["goex", "goexd"]
    assert run(bin_dir / "goexd", "--version", env=env).stdout == "goexd 0.1.0\n"
    health = run(bin_dir / "goex", "health", env={**env, "GOEX_SOCKET": str(venv_daemon.socket)})
    assert health.returncode == 0, health.stderr
    shown = run(bin_dir / "goex", "install-service", "--dry-run", "--unit-dir", tmp_path / "units", env=env)
    assert f"ExecStart={bin_dir / 'goexd'} --state-dir" in shown.stdout
    assert f"ExecStart={bin_dir / 'goex'} gc" in shown.stdout
