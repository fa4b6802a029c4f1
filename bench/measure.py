"""What the benchmarks share: percentiles, elapsed milliseconds, Markdown tables, progress lines.

The scripts run as `python bench/NAME.py`, which puts bench/ on sys.path: `from measure import ...`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) of xs, nearest rank."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def ms_since(t0: float) -> float:
    """Milliseconds since a time.perf_counter() reading."""
    return (time.perf_counter() - t0) * 1000


def table(header: list[str], align: str, rows: Iterable[list[str]]) -> str:
    """A Markdown table; align has one letter per column, "r" for right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:" if a == "r" else "---" for a in align]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def progress(msg: str) -> None:
    """A line on stderr, so that stdout keeps only the tables."""
    print(msg, file=sys.stderr, flush=True)


def publish(text: str, out: Path, started: float) -> None:
    """The tables on stdout and in `out`; on stderr, how long the run took (since `started`, a perf_counter)."""
    print(text)
    out.write_text(text)
    progress(f"done in {time.perf_counter() - started:.0f} s; written to {out}")
