"""Retry policy as data, the outage state both senders keep, the two error kinds push
functions raise, and HTTP status classification.

Push functions are plain `push(batch)` coroutines that raise `RetryableError` (try again later,
maybe after `retry_after` seconds) or `PermanentError` (this batch will never be accepted:
dead-letter it); `classify` turns anything else they raise into one of the two. Statuses are
classified here and nowhere else: 429/502/503/504 retry and honour Retry-After, 408 retries,
other 4xx are permanent, other 5xx retry.

`Backoff` is the one retry/outage state (`SpanSender` and `StreamSender` each keep one): it
times its waits on the event loop's monotonic clock, so a wall-clock step (NTP) neither
stalls nor hurries a retry.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


class Backoff:
    """Where a sender stands in an outage: consecutive failed attempts, the last error, since
    when it fails and when the next attempt is due, all on one monotonic `clock` (the running
    loop's `time()` unless given)."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self._clock = clock
        self.attempt = 0
        self.last_error = ""
        self.failing_since: float | None = None
        self.retry_at = 0.0

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    @property
    def failing(self) -> bool:
        """True from a failure until `recovered`."""
        return self.failing_since is not None

    def failed(self, error: str) -> bool:
        """Note a failed attempt's error; True when it starts an outage (worth one log line)."""
        self.last_error = error
        if self.failing_since is not None:
            return False
        self.failing_since = self.now()
        return True

    def step(self, retry_after: float | None = None) -> float:
        """One backoff step per failed attempt: the delay before the next one, which is also
        remembered as `retry_at`."""
        self.attempt += 1
        delay = self.policy.delay(self.attempt, retry_after)
        self.retry_at = self.now() + delay
        return delay

    def remaining(self) -> float:
        """Seconds until the next attempt is due; 0 when it is (or nothing failed)."""
        if not self.attempt:
            return 0.0
        return max(0.0, self.retry_at - self.now())

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else max(0.0, self.now() - self.failing_since)

    def status(self) -> dict[str, Any]:
        """For /status: empty unless failing."""
        if not self.failing:
            return {}
        return {
            "last_error": self.last_error,
            "failing_for_seconds": round(self.failing_for(), 3),
            "next_attempt_in_seconds": round(self.remaining(), 3),
        }

    def recovered(self) -> float | None:
        """An attempt succeeded: forget the outage. Returns how long it lasted, None if there
        was none."""
        lasted = self.failing_for() if self.failing else None
        self.attempt = 0
        self.last_error = ""
        self.failing_since = None
        self.retry_at = 0.0
        return lasted


def classify(error: Exception) -> PermanentError | RetryableError:
    """What an exception out of a push function means for its batch. Ours say it themselves;
    anything else is a defect or a local misconfiguration (aiohttp raises ValueError for a URL
    with userinfo plus an Authorization header, for one): permanent when resending the same
    batch cannot help (ValueError, TypeError and the like), retryable otherwise (OSError,
    timeouts, the unknown), so that no batch is dropped for a passing fault."""
    if isinstance(error, PermanentError | RetryableError):
        return error
    described = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, ValueError | TypeError | LookupError | AttributeError):
        return PermanentError(f"unexpected error in push: {described}")
    return RetryableError(f"unexpected error in push: {described}")


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
