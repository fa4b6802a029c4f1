"""Undo exactness over random action sequences, through the real daemon (hypothesis).

Each example opens a session on a fresh workspace, runs a random sequence of shell actions
(writes, appends, deletes, chmods, symlinks, empty dirs, renames, .gitignore'd files), with
random user edits between actions, fingerprints the tree before each action, then undoes
back to a random point and checks the tree equals the fingerprint taken there.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, shell
from tests.fs_fingerprint import describe_diff, fingerprint
from tests.odd_names import sh_word

NAMES = ["a", "b", "sub/c", "sub/deep/d", "ignored/e", "x y"]
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
    st.just("[ -d sub ] && mv sub sub2"),
    st.just("[ -d sub ] && chmod 700 sub"),
)
user_edits = st.one_of(st.none(), st.sampled_from(["user.txt", "a", "sub/user", "bad\udcff"]))


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("prop-daemon")
    d = DaemonProcess(root).start()
    yield d
    assert d.stop() == 0
    assert "Traceback" not in d.log(), d.log()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.tuples(st.lists(ops, min_size=1, max_size=4), user_edits), min_size=1, max_size=5),
    back=st.integers(min_value=0, max_value=4),
)
def test_undo_to_any_point_restores_that_tree(
    shared_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory, steps: list, back: int
) -> None:
    d = shared_daemon
    ws = tmp_path_factory.mktemp("prop") / f"ws{next(_counter)}"
    ws.mkdir()
    (ws / ".gitignore").write_text("ignored/\n")
    (ws / "a").write_text("seed\n")
    session = open_fs(d, ws)
    try:
        prints, actions = [], []
        for script_ops, edit in steps:
            if edit:
                target = ws / edit
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.is_symlink() and not target.is_dir():
                    target.write_text("user edit\n")
            prints.append(fingerprint(ws))
            action = shell(d, session.id, "; ".join(script_ops) + "; true")
            assert action.state == pb.ACTION_STATE_EXECUTED, action.error
            actions.append(action)
        k = min(back, len(actions) - 1)  # undo actions[k:] -> the tree before actions[k]
        if k == 0:
            d.actions.UndoAction(
                apb.UndoActionRequest(session_id=session.id, action_id=actions[0].id, cascade=True), timeout=60
            )
        else:
            d.actions.UndoTo(apb.UndoToRequest(action_id=actions[k - 1].id), timeout=60)
        got = fingerprint(ws)
        assert got == prints[k], describe_diff(prints[k], got)
    finally:
        d.sessions.CloseSession(
            spb.CloseSessionRequest(session_id=session.id, mode=spb.CLOSE_MODE_COMMIT_ALL), timeout=60
        )
        shutil.rmtree(ws, ignore_errors=True)
