"""One way for a test to wait: poll a condition until it holds, or fail at a deadline.

Tests never sleep and then assert: a fixed sleep is too short on a busy machine and too long on
an idle one. A negative check ("X did not happen") waits for a later positive signal instead
(a marker that went the same way arrived), then asserts X is still absent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.02
SYNC_INTERVAL = 0.05  # blocking pollers mostly ask a server over HTTP: ask less often


async def eventually(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    what: str = "",
    interval: float = INTERVAL,
) -> T:
    """Await until `condition()` returns something truthy, and return it; AssertionError with
    `what` (or the condition's name) after `timeout` seconds of the monotonic clock."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {_describe(condition, what)}"
            )
        await asyncio.sleep(interval)


def eventually_sync(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    what: str = "",
    interval: float = SYNC_INTERVAL,
    abort: Callable[[], str | None] = lambda: None,
) -> T:
    """`eventually` for code without an event loop (process fixtures, blocking clients);
    `abort` returns a reason to stop early (a child process died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        reason = abort()
        if reason is not None:
            raise AssertionError(f"gave up waiting for {_describe(condition, what)}: {reason}")
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {_describe(condition, what)}"
            )
        time.sleep(interval)


def _describe(condition: Callable[[], object], what: str) -> str:
    return what or getattr(condition, "__name__", "condition")
