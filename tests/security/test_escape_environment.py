"""Class 3: bwrap and everything in the sandbox get only the action's environment (a fixed minimal
set plus what the action declares), never goexd's: the daemon here is started with a marker
variable (MARKER_VAR) and every variable of the test run, and no probe may find any of them."""

from __future__ import annotations

import pytest

from tests.daemon_process import DaemonProcess
from tests.security.conftest import MARKER_VAR, Shared, run

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both

# Variables whose values a minimal environment may share with the daemon's by coincidence.
COMMON = {"PATH", "LANG", "LC_ALL", "TERM", "HOME", "SHELL", "PWD", "SHLVL", "LC_CTYPE", "TZ"}


def daemon_pairs(d: DaemonProcess) -> dict[str, str]:
    """The daemon's variables that would betray a leak (NAME=value, values long enough to be unique)."""
    return {k: f"{k}={v}" for k, v in d.env.items() if k not in COMMON and len(v) >= 6}


PROBES = {
    "proc-1-environ": "tr '\\0' '\\n' < /proc/1/environ",
    "proc-self-environ": "tr '\\0' '\\n' < /proc/self/environ",
    "env": "env",
    "every-proc-environ": "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null",
    "parent-environ": "tr '\\0' '\\n' < /proc/$PPID/environ",
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_no_daemon_variable_reaches_the_sandbox(sec_shared: Shared, probe: str) -> None:
    d = sec_shared.d
    pairs = daemon_pairs(d)
    assert MARKER_VAR in pairs
    r = run(d, sec_shared.session, PROBES[probe] + "; echo DECLARED=$DECLARED", env={"DECLARED": "mine"})
    assert "DECLARED=mine" in r.out, f"control: the action's own variable is missing:\n{r}"
    assert d.env[MARKER_VAR] not in r.out, f"the daemon's marker leaked through {probe}:\n{r.out}"
    leaked = sorted(k for k, pair in pairs.items() if pair in r.out)
    assert leaked == [], f"daemon variables visible through {probe}: {leaked}"


def test_no_daemon_variable_reaches_a_python_action(sec_shared: Shared) -> None:
    d = sec_shared.d
    code = "import os\nfor k, v in sorted(os.environ.items()):\n    print(f'{k}={v}')\n"
    r = run(d, sec_shared.session, code, python=True)
    assert r.code == 0 and "PATH=" in r.out, r
    assert d.env[MARKER_VAR] not in r.out
    leaked = sorted(k for k, pair in daemon_pairs(d).items() if pair in r.out)
    assert leaked == [], leaked
