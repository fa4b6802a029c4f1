"""goexd's test-only fault points (goexd/faults.py): hard to arm by accident, exact when armed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd import faults
from goexd.domain.errors import SetupError

DAEMON = Path(faults.__file__).parent


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    yield
    faults.disarm()


def fire(env: dict[str, str], *calls: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    """In a child process: arm from `env`, reach the points `calls` in order, then say it survived."""
    code = (
        "import sys\nfrom goexd import faults\n"
        f"faults.arm_from_env({env!r})\n"
        + "".join(f"faults.point({name!r}, {tag!r}); print('passed {name}:{tag}', flush=True)\n" for name, tag in calls)
        + "print('survived')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_a_point_needs_both_variables_to_be_armed() -> None:
    assert faults.arm_from_env({faults.POINT_ENV: "run-returned"}) is None  # the switch is missing: ignored
    assert faults.arm_from_env({faults.ARM_ENV: "1"}) is None  # nothing named
    assert faults.arm_from_env({faults.ARM_ENV: "yes", faults.POINT_ENV: "run-returned"}) is None  # "1" only
    out = fire({faults.POINT_ENV: "run-returned"}, ("run-returned", "sqlite-inverse"))
    assert out.returncode == 0 and "survived" in out.stdout  # control: not armed, so it goes on


def test_an_armed_point_kills_the_process_there_and_says_so() -> None:
    env = {faults.ARM_ENV: "1", faults.POINT_ENV: "action-after-commit:sqlite-inverse"}
    out = fire(env, ("run-returned", "sqlite-inverse"), ("action-after-commit", "postgres-inverse"),
               ("action-after-commit", "sqlite-inverse"))  # fmt: skip
    assert out.returncode == -signal.SIGKILL
    # Another point, and the same point with another tag, passed; the armed one killed it.
    assert out.stdout.splitlines() == [
        "passed run-returned:sqlite-inverse",
        "passed action-after-commit:postgres-inverse",
    ]
    assert "goexd: fault point action-after-commit:sqlite-inverse hit" in out.stderr


def test_the_nth_hit_any_tag() -> None:
    out = fire({faults.ARM_ENV: "1", faults.POINT_ENV: "undo-returned@2"}, *[("undo-returned", "fs-versioned")] * 3)
    assert out.returncode == -signal.SIGKILL and out.stdout.splitlines() == ["passed undo-returned:fs-versioned"]


@pytest.mark.parametrize(
    "spec", ["run-returnd", "run-returned:sqlite", "run-returned@0", "run-returned@x", "RUN-RETURNED", " run-returned"]
)
def test_a_malformed_or_unknown_point_stops_the_start(spec: str) -> None:
    with pytest.raises(SetupError, match=re.escape(faults.POINT_ENV)):
        faults.arm_from_env({faults.ARM_ENV: "1", faults.POINT_ENV: spec})


def test_every_point_is_named_in_the_code_and_every_named_point_is_known() -> None:
    called = set()
    for path in DAEMON.rglob("*.py"):
        text = path.read_text()
        called |= set(re.findall(r'faults\.point\("([a-z-]+)"', text))
        if re.search(r"faults\.point\(f\"\{step\}-before-commit\"", text):
            called |= {"action-before-commit", "undo-before-commit"}
    assert called == set(faults.POINTS)
