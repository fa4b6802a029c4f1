"""The CLI's small state file: which session `goex` commands act on by default.

$GOEX_CLI_STATE, else $XDG_STATE_HOME/goex/cli.json, else ~/.local/state/goex/cli.json.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["STATE_ENV", "CliState", "default_state_path"]

STATE_ENV = "GOEX_CLI_STATE"


def default_state_path() -> Path:
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "goex" / "cli.json"


class CliState:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_state_path()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            # Missing or damaged: behave as if no session was ever selected.
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, Any]) -> None:
        import tempfile  # only a command that changes the state writes it

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Write-then-rename so a concurrent `goex` never reads half a file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".cli.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @property
    def session(self) -> str | None:
        value = self._load().get("session")
        return value if isinstance(value, str) and value else None

    def set_session(self, session_id: str) -> None:
        data = self._load()
        data["session"] = session_id
        self._save(data)

    def forget_session(self, session_id: str) -> bool:
        """Unset the current session if it is `session_id`; True when it was."""
        data = self._load()
        if data.get("session") != session_id:
            return False
        del data["session"]
        self._save(data)
        return True
