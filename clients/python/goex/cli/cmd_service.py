"""goex install-service / goex uninstall-service: goexd as a systemd user service, started by its socket."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from goex.cli import _service_units as units
from goex.cli._app import App, CliError, UsageError

_NEXT = "systemctl --user daemon-reload && systemctl --user enable --now " + " ".join(units.ENABLE)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    # No global options: these talk to systemd, not to goexd (and print what they write, no --json).
    i = sub.add_parser(
        "install-service",
        help="write systemd user units that start goexd on its socket, and a daily gc timer",
        description="Write goexd.socket, goexd.service, goexd-gc.service and goexd-gc.timer to the user's "
        "unit directory ($XDG_CONFIG_HOME/systemd/user). goexd.socket listens where goex connects by default "
        "($XDG_RUNTIME_DIR/goex/goexd.sock) and starts goexd on the first connection (socket activation; "
        "goexd says when it is ready, Type=notify); goexd.service runs the installed goexd by its absolute "
        "path. Then: " + _NEXT + " (or pass --enable). Exit 0 once the units are written.",
    )
    i.add_argument(
        "--prefix",
        metavar="DIR",
        type=Path,
        help="where goex and goexd are installed: DIR/bin/goexd (default: beside this goex, else on PATH)",
    )
    i.add_argument("--goexd", metavar="PATH", type=Path, help="the goexd program to run (overrides --prefix)")
    i.add_argument(
        "--state-dir",
        metavar="DIR",
        type=Path,
        help="goexd's journal and snapshots (default $XDG_STATE_HOME/goex, as now set)",
    )
    i.add_argument("--unit-dir", metavar="DIR", type=Path, help="write the units here instead")
    i.add_argument("--dry-run", action="store_true", help="print the units and where they would go; write nothing")
    i.add_argument("--force", action="store_true", help="overwrite unit files goex did not write")
    i.add_argument("--enable", action="store_true", help="then run: " + _NEXT)
    i.set_defaults(handler=cmd_install)

    u = sub.add_parser(
        "uninstall-service",
        help="stop and remove the systemd user units install-service wrote",
        description="Disable and stop goexd.socket, goexd.service and the gc timer (systemctl --user, when a "
        "user manager answers), then remove the unit files goex install-service wrote (others are left, "
        "named). goexd's state (journal, snapshots) is kept.",
    )
    u.add_argument("--unit-dir", metavar="DIR", type=Path, help="remove the units from here instead")
    u.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    u.set_defaults(handler=cmd_uninstall)


def _no_json(app: App, command: str) -> None:
    if app.json:
        raise UsageError(f"goex {command} has no --json output (it prints what it wrote)")


def _program(path: Path, what: str) -> Path:
    """`path` made absolute (not resolved: a ~/.local/bin link survives a reinstall), checked executable."""
    path = Path(os.path.abspath(path.expanduser()))
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise CliError(f"{what} {path} is not an executable file", code="NOT_FOUND")
    return path


def find_binaries(args: argparse.Namespace) -> units.Binaries:
    """goex: this program (its console script), else `goex` on PATH; goexd: --goexd, --prefix/bin,
    beside goex, else on PATH."""
    if args.prefix is not None:
        return units.Binaries(
            goex=_program(args.prefix / "bin" / "goex", "goex"),
            goexd=_program(args.goexd or args.prefix / "bin" / "goexd", "goexd"),
        )
    me = Path(sys.argv[0])
    found = str(me) if me.name == "goex" else shutil.which("goex")
    if found is None:
        raise CliError("cannot find the goex program: pass --prefix DIR (DIR/bin/goex)", code="NOT_FOUND")
    goex = _program(Path(found), "goex")
    if args.goexd is not None:
        return units.Binaries(goex, _program(args.goexd, "goexd"))
    beside = goex.with_name("goexd")
    on_path = shutil.which("goexd")
    if beside.is_file():
        return units.Binaries(goex, _program(beside, "goexd"))
    if on_path is not None:
        return units.Binaries(goex, _program(Path(on_path), "goexd"))
    raise CliError(
        f"goexd is not installed beside {goex} nor on PATH: install it (pipx install goexd, or "
        "pip install --user goexd) or pass --goexd PATH",
        code="NOT_FOUND",
    )


def cmd_install(app: App, args: argparse.Namespace) -> int:
    _no_json(app, "install-service")
    binaries = find_binaries(args)
    state_dir = Path(os.path.abspath(args.state_dir or units.default_state_dir()))
    unit_dir = args.unit_dir or units.user_unit_dir()
    rendered = units.render(binaries, state_dir)
    foreign = [n for n in rendered if (unit_dir / n).exists() and not units.written_by_us(unit_dir / n)]
    if foreign and not args.force and not args.dry_run:
        raise CliError(
            f"{', '.join(str(unit_dir / n) for n in foreign)}: not written by goex install-service; "
            "left alone (--force overwrites)",
            code="ALREADY_EXISTS",
        )
    if args.dry_run:
        for name, text in rendered.items():
            app.stdout.write(f"# {unit_dir / name}\n{text}\n")
        return 0
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        tmp = unit_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(unit_dir / name)
        app.stdout.write(f"wrote {unit_dir / name}\n")
    app.stdout.write(f"goexd: {binaries.goexd}\ngoex:  {binaries.goex}\nstate: {state_dir}\n")
    if not args.enable:
        app.stdout.write(f"next: {_NEXT}\n")
        return 0
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", *units.ENABLE)
    app.stdout.write(f"enabled and started: {' '.join(units.ENABLE)}\n")
    return 0


def cmd_uninstall(app: App, args: argparse.Namespace) -> int:
    _no_json(app, "uninstall-service")
    unit_dir = args.unit_dir or units.user_unit_dir()
    present = [unit_dir / n for n in units.UNIT_NAMES if (unit_dir / n).exists()]
    ours = [p for p in present if units.written_by_us(p)]
    for path in present:
        if path not in ours:
            app.warn(f"{path} was not written by goex install-service: left alone")
    if args.dry_run:
        for path in ours:
            app.stdout.write(f"would remove {path}\n")
        return 0
    if ours and shutil.which("systemctl") is not None:
        try:
            _systemctl("disable", "--now", *(p.name for p in ours))
        except CliError as exc:
            app.warn(f"{exc.message}; removing the unit files anyway")
    for path in ours:
        path.unlink(missing_ok=True)
        app.stdout.write(f"removed {path}\n")
    if not ours:
        app.stdout.write(f"no goex units in {unit_dir}\n")
    elif shutil.which("systemctl") is not None:
        try:
            _systemctl("daemon-reload")
        except CliError as exc:
            app.warn(exc.message)
    return 0


def _systemctl(*args: str) -> None:
    argv = ["systemctl", "--user", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        raise CliError(f"{' '.join(argv)} failed: {why}")
