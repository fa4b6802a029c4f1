"""Outputs follow retention (issue 19) through a real goexd: a resolved action's large output is trimmed by gc,
the summary and the sha256 of what was dropped stay, and gc gives the journal's space back and says how much."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import admin_pb2 as adpb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import get, open_fs, shell
from tests.e2e.test_cli_sql import goex

OUTPUT = 3_000_000  # bytes the action prints (a gRPC answer holds 4 MiB at most)
KEEP = 1000
# Trim at once (0 h), keep 1000 bytes a stream; let an action print 16 MB.
RETENTION = f'[gc]\noutput_retention_hours = 0\noutput_keep_bytes = {KEEP}\n[sandbox]\nmax_output_bytes = "16M"\n'
PRINT = f"head -c {OUTPUT} /dev/zero | tr '\\0' x; echo warn >&2"


def journal_bytes(d: DaemonProcess) -> int:
    return sum(p.stat().st_size for p in d.state_dir.glob("journal.sqlite3*"))


def print_a_lot(d: DaemonProcess, workspace: Path) -> tuple[str, str]:
    s = open_fs(d, workspace)
    action = shell(d, s.id, PRINT, output_bytes=16_000_000)
    assert action.exec.stdout_total_bytes == OUTPUT and len(action.exec.stdout) == OUTPUT, action.error
    return s.id, action.id


def check_trimmed(d: DaemonProcess, action_id: str) -> None:
    out = get(d, action_id).exec
    assert out.stdout == b"x" * KEEP and out.stdout_total_bytes == OUTPUT and out.stdout_truncated
    assert out.stderr == b"warn\n"  # under the size kept: untouched
    digest = hashlib.sha256(b"x" * OUTPUT).hexdigest()
    assert f"stdout {OUTPUT} → {KEEP} bytes (sha256 {digest})" in out.trimmed and "stderr" not in out.trimmed


@pytest.fixture
def retaining(tmp_path: Path) -> Iterator[DaemonProcess]:
    root = tmp_path / "d"
    root.mkdir()
    d = DaemonProcess(root, config_toml=RETENTION).start()
    yield d
    assert d.stop() == 0 and "Traceback" not in d.log()


def test_gc_trims_resolved_outputs_and_gives_the_journal_space_back(
    retaining: DaemonProcess, workspace: Path, tmp_path: Path
) -> None:
    d = retaining
    session, action = print_a_lot(d, workspace)
    pending = d.admin.RunGc(adpb.RunGcRequest())
    assert pending.outputs_trimmed == 0 and get(d, action).exec.trimmed == ""  # a pending output is kept whole
    d.actions.CommitActions(apb.CommitActionsRequest(session_id=session))
    before = journal_bytes(d)
    assert before > OUTPUT
    dry = d.admin.RunGc(adpb.RunGcRequest(dry_run=True))
    assert (dry.outputs_trimmed, dry.output_bytes_trimmed, dry.journal_bytes_freed) == (1, OUTPUT - KEEP, 0)
    assert get(d, action).exec.trimmed == ""  # a dry run changes nothing
    done = d.admin.RunGc(adpb.RunGcRequest())
    assert (done.outputs_trimmed, done.output_bytes_trimmed) == (1, OUTPUT - KEEP)
    after = journal_bytes(d)
    assert done.journal_bytes_freed == before - after and after < 1_000_000, (before, after, done)
    assert done.bytes_freed >= done.journal_bytes_freed
    assert any("trimmed" in r for r in done.reasons) and any("journal:" in r for r in done.reasons)
    check_trimmed(d, action)
    again = d.admin.RunGc(adpb.RunGcRequest())
    assert again.outputs_trimmed == 0 and again.journal_bytes_freed < 100_000
    check_trimmed(d, action)
    shown = goex(d, tmp_path, "show", action)
    assert "output trimmed by retention at " in shown and f"stdout {OUTPUT} → {KEEP} bytes" in shown
