"""Outputs follow retention (issue 19): a resolved action's large stdout/stderr is trimmed after a while.

One action printing 100 MB (64 MB kept) left a 344 MiB journal, and gc freed nothing. Once an action has
been resolved (committed, undone, failed, blocked, interrupted) for `gc.output_retention_hours`, each
output stream longer than `gc.output_keep_bytes` keeps only its first `output_keep_bytes`; the rest of
the record stays: termination, exit code, each stream's total size, and the sha256 of each trimmed
stream as it was, in ExecResult.trimmed (so `goex show` can say so). Each action is one journal write
(all or nothing); the space is then given back by Journal.vacuum(). A pending action is never trimmed:
someone may still judge it by its output.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

from goexd.domain import codec
from goexd.domain.models import ActionState
from goexd.engine.journal import Journal

RESOLVED = (
    ActionState.COMMITTED,
    ActionState.UNDONE,
    ActionState.FAILED,
    ActionState.BLOCKED,
    ActionState.INTERRUPTED,
)
_JSON_SLACK = 1024  # the exec record's JSON besides its two base64 streams


@dataclass
class TrimReport:
    actions: int = 0
    bytes: int = 0  # output bytes dropped


def trim_outputs(journal: Journal, resolved_before: float, keep_bytes: int, dry_run: bool = False) -> TrimReport:
    """Trim the outputs of actions resolved before `resolved_before` (a time) to `keep_bytes` a stream."""
    states = [s.value for s in RESOLVED]
    # Only records whose JSON is longer than one kept stream could hold more than that (base64: 4/3).
    rows = journal.read(
        f"SELECT id FROM actions WHERE state IN ({','.join('?' * len(states))})"  # noqa: S608 - placeholders only
        " AND coalesce(resolved_at, finished_at, created_at) < ? AND length(exec) > ?",
        (*states, resolved_before, keep_bytes * 4 // 3 + _JSON_SLACK),
    )
    report = TrimReport()
    for row in rows:
        action = journal.get_action(row["id"])
        if action is None or action.exec is None or action.exec.trimmed or action.state not in RESOLVED:
            continue
        out = action.exec
        said = []
        dropped = 0
        for name, data in (("stdout", out.stdout), ("stderr", out.stderr)):
            if len(data) > keep_bytes:
                dropped += len(data) - keep_bytes
                digest = hashlib.sha256(data).hexdigest()
                said.append(f"{name} {len(data)} → {keep_bytes} bytes (sha256 {digest})")
        if not said:
            continue
        report.actions += 1
        report.bytes += dropped
        if dry_run:
            continue
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        trimmed = replace(
            out,
            stdout=out.stdout[:keep_bytes],
            stderr=out.stderr[:keep_bytes],
            trimmed=f"output trimmed by retention at {at}: " + "; ".join(said),
        )
        journal.update(action.id, exec=codec.dumps(codec.exec_to_json(trimmed)))
    return report
