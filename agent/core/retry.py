"""Retry policy as data, the two error kinds senders raise, and HTTP status classification.

Senders are plain `push(batch)` functions that raise `RetryableError` (try again later, maybe
after `retry_after` seconds) or `PermanentError` (this batch will never be accepted: dead-letter
it). Statuses are classified here and nowhere else: 429/502/503/504 retry and honour Retry-After,
408 retries, other 4xx are permanent, other 5xx retry.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass

from agent.config.tree import RetryConfig

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
MAX_RETRY_AFTER = 300.0


class RetryableError(Exception):
    """The request may succeed later; `retry_after` is the server's wish in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """The request will never succeed as sent; the data goes to the dead-letter file."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval: float = 0.5
    multiplier: float = 2.0
    max_interval: float = 30.0
    jitter: float = 0.2

    @classmethod
    def from_config(cls, config: RetryConfig) -> RetryPolicy:
        return cls(
            initial_interval=config.initial_interval,
            multiplier=config.multiplier,
            max_interval=config.max_interval,
            jitter=config.jitter,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            # The server knows best, but a hostile or buggy value must not park us for hours.
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        exponent = max(attempt - 1, 0)
        base = min(self.initial_interval * self.multiplier**exponent, self.max_interval)
        spread = base * self.jitter
        return float(max(0.0, base + random.uniform(-spread, spread)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_for_status(status: int, retry_after: str | None, detail: str) -> Exception | None:
    """None for success; otherwise the error a sender should raise for this HTTP answer."""
    if 200 <= status < 300:
        return None
    message = f"HTTP {status}: {detail[:500]}" if detail else f"HTTP {status}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(message, parse_retry_after(retry_after))
    return PermanentError(message)


async def sleep_unless_stopped(seconds: float, stopping: asyncio.Event) -> bool:
    """Sleep, but wake at once when `stopping` is set; returns True if it was."""
    if stopping.is_set():
        return True
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
