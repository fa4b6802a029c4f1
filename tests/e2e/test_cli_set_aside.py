"""`goex undo --force`, `goex undo-to --force` and `goex set-aside list / restore` against a real goexd:
an undo over a file the person changed since the action is refused naming it and leaves their edit;
forced, it sets their version aside, which `goex set-aside restore` brings back byte for byte."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

import goex
from goex.v1 import actions_pb2 as apb
from goexd.resources.fs.versioned import CONCURRENT, RESTORE_FORCED
from tests.e2e import test_cli_diff
from tests.e2e.test_cli import (  # noqa: F401 - test_cli's fixtures, found by name through `cli`
    client,
    env,
    goex_cli,
    matches_schema,
    project,
    same_as,
    session,
    state_file,
)
from tests.e2e.test_cli_diff import Cli

cli = test_cli_diff.cli  # the fixture: a current session over `project`, the client, `goex` in-process

# What a person saved: every byte matters (no trailing newline, CR, NUL, a byte that is not UTF-8).
PERSONS_EDIT = b"the person's edit\r\n\x00\xff no newline"


def test_forced_undo_sets_the_persons_edit_aside_and_restore_brings_it_back(cli: Cli) -> None:
    run, ws = cli.goex, cli.project
    action = cli.run("echo agent > a.txt; echo new > n.txt")
    (ws / "a.txt").write_bytes(PERSONS_EDIT)

    # Refused: the error names the path and the flags; nothing is undone, the edit stays.
    message = run.error("undo")
    assert message.startswith(f"cannot undo action {action}: changed since it ran (by you or a later action): a.txt;")
    assert message.endswith(
        "(goex undo --cascade, or --force: what it overwrites is set aside, see `goex set-aside list`)"
    )
    assert (ws / "a.txt").read_bytes() == PERSONS_EDIT and (ws / "n.txt").exists()
    assert [a.state for a in cli.client.list_actions(cli.session)] == [goex.ActionState.EXECUTED]
    assert run("set-aside", "list") == ("", "no set-asides\n")

    # Forced: the action's paths go back, the person's version is set aside and named on stderr.
    out, err = run("undo", "--force")
    assert out.startswith(f"undone {action} (seq 1)")
    assert not (ws / "a.txt").exists() and not (ws / "n.txt").exists()
    found = re.search(r"set aside your version of a\.txt \(.*\) as ([0-9a-f]{12}): goex set-aside restore \1$", err)
    assert found is not None and err.startswith("  verified: "), err
    kept = found.group(1)

    out, err = run("set-aside", "list")
    assert err == ""
    header, row = out.splitlines()
    assert header.split() == ["ID", "AGE", "RESOURCE", "ACTION", "PATHS", "REASON"]
    cells = row.split()
    assert cells[0] == kept and cells[cells.index("fs") + 1 :][:2] == [action, "a.txt"], row
    assert row.endswith("changed since the action; overwritten by a forced undo")
    age = " ".join(cells[1 : cells.index("fs")])
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", age), age  # made just now

    out, err = run("set-aside", "restore", kept)
    assert out == f"restored {kept}: brought back 1 path\n" and err == ""
    assert (ws / "a.txt").read_bytes() == PERSONS_EDIT  # byte for byte
    assert run("set-aside", "list") == ("", "no set-asides\n")


def test_list_json_is_the_rpc_response(cli: Cli) -> None:
    run = cli.goex
    action = cli.run("echo agent > b.txt; echo x > sub/c.bin")
    (cli.project / "b.txt").write_bytes(PERSONS_EDIT)
    (cli.project / "sub" / "c.bin").write_text("mine\n")
    assert run.json("set-aside", "list") == {"json_version": 1, "set_asides": []}  # the list, not a missing key

    before = datetime.now(UTC)
    undone = run.json("undo", "--force")
    assert [a["id"] for a in undone["undone"]] == [action]
    data = run.json("set-aside", "list")
    listed = cli.client.set_asides(cli.session)
    same_as(data, apb.ListSetAsidesResponse(set_asides=[s.proto for s in listed]), "set-aside list")
    [kept] = data["set_asides"]
    assert sorted(kept) == ["action_id", "created_at", "id", "paths", "paths_bytes", "reason", "resource"]
    assert kept["action_id"] == action and kept["resource"] == "fs"
    assert kept["paths"] == ["b.txt", "sub/c.bin"]
    assert kept["paths_bytes"] == ["b.txt", "sub/c.bin"]  # UTF-8 names: text, no paths_bytes_base64
    created = datetime.fromisoformat(kept["created_at"])
    assert before - timedelta(seconds=5) < created < datetime.now(UTC) + timedelta(seconds=1)
    # The verdict of the forced undo mentions the set-aside by its id.
    assert kept["id"] in undone["undone"][0]["reversibility"]["detail"]

    restored = run.json("set-aside", "restore", kept["id"])
    matches_schema(restored, "set-aside restore")
    assert restored == {"json_version": 1, "verified": True, "detail": "brought back 2 paths"}
    assert (cli.project / "b.txt").read_bytes() == PERSONS_EDIT
    assert (cli.project / "sub" / "c.bin").read_text() == "mine\n"
    assert run.json("set-aside", "list") == {"json_version": 1, "set_asides": []}


def test_unknown_or_malformed_ids_fail_clearly(cli: Cli) -> None:
    run = cli.goex
    message = run.error("set-aside", "restore", "0123456789ab")
    assert message == f"set-aside '0123456789ab' not found (`goex set-aside list` shows session {cli.session}'s)"
    assert run.json("set-aside", "restore", "0123456789ab", code=1)["error"] == {
        "code": "not_found",
        "message": "set-aside '0123456789ab' not found",
        "action_id": None,
    }
    assert run.error("set-aside", "restore", "../x") == "set_aside_id: '../x' is not a valid id"
    assert run.error("set-aside", "restore", "x", "--session", "ses_0000000000000000") == (
        "session 'ses_0000000000000000' not found"
    )
    assert run.usage("set-aside") == "the following arguments are required: VERB"
    assert run.usage("set-aside", "restore").startswith("the following arguments are required: ID")


def test_undo_to_force_and_a_restore_refused_then_forced(cli: Cli) -> None:
    run = cli.goex
    anchor = cli.run("echo anchor > anchor.txt")
    later = cli.run("echo agent > b.txt")
    (cli.project / "b.txt").write_bytes(PERSONS_EDIT)

    message = run.error("undo-to", anchor)
    assert message.startswith(f"cannot undo action {later}: changed since it ran") and ": b.txt;" in message
    assert message.endswith("(goex undo-to --force: what it overwrites is set aside, see `goex set-aside list`)")
    assert (cli.project / "b.txt").read_bytes() == PERSONS_EDIT
    # --json keeps goexd's own message and status.
    refused = run.json("undo-to", anchor, code=1)["error"]
    assert refused["code"] == "failed_precondition" and "--force" not in refused["message"]

    out, err = run("undo-to", anchor, "--force")
    assert out.startswith(f"undone {later} (seq 2)") and "set aside your version of b.txt" in err
    assert (cli.project / "b.txt").read_text() == "bee\n" and (cli.project / "anchor.txt").exists()
    [kept] = cli.client.set_asides(cli.session)
    assert kept.action_id == later and kept.paths_bytes == (b"b.txt",)

    # The person changes b.txt again: bringing the first version back would overwrite this one.
    (cli.project / "b.txt").write_text("third\n")
    message = run.error("set-aside", "restore", kept.id)
    assert message.startswith(f"cannot bring back set-aside {kept.id}: changed since it was set aside: b.txt")
    assert message.endswith(f"(`goex set-aside restore {kept.id} --force` sets those versions aside in turn)")
    assert (cli.project / "b.txt").read_text() == "third\n"
    assert [s.id for s in cli.client.set_asides(cli.session)] == [kept.id]

    out, err = run("set-aside", "restore", kept.id, "--force")
    assert out.startswith(f"restored {kept.id}: brought back 1 path; set aside your version of b.txt") and err == ""
    assert (cli.project / "b.txt").read_bytes() == PERSONS_EDIT
    # The overwritten third version is itself a set-aside, made by no action ("-").
    [again] = cli.client.set_asides(cli.session)
    assert again.id != kept.id and again.action_id == "" and again.id in out
    row = run("set-aside", "list")[0].splitlines()[1]
    assert row.split()[0] == again.id and " - " in row and "b.txt" in row
    # Its reason is the restore's, not a forced undo's (issue 14, F12c).
    assert row.endswith(f"changed since it was set aside; overwritten by a forced restore of set-aside {kept.id}")
    assert again.reason == RESTORE_FORCED.format(kept.id)
    run("set-aside", "restore", again.id)
    assert (cli.project / "b.txt").read_text() == "third\n"


def test_undo_without_conflicts_keeps_no_set_aside_and_says_none(cli: Cli) -> None:
    run = cli.goex
    cli.run("echo agent > a.txt")
    _, err = run("undo", "--force")  # forcing with nothing changed since overwrites nothing
    assert "set aside" not in err and not (cli.project / "a.txt").exists()
    assert run.json("set-aside", "list") == {"json_version": 1, "set_asides": []}


def test_refusal_without_cascade_says_which_flag(cli: Cli) -> None:
    run = cli.goex
    first = cli.run("echo one > a.txt")
    cli.run("echo two > a.txt")  # a later action over the same path
    message = run.error("undo", first)
    assert first in message and message.endswith("--force: what it overwrites is set aside, see `goex set-aside list`)")
    assert "goex undo --cascade, or --force" in message
    out, _ = run("undo", first, "--cascade")
    assert out.count("undone ") == 2 and not (cli.project / "a.txt").exists()


def test_set_asides_stay_with_the_workspace_after_its_session_closes(cli: Cli) -> None:
    run = cli.goex
    cli.run("echo agent > b.txt")
    (cli.project / "b.txt").write_bytes(PERSONS_EDIT)
    run("undo", "--force")
    [kept] = cli.client.set_asides(cli.session)
    run("session", "close")
    assert run.error("set-aside", "list", "--session", cli.session) == (
        f"session {cli.session} is closed (set-asides stay with the workspace: a session opened over it lists them)"
    )
    reopened = run("session", "open", "--fs", "./myproject")[0].strip()
    assert run("set-aside", "list")[0].splitlines()[1].split()[0] == kept.id
    run("set-aside", "restore", kept.id)
    assert (cli.project / "b.txt").read_bytes() == PERSONS_EDIT
    run("session", "close", "--session", reopened)


def test_a_set_aside_of_an_edit_made_while_the_action_ran_says_so(cli: Cli) -> None:
    """Its reason names that cause (one made while the result was applied is tested in tests/faults:
    test_an_apply_killed_after_setting_aside_a_racing_edit_loses_nothing)."""

    def person() -> None:
        time.sleep(0.3)
        (cli.project / "b.txt").write_bytes(PERSONS_EDIT)  # saved while the action runs: it waits for it

    writer = threading.Thread(target=person)
    writer.start()
    action = cli.run("until grep -q edit b.txt; do sleep 0.05; done; echo agent > b.txt")
    writer.join()
    assert (cli.project / "b.txt").read_text() == "agent\n"
    [kept] = cli.client.set_asides(cli.session)
    assert kept.action_id == action and kept.paths_bytes == (b"b.txt",) and kept.reason == CONCURRENT
    row = cli.goex("set-aside", "list")[0].splitlines()[1]
    assert row.split()[0] == kept.id and row.endswith(CONCURRENT)
    cli.goex("set-aside", "restore", kept.id)
    assert (cli.project / "b.txt").read_bytes() == PERSONS_EDIT
