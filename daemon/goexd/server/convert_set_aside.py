"""Set-asides (what goexd overwrote of someone's work and kept) to the contract."""

from __future__ import annotations

import os

from goex.v1 import actions_pb2 as apb
from goexd.domain.names import display_path, utf8_text
from goexd.domain.snapshots import SetAside
from goexd.server.convert import ts


def set_aside_pb(resource: str, kept: SetAside) -> apb.SetAside:
    return apb.SetAside(
        id=kept.id,
        resource=resource,
        action_id=kept.action_id,
        created_at=ts(kept.created),
        reason=utf8_text(kept.reason),
        paths=[display_path(p) for p in kept.paths],
        paths_bytes=[os.fsencode(p) for p in kept.paths],
    )
