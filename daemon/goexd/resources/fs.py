"""The file-system resource with the `versioned` undo strategy.

Checkpoints are snapshots in a git directory inside the daemon's state dir (never the
workspace's own .git); actions run in the sandbox with the workspace bound read-write and
its .git read-only; undo restores the pre-action snapshot and verifies it by content id.
After each action, the files it changed lose any set-id bits and file capabilities
(snapshots/privileges.py); the action's change set says so.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from goexd.engine.models import ActionKind, ActionSpec, Resource
from goexd.errors import FailedPrecondition, InvalidArgument
from goexd.names import display_path
from goexd.resources.base import Checkpoint, Outcome, OutputCallback, RollbackReport, SandboxNetwork, UndoesByItself
from goexd.resources.host_paths import (
    OwnPaths,
    checked_syntax,
    refuse_containing_state_dir,
    refuse_homes,
    refuse_inside_state_dir,
    refuse_own,
    refuse_system,
    resolved,
)
from goexd.sandbox.base import Limits, Network, Sandbox, SandboxSpec
from goexd.snapshots.base import Snapshot, UnreadableEntries
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.privileges import listed
from goexd.textcap import shown

DESCRIBE_MAX_ENTRIES = 200


def store_dir_for(snapshots_dir: Path, workspace: Path) -> Path:
    """One snapshot repository per workspace path, reused across sessions (its stat cache too)."""
    digest = hashlib.sha256(str(workspace).encode()).hexdigest()[:16]
    return snapshots_dir / f"{digest}.git"


def validate_workspace(raw: str, fld: str, own: OwnPaths) -> Path:
    """Resolve and check a workspace path (see host_paths); raises InvalidArgument naming the field."""
    path = resolved(checked_syntax(raw, fld, "a workspace"), fld)
    if not path.is_dir():
        raise InvalidArgument(fld, f"{shown(raw)} is not a directory")
    refuse_system(path, fld, container=True)
    refuse_homes(path, fld)
    refuse_own(path, fld, own, container=True)
    if not os.access(path, os.R_OK | os.X_OK):  # nor could goexd check it for a state dir inside
        raise InvalidArgument(fld, f"{path} cannot be read by goexd's user")
    refuse_inside_state_dir(path, fld)
    refuse_containing_state_dir(path, fld)
    return path


class FsVersionedResource(UndoesByItself):
    undoes_by = "by restoring snapshots"

    def __init__(
        self,
        resource: Resource,
        store: GitWorkspaceStore,
        sandbox: Sandbox,
        masked_paths: Sequence[Path],
        change_list_limit: int = 1000,
    ) -> None:
        self.resource = resource
        self.workspace = Path(resource.uri)
        self._store = store
        self._sandbox = sandbox
        self._masked = tuple(masked_paths)
        self._change_limit = change_list_limit

    undo_note = "undo restores the pre-action snapshot and verifies it by content id"

    def precheck(self, spec: ActionSpec) -> None:
        self._argv(spec)  # refuses kinds that do not run on a file-system resource

    def commit_check(self, action_ids: Sequence[str]) -> None:
        return None

    def take_lost(self) -> list[str]:
        return []

    def describe(self, samples: bool = False) -> str:
        lines = [f"directory {self.workspace} (mounted at /workspace in the sandbox)"]
        count = 0
        for root, dirs, files in os.walk(self.workspace):
            dirs[:] = sorted(d for d in dirs if not (root == str(self.workspace) and d == ".git"))
            rel = os.path.relpath(root, self.workspace)
            for name in sorted(files):
                count += 1
                if count <= DESCRIBE_MAX_ENTRIES:
                    lines.append(f"  {display_path(name if rel == '.' else os.path.join(rel, name))}")
        if count > DESCRIBE_MAX_ENTRIES:
            lines.append(f"  ... and {count - DESCRIBE_MAX_ENTRIES} more files")
        return "\n".join(lines)

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint:
        snap = self._capture()
        self._store.pin(f"actions/{action_id}/pre", snap)
        return {"pre": snap.id}

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome:
        result = self._sandbox.run(
            SandboxSpec(
                argv=self._argv(spec),
                workspace=self.workspace,
                readonly_subpaths=(".git",),
                masked_paths=self._masked,
                env={**spec.env, **network.env} if network else spec.env,
                stdin=spec.stdin,
                limits=limits,
                network=Network.PROXY if network else Network.NONE,
                proxy=network.proxy if network else None,
            ),
            on_output=on_output,
            cancel=cancel,
        )
        started = time.monotonic()
        pre = Snapshot(checkpoint["pre"])
        post, found = self._store.strip_privileges(pre, self._capture())
        changes = replace(self._store.changes(pre, post, limit=self._change_limit), warnings=listed(found))
        left = [f.describe() for f in found if f.left]
        return Outcome(
            exec=result,
            changes=changes,
            checkpoint_extra={"post": post.id},
            capture_s=time.monotonic() - started,
            # A privilege goexd could not take away must not stay: the action is rolled back.
            failure=f"{left[0]}; the action is rolled back" if left else None,
        )

    @staticmethod
    def _argv(spec: ActionSpec) -> list[str]:
        if spec.kind is ActionKind.SHELL:
            return list(spec.argv)
        if spec.kind is ActionKind.PYTHON:
            return ["python3", "-c", spec.code]
        raise InvalidArgument("spec", f"{spec.kind.value} actions do not run on a file-system resource")

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None:
        # Snapshots stay pinned until the retention GC: a committed action's history remains inspectable.
        return None

    def _capture(self) -> Snapshot:
        """A snapshot, or FailedPrecondition when the workspace holds what goexd cannot snapshot."""
        try:
            return self._store.capture()
        except UnreadableEntries as e:
            raise FailedPrecondition(f"{e} (and no action can be undone while that is so)") from e

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        # What goexd may not read is left out (and left alone by the restore, which says so).
        before = self._store.capture(lenient=True)
        self._store.pin(f"actions/{action_id}/before-undo", before)
        target = Snapshot(checkpoint["pre"])
        restored = self._store.restore(target)
        kept = f"state before the undo kept as {before.id[:12]}"
        if restored.unowned or restored.unreadable:  # some of it is not back: not the state it was
            return RollbackReport(
                verified=False, detail=f"restored snapshot {target.id[:12]} but {restored.describe()}; {kept}"
            )
        return RollbackReport(
            verified=True, detail=f"restored snapshot {target.id[:12]} (verified by content id); {kept}"
        )

    def fingerprint(self) -> str:
        return self._store.capture().id

    def close(self) -> None:
        self._store.close()
