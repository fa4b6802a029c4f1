"""`goexd`: start the daemon (or --check-config)."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import resource
import shutil
import sys
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from goexd import __version__, config, faults, startup
from goexd.admin import Admin
from goexd.domain.errors import SetupError
from goexd.domain.sandbox import Sandbox
from goexd.egress.addresses import AddressRefused, AddressRule
from goexd.egress.dial import GuardedTransport
from goexd.egress.proxy import EgressProxy
from goexd.egress.upstream import tls_context
from goexd.engine.engine import Engine
from goexd.engine.journal_check import JournalDamaged, check_journal, open_journal
from goexd.engine.stopping import summary
from goexd.resources.fs.versioned import clear_overlays, drop_uppers, probe_overlay
from goexd.resources.host_paths import daemon_paths, mark_state_dir
from goexd.resources.http.resource import check_address
from goexd.sandbox.backends import SandboxHost, SandboxSet
from goexd.sandbox.keyring import join_fresh_session_keyring
from goexd.sd_notify import Notifier
from goexd.server import activation
from goexd.server.app import build_server, set_not_serving
from goexd.stop_control import StopControl
from goexd.vault.log_redaction import install_log_redaction
from goexd.vault.oauth import OAuthFlows
from goexd.vault.oauth_tokens import Dialer
from goexd.vault.vault import Vault

log = logging.getLogger("goexd")
EXIT_JOURNAL_DAMAGED = 3  # distinct, so a service manager can be told not to restart into it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="goexd", description="goex runtime daemon")
    p.add_argument("--config", type=Path, help="TOML config file (default $XDG_CONFIG_HOME/goex/goexd.toml)")
    p.add_argument("--socket", help="Unix socket path (default $XDG_RUNTIME_DIR/goex/goexd.sock)")
    p.add_argument("--state-dir", help="journal and snapshots (default $XDG_STATE_HOME/goex)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-file", help="also log to this file")
    p.add_argument("--timeout", help="default sandbox wall-clock limit in seconds")
    p.add_argument("--memory", help="default sandbox memory limit, e.g. 512M")
    p.add_argument("--max-procs", help="default sandbox process-count limit")
    p.add_argument("--change-detection", choices=["inotify", "scan"], help="how fs changes are found")
    p.add_argument(
        "--drain",
        action="store_true",
        default=None,
        help="on SIGTERM/SIGINT refuse new actions and stop once none is running or pending in a database "
        "transaction (config drain_on_stop; drain_timeout_s bounds the wait; a second signal stops at once)",
    )
    p.add_argument("--check-config", action="store_true", help="validate and print the effective config, then exit")
    p.add_argument(
        "--repair-journal",
        action="store_true",
        help="rebuild a damaged journal from what can be read (the damaged files are kept), then exit",
    )
    p.add_argument(
        "--build-image",
        action="store_true",
        help="build the container backend's image offline from this machine's packages into the configured engine "
        "([container] endpoint), print its name, then exit",
    )
    p.add_argument("--version", action="version", version=f"goexd {__version__}")
    return p.parse_args(argv)


def overrides(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("socket", "state_dir", "log_level", "log_file"):
        if getattr(ns, key):
            out[key] = getattr(ns, key)
    if ns.drain:
        out["drain_on_stop"] = True
    sandbox = {
        k: v for k, v in (("timeout_s", ns.timeout), ("memory_bytes", ns.memory), ("max_processes", ns.max_procs)) if v
    }
    if sandbox:
        out["sandbox"] = sandbox
    if ns.change_detection:
        out["fs"] = {"change_detection": ns.change_detection}
    return out


def setup_logging(cfg: config.Config) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.log_file:
        cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
        # A message quoting a file name that is not UTF-8 is written with \udcXX, not lost to an encoding error.
        handlers.append(logging.FileHandler(cfg.log_file, errors="backslashreplace"))
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the egress proxy logs each request itself


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    try:
        cfg = config.load(ns.config, overrides(ns))
    except SetupError as exc:
        print(f"goexd: {exc}", file=sys.stderr)
        return 2
    if ns.check_config:
        print(config.to_toml(cfg), end="")
        return 0
    setup_logging(cfg)
    if ns.build_image:
        return build_image_command(cfg)
    if ns.repair_journal:
        try:
            return startup.repair_journal_command(cfg.state_dir, cfg.journal_path)
        except SetupError as exc:
            print(f"goexd: {exc}", file=sys.stderr)
            return 1
    faulthandler.enable()  # a hang or crash can be read from every thread's stack (SIGABRT, SIGSEGV)
    raise_fd_limit()
    try:
        faults.arm_from_env(os.environ)  # test-only crash points; inert unless GOEX_TEST_FAULTS=1 (faults.py)
        return serve(cfg, config.config_file_path(ns.config))
    except JournalDamaged as exc:
        print(f"goexd: {exc}", file=sys.stderr)  # once, whole: the lines say what to do
        return EXIT_JOURNAL_DAMAGED
    except SetupError as exc:
        log.error("%s", exc)
        print(f"goexd: {exc}", file=sys.stderr)
        return 1


def build_image_command(cfg: config.Config) -> int:
    """`goexd --build-image`: goexd's image in the configured engine (sandbox/container_image.py)."""
    from goexd.sandbox.container_image import build_image  # noqa: PLC0415 - the docker SDK only when asked

    try:
        name = build_image(cfg.container)
    except SetupError as exc:
        print(f"goexd: {exc}", file=sys.stderr)
        return 1
    print(name)
    return 0


def raise_fd_limit() -> None:
    """The soft limit on open files up to the hard one: a walk of a workspace (snapshots/scan.py) keeps a
    directory fd per level, and an action may nest directories thousands deep (the default soft limit: 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def serve(cfg: config.Config, config_file: Path | None = None) -> int:
    notifier = Notifier(os.environ)  # Type=notify: READY=1 once serving, STOPPING=1 on the way out
    listener = activation.inherited_listener(os.environ)  # goexd.socket's, when systemd started goexd for it
    if listener is not None:
        cfg = activation.adopt(cfg, listener)
    grpc_socket = activation.private_socket(cfg.socket) if listener is not None else cfg.socket
    join_fresh_session_keyring()
    # goexd's own files, hidden from every sandbox where they fall inside a visible tree
    # (a config under /etc, say); the rest of the host is not visible at all.
    own = [cfg.state_dir, cfg.socket.parent, config.config_file_path(config_file)]
    if cfg.log_file is not None:
        own.append(cfg.log_file)
    claim = startup.claim_state_dir(cfg.state_dir)  # one goexd per state dir: held until it exits
    startup.reap_sandboxes(claim)  # an earlier run's leftovers, before recovery touches a workspace
    mounts = startup.overlay_mounts(claim)  # a root goexd's; what a killed start left mounted goes first
    own += [mounts.base] if mounts is not None else []
    check_journal(cfg.journal_path)  # before anything reads it
    startup.reap_containers(claim, cfg)  # what an earlier start left on the container engine, if there is one
    host = SandboxHost(cfg, own, claim.mark.env(), mounts, claim.mark.owner, claim.mark.instance)
    # What runs cut short wrote: room for the overlay probe (open_default probes) and for recovery.
    drop_uppers(cfg.state_dir / "overlays")
    sandboxes = SandboxSet(host, lambda sb: fs_overlays_dir(cfg, sb))
    sandbox = sandboxes.open_default()  # SetupError naming the fix when it cannot run here
    mark_state_dir(cfg.state_dir)  # so that no goexd takes it, or a tree holding it, for a workspace
    vault = Vault.open(cfg)
    install_log_redaction(vault.redact_text)
    journal = open_journal(cfg.journal_path, cfg.journal_sync)
    journal.redact = vault.redact_text
    oauth = OAuthFlows(vault, cfg.vault, token_dialer(cfg))
    # Socket paths are limited to 108 bytes, so the proxy's per-action sockets live in a short private dir.
    egress = EgressProxy(vault, cfg.egress, startup.egress_run_dir(claim))
    egress.start()
    overlays = sandboxes.overlays()  # probed when the default backend opened, after drop_uppers
    own_paths = daemon_paths(cfg, config_file, [egress.run_dir, *([mounts.base] if mounts is not None else [])])
    engine = Engine(
        cfg, journal, sandbox, vault, egress, own_paths=own_paths, fs_overlays=overlays, sandboxes=sandboxes
    )
    recovered = engine.recover()
    for a in recovered:
        log.warning("recovered action %s -> %s", a.id, a.state.value)
    if overlays is not None:
        clear_overlays(overlays)  # what recovery did not claim: runs that never started
    stop = StopControl(engine, cfg.drain_on_stop, cfg.drain_timeout_s)
    stop.install()  # before serving: a SIGTERM from now on is seen (and drained, if asked)
    admin = Admin(cfg, engine, sandbox, stop, sandboxes)
    server, health_servicer = build_server(engine, admin, vault, oauth, grpc_socket, cfg.grpc_workers)
    scheduler = start_scheduler(admin, oauth, cfg)

    server.start()
    relay = activation.Relay(listener, grpc_socket).start() if listener is not None else None
    where = f"{cfg.socket} (socket activation)" if relay is not None else str(cfg.socket)
    log.info("goexd %s serving on %s (state %s, sandbox %s)", __version__, where, cfg.state_dir, sandbox.name)
    notifier.notify("READY=1", f"STATUS=serving on {cfg.socket}")
    why = stop.wait()
    notifier.notify("STOPPING=1", f"STATUS={why}")
    if relay is not None:
        relay.stop()  # new connections wait on systemd's socket, which starts goexd again
    found = engine.interrupted_by_stop()
    log.log(logging.WARNING if found else logging.INFO, "%s; shutting down: %s", why, summary(found))
    set_not_serving(health_servicer)
    scheduler.shutdown(wait=False)
    oauth.close()
    engine.shutdown(cfg.shutdown_grace_s)
    sandboxes.close()  # the container backend's warm containers and slots
    egress.stop()
    shutil.rmtree(egress.run_dir, ignore_errors=True)
    server.stop(grace=2).wait()
    journal.close()
    grpc_socket.unlink(missing_ok=True)  # never systemd's: it stays bound and listening
    log.info("goexd stopped")
    return 0


def fs_overlays_dir(cfg: config.Config, sandbox: Sandbox) -> Path | None:
    """Where fs actions get their overlays, or None to run them over the workspace (fs.isolation)."""
    if cfg.fs.isolation == "direct":
        return None
    overlays = cfg.state_dir / "overlays"
    overlays.mkdir(mode=0o700, exist_ok=True)
    why = probe_overlay(sandbox, overlays)
    if why is None:
        return overlays
    if cfg.fs.isolation == "overlay":
        raise SetupError(f"fs.isolation = overlay, but {why}")
    log.warning("fs actions run over the workspace itself (fs.isolation = direct): %s", why)
    return None


def token_dialer(cfg: config.Config) -> Dialer:
    """OAuth2 token requests under the address rule of all goexd's own HTTP, trusting what http resources trust
    (wired here: vault/ does not import egress/)."""
    rule = AddressRule.from_config(cfg.egress.allowed_addresses)
    verify = tls_context(cfg.egress)
    return Dialer(
        transport=lambda: GuardedTransport(rule, verify),
        check=lambda url, fld: check_address(url, rule, fld),
        refused=AddressRefused,
    )


def start_scheduler(admin: Admin, oauth: OAuthFlows, cfg: config.Config) -> Any:
    scheduler = BackgroundScheduler(daemon=True)

    def refresh_tokens() -> None:
        try:
            for name in oauth.refresh_due():
                log.info("refreshed the OAuth2 access token of %s", name)
        except Exception:
            log.exception("scheduled OAuth2 token refresh failed")

    # Often enough that a token is renewed inside its refresh margin, before anyone needs it.
    scheduler.add_job(
        refresh_tokens, "interval", seconds=max(5.0, cfg.vault.oauth_refresh_margin_s / 3), id="oauth-refresh"
    )

    def job() -> None:
        try:
            r = admin.gc()
            if r.removed:
                log.info("gc: removed %d snapshot pins, freed %d bytes", r.removed, r.bytes_freed)
            if r.outputs_trimmed or r.journal_bytes_freed:
                log.info("gc: %s", "; ".join(r.reasons[-2:]))
        except Exception:
            log.exception("scheduled gc failed")

    scheduler.add_job(job, "interval", minutes=cfg.gc.interval_minutes, id="snapshot-gc")
    scheduler.start()
    return scheduler


if __name__ == "__main__":
    sys.exit(main())
