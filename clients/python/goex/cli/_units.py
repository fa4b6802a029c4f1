"""Parsing and formatting of sizes and durations for the CLI."""

from __future__ import annotations

import re

__all__ = ["format_bytes", "format_duration", "format_ms", "parse_duration", "parse_size"]

# Binary multiples, as ulimit, docker and systemd read "512M".
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from "1048576", "512M", "512MiB", "1.5G", "64k" (K/M/G/T are powers of 1024)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"invalid size {text!r} (examples: 1048576, 64K, 512M, 1.5G)")
    number, unit = match.groups()
    value = float(number) * _SIZE_UNITS[unit.lower()]
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, not {text!r}")
    return int(value)


def parse_duration(text: str) -> float:
    """Seconds from "30", "30s", "1.5", "500ms", "2m", "1h"."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r} (examples: 30, 30s, 500ms, 2m, 1h)")
    number, unit = match.groups()
    value = float(number) * _DURATION_UNITS[unit.lower()]
    if value <= 0:
        raise ValueError(f"duration must be positive, not {text!r}")
    return value


def format_bytes(n: int) -> str:
    """1536 -> "1.5 KiB"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_ms(seconds: float | None) -> str:
    """Seconds as whole milliseconds ("12"); "-" when unknown."""
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def format_duration(seconds: float | None) -> str:
    """Seconds as "850 ms", "12.3 s", "5m 03s" or "2h 05m"."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"
