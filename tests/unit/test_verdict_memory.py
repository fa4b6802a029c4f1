"""engine/verdict_memory.py on a real journal: which pairs are one pair (normalising merges only what runs
alike), what is kept and reused, and how a person's judgement changes a verdict."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import (
    ActionKind,
    ActionSpec,
    HttpRequest,
    Resource,
    ResourceKind,
    Reversibility,
    ReversibilityClass,
    UndoStrategy,
    Verdict,
)
from goexd.domain.sandbox import Limits
from goexd.engine.journal import Journal
from goexd.engine.journal_repair import repair_journal
from goexd.engine.verdict_memory import Fingerprint, Judgement, VerdictMemory, pair_key, remembered
from goexd.resources.sqlite.inverse import SqliteInverseResource

LITE = Resource("db", ResourceKind.SQLITE, "/srv/app.db", UndoStrategy.INVERSE)
PG = Resource("db", ResourceKind.POSTGRES, "postgresql://app@127.0.0.1:5432/app", UndoStrategy.INVERSE)
API = Resource("api", ResourceKind.HTTP, "http://127.0.0.1:3000", UndoStrategy.INVERSE)
WS = Resource("fs", ResourceKind.FS, "/home/ann/ws", UndoStrategy.INVERSE)


def sql(text: str, *params: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=text, params=params)


def sh(text: str) -> ActionSpec:
    return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", text))


def http(method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> ActionSpec:
    return ActionSpec(ActionKind.HTTP, http=HttpRequest(method, path, headers=headers, body=body, json=bool(body)))


UNDO = sql("UPDATE t SET n = n - 1")


@pytest.mark.parametrize(
    ("resource", "a", "b"),
    [
        (LITE, sql("UPDATE t SET n = n + 1"), sql("update t\n   set n = n + 1;  -- bump")),
        (PG, sql("UPDATE t SET n = n + 1"), sql("UPDATE   t SET n = n+1")),
        (API, http("POST", "/items", b'{"a": 1, "b": 2}'), http("POST", "/items", b'{"b":2,"a":1}')),
        (API, http("GET", "/x", headers=(("Accept", "a"),)), http("GET", "/x", headers=(("accept", "a"),))),
    ],
)
def test_what_runs_alike_is_one_pair(resource: Resource, a: ActionSpec, b: ActionSpec) -> None:
    inverse = UNDO if a.kind is ActionKind.SQL else http("DELETE", "/items/1")
    assert pair_key(resource, a, inverse) == pair_key(resource, b, inverse)


@pytest.mark.parametrize(
    ("resource", "a", "b"),
    [
        (LITE, sql("UPDATE t SET s = 'a  b'"), sql("UPDATE t SET s = 'a b'")),  # a string is not layout
        (LITE, sql("UPDATE t SET n = ?", "1"), sql("UPDATE t SET n = ?", "2")),  # parameters count
        (PG, sql('UPDATE "T" SET n = 1'), sql("UPDATE t SET n = 1")),  # quoted identifiers keep their case
        (LITE, sql("UPDATE t SET n = 1"), sql("UPDATE u SET n = 1")),
        (WS, sh("echo a  > f"), sh("echo a > f")),  # a shell line is its argv, exactly
        (API, http("POST", "/items", b'{"a": 1}'), http("POST", "/items", b'{"a": 1.0}')),
        (API, http("DELETE", "/items/1"), http("DELETE", "/items/2")),
    ],
)
def test_what_may_run_differently_is_another_pair(resource: Resource, a: ActionSpec, b: ActionSpec) -> None:
    inverse = UNDO if a.kind is ActionKind.SQL else sh("true")
    assert pair_key(resource, a, inverse) != pair_key(resource, b, inverse)


def test_the_resource_and_the_inverse_are_part_of_the_pair() -> None:
    other = Resource("db", ResourceKind.SQLITE, "/srv/other.db", UndoStrategy.INVERSE)
    assert pair_key(LITE, sql("DELETE FROM t"), UNDO) != pair_key(other, sql("DELETE FROM t"), UNDO)
    assert pair_key(LITE, sql("DELETE FROM t"), UNDO) != pair_key(LITE, sql("DELETE FROM t"), sql("SELECT 1"))


@pytest.fixture
def memory(tmp_path: Path) -> VerdictMemory:
    return VerdictMemory(Journal(tmp_path / "journal.sqlite3", sync="normal"))


def test_unknown_is_never_kept_and_passed_is_kept_with_its_fingerprint(memory: VerdictMemory) -> None:
    key = pair_key(LITE, sql("DELETE FROM t"), UNDO)
    fp = Fingerprint("abc", "the whole database's fingerprint")
    memory.remember(key, Reversibility(ReversibilityClass.REVERSIBLE, Verdict.UNKNOWN, "timed out"), fp, "x")
    assert memory.history(key).verdicts == ()
    memory.remember(
        key, Reversibility(ReversibilityClass.REVERSIBLE, Verdict.PASSED, "ok", 5.0), fp, "TestReversibility"
    )
    [kept] = memory.history(key).verdicts
    assert (kept.verdict, kept.detail, kept.tested_at, kept.fingerprint) == (Verdict.PASSED, "ok", 5.0, "abc")


def test_judgements_fail_or_annotate_never_pass(memory: VerdictMemory) -> None:
    key = pair_key(API, http("POST", "/items", b'{"a": 1}'), http("DELETE", "/items/1"))
    calls: list[int] = []

    def untested() -> Reversibility | None:
        calls.append(1)
        return None  # an http resource without a staging copy does not test

    spec, inverse = http("POST", "/items", b'{"a": 1}'), http("DELETE", "/items/1")
    assert remembered(memory, API, object(), spec, inverse, "t", untested) is None
    memory.judge(key, Judgement.WRONG, "ann", "wrong id", "act_1")
    got = remembered(memory, API, object(), spec, inverse, "t", untested)
    assert got is not None and got.verdict is Verdict.FAILED and "marked this pair wrong (ann" in got.detail

    failing = Reversibility(ReversibilityClass.REVERSIBLE, Verdict.FAILED, "differs")
    memory.judge(key, Judgement.RIGHT, "bob", "", "act_2")
    got = remembered(memory, API, object(), spec, inverse, "t", lambda: failing)
    assert got is not None and got.verdict is Verdict.FAILED and "marked this pair right (bob" in got.detail
    assert len(calls) == 2  # never reused: no fingerprint for an http resource
    assert [j.judgement for j in memory.history(key).judgements] == [Judgement.WRONG, Judgement.RIGHT]


def test_a_judgement_too_long_is_refused_and_not_kept(memory: VerdictMemory) -> None:
    key = pair_key(LITE, sql("DELETE FROM t"), UNDO)
    with pytest.raises(InvalidArgument, match="note"):
        memory.judge(key, Judgement.WRONG, "ann", "x" * 2001, "act_1")
    with pytest.raises(InvalidArgument, match="who"):
        memory.judge(key, Judgement.WRONG, "a" * 201, "", "act_1")
    assert memory.history(key).judgements == ()


def test_judgements_and_details_are_redacted(memory: VerdictMemory) -> None:
    memory.journal.redact = lambda text: text.replace("hunter2", "[secret:pw]")
    key = pair_key(LITE, sql("DELETE FROM t"), UNDO)
    memory.judge(key, Judgement.WRONG, "ann", "the password hunter2 leaks", "act_1")
    fp = Fingerprint("abc", "k")
    memory.remember(key, Reversibility(ReversibilityClass.REVERSIBLE, Verdict.FAILED, "row hunter2", 1.0), fp, "t")
    history = memory.history(key)
    assert (
        history.judgements[0].note == "the password [secret:pw] leaks"
        and history.verdicts[0].detail == "row [secret:pw]"
    )


def test_a_repaired_journal_keeps_the_pairs(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    memory = VerdictMemory(Journal(path, sync="normal"))
    key = pair_key(LITE, sql("DELETE FROM t"), UNDO)
    memory.judge(key, Judgement.WRONG, "ann", "keeps the log", "act_1")
    passed = Reversibility(ReversibilityClass.REVERSIBLE, Verdict.PASSED, "ok", 1.0)
    memory.remember(key, passed, Fingerprint("f", "k"), "t")
    memory.journal.close()
    with sqlite3.connect(path) as db:  # damage: the actions table's root page zeroed
        size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'actions'").fetchone()[0]
    with path.open("r+b") as f:
        f.seek(size * (root - 1))
        f.write(b"\0" * size)
    report = repair_journal(path)
    assert report is not None and report.rows["pair_judgements"] == report.rows["pair_verdicts"] == 1
    history = VerdictMemory(Journal(path, sync="normal")).history(key)
    assert [(j.who, j.note) for j in history.judgements] == [("ann", "keeps the log")]
    assert [v.detail for v in history.verdicts] == ["ok"]


def test_a_verdict_is_reused_only_on_the_state_it_was_tested_on(memory: VerdictMemory, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO t VALUES (1, 1)")
    resource = Resource("db", ResourceKind.SQLITE, str(path), UndoStrategy.INVERSE)
    manager = SqliteInverseResource(resource)
    spec, inverse = sql("UPDATE t SET n = n + 1"), sql("UPDATE t SET n = n - 1")
    limits = Limits(timeout_s=10)

    def raced() -> Reversibility:
        got = manager.test(spec, inverse, limits, None)
        with sqlite3.connect(path) as other:  # another writer, while the test ran
            other.execute("INSERT INTO t VALUES (2, 2)")
        return got

    try:
        first = remembered(memory, resource, manager, spec, inverse, "t", raced)
        assert first is not None and first.verdict is Verdict.PASSED
        [kept] = memory.history(pair_key(resource, spec, inverse)).verdicts
        assert kept.fingerprint == ""  # kept as history, never reused

        def now() -> Reversibility:
            return manager.test(spec, inverse, limits, None)

        again = remembered(memory, resource, manager, spec, inverse, "t", now)
        assert again is not None and "reused" not in again.detail
        third = remembered(memory, resource, manager, spec, inverse, "t", now)
        second = memory.history(pair_key(resource, spec, inverse)).verdicts[-1]
        assert third is not None and third.detail.startswith("reused: passed") and third.tested_at == second.tested_at
    finally:
        manager.close()
