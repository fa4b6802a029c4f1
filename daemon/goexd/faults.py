"""Test-only fault points: goexd kills itself (SIGKILL, as `kill -9` would) at a named point.

The crash tests (tests/faults/) use them to stop goexd at an exact moment, e.g. after a
database COMMIT and before the journal records it, then restart it and check that the journal
and the resource agree. Production code calls `point(name, tag)` at the journal and commit
boundaries below; unless armed, a call is one global lookup and a comparison.

Arming needs two environment variables, read once at start (main.py):
    GOEX_TEST_FAULTS=1                        the switch; without it GOEX_FAULT_POINT is ignored (with a warning)
    GOEX_FAULT_POINT=POINT[:TAG][@N]          kill at the Nth time (default 1st) POINT is reached with TAG
                                              (any tag when none is given); e.g. action-after-commit:sqlite-inverse
(Not GOEXD_*: those are config keys, and goexd refuses unknown ones.)
An unknown POINT, a malformed TAG or N stops the start (SetupError): a typo must not make a crash
test pass without crashing. When the point fires, goexd writes `goexd: fault point POINT:TAG hit`
to stderr (its log) and sends itself SIGKILL: no cleanup, no flush, no atexit.

Tags name the resource: "<kind>-<strategy>" (sqlite-inverse, postgres-transaction, fs-versioned, ...).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from goexd.domain.errors import SetupError

log = logging.getLogger(__name__)

ARM_ENV = "GOEX_TEST_FAULTS"
POINT_ENV = "GOEX_FAULT_POINT"

# Every point and where it is; called with the resource's tag.
POINTS: Mapping[str, str] = {
    # engine (every strategy)
    "checkpoint-made": "the resource's checkpoint is made (the clone strategies' copy exists); nothing of it journaled",
    "run-journaled": "RUNNING and the checkpoint are journaled; the action has not started",
    "run-returned": "the resource ran the action (committed it, where it commits at once); EXECUTED not journaled",
    "undo-journaled": "the undo's intent is journaled; the resource has not started it",
    "undo-returned": "the resource undid the action; UNDONE not journaled",
    "commit-journaled": "'commit started' is journaled; the resource has not committed",
    "commit-returned": "the resource committed; COMMITTED not journaled",
    "recovery-action": "at a restart, before recovery resolves one action left unresolved",
    # gc of the journal (admin.py, tag journal-gc)
    "gc-trimmed": "gc trimmed resolved actions' outputs (journaled); the journal is not vacuumed",
    "gc-vacuumed": "the journal's VACUUM committed (into the WAL); the WAL is not folded in nor truncated",
    # a workspace action run over an overlay (resources/fs/versioned.py)
    "fs-apply-intent": "the run's result is snapshotted and its apply intent written; the workspace is unchanged",
    "fs-applied": "the run's result is applied to the workspace; EXECUTED not journaled",
    # a root goexd mounted a run's overlay itself (sandbox/overlay_mounts.py; the probe at start reaches it first)
    "fs-overlay-mounted": "the run's overlay is mounted in goexd's mount dir; bwrap not started",
    # any three-way revert of a workspace (an apply, an undo, a recovery, bringing back a set-aside; git_store.py)
    "fs-set-aside-kept": "a forced revert recorded the set-aside of what it overwrites; nothing written yet",
    "fs-revert-written": "a revert's writes are done; not yet verified, nothing journaled",
    # one file a revert writes (snapshots/safefs.py): a kill leaves goexd's temporaries beside it
    "fs-write-named": "a file's new content is complete under its temporary name; not yet moved to its path",
    "fs-write-swapped": "a file's new content is exchanged with the one at its path, now under the temporary name",
    # resources that commit at once (the inverse strategy on SQLite and PostgreSQL)
    # (statements a transaction cannot hold run in autocommit: there "before-commit" follows their marker's commit)
    "action-before-commit": "the action's statements and its outcome marker are written; COMMIT not sent",
    "action-after-commit": "the action's COMMIT returned; nothing else done",
    "undo-before-commit": "the inverse's statements and its outcome marker are written; COMMIT not sent",
    "undo-after-commit": "the inverse's COMMIT returned; nothing else done",
}

_SPEC = re.compile(r"(?P<point>[a-z-]+)(?::(?P<tag>[a-z]+-[a-z]+))?(?:@(?P<nth>[1-9][0-9]{0,5}))?")


@dataclass
class _Armed:
    point: str
    tag: str | None
    nth: int
    hits: int = 0


@dataclass
class _State:
    armed: _Armed | None = None


_state = _State()
_lock = threading.Lock()


def arm_from_env(env: Mapping[str, str]) -> str | None:
    """Arm the point GOEX_FAULT_POINT names, when GOEX_TEST_FAULTS=1 too; returns the spec armed (None: none)."""
    spec = env.get(POINT_ENV, "")
    if not spec:
        return None
    if env.get(ARM_ENV) != "1":
        log.warning("%s is set but ignored: fault points are for tests and need %s=1 as well", POINT_ENV, ARM_ENV)
        return None
    m = _SPEC.fullmatch(spec)
    if m is None or m["point"] not in POINTS:
        known = ", ".join(sorted(POINTS))
        raise SetupError(f"{POINT_ENV}={spec!r}: not POINT[:KIND-STRATEGY][@N] with a known POINT ({known})")
    _state.armed = _Armed(m["point"], m["tag"], int(m["nth"] or 1))
    log.warning("test fault point armed: %s (goexd kills itself there)", spec)
    return spec


def disarm() -> None:
    _state.armed = None


def point(name: str, tag: str) -> None:
    """A fault point: kill goexd here when armed for it (see the module's doc)."""
    armed = _state.armed
    if armed is None or armed.point != name or (armed.tag is not None and armed.tag != tag):
        return
    with _lock:
        armed.hits += 1
        if armed.hits != armed.nth:
            return
    os.write(2, f"goexd: fault point {name}:{tag} hit\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
