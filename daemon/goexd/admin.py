"""Operating the daemon: health, stats and snapshot garbage collection.

GC is two steps (cf. containerd leases): decide which pins expired (`expired_pins`, a pure
function of the journal and the clock), then reclaim space (`git prune`) in each store.
Pins of pending actions are never expired; unreferenced objects younger than an hour are
kept because a live capture may have just written them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from goexd import faults
from goexd.config import Config
from goexd.diskspace import OutOfSpace
from goexd.domain.errors import InvalidArgument, Unavailable
from goexd.domain.models import Action
from goexd.domain.sandbox import PoolReport, ReportsPool, Sandbox, Sandboxes, SandboxUnavailable
from goexd.engine.engine import Engine
from goexd.engine.retention import trim_outputs
from goexd.engine.stopping import Interrupted
from goexd.snapshots import set_aside
from goexd.snapshots.git_store import store_dir_for
from goexd.stop_control import StopControl

PIN_SUFFIXES = ("pre", "post", "before-undo")


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Stats:
    open_sessions: int
    actions_by_state: dict[str, int]
    journal_bytes: int
    snapshot_store_bytes: int
    running_actions: int
    sandbox_pools: list[PoolReport] = field(default_factory=list)


@dataclass
class GcReport:
    removed: int = 0
    bytes_freed: int = 0  # snapshots' and the journal's
    reasons: list[str] = field(default_factory=list)
    outputs_trimmed: int = 0
    output_bytes_trimmed: int = 0
    journal_bytes_freed: int = 0


def expired_pins(resolved: Sequence[Action], now: float, retention_s: float) -> list[tuple[Action, str]]:
    """Which pins may go: those of actions resolved (committed/undone/failed) longer ago than the retention."""
    out = []
    for a in resolved:
        if a.resolved_at is not None and now - a.resolved_at >= retention_s:
            out += [(a, f"actions/{a.id}/{s}") for s in PIN_SUFFIXES]
    return out


def dir_bytes(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue
    return total


class Admin:
    def __init__(
        self,
        cfg: Config,
        engine: Engine,
        sandbox: Sandbox,
        stop: StopControl | None = None,
        sandboxes: Sandboxes | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.sandbox = sandbox
        self.sandboxes = sandboxes  # every backend opened (the default and those sessions named)
        self.started = time.monotonic()
        self._stop = stop

    def stop(self, drain: bool, drain_timeout_s: float) -> list[Interrupted]:
        """Stop goexd (now, or once drained): what that interrupts, or with drain what it waits for."""
        if self._stop is None:
            raise Unavailable("this goexd was started without a way to stop it by request")
        if drain_timeout_s < 0:
            raise InvalidArgument("drain_timeout", "must not be negative")
        return self._stop.request(drain, drain_timeout_s)

    def health(self) -> list[ComponentHealth]:
        out = []
        try:
            self.engine.journal.counts_by_state()
            out.append(ComponentHealth("journal", True, str(self.cfg.journal_path)))
        except Exception as exc:
            out.append(ComponentHealth("journal", False, str(exc)))
        try:
            self.sandbox.check()
            out.append(ComponentHealth("sandbox", True, self.sandbox.name))
        except SandboxUnavailable as exc:
            out.append(ComponentHealth("sandbox", False, str(exc)))
        for pool in self.pools():
            detail = (
                f"{pool.image}: {pool.warm} warm, {pool.leases} leases, {pool.misses} misses, "
                f"{pool.made} made, {pool.failed} failed"
            )
            out.append(ComponentHealth(f"{pool.backend} pool", pool.made > 0 or pool.failed == 0, detail))
        secrets = self.engine.vault.list_info()
        troubled = [s.name for s in secrets if s.problem]
        detail = f"{len(secrets)} secrets, key: {self.cfg.vault.key_source}"
        out.append(
            ComponentHealth("vault", True, detail + (f"; needs attention: {', '.join(troubled)}" if troubled else ""))
        )
        egress = self.engine.egress
        running = egress is not None and egress.running
        out.append(ComponentHealth("egress", running, "proxy running" if running else "proxy not running"))
        # Below the reserve, actions that snapshot are refused (goexd/diskspace.py): not healthy.
        free, reserve = shutil.disk_usage(self.cfg.state_dir).free, self.cfg.state_reserve_bytes
        detail = f"{free // (1024 * 1024)} MiB free (reserve {reserve // (1024 * 1024)} MiB)"
        out.append(ComponentHealth("snapshots", free >= reserve, detail))
        return out

    def stats(self) -> Stats:
        journal = self.cfg.journal_path
        return Stats(
            open_sessions=self.engine.journal.open_session_count(),
            actions_by_state=self.engine.journal.counts_by_state(),
            journal_bytes=sum(p.stat().st_size for p in journal.parent.glob(journal.name + "*") if p.is_file()),
            snapshot_store_bytes=dir_bytes(self.cfg.snapshots_dir),
            running_actions=self.engine.running_count(),
            sandbox_pools=self.pools(),
        )

    def pools(self) -> list[PoolReport]:
        """The warm pools of the backends opened (the container backend's), one per image."""
        opened = self.sandboxes.opened() if self.sandboxes is not None else [self.sandbox]
        return [p for sb in opened if isinstance(sb, ReportsPool) for p in sb.pool_report()]

    def gc(self, dry_run: bool = False) -> GcReport:
        report = GcReport()
        now = time.time()
        retention_s = self.cfg.gc.retention_hours * 3600
        expired = expired_pins(self.engine.journal.resolved_before(now - retention_s), now, retention_s)
        by_store: dict[Path, list[str]] = {}
        for action, pin in expired:
            session = self.engine.journal.get_session(action.session_id)
            if session is None:
                continue
            for r in session.resources:
                if r.name == action.resource:
                    by_store.setdefault(store_dir_for(self.cfg.snapshots_dir, Path(r.uri)), []).append(pin)
        # Every workspace store: set-asides expire by age whether or not an expired action names the store.
        for git_dir in sorted(self.cfg.snapshots_dir.glob("*.git")) if self.cfg.snapshots_dir.exists() else []:
            by_store.setdefault(git_dir, [])
        for git_dir, pins in by_store.items():
            if not git_dir.exists():
                continue
            before = dir_bytes(git_dir)
            repo = pygit2.Repository(str(git_dir))
            for pin in pins:
                ref = f"refs/goex/{pin}"
                if ref in repo.references:
                    report.removed += 1
                    report.reasons.append(f"{pin}: resolved more than {self.cfg.gc.retention_hours:g} h ago")
                    if not dry_run:
                        repo.references.delete(ref)
            for kept in set_aside.list_all(repo):
                if kept.created < now - retention_s:
                    report.removed += 1
                    report.reasons.append(f"set-aside {kept.id}: made more than {self.cfg.gc.retention_hours:g} h ago")
                    if not dry_run:
                        set_aside.drop(repo, kept.id)
            if not dry_run:
                subprocess.run(
                    ["git", f"--git-dir={git_dir}", "prune", "--expire=1.hour.ago"],
                    check=True,
                    capture_output=True,
                )
                report.bytes_freed += max(0, before - dir_bytes(git_dir))
        if not dry_run:
            for action_id in {action.id for action, _ in expired}:
                self.engine.journal.update(action_id, checkpoint="{}")
        self._gc_journal(report, now, dry_run)
        return report

    def _gc_journal(self, report: GcReport, now: float, dry_run: bool) -> None:
        """Trim resolved actions' large outputs (engine/retention.py), then give the journal's free space back."""
        hours = self.cfg.gc.output_retention_hours
        trimmed = trim_outputs(self.engine.journal, now - hours * 3600, self.cfg.gc.output_keep_bytes, dry_run)
        report.outputs_trimmed, report.output_bytes_trimmed = trimmed.actions, trimmed.bytes
        if trimmed.actions:
            report.reasons.append(
                f"outputs of {trimmed.actions} action(s) resolved more than {hours:g} h ago: {trimmed.bytes} bytes "
                f"trimmed (the first {self.cfg.gc.output_keep_bytes} of each stream kept)"
            )
        if dry_run:
            return
        faults.point("gc-trimmed", "journal-gc")
        try:
            report.journal_bytes_freed = self.engine.journal.vacuum()
        except OutOfSpace as exc:  # VACUUM needs room for a copy: the journal is as it was
            report.reasons.append(f"journal not vacuumed: {exc}")
            return
        report.bytes_freed += report.journal_bytes_freed
        if report.journal_bytes_freed:
            report.reasons.append(f"journal: {report.journal_bytes_freed} bytes given back")
