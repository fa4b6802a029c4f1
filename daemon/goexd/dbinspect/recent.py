"""The last few pre-action fingerprints of a database, by digest.

A checkpoint keeps only a digest (it is journaled); an undo whose result does not match it can
say *what* differs only while the whole fingerprint is still in memory. Bounded: each holds
per-row detail of small tables.
"""

from __future__ import annotations

from collections import OrderedDict

from goexd.dbinspect.diff import diff
from goexd.dbinspect.fingerprint import DbFingerprint

KEPT = 16


class RecentStates:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._by_digest: OrderedDict[str, DbFingerprint] = OrderedDict()

    def keep(self, fp: DbFingerprint) -> None:
        self._by_digest[fp.digest] = fp
        self._by_digest.move_to_end(fp.digest)
        while len(self._by_digest) > self._kept:
            self._by_digest.popitem(last=False)

    def undo_check(self, pre_digest: str, after: DbFingerprint, drifted: bool) -> tuple[bool, str]:
        """Whether an undo by the inverse left the pre-action state, and the words for it."""
        if after.digest == pre_digest:
            return True, "ran the inverse; the database matches its pre-action state"
        why = "the database had changed since the action" if drifted else "the inverse did not restore it"
        pre = self._by_digest.get(pre_digest)
        what = (
            f": {diff(pre, after).text}"
            if pre is not None
            else " (what differs is not known: its pre-action fingerprint is no longer in memory)"
        )
        return False, f"ran the inverse, but {why}: it differs from the pre-action state{what}"
