from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from goexd.domain.errors import FailedPrecondition, InternalError
from goexd.domain.models import (
    TRANSITIONS,
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    Resource,
    ResourceKind,
    Session,
    SessionState,
    UndoStrategy,
)
from goexd.domain.sandbox import Limits
from goexd.engine.journal import Journal


def _session(sid: str, uri: str) -> Session:
    return Session(
        id=sid,
        label="",
        state=SessionState.OPEN,
        resources=(Resource("fs", ResourceKind.FS, uri, UndoStrategy.VERSIONED),),
        limits=Limits(),
        created_at=time.time(),
    )


def _action(aid: str, sid: str) -> Action:
    return Action(
        id=aid,
        session_id=sid,
        seq=0,
        spec=ActionSpec(ActionKind.SHELL, argv=("true",), stdin=b"\x00\xff"),
        state=ActionState.PROPOSED,
        resource="fs",
        created_at=time.time(),
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite3")


def test_wal_mode_and_private_file(journal: Journal) -> None:
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal.path.stat().st_mode & 0o777 == 0o600


def test_a_resource_is_held_by_one_open_session(journal: Journal) -> None:
    journal.insert_session(_session("s1", "/w"))
    with pytest.raises(FailedPrecondition, match="held by open session s1"):
        journal.insert_session(_session("s2", "/w"))
    assert journal.get_session("s2") is None
    journal.close_session("s1")
    journal.insert_session(_session("s3", "/w"))


def test_transitions_are_compare_and_set_and_audited(journal: Journal) -> None:
    journal.insert_session(_session("s1", "/w"))
    a = journal.insert_action(_action("a1", "s1"))
    assert a.seq == 1 and a.spec.stdin == b"\x00\xff"
    journal.transition("a1", ActionState.PROPOSED, ActionState.PREPARING)
    with pytest.raises(FailedPrecondition, match="no longer proposed"):
        journal.transition("a1", ActionState.PROPOSED, ActionState.RUNNING)
    journal.update("a1", note="checkpoint", checkpoint='{"pre": "abc"}')
    got = journal.get_action("a1")
    assert got is not None and got.state is ActionState.PREPARING and got.checkpoint == {"pre": "abc"}
    assert [(f, t) for f, t, _, _ in journal.transitions("a1")] == [
        (None, "proposed"),
        ("proposed", "preparing"),
        ("preparing", "preparing"),
    ]


def test_a_batch_is_one_commit_seen_whole_or_not_at_all(journal: Journal, tmp_path: Path) -> None:
    journal.insert_session(_session("s1", "/w"))
    reader = sqlite3.connect(journal.path)  # another connection sees only what is committed
    before = journal.commits
    with journal.batch():
        journal.insert_action(_action("a1", "s1"), note="approved: ann")
        journal.transition("a1", ActionState.PROPOSED, ActionState.PREPARING)
        journal.transition("a1", ActionState.PREPARING, ActionState.RUNNING, checkpoint='{"k": "v"}')
        assert reader.execute("SELECT count(*) FROM actions").fetchone() == (0,)
    assert journal.commits == before + 1
    assert reader.execute("SELECT state, checkpoint FROM actions").fetchall() == [("running", '{"k": "v"}')]
    assert [(f, t, n) for f, t, _, n in journal.transitions("a1")] == [
        (None, "proposed", "approved: ann"),
        ("proposed", "preparing", ""),
        ("preparing", "running", ""),
    ]

    # A step that fails takes the whole batch back: the action it inserted is not there either.
    with pytest.raises(FailedPrecondition, match="no longer proposed"), journal.batch():
        journal.insert_action(_action("a2", "s1"))
        journal.transition("a2", ActionState.PROPOSED, ActionState.PREPARING)
        journal.transition("a2", ActionState.PROPOSED, ActionState.RUNNING)
    assert journal.get_action("a2") is None and journal.transitions("a2") == []
    assert journal.commits == before + 1
    journal.insert_action(_action("a2", "s1"))  # and the journal takes writes again
    assert journal.commits == before + 2


def test_an_action_inserted_with_its_trail_reads_as_if_moved_step_by_step(journal: Journal) -> None:
    journal.insert_session(_session("s1", "/w"))
    journal.redact = lambda text: text.replace("hunter2", "[secret:pw]")
    trail = [(ActionState.PREPARING, ""), (ActionState.RUNNING, ""), (ActionState.EXECUTED, "ran: hunter2")]
    a = journal.insert_action(_action("a1", "s1"), "approved: ann", trail, checkpoint='{"k": "hunter2"}', error="x")
    assert (a.seq, a.state) == (1, ActionState.EXECUTED)
    got = journal.get_action("a1")
    assert got is not None and got.state is ActionState.EXECUTED
    assert got.checkpoint == {"k": "hunter2"} and got.error == "x"  # the checkpoint is goexd's own: not redacted
    assert [(f, t, n) for f, t, _, n in journal.transitions("a1")] == [
        (None, "proposed", "approved: ann"),
        ("proposed", "preparing", ""),
        ("preparing", "running", ""),
        ("running", "executed", "ran: [secret:pw]"),
    ]
    with pytest.raises(InternalError, match="unknown action columns"):
        journal.insert_action(_action("a2", "s1"), "", trail, state="committed")
    assert journal.get_action("a2") is None


def test_batches_do_not_nest_and_other_writers_wait_for_one(journal: Journal) -> None:
    journal.insert_session(_session("s1", "/w"))
    with pytest.raises(InternalError, match="do not nest"), journal.batch(), journal.batch():
        pass
    inserted = threading.Event()
    with journal.batch():
        journal.insert_action(_action("a1", "s1"))
        other = threading.Thread(target=lambda: (journal.insert_action(_action("a2", "s1")), inserted.set()))
        other.start()
        assert not inserted.wait(0.2)  # it waits for the batch to end
    other.join(5)
    assert inserted.is_set() and [a.seq for a in journal.list_actions("s1")] == [1, 2]


def test_seq_is_dense_under_concurrent_inserts(journal: Journal) -> None:
    journal.insert_session(_session("s1", "/w"))
    threads = [threading.Thread(target=journal.insert_action, args=(_action(f"a{i}", "s1"),)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.seq for a in journal.list_actions("s1")) == list(range(1, 21))


def test_state_machine_has_no_exit_from_final_states() -> None:
    finals = {
        ActionState.COMMITTED,
        ActionState.UNDONE,
        ActionState.FAILED,
        ActionState.BLOCKED,
        ActionState.INTERRUPTED,
    }
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == finals
    # INTERRUPTED: a database discarded the open transaction that held the pending effects.
    assert TRANSITIONS[ActionState.EXECUTED] == {ActionState.COMMITTED, ActionState.UNDONE, ActionState.INTERRUPTED}


def test_survives_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.insert_session(_session("s1", "/w"))
    j.insert_action(_action("a1", "s1"))
    j.close()
    j2 = Journal(tmp_path / "j.sqlite3")
    assert j2.get_action("a1") is not None
    assert j2.held_resources() == [("s1", "/w")]


def test_a_version_1_journal_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.insert_session(_session("s1", "/w"))
    j.insert_action(_action("a1", "s1"))
    j.close()
    # Make it what goexd 0.1 wrote: no egress, sql, http or approval column (nor secret, rules, staging, sandbox,
    # image), schema 1.
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE actions DROP COLUMN http")
    db.execute("ALTER TABLE actions DROP COLUMN approval")
    db.execute("ALTER TABLE actions DROP COLUMN egress")
    db.execute("ALTER TABLE actions DROP COLUMN sql")
    db.execute("ALTER TABLE actions DROP COLUMN plan")
    db.execute("ALTER TABLE resources DROP COLUMN secret")
    db.execute("ALTER TABLE resources DROP COLUMN rules")
    db.execute("ALTER TABLE resources DROP COLUMN staging")
    db.execute("ALTER TABLE resources DROP COLUMN sandbox")
    db.execute("ALTER TABLE resources DROP COLUMN image")
    db.execute("DROP TABLE pair_verdicts")
    db.execute("DROP TABLE pair_judgements")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    j = Journal(path)
    action = j.get_action("a1")
    assert action is not None and action.egress == () and action.sql is None and action.approval == ""
    assert action.plan is None
    j.update("a1", egress='[{"method": "GET"}]', sql="{}", http="{}")  # the columns exist again
    version = j._query("SELECT value FROM meta WHERE key = 'schema_version'")[0][0]
    assert version == "12"
    assert (
        j.read("SELECT count(*) FROM pair_verdicts")[0][0] == j.read("SELECT count(*) FROM pair_judgements")[0][0] == 0
    )
    session = j.get_session("s1")
    assert session is not None and session.resources[0].secret == "" and session.resources[0].rules == ""
    assert session.resources[0].staging == "" and (session.resources[0].sandbox, session.resources[0].image) == ("", "")


def test_a_journal_from_a_newer_goexd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(InternalError, match="newer than this goexd"):
        Journal(path)


def test_text_columns_are_redacted_on_write(journal: Journal) -> None:
    journal.redact = lambda text: text.replace("hunter2-secret", "[secret:pw]")
    journal.insert_session(_session("s1", "/w"))
    action = _action("a1", "s1")
    action = Action(**{**action.__dict__, "spec": ActionSpec(ActionKind.SHELL, argv=("echo", "hunter2-secret"))})
    journal.insert_action(action, note="note hunter2-secret")
    journal.transition(
        "a1", ActionState.PROPOSED, ActionState.PREPARING, note="x hunter2-secret", error="e hunter2-secret"
    )
    raw = journal.path.read_bytes() + journal.path.with_name(journal.path.name + "-wal").read_bytes()
    assert b"hunter2-secret" not in raw
    stored = journal.get_action("a1")
    assert stored is not None and stored.spec.argv == ("echo", "[secret:pw]") and stored.error == "e [secret:pw]"
