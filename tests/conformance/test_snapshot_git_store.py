"""GitWorkspaceStore plugged into the snapshot store suite, with each way it finds changes: inotify and scans."""

from __future__ import annotations

from pathlib import Path

import pytest

from goexd.domain.snapshots import WorkspaceSnapshotter
from goexd.snapshots.git_store import GitWorkspaceStore
from tests.conformance.snapshot_suite import OpenStore, SnapshotStoreContract


class TestGitStore(SnapshotStoreContract):
    @pytest.fixture(params=[True, False], ids=["inotify", "scan"])
    def open_store(self, request: pytest.FixtureRequest) -> OpenStore:
        def open_store(git_dir: Path, ws: Path) -> WorkspaceSnapshotter:
            return GitWorkspaceStore(git_dir, ws, watch=request.param)

        return open_store
