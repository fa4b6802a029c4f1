"""Removing a run's overlay dir (versioned.py, inverse.py and trial.py each make them)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from goexd.snapshots.remove_tree import remove_tree


def discard(run_dir: Path) -> None:
    """Remove a run's overlay dir, whatever modes the run left in it (overlayfs' own work dir is 000) and
    however deep (remove_tree.py)."""
    with contextlib.suppress(FileNotFoundError):
        remove_tree(run_dir, open_up=True)
