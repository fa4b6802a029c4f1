"""What `Client.diff` and `Client.diff_since_last` return, and their request options."""

from __future__ import annotations

from dataclasses import dataclass

from goex._enums import ChangeKind, DiffContent, ResourceKind
from goex._models import _Model
from goex.v1 import actions_pb2

__all__ = ["Diff", "DiffOptionsArgs", "DiffSide", "FileDiff", "action_request", "since_last_request"]


@dataclass(frozen=True)
class DiffSide(_Model[actions_pb2.DiffSide]):
    """One side of a changed entry."""

    mode: int  # full st_mode
    uid: int
    gid: int
    size: int  # content bytes: a file's, a symlink target's
    blob_id: str  # git's id of the content (`git hash-object FILE`); "" for a directory
    sha256: str  # of the content, when goexd read it for the diff; else ""

    @classmethod
    def from_proto(cls, msg: actions_pb2.DiffSide) -> DiffSide:
        return cls(
            mode=msg.mode,
            uid=msg.uid,
            gid=msg.gid,
            size=msg.size,
            blob_id=msg.blob_id,
            sha256=msg.sha256,
            proto=msg,
        )


@dataclass(frozen=True)
class FileDiff(_Model[actions_pb2.FileDiff]):
    """One changed entry: its sides, how its content compared, and its git-style patch."""

    path: str  # display form (escaped, redacted); directories end with "/"
    path_bytes: bytes  # the exact name as on disk
    kind: ChangeKind
    old: DiffSide | None  # None when added
    new: DiffSide | None  # None when deleted
    content: DiffContent
    additions: int
    deletions: int
    patch: bytes  # redacted; capped (patch_truncated); b"" with stat_only
    patch_truncated: bool
    note: str

    @classmethod
    def from_proto(cls, msg: actions_pb2.FileDiff) -> FileDiff:
        return cls(
            path=msg.path,
            path_bytes=msg.path_bytes,
            kind=ChangeKind.from_proto(msg.kind),
            old=DiffSide.from_proto(msg.old) if msg.HasField("old") else None,
            new=DiffSide.from_proto(msg.new) if msg.HasField("new") else None,
            content=DiffContent.from_proto(msg.content),
            additions=msg.additions,
            deletions=msg.deletions,
            patch=msg.patch,
            patch_truncated=msg.patch_truncated,
            note=msg.note,
            proto=msg,
        )


@dataclass(frozen=True)
class Diff(_Model[actions_pb2.GetDiffResponse]):
    """An action's changes, or a workspace's since the session's latest action (then `action_id` is
    that action's). `summary` says what was recorded for a database or an http call."""

    action_id: str
    resource: str
    resource_kind: ResourceKind
    from_snapshot: str
    to_snapshot: str
    files: tuple[FileDiff, ...]
    files_changed: int  # every changed entry, listed or not
    additions: int
    deletions: int
    truncated: bool  # a cap left something out: see notes
    notes: tuple[str, ...]
    summary: str

    @property
    def patch(self) -> bytes:
        """Every file's patch, in order: the whole unified diff."""
        return b"".join(f.patch for f in self.files)

    @classmethod
    def from_proto(cls, msg: actions_pb2.GetDiffResponse) -> Diff:
        return cls(
            action_id=msg.action_id,
            resource=msg.resource,
            resource_kind=ResourceKind.from_proto(msg.resource_kind),
            from_snapshot=msg.from_snapshot,
            to_snapshot=msg.to_snapshot,
            files=tuple(FileDiff.from_proto(f) for f in msg.files),
            files_changed=msg.files_changed,
            additions=msg.additions,
            deletions=msg.deletions,
            truncated=msg.truncated,
            notes=tuple(msg.notes),
            summary=msg.summary,
            proto=msg,
        )


def action_request(
    action_id: str, options: DiffOptionsArgs, session_id: str | None = None
) -> actions_pb2.GetDiffRequest:
    return actions_pb2.GetDiffRequest(action_id=action_id, options=_options(options), session_id=session_id or "")


def since_last_request(session_id: str, resource: str | None, options: DiffOptionsArgs) -> actions_pb2.GetDiffRequest:
    since = actions_pb2.SinceLastAction(session_id=session_id, resource=resource or "")
    return actions_pb2.GetDiffRequest(since_last=since, options=_options(options))


@dataclass(frozen=True)
class DiffOptionsArgs:
    """The caps both diff calls take (0 = the daemon's default; see DiffOptions in the contract)."""

    max_file_bytes: int = 0
    max_total_bytes: int = 0
    max_files: int = 0
    context_lines: int | None = None  # None: the daemon's default (3)
    stat_only: bool = False


def _options(args: DiffOptionsArgs) -> actions_pb2.DiffOptions:
    options = actions_pb2.DiffOptions(
        max_file_bytes=args.max_file_bytes,
        max_total_bytes=args.max_total_bytes,
        max_files=args.max_files,
        stat_only=args.stat_only,
    )
    if args.context_lines is not None:
        options.context_lines = args.context_lines
    return options
