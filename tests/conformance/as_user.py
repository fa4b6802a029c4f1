"""A Sandbox that runs another Sandbox in a process of an unprivileged user: the sandbox as an unprivileged
goexd runs it (tests/security runs whole daemons as `goex-sec`; this is that mode for the seam alone).

The child builds the backend itself (`factory`, a "module:callable" name, so nothing of the parent's
state crosses), reads the pickled spec on stdin, streams each output chunk back as it comes and then
the ExecResult, framed on stdout; the parent's cancel becomes a SIGUSR1 that sets the child's (sent once the
child said it is ready)."""

from __future__ import annotations

import pickle
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from goexd.domain.sandbox import ExecResult, OutputSink, SandboxSpec, SandboxUnavailable, Stream

CHILD = r"""
import importlib, pickle, signal, struct, sys, threading
cancel = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: cancel.set())
module, name = sys.argv[1].split(":")
backend = getattr(importlib.import_module(module), name)()
out = sys.stdout.buffer

def frame(item):
    data = pickle.dumps(item)
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()

frame(("ready", None))
spec = pickle.loads(sys.stdin.buffer.read())
if spec is None:
    backend.check()
    frame(("checked", None))
else:
    frame(("result", backend.run(spec, lambda stream, chunk: frame(("output", (stream, chunk))), cancel)))
"""


class AsUser:
    def __init__(self, factory: str, uid: int, gid: int) -> None:
        self.name = f"{factory} as uid {uid}"
        self._factory = factory
        self._uid, self._gid = uid, gid

    def check(self) -> None:
        try:
            self._call(None, None, None)
        except RuntimeError as e:
            raise SandboxUnavailable(str(e)) from e

    def run(
        self, spec: SandboxSpec, on_output: OutputSink | None = None, cancel: threading.Event | None = None
    ) -> ExecResult:
        result = self._call(spec, on_output, cancel)
        assert isinstance(result, ExecResult)
        return result

    def _call(self, spec: SandboxSpec | None, on_output: OutputSink | None, cancel: threading.Event | None) -> Any:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, self._factory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            user=self._uid,
            group=self._gid,
            extra_groups=[],
        )
        assert child.stdin is not None and child.stdout is not None
        done, ready = threading.Event(), threading.Event()
        watcher = threading.Thread(target=_forward_cancel, args=(child, cancel, ready, done), daemon=True)
        watcher.start()
        try:
            child.stdin.write(pickle.dumps(spec))
            child.stdin.close()
            while (item := _read_frame(child.stdout)) is not None:
                kind, value = item
                if kind == "ready":
                    ready.set()
                elif kind == "output":
                    stream, chunk = value
                    if on_output is not None:
                        on_output(Stream(stream), chunk)
                else:
                    return value
            raise RuntimeError(f"the sandbox process ended without a result: {child.stderr.read()!r}")  # type: ignore[union-attr]
        finally:
            done.set()
            child.kill()
            child.wait()
            watcher.join()


def _forward_cancel(
    child: subprocess.Popen[bytes], cancel: threading.Event | None, ready: threading.Event, done: threading.Event
) -> None:
    """The parent's cancel as SIGUSR1, once the child has its handler and its backend (a slow import, a
    signal too early: the child would die of it instead of cancelling)."""
    while cancel is not None and not done.is_set():
        if cancel.wait(0.01) and ready.wait(0.01):
            child.send_signal(signal.SIGUSR1)
            return


def _read_frame(pipe: IO[bytes]) -> tuple[str, Any] | None:
    head = pipe.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    item: tuple[str, Any] = pickle.loads(pipe.read(size))
    return item
