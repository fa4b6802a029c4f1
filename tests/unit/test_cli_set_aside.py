"""`goex undo --force`, `goex undo-to --force` and `goex set-aside`: parsing, help, the hints added to
goexd's refusals, the paths cell (no daemon needed; tests/e2e/test_cli_set_aside.py runs them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

import goex
from goex._exceptions import FailedPrecondition, NotFound
from goex.cli.cmd_resolve import _undo_hint
from goex.cli.cmd_set_aside import hint, paths_cell
from goex.cli.main import build_parser, main
from goex.v1 import actions_pb2 as apb

# goexd's refusals, word for word (engine.py, resources/fs/versioned.py).
CONFLICT = (
    "cannot undo action act_1: changed since it ran (by you or a later action): a.txt; undo the later "
    "actions first (cascade), or force the undo to set those versions aside"
)
LATER = "action act_1 has later pending actions on resource 'db' (act_2); undo those first, or ask to cascade"
RESTORE_CONFLICT = (
    "cannot bring back set-aside 0a1b: changed since it was set aside: a.txt; force it to set those "
    "versions aside in turn"
)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOEX_SOCKET", str(tmp_path / "missing.sock"))
    monkeypatch.setenv("GOEX_CLI_STATE", str(tmp_path / "cli.json"))


def test_force_flags_parse_and_default_off() -> None:
    parser = build_parser()
    assert parser.parse_args(["undo"]).force is False
    args = parser.parse_args(["undo", "act_1", "--cascade", "--force"])
    assert (args.action, args.cascade, args.force) == ("act_1", True, True)
    assert parser.parse_args(["undo-to", "act_1", "--force"]).force is True
    assert parser.parse_args(["undo-to", "act_1"]).force is False
    args = parser.parse_args(["set-aside", "restore", "0a1b", "--force", "--json"])
    assert (args.verb, args.id, args.force, args.json) == ("restore", "0a1b", True, True)
    assert parser.parse_args(["--json", "set-aside", "list"]).json is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set-aside"], "the following arguments are required: VERB"),
        (["set-aside", "restore"], "the following arguments are required: ID"),
        (["set-aside", "drop", "x"], "argument VERB: invalid choice: 'drop' (choose from "),  # quoting: by Python
        (["set-aside", "list", "--force"], "unrecognized arguments: --force"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: {message}")


def test_help_says_what_force_does_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["undo", "--help"], ["undo-to", "--help"]):
        assert main(argv) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "--force on a workspace, also take back paths changed since the action" in text
        assert "nothing is lost: the versions it overwrites are set aside, listed by `goex set-aside list`" in text
        assert "paths changed since the action (without --force; the error names them)" in text
    assert main(["set-aside", "restore", "--help"]) == 0
    text = capsys.readouterr().out
    assert "  0   restored, and goexd verified every path is back as it was kept\n" in text
    assert "  3   restored, but NOT verified (on stderr): check the paths yourself\n" in text
    assert "  1   refused or failed, nothing restored: unknown ID," in text
    assert main(["set-aside", "list", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--json prints the ListSetAsides response: {set_asides: [{id, resource, action_id, created_at" in text
    # Every field the documentation names is one of the message's, and the other way round.
    for field in apb.SetAside.DESCRIPTOR.fields:
        assert field.name in text
    assert main(["--help"]) == 0
    assert "goex set-aside list" in capsys.readouterr().out


def test_undo_hints_name_the_flags_goexd_means() -> None:
    assert _undo_hint(FailedPrecondition(CONFLICT), "undo") == (
        "goex undo --cascade, or --force: what it overwrites is set aside, see `goex set-aside list`"
    )
    # undo-to has no --cascade: it undoes everything after ACTION anyway.
    assert _undo_hint(FailedPrecondition(CONFLICT), "undo-to") == (
        "goex undo-to --force: what it overwrites is set aside, see `goex set-aside list`"
    )
    assert _undo_hint(FailedPrecondition(LATER), "undo") == "goex undo --cascade"
    # Refusals no flag gets past keep goexd's message alone.
    assert _undo_hint(FailedPrecondition("session ses_1 has no pending action to undo"), "undo") is None
    assert _undo_hint(FailedPrecondition("action act_1 is irreversible (x); it cannot be undone"), "undo") is None


def test_set_aside_hints() -> None:
    assert hint(FailedPrecondition(RESTORE_CONFLICT), "ses_1", "0a1b") == (
        "`goex set-aside restore 0a1b --force` sets those versions aside in turn"
    )
    listed = "`goex set-aside list` shows session ses_1's"
    assert hint(NotFound("set-aside '0a1b' not found"), "ses_1", "0a1b") == listed
    closed = "set-asides stay with the workspace: a session opened over it lists them"
    assert hint(FailedPrecondition("session ses_1 is closed"), "ses_1", "0a1b") == closed
    assert hint(FailedPrecondition("session ses_1 is closed"), "ses_1", None) == closed  # list
    assert hint(NotFound("session 'ses_1' not found"), "ses_1", "0a1b") is None
    assert hint(FailedPrecondition("something else"), "ses_1", "0a1b") is None


def test_paths_cell_shows_the_first_three_then_a_count() -> None:
    def kept(*paths: str) -> goex.SetAside:
        return goex.SetAside.from_proto(apb.SetAside(id="x", paths=list(paths)))

    assert paths_cell(kept("a.txt")) == "a.txt"
    assert paths_cell(kept("a", "b", "c")) == "a, b, c"
    assert paths_cell(kept("a", "b", "c", "d", "bad\\xff")) == "a, b, c +2 more"
    assert paths_cell(kept()) == ""
