"""GetDiff's proto <-> domain conversion: the caps checked (naming the field), the diff out."""

from __future__ import annotations

import os
from typing import cast

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ResourceKind
from goexd.domain.snapshots import ChangeKind
from goexd.engine.diffs import ActionDiff
from goexd.snapshots.textdiff import Content, DiffOptions, EntryDiff, Side

# Ceilings on what a request may ask for: the response is built in memory, then sent whole.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_FILES = 100_000
MAX_CONTEXT_LINES = 10_000

_CONTENT_TO_PB = {c: cast(apb.DiffContent, apb.DiffContent.Value(f"DIFF_CONTENT_{c.name}")) for c in Content}
_CHANGE_TO_PB = {k: cast(pb.ChangeKind, pb.ChangeKind.Value(f"CHANGE_KIND_{k.name}")) for k in ChangeKind}
_RKIND_TO_PB = {k: cast(pb.ResourceKind, pb.ResourceKind.Value(f"RESOURCE_KIND_{k.name}")) for k in ResourceKind}


def diff_options(msg: apb.DiffOptions, fld: str) -> DiffOptions:
    defaults = DiffOptions()
    for name, value, ceiling in (
        ("max_file_bytes", msg.max_file_bytes, MAX_FILE_BYTES),
        ("max_total_bytes", msg.max_total_bytes, MAX_TOTAL_BYTES),
        ("max_files", msg.max_files, MAX_FILES),
    ):
        if value > ceiling:
            raise InvalidArgument(f"{fld}.{name}", f"{value} is above the ceiling {ceiling}")
    context = msg.context_lines if msg.HasField("context_lines") else defaults.context_lines
    if context > MAX_CONTEXT_LINES:
        raise InvalidArgument(f"{fld}.context_lines", f"{context} is above the ceiling {MAX_CONTEXT_LINES}")
    return DiffOptions(
        max_file_bytes=msg.max_file_bytes or defaults.max_file_bytes,
        max_total_bytes=msg.max_total_bytes or defaults.max_total_bytes,
        max_files=msg.max_files or defaults.max_files,
        context_lines=context,
        stat_only=msg.stat_only,
    )


def diff_pb(d: ActionDiff) -> apb.GetDiffResponse:
    out = apb.GetDiffResponse(
        action_id=d.action_id,
        resource=d.resource.name,
        resource_kind=_RKIND_TO_PB[d.resource.kind],
        from_snapshot=d.from_snapshot,
        to_snapshot=d.to_snapshot,
        summary=d.summary,
        notes=list(d.notes),
    )
    if d.files is not None:
        out.files.extend(_file_pb(e) for e in d.files.entries)
        out.files_changed = d.files.total
        out.additions = d.files.additions
        out.deletions = d.files.deletions
        out.truncated = d.files.truncated
        out.notes.extend(d.files.notes)
    return out


def _file_pb(e: EntryDiff) -> apb.FileDiff:
    out = apb.FileDiff(
        path=e.shown,
        path_bytes=os.fsencode(e.path) + (b"/" if e.shown.endswith("/") else b""),
        kind=_CHANGE_TO_PB[e.kind],
        content=_CONTENT_TO_PB[e.content],
        additions=e.additions,
        deletions=e.deletions,
        patch=e.patch,
        patch_truncated=e.patch_truncated,
        note=e.note,
    )
    if e.old is not None:
        out.old.CopyFrom(_side_pb(e.old))
    if e.new is not None:
        out.new.CopyFrom(_side_pb(e.new))
    return out


def _side_pb(s: Side) -> apb.DiffSide:
    uid, gid = s.owner
    return apb.DiffSide(mode=s.mode, uid=uid, gid=gid, size=s.size, blob_id=s.blob_id, sha256=s.sha256)
