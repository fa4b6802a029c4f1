"""GetDiff against a real goexd: the diff of an action's changes and of a person's edits since.

Snapshots are the daemon's real git store; `git apply` (real git) checks that the text part of a
diff is exactly the change, and `git hash-object` / sha256 that the hashes name the real contents.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import goex
from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from goex.v1 import secrets_pb2 as spb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import commit, open_fs, shell, status_of, undo
from tests.fs_fingerprint import describe_diff, fingerprint
from tests.services.json_server import JsonServer

BAD = os.fsdecode(b"bad\xffname")  # a name that is not UTF-8


def get_diff(d: DaemonProcess, action_id: str, **options: int) -> apb.GetDiffResponse:
    req = apb.GetDiffRequest(action_id=action_id, options=apb.DiffOptions(**options))
    return d.actions.GetDiff(req, timeout=60)


def since_last(d: DaemonProcess, session_id: str, resource: str = "") -> apb.GetDiffResponse:
    req = apb.GetDiffRequest(since_last=apb.SinceLastAction(session_id=session_id, resource=resource))
    return d.actions.GetDiff(req, timeout=60)


def by_path(diff: apb.GetDiffResponse) -> dict[bytes, apb.FileDiff]:
    return {f.path_bytes: f for f in diff.files}


def git_apply(patch: bytes, root: Path, *flags: str) -> None:
    done = subprocess.run(["git", "apply", *flags, "-"], input=patch, cwd=root, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()


def hash_object(path: Path) -> str:
    return subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "projects" / "ws"
    root.mkdir(parents=True)
    (root / "a.txt").write_text("one\ntwo\nthree\nfour\n")
    (root / "gone.txt").write_text("bye\n")
    (root / "run.sh").write_text("echo hi\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    os.symlink("a.txt", root / "link")
    (root / "sub").mkdir()
    (root / "sub" / "keep.txt").write_text("untouched\n")
    return root


# An action that makes one change of every kind a reviewer must see.
EVERY_KIND = """
printf 'one\\nTWO\\nthree\\nfour\\nfive\\n' > a.txt
rm gone.txt
printf 'fresh\\n' > new.txt
chmod 755 run.sh
printf '\\000\\001\\002changed' > data.bin
ln -sfn new.txt link
printf 'odd\\n' > "$(printf 'bad\\377name')"
mkdir empty
chmod 700 sub
"""


def test_an_actions_diff_is_exactly_its_change(shared_daemon: DaemonProcess, ws: Path, tmp_path: Path) -> None:
    before = tmp_path / "before"
    shutil.copytree(ws, before, symlinks=True)
    s = open_fs(shared_daemon, ws)
    action = shell(shared_daemon, s.id, EVERY_KIND)
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    diff = get_diff(shared_daemon, action.id)

    assert diff.action_id == action.id and diff.resource == "fs" and diff.resource_kind == pb.RESOURCE_KIND_FS
    assert diff.from_snapshot and diff.to_snapshot and not diff.truncated and not diff.summary
    files = by_path(diff)
    kinds = {p: (f.kind, f.content) for p, f in files.items()}
    assert kinds == {
        b"a.txt": (pb.CHANGE_KIND_MODIFIED, apb.DIFF_CONTENT_TEXT),
        BAD.encode("utf-8", "surrogateescape"): (pb.CHANGE_KIND_ADDED, apb.DIFF_CONTENT_TEXT),
        b"data.bin": (pb.CHANGE_KIND_MODIFIED, apb.DIFF_CONTENT_BINARY),
        b"empty/": (pb.CHANGE_KIND_ADDED, apb.DIFF_CONTENT_NONE),
        b"gone.txt": (pb.CHANGE_KIND_DELETED, apb.DIFF_CONTENT_TEXT),
        b"link": (pb.CHANGE_KIND_MODIFIED, apb.DIFF_CONTENT_TEXT),
        b"new.txt": (pb.CHANGE_KIND_ADDED, apb.DIFF_CONTENT_TEXT),
        b"run.sh": (pb.CHANGE_KIND_MODE_CHANGED, apb.DIFF_CONTENT_NONE),
        b"sub/": (pb.CHANGE_KIND_MODE_CHANGED, apb.DIFF_CONTENT_NONE),
    }
    assert diff.files_changed == len(files) and [f.path_bytes for f in diff.files] == sorted(files)
    assert files[BAD.encode("utf-8", "surrogateescape")].path == "bad\\xffname"  # display form, one line

    a = files[b"a.txt"]
    assert (a.additions, a.deletions) == (2, 1)
    assert b"-two\n+TWO\n" in a.patch and b"+five\n" in a.patch and b" one\n" in a.patch  # with context
    assert a.old.blob_id == hash_object(before / "a.txt") and a.new.blob_id == hash_object(ws / "a.txt")
    assert a.new.sha256 == hashlib.sha256((ws / "a.txt").read_bytes()).hexdigest()
    assert a.new.size == (ws / "a.txt").stat().st_size and a.new.mode == os.lstat(ws / "a.txt").st_mode

    data = files[b"data.bin"]  # binary: sizes and hashes, no bytes of it
    assert b"Binary files a/data.bin and b/data.bin differ" in data.patch and b"changed" not in data.patch
    assert (data.old.size, data.new.size) == (1024, 10)
    assert data.old.sha256 == hashlib.sha256((before / "data.bin").read_bytes()).hexdigest()
    assert data.new.sha256 == hashlib.sha256((ws / "data.bin").read_bytes()).hexdigest()

    link = files[b"link"]  # a symlink's target, as git shows it
    assert b"-a.txt\n\\ No newline at end of file\n+new.txt\n" in link.patch and b" 120000\n" in link.patch
    assert files[b"run.sh"].patch == b"diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n"
    assert files[b"sub/"].patch == b"Directory sub/: mode 0755 -> 0700\n"
    assert files[b"empty/"].new.mode & 0o7777 == os.stat(ws / "empty").st_mode & 0o7777
    assert files[b"gone.txt"].new.ByteSize() == 0 and not files[b"gone.txt"].HasField("new")

    # The text part of the diff is exactly the change: real git applies it to the state before...
    text = b"".join(f.patch for f in diff.files if f.content != apb.DIFF_CONTENT_BINARY)
    git_apply(text, before)
    shutil.copyfile(ws / "data.bin", before / "data.bin")  # (what a binary diff cannot carry)
    os.mkdir(before / "empty")
    os.chmod(before / "sub", 0o700)
    assert fingerprint(before) == fingerprint(ws), describe_diff(fingerprint(ws), fingerprint(before))
    # ... and takes it back in reverse.
    git_apply(text, before, "-R")
    assert (before / "a.txt").read_text() == "one\ntwo\nthree\nfour\n" and (before / "gone.txt").exists()


def test_context_lines_and_stat_only(shared_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(shared_daemon, ws)
    action = shell(shared_daemon, s.id, EVERY_KIND)
    patch = by_path(get_diff(shared_daemon, action.id, context_lines=0))[b"a.txt"].patch
    assert b"\n one\n" not in patch and b"@@ -2 +2 @@" in patch and b"\n-two\n+TWO\n@@ -4,0 +5 @@" in patch
    stat = get_diff(shared_daemon, action.id, stat_only=True)
    assert stat.files_changed == 9 and all(f.patch == b"" for f in stat.files)
    assert (by_path(stat)[b"a.txt"].additions, stat.additions, stat.deletions) == (2, 5, 3)


def test_caps_cut_at_a_line_end_and_say_what_they_cut(shared_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(shared_daemon, ws)
    script = (
        "seq 1 100000 > big.txt; seq 1 20 > small.txt; "
        "head -c 17000000 /dev/zero | tr '\\0' 'x' > huge.txt; "  # over what goexd reads for a diff
        "for i in 1 2 3 4 5; do echo $i > many$i.txt; done"
    )
    action = shell(shared_daemon, s.id, script)
    diff = get_diff(shared_daemon, action.id, max_file_bytes=4096, max_total_bytes=4400, max_files=6)
    assert diff.truncated and diff.files_changed == 8 and len(diff.files) == 6
    files = by_path(diff)
    big = files[b"big.txt"]
    assert big.patch_truncated and len(big.patch) <= 4096 and big.patch.endswith(b"\n")
    assert big.additions == 100000  # counted whole, shown cut
    assert "max_file_bytes 4096" in big.note
    huge = files[b"huge.txt"]
    assert huge.content == apb.DIFF_CONTENT_NOT_READ and huge.new.size == 17000000 and huge.new.sha256 == ""
    assert huge.new.blob_id == hash_object(ws / "huge.txt") and "16 MiB" in huge.note
    assert sum(len(f.patch) for f in diff.files) <= 4400
    notes = "\n".join(diff.notes)
    assert "2 more changed entries not listed (max_files 6)" in notes
    assert "per-file cap (4 KiB) cut big.txt" in notes
    assert "content not compared (larger than the 16 MiB goexd reads of a file for a diff): huge.txt" in notes
    assert "the total cap (4400 bytes of patch text) cut or left out many1.txt" in notes
    assert files[b"many4.txt"].patch == b"" and "total cap" in files[b"many4.txt"].note
    uncapped = get_diff(shared_daemon, action.id)  # the defaults: big.txt's patch is cut at 256 KiB
    assert len(by_path(uncapped)[b"big.txt"].patch) <= 256 * 1024 and by_path(uncapped)[b"small.txt"].patch


def test_secrets_in_changed_files_are_redacted(shared_daemon: DaemonProcess, ws: Path) -> None:
    token = "tok-diff-7e1f3b9c5a2d"
    info = spb.SecretInfo(name="diff-token", kind=spb.SECRET_KIND_GENERIC)
    shared_daemon.secrets.PutSecret(spb.PutSecretRequest(info=info, value=token.encode(), overwrite=True))
    encoded = base64.b64encode(b"user:" + token.encode()).decode()  # as in a Basic header
    (ws / "creds").write_text(f"old {token}\n")
    s = open_fs(shared_daemon, ws)
    script = f"printf 'token={token}\\n' >> a.txt; echo 'auth {encoded}' > creds; echo x > '{token}.txt'"
    action = shell(shared_daemon, s.id, script)
    assert token in (ws / "a.txt").read_text() and (ws / f"{token}.txt").exists()  # the control: it is there
    diff = get_diff(shared_daemon, action.id)
    patch = b"".join(f.patch for f in diff.files)
    assert b"+token=[secret:diff-token]\n" in patch
    assert b"-old [secret:diff-token]\n" in patch and b"+auth " in patch
    assert b"diff --git a/[secret:diff-token].txt b/[secret:diff-token].txt" in patch
    assert "[secret:diff-token].txt" in [f.path for f in diff.files]
    shown = patch + "".join(f.path + f.note for f in diff.files).encode() + "".join(diff.notes).encode()
    assert token.encode() not in shown and encoded[8:-8].encode() not in shown
    # The hashes are of the real contents (what is on disk); only what is shown is redacted.
    assert by_path(diff)[b"creds"].new.blob_id == hash_object(ws / "creds")


def test_the_persons_edits_since_the_last_action(shared_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(shared_daemon, ws)
    assert status_of(lambda: since_last(shared_daemon, s.id))[0] == grpc.StatusCode.FAILED_PRECONDITION
    first = shell(shared_daemon, s.id, "echo first > first.txt")
    latest = shell(shared_daemon, s.id, "echo agent >> a.txt")
    (ws / "a.txt").write_text((ws / "a.txt").read_text() + "person\n")  # after the action, by hand
    (ws / "notes.txt").write_text("mine\n")
    os.chown(ws / "run.sh", 1234, 1234)  # goexd runs as root here: the test may give a file away
    diff = since_last(shared_daemon, s.id)
    assert diff.action_id == latest.id != first.id
    assert diff.from_snapshot == get_diff(shared_daemon, latest.id).to_snapshot
    files = by_path(diff)
    assert set(files) == {b"a.txt", b"notes.txt", b"run.sh"}  # the agent's lines are not the person's
    assert b"+person\n" in files[b"a.txt"].patch and b"+agent" not in files[b"a.txt"].patch
    owner = files[b"run.sh"]
    assert (owner.old.uid, owner.new.uid, owner.new.gid) == (0, 1234, 1234)
    assert b"old owner 0:0\nnew owner 1234:1234\n" in owner.patch
    assert any("since action" in n for n in diff.notes)
    # The diff only looked: the action still undoes, and the person's edits are theirs.
    commit(shared_daemon, s.id)
    assert since_last(shared_daemon, s.id).action_id == latest.id  # committed changes are in place too


def test_refusals_name_the_cause(shared_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(shared_daemon, ws)
    code, msg = status_of(lambda: get_diff(shared_daemon, "act_0000000000000000"))
    assert code == grpc.StatusCode.NOT_FOUND and "act_0000000000000000" in msg
    code, msg = status_of(lambda: shared_daemon.actions.GetDiff(apb.GetDiffRequest(), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("target:")
    action = shell(shared_daemon, s.id, "echo x > x.txt")
    for fld, value in (("max_file_bytes", 1 << 30), ("max_total_bytes", 1 << 40), ("max_files", 10**6)):
        code, msg = status_of(lambda f=fld, v=value: get_diff(shared_daemon, action.id, **{f: v}))  # type: ignore[misc]
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(f"options.{fld}:"), msg
    code, msg = status_of(lambda: get_diff(shared_daemon, action.id, context_lines=10**6))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("options.context_lines:")
    code, msg = status_of(lambda: since_last(shared_daemon, s.id, "nope"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("since_last.resource:")
    failed = shell(shared_daemon, s.id, "echo y > y.txt; exit 3", timeout_s=1)
    timed_out = shell(shared_daemon, s.id, "echo z > z.txt; sleep 5", timeout_s=1)
    assert timed_out.state == pb.ACTION_STATE_FAILED
    code, msg = status_of(lambda: get_diff(shared_daemon, timed_out.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "rolled back" in msg
    assert by_path(get_diff(shared_daemon, failed.id))[b"y.txt"].kind == pb.CHANGE_KIND_ADDED  # exit 3 still ran


def test_an_undone_action_and_a_closed_sessions_action_keep_their_diff(shared_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(shared_daemon, ws)
    kept = shell(shared_daemon, s.id, "echo kept > kept.txt")
    undone = shell(shared_daemon, s.id, "echo undone > undone.txt")
    shared_daemon.actions.UndoAction(apb.UndoActionRequest(session_id=s.id, action_id=undone.id), timeout=60)
    assert not (ws / "undone.txt").exists()
    diff = get_diff(shared_daemon, undone.id)
    assert [f.path for f in diff.files] == ["undone.txt"] and any("was undone" in n for n in diff.notes)
    close = sepb.CloseSessionRequest(session_id=s.id, mode=sepb.CLOSE_MODE_COMMIT_ALL)
    shared_daemon.sessions.CloseSession(close, timeout=60)
    assert [f.path for f in get_diff(shared_daemon, kept.id).files] == ["kept.txt"]
    code, _ = status_of(lambda: since_last(shared_daemon, s.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # the workspace is no longer the session's


def test_sql_actions_give_what_goexd_recorded(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    found = {}
    for strategy in (pb.UNDO_STRATEGY_TRANSACTION, pb.UNDO_STRATEGY_INVERSE, pb.UNDO_STRATEGY_CLONE):
        db = tmp_path / f"app{strategy}.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
            conn.executemany("INSERT INTO t (n) VALUES (?)", [(1,), (2,), (3,)])
        resource = pb.ResourceSpec(strategy=strategy, db=pb.DbResourceSpec(url=f"sqlite://{db}"))
        s = shared_daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[resource]), timeout=60).session
        req = apb.SubmitActionRequest(
            session_id=s.id, spec=pb.ActionSpec(sql=pb.SqlAction(sql="UPDATE t SET n = n + 1 WHERE n > 1"))
        )
        if strategy == pb.UNDO_STRATEGY_INVERSE:
            req.inverse.CopyFrom(pb.ActionSpec(sql=pb.SqlAction(sql="UPDATE t SET n = n - 1 WHERE n > 2")))
        action = shared_daemon.actions.SubmitAction(req, timeout=60).action
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        diff = get_diff(shared_daemon, action.id)
        assert diff.resource_kind == pb.RESOURCE_KIND_SQLITE and not diff.files
        assert "2 row(s) affected" in diff.summary and "Statements: UPDATE t SET n = n + 1 WHERE n > 1" in diff.summary
        found[strategy] = diff.summary
    transaction, inverse, clone = found.values()
    assert "(sqlite, transaction strategy): 2 row(s) affected.\nWhich tables and rows it changed was not" in transaction
    # Where the strategy measured the change (fingerprints before and after), the diff says it per table.
    assert "(sqlite, inverse strategy): 2 row(s) affected.\nTables changed: t: 3 → 3 rows" in inverse
    assert "Inverse: UPDATE t SET n = n - 1 WHERE n > 2" in inverse
    assert "(sqlite, clone strategy): 2 row(s) affected.\nTables changed: t: 3 → 3 rows" in clone


@pytest.fixture
def gc_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    (tmp_path / "gcd").mkdir()
    d = DaemonProcess(tmp_path / "gcd", config_toml="[gc]\nretention_hours = 0\n").start()
    yield d
    assert d.stop() == 0 and "Traceback" not in d.log()


def test_a_garbage_collected_actions_diff_is_a_failed_precondition(gc_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(gc_daemon, ws)
    action = shell(gc_daemon, s.id, "echo x > x.txt")
    assert by_path(get_diff(gc_daemon, action.id))[b"x.txt"]
    commit(gc_daemon, s.id)
    assert gc_daemon.admin.RunGc(adpb.RunGcRequest(), timeout=60).snapshots_removed >= 1
    code, msg = status_of(lambda: get_diff(gc_daemon, action.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "garbage-collected" in msg


def test_an_http_call_has_no_diff_but_its_record(shared_daemon: DaemonProcess, json_server: JsonServer) -> None:
    spec = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=json_server.base_url))
    s = shared_daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec]), timeout=60).session
    call = pb.ActionSpec(http=pb.HttpAction(method="POST", path="/items", json='{"name": "lamp"}'))
    req = apb.SubmitActionRequest(session_id=s.id, spec=call)
    action = shared_daemon.actions.SubmitAction(req, timeout=60).action
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    diff = get_diff(shared_daemon, action.id)
    assert diff.resource_kind == pb.RESOURCE_KIND_HTTP and not diff.files and not diff.from_snapshot
    assert diff.summary.startswith("No diff: an http call changes a remote service")
    assert "Request: POST /items" in diff.summary and "Answer: 201" in diff.summary
    assert "Inverse: DELETE /items/1" in diff.summary


def test_the_python_clients(shared_daemon: DaemonProcess, ws: Path) -> None:
    s = open_fs(shared_daemon, ws)
    action = shell(shared_daemon, s.id, "echo more >> a.txt; head -c 100 /dev/zero > z.bin")
    with goex.Client(shared_daemon.socket, timeout=60) as client:
        diff = client.diff(action.id, context_lines=0)
    assert isinstance(diff, goex.Diff) and diff.action_id == action.id and diff.resource_kind is goex.ResourceKind.FS
    text, binary = diff.files
    assert (text.path, text.kind, text.content, text.additions) == ("a.txt", goex.ChangeKind.MODIFIED, "text", 1)
    assert diff.patch.startswith(b"diff --git a/a.txt b/a.txt\n") and b"\n+more\n" in diff.patch
    assert binary.content is goex.DiffContent.BINARY and binary.old is None and binary.new is not None
    assert binary.new.size == 100 and binary.new.sha256 == hashlib.sha256(bytes(100)).hexdigest()
    (ws / "a.txt").write_text("by hand\n")

    async def since() -> goex.Diff:
        async with goex.AsyncClient(shared_daemon.socket, timeout=60) as aclient:
            return await aclient.diff_since_last(s.id, stat_only=True)

    edits = asyncio.run(since())
    assert edits.action_id == action.id and [f.path for f in edits.files] == ["a.txt"] and edits.patch == b""


def test_an_empty_file_is_not_said_to_differ_in_secrets(shared_daemon: DaemonProcess, ws: Path) -> None:
    """Issue 14 F12a: an empty file added or removed has no hunk, and nothing was redacted."""
    s = open_fs(shared_daemon, ws)
    added = shell(shared_daemon, s.id, "touch empty.py; echo a > new.txt")
    removed = shell(shared_daemon, s.id, "rm empty.py")
    for action, kind in ((added, pb.CHANGE_KIND_ADDED), (removed, pb.CHANGE_KIND_DELETED)):
        diff = get_diff(shared_daemon, action.id)
        empty = by_path(diff)[b"empty.py"]
        assert empty.kind == kind and empty.note == "" and b"@@" not in empty.patch, empty
        assert not any("secret" in n for n in [*diff.notes, *(f.note for f in diff.files)])


def test_since_last_leaves_out_goexds_own_undo_of_an_older_action(shared_daemon: DaemonProcess, ws: Path) -> None:
    """Issue 14 F12b: what `since_last` compares with is what the journal says the workspace holds: the
    latest action's result with the undos done since replayed on it, so only the person's edits show."""
    s = open_fs(shared_daemon, ws)
    older = shell(shared_daemon, s.id, "echo a > a1.txt; mkdir -p n/x; echo y > n/x/y; echo older >> a.txt")
    latest = shell(shared_daemon, s.id, "echo b > b.txt; echo z > n/z")
    (ws / "mine.txt").write_text("before the undo\n")  # the person's, before goexd's undo
    undo(shared_daemon, s.id, older.id)  # alone: n/ stays (n/z is the later action's)
    assert not (ws / "a1.txt").exists() and (ws / "n" / "z").exists() and not (ws / "n" / "x").exists()
    diff = since_last(shared_daemon, s.id)
    assert diff.action_id == latest.id and [f.path for f in diff.files] == ["mine.txt"], diff.files
    assert any(older.id in n and "not shown" in n for n in diff.notes)
    # The person's edits after the undo show, and only they.
    (ws / "b.txt").write_text("b\nperson\n")
    (ws / "a.txt").write_text((ws / "a.txt").read_text() + "person\n")
    files = by_path(since_last(shared_daemon, s.id))
    assert set(files) == {b"mine.txt", b"b.txt", b"a.txt"}
    assert b"+person\n" in files[b"a.txt"].patch and b"older" not in files[b"a.txt"].patch
