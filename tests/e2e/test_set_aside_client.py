"""Forced undo and set-asides through the Python client (sync and asyncio) against a real goexd:
an undo over a file the person changed since is refused naming it, forcing it sets their version
aside, and restore_set_aside brings it back byte for byte, names that are not UTF-8 included."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import goex
from tests.daemon_process import DaemonProcess
from tests.e2e import test_client
from tests.e2e.test_client import sh

# test_client's fixtures: a client of the shared goexd, and a session over `workspace`.
client, session = test_client.client, test_client.session

A = goex.ActionState
PERSONS_EDIT = b"the person's edit\r\n\x00\xff no newline"
ODD = b"bad\xff name"  # a legal Linux name that is not UTF-8


def test_refused_then_forced_undo_and_restore(client: goex.Client, session: goex.Session, workspace: Path) -> None:
    odd = workspace / os.fsdecode(ODD)
    # argv is text: the action spells the name's \xff byte in octal.
    script = "echo agent > b.txt; echo agent > \"$(printf 'bad\\377 name')\"; echo n > n.txt"
    action = client.submit(session.id, sh(script))
    assert action.state is A.EXECUTED
    (workspace / "b.txt").write_bytes(PERSONS_EDIT)
    odd.write_bytes(b"mine\n")

    with pytest.raises(goex.FailedPrecondition) as refused:
        client.undo(session.id)
    assert f"cannot undo action {action.id}: changed since it ran" in refused.value.message
    assert "b.txt" in refused.value.message and "bad\\xff name" in refused.value.message
    assert (workspace / "b.txt").read_bytes() == PERSONS_EDIT and (workspace / "n.txt").exists()
    assert client.get_action(action.id).state is A.EXECUTED and client.set_asides(session.id) == []

    before = datetime.now(UTC)
    [undone] = client.undo(session.id, force=True)
    assert undone.id == action.id and undone.state is A.UNDONE
    assert (workspace / "b.txt").read_text() == "bee\n" and not odd.exists() and not (workspace / "n.txt").exists()

    [kept] = client.set_asides(session.id)
    assert kept.action_id == action.id and kept.resource == "fs"
    assert kept.reason == "changed since the action; overwritten by a forced undo"
    assert kept.paths_bytes == (b"b.txt", ODD) and kept.paths == ("b.txt", "bad\\xff name")
    assert kept.fspaths == ("b.txt", os.fsdecode(ODD))
    assert kept.created_at is not None and before - timedelta(seconds=5) < kept.created_at <= datetime.now(UTC)
    assert undone.reversibility is not None and kept.id in undone.reversibility.detail
    assert kept.to_dict()["id"] == kept.id

    with pytest.raises(goex.NotFound, match=r"^set-aside '0123456789ab' not found$"):
        client.restore_set_aside(session.id, "0123456789ab")
    with pytest.raises(goex.InvalidArgument, match="set_aside_id"):
        client.restore_set_aside(session.id, "../x")

    restored = client.restore_set_aside(session.id, kept.id)
    assert restored == goex.SetAsideRestored(verified=True, detail="brought back 2 paths", proto=restored.proto)
    assert (workspace / "b.txt").read_bytes() == PERSONS_EDIT and odd.read_bytes() == b"mine\n"
    assert client.set_asides(session.id) == []
    with pytest.raises(goex.NotFound):
        client.restore_set_aside(session.id, kept.id)  # forgotten once restored


def test_force_where_nothing_changed_sets_nothing_aside(
    client: goex.Client, session: goex.Session, workspace: Path
) -> None:
    action = client.submit(session.id, sh("echo agent > a.txt"))
    [undone] = client.undo(session.id, action.id, force=True)
    assert undone.state is A.UNDONE and not (workspace / "a.txt").exists()
    assert undone.reversibility is not None and "set aside" not in undone.reversibility.detail
    assert client.set_asides(session.id) == []


def test_a_file_saved_while_the_action_ran_is_listed_with_its_action(
    client: goex.Client, session: goex.Session, workspace: Path
) -> None:
    running = client.submit(session.id, sh("sleep 1; echo agent > b.txt"), detach=True)
    for event in client.watch_action(running.id, timeout=60):
        if isinstance(event, goex.StateEvent) and event.state is A.RUNNING:
            (workspace / "b.txt").write_bytes(PERSONS_EDIT)  # the person saves meanwhile
    action = client.get_action(running.id)
    assert action.state is A.EXECUTED and (workspace / "b.txt").read_text() == "agent\n"
    [kept] = client.set_asides(session.id)
    assert kept.action_id == action.id and kept.paths_bytes == (b"b.txt",)
    assert action.changes is not None
    assert [w for w in action.changes.warnings if kept.id in w] == [
        f"set aside your version of b.txt (changed in the workspace while the action ran) as {kept.id}: "
        f"goex set-aside restore {kept.id}"
    ]
    assert client.restore_set_aside(session.id, kept.id).verified
    assert (workspace / "b.txt").read_bytes() == PERSONS_EDIT


def test_async_client(shared_daemon: DaemonProcess, workspace: Path) -> None:
    async def scenario() -> None:
        async with goex.AsyncClient(shared_daemon.socket, timeout=60) as aio:
            s = await aio.create_session(fs=workspace)
            anchor = await aio.submit(s.id, sh("echo anchor > anchor.txt"))
            later = await aio.submit(s.id, sh("echo agent > b.txt"))
            (workspace / "b.txt").write_bytes(PERSONS_EDIT)
            with pytest.raises(goex.FailedPrecondition, match=r"b\.txt"):
                await aio.undo_to(anchor.id)
            assert [a.id for a in await aio.undo_to(anchor.id, force=True)] == [later.id]
            assert (workspace / "b.txt").read_text() == "bee\n"
            [kept] = await aio.set_asides(s.id)
            assert kept.action_id == later.id

            # Changed again since it was set aside: refused, then forced (which sets that version aside in turn).
            (workspace / "b.txt").write_text("third\n")
            with pytest.raises(goex.FailedPrecondition, match=r"changed since it was set aside: b\.txt"):
                await aio.restore_set_aside(s.id, kept.id)
            assert (workspace / "b.txt").read_text() == "third\n"
            forced = await aio.restore_set_aside(s.id, kept.id, force=True)
            assert forced.verified and "set aside your version of b.txt" in forced.detail
            assert (workspace / "b.txt").read_bytes() == PERSONS_EDIT
            [third] = await aio.set_asides(s.id)
            assert third.id != kept.id and third.action_id == "" and third.id in forced.detail
            assert (await aio.restore_set_aside(s.id, third.id)).verified
            assert (workspace / "b.txt").read_text() == "third\n"
            assert await aio.set_asides(s.id) == []
            await aio.close_session(s.id, "commit")

    asyncio.run(scenario())


def test_a_file_in_a_directory_the_undo_removed_comes_back_with_its_directory(
    client: goex.Client, session: goex.Session, workspace: Path
) -> None:
    action = client.submit(session.id, sh("mkdir -p d/e && echo agent > d/e/y && echo agent > d/other"))
    (workspace / "d" / "e" / "y").write_bytes(PERSONS_EDIT)
    client.undo(session.id, action.id, force=True)
    assert not (workspace / "d").exists()  # the action made d: its undo takes it away
    [kept] = client.set_asides(session.id)
    assert kept.paths_bytes == (b"d/e/y",)
    # Before goexd made the directories above a kept path again, this answered INTERNAL (ENOENT on d).
    assert client.restore_set_aside(session.id, kept.id).verified
    assert (workspace / "d" / "e" / "y").read_bytes() == PERSONS_EDIT
    assert not (workspace / "d" / "other").exists()  # the action's file stays undone
    assert client.set_asides(session.id) == []
