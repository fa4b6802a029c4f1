"""Undo takes back exactly its action's effects and never a person's, over random interleavings
through the real daemon (hypothesis).

Each example opens a session on a fresh workspace and interleaves, at random: shell actions
(writes, appends, deletes, chmods, symlinks, empty dirs, renames, .gitignore'd files, names
that are bytes, hard links; git run in a nested repository the workspace starts with, one planted
by an action, raw writes inside a .git below the top, names git refuses and names starting with
the store's escape prefix), a person's edits (its nested .git/config among them; from here, between
actions and *while* one runs), and undos of a random pending action, forced or not. Invariants:
- an action's change set is what it did: the tree before and after it differ exactly there,
  less what the person wrote while it ran (which is never in it);
- an undo either is refused (FAILED_PRECONDITION) with nothing written, when a path the action
  changed was changed since, or it puts every such path back as it was before the action and
  leaves every other path as it was (a directory the action made may stay, holding what was
  added since);
- a forced undo that overwrote a path changed since lists it in a set-aside;
- at the end, undoing everything still pending with force gives back the first tree plus the
  person's surviving edits, and every person edit is on disk or in a set-aside.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.snapshots.layout import ESCAPE
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell
from tests.fs_fingerprint import fingerprint
from tests.odd_names import sh_word

NAMES = ["a", "b", "sub/c", "sub/deep/d", "ignored/e", "x y", "v/.git/config", ".GIT/g", f"{ESCAPE}.git"]
GIT = "git -c user.name=agent -c user.email=agent@example.com"
# A nested repository: "repo" is the person's (made before the first action), "planted" an action's.
GIT_OPS = [
    "mkdir -p planted && git -C planted init -q",
    f"[ -d repo/.git ] && printf x >> repo/f && git -C repo add -A && {GIT} -C repo commit -qm agent",
    f"[ -d planted/.git ] && printf y >> planted/g && git -C planted add -A && {GIT} -C planted commit -qm agent",
    "[ -d repo/.git ] && git -C repo config user.name agent",
    "[ -d planted/.git ] && git -C planted config core.fsmonitor 'touch /tmp/pwned'",
    "[ -d repo/.git ] && git -C repo branch -f side && git -C repo gc -q",
    "git -C repo status --short >/dev/null",  # refreshes (rewrites) the nested index
    "rm -rf repo/.git",
    "rm -rf planted",
]
# Names are bytes: not UTF-8, a newline, a backslash, inside a directory that is not UTF-8.
ODD = [b"bad\xff", b"nl\nx", b"back\\slash", b"d\xfe/f\x80"]
_counter = itertools.count()

ops = st.one_of(
    st.builds(
        lambda n, t: f"mkdir -p \"$(dirname '{n}')\" && printf '%s' '{t}' > '{n}'",
        st.sampled_from(NAMES),
        st.text("abc\n", max_size=20),
    ),
    st.builds(lambda n: f"[ -f '{n}' ] && echo more >> '{n}'", st.sampled_from(NAMES)),
    st.builds(lambda n: f"rm -rf '{n}'", st.sampled_from([*NAMES, "sub", "ignored"])),
    st.builds(
        lambda n, m: f"[ -e '{n}' ] && chmod {m} '{n}'",
        st.sampled_from(NAMES),
        st.sampled_from(["600", "640", "700", "755", "444"]),
    ),
    st.builds(
        lambda n, t: f"ln -sfn '{t}' '{n}.lnk'",
        st.sampled_from(["a", "sub/c"]),
        st.sampled_from(["a", "missing", "../outside"]),
    ),
    st.builds(lambda n: f"mkdir -p 'empty/{n}'", st.sampled_from(["1", "2/3"])),
    st.builds(
        lambda a, b: f"[ -e '{a}' ] && mv '{a}' '{b}'", st.sampled_from(NAMES), st.sampled_from(["moved", "sub/m"])
    ),
    st.builds(
        lambda n, t: f"mkdir -p \"$(dirname {sh_word(n)})\" && printf '{t}' >> {sh_word(n)}",
        st.sampled_from(ODD),
        st.sampled_from(["odd", "more"]),
    ),
    st.builds(lambda n: f"rm -rf {sh_word(n)}", st.sampled_from([*ODD, b"d\xfe"])),
    st.sampled_from(GIT_OPS),
    st.just("[ -d sub ] && mv sub sub2"),
    st.just("[ -d sub ] && chmod 700 sub"),
)
user_paths = st.sampled_from(["user.txt", "a", "sub/user", "bad\udcff", "sub/c", "repo/.git/config", "planted/g"])


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("prop-daemon")
    d = DaemonProcess(root).start()
    yield d
    assert d.stop() == 0
    assert "Traceback" not in d.log(), d.log()


Fp = dict[str, tuple[str, int, str]]
Step = tuple[str, object]

steps_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("act"), st.lists(ops, min_size=1, max_size=4)),
        st.tuples(st.just("act-while-edit"), st.lists(ops, min_size=1, max_size=3)),
        st.tuples(st.just("edit"), user_paths),
        st.tuples(st.just("undo"), st.tuples(st.integers(0, 7), st.booleans())),
    ),
    min_size=2,
    max_size=9,
)


def _changed(before: Fp, after: Fp) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def _under(path: str, top: str) -> bool:
    return path.startswith(top + "/")


def _person_write(ws: Path, rel: str, text: str) -> bool:
    target = ws / rel
    if target.is_symlink() or target.is_dir() or (target.parent.exists() and not target.parent.is_dir()):
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except (NotADirectoryError, FileExistsError):
        return False
    return True


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps_strategy)
def test_each_undo_takes_back_exactly_its_action(
    shared_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory, steps: list[Step]
) -> None:
    d = shared_daemon
    ws = tmp_path_factory.mktemp("prop") / f"ws{next(_counter)}"
    ws.mkdir()
    (ws / ".gitignore").write_text(".git-ignored/\nignored/\n")
    (ws / "a").write_text("seed\n")
    (ws / "repo").mkdir()
    (ws / "repo" / "f").write_text("f\n")
    for args in (["init", "-q"], ["add", "f"], ["commit", "-qm", "person"]):
        subprocess.run([*GIT.split(), "-C", str(ws / "repo"), *args], check=True, capture_output=True)
    session = open_fs(d, ws)
    pending: list[tuple[pb.Action, Fp, Fp]] = []
    edits: dict[str, str] = {}  # the person's latest text per path
    try:
        for n, (kind, arg) in enumerate(steps):
            if kind == "edit":
                assert isinstance(arg, str)
                if _person_write(ws, arg, f"person {n}\n"):
                    edits[arg] = f"person {n}\n"
            elif kind in ("act", "act-while-edit"):
                assert isinstance(arg, list)
                script = "; ".join(arg) + "; true"
                before = fingerprint(ws)
                meanwhile = f"meanwhile{n}.txt"
                if kind == "act-while-edit":
                    action = _run_while(d, session.id, script, partial(_person_write, ws, meanwhile, "meanwhile\n"))
                    edits[meanwhile] = "meanwhile\n"
                else:
                    action = shell(d, session.id, script)
                assert action.state == pb.ACTION_STATE_EXECUTED, action.error
                after = fingerprint(ws)
                own = {os.fsdecode(c.path_bytes).rstrip("/") for c in action.changes.changes}
                assert meanwhile not in own  # the person's file is never the action's
                changed = _changed(before, after) - {meanwhile}
                # Everything that changed on disk is in the change set (a directory may be implied by its files).
                assert {p for p in changed if not any(_under(q, p) for q in own)} <= own | {"."}, (changed, own)
                after.pop(meanwhile, None)  # the person's
                pending.append((action, before, after))
            elif pending:
                assert isinstance(arg, tuple)
                index, force = arg
                action, before, after = pending[index % len(pending)]
                _undo_checked(d, session.id, ws, action, before, after, force)
                pending.remove((action, before, after))
        # Everything still pending, forced, newest first: each still takes back exactly its own.
        for action, before, after in reversed(pending):
            _undo_checked(d, session.id, ws, action, before, after, True)
        kept = d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session.id), timeout=30).set_asides
        set_aside_paths = {os.fsdecode(p) for k in kept for p in k.paths_bytes}
        for rel, text in edits.items():
            # Every action is undone now: each person's latest edit is back on disk, or was set aside.
            on_disk = (ws / rel).is_file() and not (ws / rel).is_symlink() and (ws / rel).read_text() == text
            kept_whole = rel in set_aside_paths or any(_under(rel, top) for top in set_aside_paths)
            assert on_disk or kept_whole, (rel, text, sorted(set_aside_paths))
    finally:
        d.sessions.CloseSession(
            spb.CloseSessionRequest(session_id=session.id, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60
        )
        shutil.rmtree(ws, ignore_errors=True)


def _run_while(d: DaemonProcess, session: str, script: str, meanwhile: Callable[[], object]) -> pb.Action:
    """Run the script as an action that sleeps first, and `meanwhile` while it runs."""
    req = apb.SubmitActionRequest(
        session_id=session, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", "sleep 0.4; " + script]))
    )
    out: list[pb.Action] = []
    t = threading.Thread(target=lambda: out.append(d.actions.SubmitAction(req, timeout=60).action))
    t.start()
    time.sleep(0.15)
    meanwhile()
    t.join()
    return out[0]


def _undo_checked(
    d: DaemonProcess, session: str, ws: Path, action: pb.Action, before: Fp, after: Fp, force: bool
) -> None:
    delta = _changed(before, after)
    current = fingerprint(ws)
    since = {p for p in delta if current.get(p) != after.get(p)}
    req = apb.UndoActionRequest(session_id=session, action_id=action.id, force=force)
    try:
        undone = d.actions.UndoAction(req, timeout=60).undone
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
        assert not force and since, (exc.details(), since)
        assert fingerprint(ws) == current  # refused whole
        return
    assert [u.id for u in undone] == [action.id]
    new = fingerprint(ws)
    for p in new.keys() | current.keys() | delta:
        if p in delta:
            if new.get(p) == before.get(p):
                continue
            # A directory it made (or whose mode it changed) may stay for what was added since.
            kept_dir = new.get(p, ("",))[0] == "dir" and any(_under(q, p) for q in new if q not in delta)
            assert kept_dir or (force and p in since), (p, before.get(p), new.get(p))
        elif new.get(p) != current.get(p):
            # Only a parent directory brought back, or a child of a directory it removed (forced).
            brought_back = new.get(p, ("",))[0] == "dir" and any(_under(q, p) for q in delta)
            removed_with = force and any(_under(p, q) for q in delta) and p not in new
            assert brought_back or removed_with, (p, current.get(p), new.get(p))
    if force and since:
        kept = d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=session), timeout=30).set_asides
        named = {os.fsdecode(b) for k in kept if k.action_id == action.id for b in k.paths_bytes}
        files_since = {p for p in since if current.get(p, ("",))[0] != "dir" and p in current}
        assert files_since <= named | {q for q in named for p in files_since if _under(p, q)}, (files_since, named)
