"""`goex diff` against a real goexd: plain text off a terminal (byte for byte, appliable),
colour and escaped control characters on one, --stat, --json, --since-last, refusals."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import goex
from tests.e2e.test_cli import (  # noqa: F401 - test_cli's fixtures, found by name through `cli` below
    ACTION_ID,
    Goex,
    Terminal,
    client,
    env,
    goex_cli,
    matches_schema,
    project,
    session,
    state_file,
)


@dataclass
class Cli:
    goex: Goex  # `goex ARGV...` in-process, with a current session over `project`
    session: str
    project: Path
    client: goex.Client

    def run(self, script: str) -> str:
        """`goex run -- sh -c SCRIPT`: the action's id."""
        _, err = self.goex("run", "--", "sh", "-c", script)
        found = ACTION_ID.search(err)  # goex's report is on stderr
        assert found is not None, err
        return found.group()


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Cli:
    get = request.getfixturevalue
    return Cli(get("goex_cli"), get("session"), get("project"), get("client"))


def test_plain_diff_is_the_patch_byte_for_byte_and_applies(cli: Cli, tmp_path: Path) -> None:
    run = cli.goex
    before = tmp_path / "before"
    subprocess.run(["cp", "-a", str(cli.project), str(before)], check=True)
    action = cli.run("printf 'bee\\nhive\\n' > b.txt; rm keep.txt; echo new > n.txt; chmod 755 n.txt")
    out, err = run("diff", action)
    assert out == cli.client.diff(action).patch.decode()
    assert "diff --git a/b.txt b/b.txt\n" in out and "+hive\n" in out and "new file mode 100755\n" in out
    assert err == ""  # nothing cut, nothing to note: stderr stays empty, stdout is only the patch
    done = subprocess.run(["git", "apply", "-"], input=out.encode(), cwd=before, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert (before / "b.txt").read_text() == "bee\nhive\n" and not (before / "keep.txt").exists()
    assert os.access(before / "n.txt", os.X_OK)
    # Without ACTION: the session's newest action that ran.
    assert run("diff")[0] == out


def test_stat_json_and_since_last(cli: Cli) -> None:
    run = cli.goex
    action = cli.run("printf 'bee\\nhive\\nwax\\n' > b.txt; head -c 300 /dev/zero > z.bin")
    out, _ = run("diff", action, "--stat")
    assert out.splitlines() == [
        " b.txt | 2 ++",
        " z.bin | Bin 0 -> 300 bytes",
        " 2 files changed, 2 insertions(+), 0 deletions(-)",
    ]
    data = run.json("diff", action)
    matches_schema(data, "diff")
    assert data["action_id"] == action
    assert [f["path"] for f in data["files"]] == ["b.txt", "z.bin"] and "+wax\n" in data["files"][0]["patch"]

    (cli.project / "keep.txt").write_text("keep\nmine\n")  # the person's own edit
    out, err = run("diff", "--since-last")
    assert "diff --git a/keep.txt b/keep.txt\n" in out and "+mine\n" in out and "b.txt" not in out
    assert f"note: changes made in 'fs' since action {action}" in err
    assert run.usage("diff", action, "--since-last") == "give ACTION or --since-last, not both"


def test_refusals(cli: Cli) -> None:
    run = cli.goex
    assert "act_0000000000000000" in run.error("diff", "act_0000000000000000")
    data = run.json("diff", "act_0000000000000000", code=1)
    assert data["error"]["code"] == "not_found"
    assert run.usage("diff", "--max-file-bytes", "lots").startswith("invalid size")
    message = run.error("diff")
    assert message == f"session {cli.session} has no action that ran (pending, committed or undone) to diff"


def test_caps_are_noted_on_stderr(cli: Cli) -> None:
    run = cli.goex
    action = cli.run("seq 1 5000 > many.txt")
    out, err = run("diff", action, "--max-file-bytes", "1K")
    assert len(out.encode()) <= 1024 and out.endswith("\n")
    assert "note: the per-file cap (1 KiB) cut many.txt" in err


def test_a_terminal_gets_colour_and_no_control_sequences_from_files(cli: Cli, tmp_path: Path) -> None:
    action = cli.run("printf 'title \\033]0;pwned\\007 end\\n' > t.txt")
    term = Terminal(["diff", action], tmp_path)
    rc, _, err = term.finish()
    assert rc == 0 and err == ""
    assert b"\x1b[" in term.seen  # rich's colours
    assert b"\x1b]0;pwned" not in term.seen and b"\\x1b]0;pwned\\x07" in term.seen  # shown, not obeyed
    # Off a terminal the bytes pass through as they are (the control: the file does hold them).
    out, _ = cli.goex("diff", action)
    assert "+title \x1b]0;pwned\x07 end\n" in out
