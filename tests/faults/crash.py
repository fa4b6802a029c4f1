"""Crashing a real goexd at a named fault point (goexd/faults.py) and starting it again.

`armed(root, spec)` is a DaemonProcess whose goexd kills itself (SIGKILL) at the fault point
`spec` names; `crash(d, point, call)` runs the RPC that must get it there and checks that goexd
died there, and no elsewhere; `restart(d)` starts it again on the same state dir, disarmed, so
that its recovery runs.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import grpc

from goexd.faults import ARM_ENV, POINT_ENV
from tests.daemon_process import DaemonProcess


def armed(root: Path, spec: str) -> DaemonProcess:
    root.mkdir(parents=True, exist_ok=True)
    return DaemonProcess(root, env={ARM_ENV: "1", POINT_ENV: spec}).start()


def crash(d: DaemonProcess, point: str, call: Callable[[], object]) -> None:
    """`call` reaches the armed point `point` ("name:tag"): it fails, and goexd died of SIGKILL there."""
    assert d.proc is not None
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, (exc.code(), exc.details(), d.log()[-3000:])
    else:
        raise AssertionError(f"the call returned: goexd did not die at {point}\n{d.log()[-3000:]}")
    code = d.proc.wait(10)
    assert code == -signal.SIGKILL, (code, d.log()[-3000:])
    assert f"goexd: fault point {point} hit" in d.log(), d.log()[-3000:]
    d.kill()  # closes the client's channel; the process is gone already


def restart(d: DaemonProcess, spec: str | None = None) -> DaemonProcess:
    """goexd again on the same state dir (its start runs recovery), armed at `spec` or at no point."""
    d.env.pop(POINT_ENV, None)
    if spec is not None:
        d.env.update({ARM_ENV: "1", POINT_ENV: spec})
    d.start()
    return d


def stop_cleanly(d: DaemonProcess) -> None:
    """SIGTERM; no traceback in the log over both runs (the crash itself writes none)."""
    assert d.stop() == 0, d.log()[-3000:]
    assert "Traceback" not in d.log(), d.log()
