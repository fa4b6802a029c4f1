"""Whether the writes of a restore or revert fit on the workspace's filesystem, checked before the first one.

A revert that runs out of space half way leaves some paths written and others not; most such
failures are foreseeable: the contents it writes are in the store, with their sizes, and the
filesystem says what it has free. What it removes or replaces counts as freed (the workspace's own
filesystem only; a file with other names frees nothing, which this does not know: the check can be
optimistic, never refuses what fits). A margin covers directories, the verifying capture's index
and trees, and block rounding beyond one block per file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from goexd.domain.snapshots import NoRoom
from goexd.snapshots.objects import BlobStore
from goexd.snapshots.treediff import DIR, Change, Entry

BLOCK = 4096
MARGIN = 256 * 1024


def check_room(root: Path, blobs: BlobStore, changes: dict[str, Change]) -> None:
    """NoRoom (nothing written yet) when what `changes` writes cannot fit on `root`'s filesystem."""
    needed = sum(_blocks(blobs, new) for old, new in changes.values() if _written(old, new))
    if not needed:
        return
    free = shutil.disk_usage(root).free
    if needed + MARGIN <= free:
        return  # the common case: no need to size what goes away
    freed = sum(_blocks(blobs, old) for old, new in changes.values() if _replaced(old, new))
    if needed + MARGIN > free + freed:
        raise NoRoom(root, needed - freed + MARGIN, free)


def _written(old: Entry | None, new: Entry | None) -> bool:
    """As apply_changes decides: a file or symlink written anew."""
    return new is not None and new.kind != DIR and (old is None or old.kind != new.kind or old.oid != new.oid)


def _replaced(old: Entry | None, new: Entry | None) -> bool:
    return old is not None and old.kind != DIR and (new is None or new.kind != old.kind or new.oid != old.oid)


def _blocks(blobs: BlobStore, entry: Entry | None) -> int:
    assert entry is not None and entry.oid is not None
    return -(-blobs.size(entry.oid) // BLOCK) * BLOCK or BLOCK
