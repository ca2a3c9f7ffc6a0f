"""Human units for durations (`250ms`, `5s`, `1m30s`) and sizes (`64MiB`, `1.5GB`)."""

from __future__ import annotations

import math
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}

DURATION_HELP = "a duration such as 250ms, 5s, 1m30s or 2h (units ns, us, ms, s, m, h, d)"
SIZE_HELP = "a size such as 512KiB, 64MiB, 1GiB or 10MB (a bare number is bytes)"


def parse_duration(text: str) -> float:
    """Return seconds for `text`; a bare number is seconds. Raises ValueError."""
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration")
    try:
        value = float(cleaned)
    except ValueError:
        value = _parse_compound_duration(cleaned)
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"duration must be finite and not negative: {text!r}")
    return value


def _parse_compound_duration(text: str) -> float:
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise ValueError(f"not a duration: {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Shortest exact-looking rendering: 0.25 -> '250ms', 90 -> '1m30s'."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        millis = seconds * 1000
        if millis >= 1 and abs(millis - round(millis)) < 1e-9:
            return f"{round(millis)}ms"
        return f"{seconds * 1e6:g}us"
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def parse_size(text: str) -> int:
    """Return bytes for `text` (`64MiB`, `10MB`, `4096`). Raises ValueError."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    unit = (match.group(2) or "").lower()
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit in {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_size(size: int) -> str:
    """Largest binary unit that divides evenly: 67108864 -> '64MiB'."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
