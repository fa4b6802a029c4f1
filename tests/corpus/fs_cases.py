"""The file cases of the inverse corpus (files.toml), and the seed workspace they run over."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from goexd.domain.models import ActionKind, ActionSpec

CASES_FILE = Path(__file__).with_name("files.toml")


@dataclass(frozen=True)
class FsCase:
    name: str
    kind: str  # "shell" | "python"
    action: str
    right: str
    wrong: str
    wrong_diff: str  # what the failed verdict's diff must name

    def spec(self, text: str) -> ActionSpec:
        if self.kind == "python":
            return ActionSpec(ActionKind.PYTHON, code=text)
        return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", text))


@dataclass(frozen=True)
class UnknownCase:
    """A pair that cannot be tried: its verdict must be unknown, saying `why`."""

    name: str
    kind: str
    action: str
    right: str
    timeout_s: float
    why: str

    def spec(self, text: str) -> ActionSpec:
        return (
            ActionSpec(ActionKind.PYTHON, code=text)
            if self.kind == "python"
            else ActionSpec(ActionKind.SHELL, argv=("sh", "-c", text))
        )


def load() -> list[FsCase]:
    with open(CASES_FILE, "rb") as f:
        return [FsCase(**c) for c in tomllib.load(f)["case"]]


def load_unknown() -> list[UnknownCase]:
    with open(CASES_FILE, "rb") as f:
        return [UnknownCase(**c) for c in tomllib.load(f)["unknown"]]


def seed(ws: Path, owner: tuple[int, int] | None = None) -> None:
    """The tree every case starts from; `owner`: chown everything to it (an unprivileged goexd's)."""
    files = {
        "a.txt": (b"alpha\n", 0o644),
        "b.txt": (b"beta\n", 0o644),
        "run.sh": (b"#!/bin/sh\necho run\n", 0o755),
        "secret.txt": (b"top secret\n", 0o600),
        "d/c.txt": (b"see\n", 0o644),
        **{f"many/f{i:02}.txt": (f"file {i}\n".encode(), 0o644) for i in range(1, 21)},
    }
    for d in ("d", "many", "empty"):
        (ws / d).mkdir(mode=0o755)
        os.chmod(ws / d, 0o755)
    for rel, (data, mode) in files.items():
        (ws / rel).write_bytes(data)
        os.chmod(ws / rel, mode)
    os.symlink("a.txt", ws / "link")
    if owner is not None:
        for root, dirs, names in os.walk(ws):
            for name in [*dirs, *names]:
                os.lchown(os.path.join(root, name), *owner)
        os.chown(ws, *owner)
