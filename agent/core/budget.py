"""A memory budget for work in flight, and giving memory back to the system after a burst.

The publish API weighs each request by what it keeps alive while it waits for the disk queue:
its body, and per decoded entry its envelope, id and encoded command (see `weigh` in
agent/messages/api.py). A request that does not fit is refused at once (503 + Retry-After),
never queued: a waiting request would hold its body anyway. A request alone is always let in,
however heavy, so every body within the size limit can succeed when the agent is quiet.

CPython's allocator keeps freed memory for reuse, so RSS stays at its peak after a burst of
large requests; once nothing is in flight for a moment, `malloc_trim` (glibc) hands the free
pages back. docs/benchmarks.md has the measured effect.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from agent.core.metrics import Metrics

log = logging.getLogger("agent.core.budget")

TRIM_DELAY = 0.5
"""Seconds with nothing in flight before free memory is handed back (a burst is over)."""
TRIM_AFTER_BYTES = 16 * 1024 * 1024
"""Trim only after at least this much weight went through since the last trim."""


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run


class MemoryBudget:
    def __init__(self, max_bytes: int, metrics: Metrics, name: str) -> None:
        self.max_bytes = max_bytes
        self.in_use = 0
        self._since_trim = 0
        self._trim = _malloc_trim()
        self._trim_timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0  # loop time at which in_use last fell to zero
        metrics.gauge_callback(
            f"{name}_inflight_bytes",
            "Estimated memory held by requests in flight (see proxy.max_inflight_bytes).",
            lambda: {(): float(self.in_use)},
        )
        self._trims = metrics.counter(
            "memory_trims_total", "Times free memory was handed back after a burst."
        )

    def try_take(self, weight: int, *, held: int = 0) -> bool:
        """Take `weight` more bytes for a holder that has `held` already; False when they do
        not fit beside the other holders' (a holder alone always fits)."""
        others = self.in_use - held
        if others > 0 and self.in_use + weight > self.max_bytes:
            return False
        self.in_use += weight
        self._since_trim += weight
        return True

    def give_back(self, weight: int) -> None:
        # One timer for a whole busy stretch, not one armed and cancelled per request: when it
        # fires it looks at when the budget last went idle and waits the rest of the delay.
        self.in_use -= weight
        if self.in_use == 0 and self._since_trim >= TRIM_AFTER_BYTES and self._trim is not None:
            loop = asyncio.get_running_loop()
            self._idle_since = loop.time()
            if self._trim_timer is None:
                self._trim_timer = loop.call_later(TRIM_DELAY, self._trim_now)

    def _trim_now(self) -> None:
        self._trim_timer = None
        if self.in_use or self._trim is None:
            return  # busy again: the next give_back to zero arms the timer anew
        loop = asyncio.get_running_loop()
        remaining = self._idle_since + TRIM_DELAY - loop.time()
        if remaining > 0:  # work came and went since the timer was armed
            self._trim_timer = loop.call_later(remaining, self._trim_now)
            return
        self._since_trim = 0
        self._trim()
        self._trims.inc()
