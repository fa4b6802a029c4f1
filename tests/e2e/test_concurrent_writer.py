"""A person writing in the workspace while goexd applies an action or undoes one loses nothing (issue 14,
F1/F2/F4): every last write of theirs is on disk or in a set-aside, byte-exact; the action's state agrees
with the workspace; nothing answers INTERNAL. Real goexd (root and unprivileged), bwrap, overlayfs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pygit2
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, status_of
from tests.e2e.test_undo_three_way import person_writes, set_asides, undo
from tests.security.conftest import MODES, make_workspace, sec_session, start_daemon


@pytest.fixture(scope="module", params=MODES)
def d(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    with start_daemon(request.param) as daemon:
        yield daemon


@pytest.fixture
def ws(d: DaemonProcess) -> Iterator[Path]:
    with make_workspace(d.uid, d.gid) as w:
        yield w


def submit_while(d: DaemonProcess, session: str, script: str, meanwhile: Callable[[], None]) -> pb.Action:
    """Run `script` as an action; `meanwhile` runs here (as the person) while it does."""
    req = apb.SubmitActionRequest(
        session_id=session, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", script]))
    )
    result: list[pb.Action] = []
    runner = threading.Thread(target=lambda: result.append(d.actions.SubmitAction(req, timeout=120).action))
    runner.start()
    meanwhile()
    runner.join()
    return result[0]


@pytest.mark.parametrize(
    "script",
    ["rm -rf d; sleep 2", "mv d e; sleep 2", "rm -rf d; mkdir d; echo agent > d/y; sleep 2"],
)
def test_files_a_person_writes_in_a_directory_the_action_removes_are_set_aside(
    d: DaemonProcess, ws: Path, script: str
) -> None:
    person_writes(d, ws / "d" / "x", "x\n")
    person_writes(d, ws / "d" / "y", "y\n")
    s = sec_session(d, ws)

    def person() -> None:
        time.sleep(1.0)
        person_writes(d, ws / "d" / "x", "PERSON-x\n")
        person_writes(d, ws / "d" / "new", "PERSON-new\n")

    action = submit_while(d, s, script, person)
    assert action.state == pb.ACTION_STATE_EXECUTED, action
    kept = set_asides(d, s)
    assert len(kept) == 1 and sorted(kept[0].paths) == ["d/new", "d/x"], kept
    assert any("set aside" in w and "d/new" in w for w in action.changes.warnings)
    assert not (ws / "d" / "new").exists()  # the action's rm removed it: set aside, and it says so
    done = d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id), timeout=60)
    assert done.verified, done
    assert (ws / "d" / "x").read_text() == "PERSON-x\n" and (ws / "d" / "new").read_text() == "PERSON-new\n"


def test_a_file_the_person_makes_a_directory_while_the_action_modifies_it_is_set_aside(
    d: DaemonProcess, ws: Path
) -> None:
    person_writes(d, ws / "f", "v1\n")
    s = sec_session(d, ws)

    def person() -> None:
        time.sleep(1.0)
        (ws / "f").unlink()
        person_writes(d, ws / "f" / "g", "PERSON-g\n")

    action = submit_while(d, s, "echo agent >> f; sleep 2", person)
    assert action.state == pb.ACTION_STATE_EXECUTED, action
    kept = set_asides(d, s)
    assert len(kept) == 1 and "f/g" in kept[0].paths, kept
    assert (ws / "f").read_text() == "v1\nagent\n"
    done = d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id), timeout=60)
    assert done.verified, done
    assert (ws / "f" / "g").read_text() == "PERSON-g\n"


N_FILES = 300


class Person:
    """Writes the workspace's files in a loop from a thread (half in place, half editor-style: a temporary
    renamed over), remembering each file's last write."""

    def __init__(self, d: DaemonProcess, ws: Path) -> None:
        self.d, self.ws = d, ws
        self.last: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Person:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        rnd = random.Random(14)
        k = 0
        while not self._stop.is_set():
            k += 1
            name = f"f{rnd.randrange(N_FILES)}"
            data = f"PERSON {name} {k}\n".encode()
            path = self.ws / name
            if k % 2:
                with open(path, "wb") as f:
                    f.write(data)
            else:
                tmp = self.ws / f".edit-{name}"
                tmp.write_bytes(data)
                os.chown(tmp, self.d.uid, self.d.gid)
                os.rename(tmp, path)
            self.last[name] = data
            time.sleep(rnd.uniform(0, 0.002))


def kept_versions(d: DaemonProcess, ws: Path) -> dict[str, set[bytes]]:
    """Every version of each path the workspace's set-asides keep (read from its store, as a person
    restoring them would get), and what goexd kept beside a path (`name.goex-kept-*`)."""
    found: dict[str, set[bytes]] = {}
    store = d.state_dir / "fs" / f"{hashlib.sha256(str(ws).encode()).hexdigest()[:16]}.git"
    repo = pygit2.Repository(str(store))
    for ref in repo.references:
        if not ref.startswith("refs/goexd/set-aside/"):
            continue
        commit = repo[repo.references[ref].target]
        assert isinstance(commit, pygit2.Commit)
        work = repo[commit.tree["source"].id]
        assert isinstance(work, pygit2.Tree)
        for entry in repo[work["w"].id]:  # type: ignore[attr-defined]
            if entry.type_str == "blob":
                found.setdefault(entry.name, set()).add(repo[entry.id].data)
    for p in ws.iterdir():
        if ".goex-kept-" in p.name:
            found.setdefault(p.name.split(".goex-kept-")[0], set()).add(p.read_bytes())
    return found


def assert_nothing_of_the_person_lost(d: DaemonProcess, ws: Path, last: dict[str, bytes]) -> None:
    kept = kept_versions(d, ws)
    lost = {
        name: data
        for name, data in last.items()
        if (ws / name).read_bytes() != data and data not in kept.get(name, set())
    }
    seen = {n: ((ws / n).read_bytes(), sorted(kept.get(n, set()))) for n in sorted(lost)[:5]}
    assert not lost, (
        f"{len(lost)} of {len(last)} last writes neither on disk nor set aside: {lost} (on disk, kept: {seen})"
    )
    assert not [p.name for p in ws.iterdir() if p.name.startswith(".goex-write-")]


def test_a_person_writing_all_through_a_large_apply_loses_nothing(d: DaemonProcess, ws: Path) -> None:
    for i in range(N_FILES):
        person_writes(d, ws / f"f{i}", f"orig{i}\n")
    s = sec_session(d, ws)
    for _ in range(3):
        script = f"sleep 0.2; for i in $(seq 0 {N_FILES - 1}); do echo ACTION >> f$i; done"
        with Person(d, ws) as person:
            action = submit_while(d, s, script, lambda: None)
            time.sleep(0.05)
        assert action.state == pb.ACTION_STATE_EXECUTED, action  # never INTERNAL, never rolled back
        assert "internal" not in action.error.lower()
        assert_nothing_of_the_person_lost(d, ws, person.last)
        # EXECUTED agrees with the workspace: a file the person did not write holds the action's line.
        untouched = [f"f{i}" for i in range(N_FILES) if f"f{i}" not in person.last]
        assert all((ws / n).read_bytes().endswith(b"ACTION\n") for n in untouched)
        commit(d, s)


def test_a_person_writing_all_through_a_forced_undo_loses_nothing(d: DaemonProcess, ws: Path) -> None:
    for i in range(N_FILES):
        person_writes(d, ws / f"f{i}", f"orig{i}\n")
    s = sec_session(d, ws)
    for _ in range(3):
        before = {f"f{i}": (ws / f"f{i}").read_bytes() for i in range(N_FILES)}
        action = submit_while(d, s, f"for i in $(seq 0 {N_FILES - 1}); do echo ACTION >> f$i; done", lambda: None)
        assert action.state == pb.ACTION_STATE_EXECUTED
        with Person(d, ws) as person:
            time.sleep(0.05)
            undone = undo(d, s, force=True)  # an INTERNAL answer raises here
        assert [u.state for u in undone] == [pb.ACTION_STATE_UNDONE], undone
        assert get(d, action.id).state == pb.ACTION_STATE_UNDONE
        assert_nothing_of_the_person_lost(d, ws, person.last)
        # UNDONE agrees with the workspace: a file the person did not write is back as before the action.
        untouched = [n for n in before if n not in person.last]
        assert all((ws / n).read_bytes() == before[n] for n in untouched)


def commit(d: DaemonProcess, session: str) -> None:
    d.actions.CommitActions(apb.CommitActionsRequest(session_id=session), timeout=60)


def test_commit_is_refused_while_an_undo_stopped_part_way(d: DaemonProcess, ws: Path) -> None:
    """An undo that failed after its intent was journaled (here: a directory made immutable, which even root
    may not write) leaves the action half undone: commit must refuse it until an undo finishes (F3)."""
    person_writes(d, ws / "d" / "f", "v1\n")
    s = sec_session(d, ws)
    action = submit_while(d, s, "echo agent > d/f", lambda: None)
    assert action.state == pb.ACTION_STATE_EXECUTED
    subprocess.run(["chattr", "+i", str(ws / "d")], check=True)
    try:
        code, msg = status_of(lambda: undo(d, s))  # a clear error, not INTERNAL
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "part way" in msg, msg
        code, msg = status_of(lambda: commit(d, s))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and action.id in msg and "part way" in msg, msg
        assert get(d, action.id).state == pb.ACTION_STATE_EXECUTED
    finally:
        subprocess.run(["chattr", "-i", str(ws / "d")], check=True)
    undone = undo(d, s)
    assert [u.state for u in undone] == [pb.ACTION_STATE_UNDONE]
    assert (ws / "d" / "f").read_text() == "v1\n"


def test_an_edit_through_a_hard_link_outside_the_workspace_is_seen(d: DaemonProcess, ws: Path) -> None:
    """F6: inotify on the workspace does not see a write through a name outside it; every capture re-stats
    the files with more than one name, so the snapshot before the next action holds the person's version and
    its undo gives it back."""
    person_writes(d, ws / "f", "v1\n")
    outside = ws.parent / "outside-link"
    os.link(ws / "f", outside)
    try:
        s = sec_session(d, ws)
        assert submit_while(d, s, "echo x > unrelated", lambda: None).state == pb.ACTION_STATE_EXECUTED
        outside.write_text("v2-person\n")  # the same inode, through its other name
        action = submit_while(d, s, "echo A >> f", lambda: None)
        assert action.state == pb.ACTION_STATE_EXECUTED
        assert (ws / "f").read_text() == "v2-person\nA\n"
        undone = undo(d, s, action.id)
        assert [u.state for u in undone] == [pb.ACTION_STATE_UNDONE], undone
        assert (ws / "f").read_text() == "v2-person\n"  # the state before the action, not v1
    finally:
        outside.unlink(missing_ok=True)


def test_no_file_is_ever_missing_while_a_large_apply_writes_it(d: DaemonProcess, ws: Path) -> None:
    """F4: each changed file is replaced by one rename, never removed first; a reader polling every file
    through the apply (and the undo) never finds one absent."""
    n = 1500
    for i in range(n):
        person_writes(d, ws / f"f{i}", f"orig{i}\n")
    s = sec_session(d, ws)
    missing: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for i in range(n):
                if not os.path.lexists(ws / f"f{i}"):
                    missing.add(f"f{i}")

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        action = submit_while(d, s, f"for i in $(seq 0 {n - 1}); do echo A >> f$i; done", lambda: None)
        assert action.state == pb.ACTION_STATE_EXECUTED
        assert [u.state for u in undo(d, s)] == [pb.ACTION_STATE_UNDONE]
    finally:
        stop.set()
        t.join()
    assert not missing, f"{len(missing)} files were absent for a moment, e.g. {sorted(missing)[:5]}"
    assert (ws / "f7").read_text() == "orig7\n"


def test_files_the_person_turns_into_directories_during_the_apply_are_kept(d: DaemonProcess, ws: Path) -> None:
    """F2 (type race): while an action that modifies every file is applied, the person turns files into
    directories holding a file. No INTERNAL ('Is a directory'), and each file the person made is on disk."""
    n = 300
    for i in range(n):
        person_writes(d, ws / f"f{i}", f"orig{i}\n")
    s = sec_session(d, ws)
    made: dict[str, bytes] = {}
    stop = threading.Event()

    def person() -> None:
        order = list(range(n))
        random.Random(2).shuffle(order)
        while not stop.is_set() and (ws / "f0").read_bytes() == b"orig0\n":  # until the apply begins
            time.sleep(0.0005)
        for i in order:
            if stop.is_set():
                break
            p = ws / f"f{i}"
            with contextlib.suppress(OSError):
                p.unlink()
                person_writes(d, p / "g", f"PERSON-DIR {i}\n")
                made[f"f{i}/g"] = f"PERSON-DIR {i}\n".encode()

    t = threading.Thread(target=person, daemon=True)
    t.start()
    try:
        action = submit_while(
            d, s, f"echo ACTION >> f0; sleep 0.5; for i in $(seq 1 {n - 1}); do echo A >> f$i; done", lambda: None
        )
    finally:
        stop.set()
        t.join()
    assert action.state == pb.ACTION_STATE_EXECUTED and "internal" not in action.error.lower(), action
    lost = [p for p, data in made.items() if not ((ws / p).is_file() and (ws / p).read_bytes() == data)]
    assert not lost, f"{len(lost)} of {len(made)} files the person made are gone: {lost[:5]}"
