"""`python -m goexd.planner.local_server MODEL`: llama.cpp's OpenAI-compatible server (xllamacpp) on loopback.

Run by goexd (planner/local_model.py) as a child process, so the model's memory and any crash in llama.cpp stay
out of the daemon. It prints one line, `listening <url>`, once the model is loaded and the server answers, then
serves until its stdin closes (goexd went away, however it ended) or it gets SIGTERM. The API key it requires
comes on stdin's first line, never in its argv (which anyone on the machine may read).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goexd-local-llm")
    parser.add_argument("model", help="the GGUF file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=8192)
    args = parser.parse_args(argv)
    key = sys.stdin.readline().strip()
    try:
        import xllamacpp  # noqa: PLC0415 - goexd[local-llm]; its absence is said, not a traceback
    except ImportError:
        print("error: xllamacpp is not installed (pip install 'goexd[local-llm]')", flush=True)
        return 1
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_parallel = 1  # one plan at a time: goexd serialises its requests anyway
    params.n_ctx = args.context
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # a free port, told on stdout
    if key:
        params.api_keys = [key]
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: goexd closed its end
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    del server
    os._exit(0)  # llama.cpp's threads need no orderly interpreter teardown


if __name__ == "__main__":
    sys.exit(main())
