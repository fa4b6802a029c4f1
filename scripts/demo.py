"""`make demo`: start goexd on its embedded defaults, walk through the main job with the real
`goex` CLI, then stop the daemon. Everything lives in a temporary directory, so a goexd you
already run is not disturbed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from goexd.launcher import DaemonProcess

BIN = Path(sys.executable).parent


def show_tree(ws: Path) -> None:
    files = sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file())
    print(f"   myproject/ now holds: {', '.join(files)}")


def goex(*args: str, env: dict[str, str], cwd: Path) -> None:
    print(f"\n\033[1m$ goex {shlex.join(args)}\033[0m", flush=True)
    subprocess.run([str(BIN / "goex"), *args], env=env, cwd=cwd, check=False)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="goex-demo-") as tmp:
        root = Path(tmp)
        ws = root / "myproject"
        ws.mkdir()
        (ws / "b.txt").write_text("an old file the agent will delete\n")
        (ws / "notes.md").write_text("# notes\n")
        (ws / ".gitignore").write_text("build/\n")
        (ws / "build").mkdir()
        (ws / "build" / "cache.bin").write_bytes(os.urandom(4096))

        daemon_root = root / "goexd"
        daemon_root.mkdir()
        daemon = DaemonProcess(daemon_root)  # no config file: embedded defaults
        print(f"starting goexd (socket {daemon.socket}, state {daemon.state_dir}) ...")
        daemon.start()
        env = {**os.environ, "GOEX_SOCKET": str(daemon.socket), "GOEX_CLI_STATE": str(root / "cli.json")}
        try:
            goex("health", env=env, cwd=root)
            goex("session", "open", "--fs", "./myproject", env=env, cwd=root)
            show_tree(ws)
            goex("run", "--", "sh", "-c", "echo hi > a.txt && rm b.txt && rm -rf build", env=env, cwd=root)
            show_tree(ws)
            goex("log", env=env, cwd=root)
            goex("undo", env=env, cwd=root)
            show_tree(ws)
            print("   (the ignored build/ cache came back too, byte for byte)")
            goex("run", "--", "sh", "-c", "echo 'agent was here' >> notes.md", env=env, cwd=root)
            goex("commit", env=env, cwd=root)
            goex("log", env=env, cwd=root)
            goex(
                "run", "--", "sh", "-c", "cat /root/.bashrc ~/.ssh/id_rsa 2>&1; echo x > /etc/passwd", env=env, cwd=root
            )
            print("   (the sandbox sees no home directory and a read-only system)")
            goex("run", "--timeout", "1", "--", "sh", "-c", "echo half > half.txt; sleep 30", env=env, cwd=root)
            print("   (limit hit: the action FAILED and its half-done change was rolled back)")
            show_tree(ws)
            goex("session", "close", "--commit-all", env=env, cwd=root)
        finally:
            code = daemon.stop()
            print(f"\ngoexd stopped (exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
