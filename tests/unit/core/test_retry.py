from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from agent.core.retry import (
    Backoff,
    PermanentError,
    RetryableError,
    RetryPolicy,
    classify,
    error_for_status,
    parse_retry_after,
    sleep_unless_stopped,
)


def test_backoff_grows_and_caps_without_jitter() -> None:
    policy = RetryPolicy(initial_interval=0.5, multiplier=2, max_interval=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_in_band() -> None:
    policy = RetryPolicy(initial_interval=1, multiplier=1, max_interval=1, jitter=0.2)
    delays = {policy.delay(1) for _ in range(200)}
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(delays) > 10


def test_retry_after_wins_but_is_capped() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, retry_after=7) == 7
    assert policy.delay(1, retry_after=10_000) == 300


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(20, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [429, 502, 503, 504, 500, 408])
def test_retryable_statuses(status: int) -> None:
    error = error_for_status(status, "2", "busy")
    assert isinstance(error, RetryableError)
    assert error.retry_after == 2.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415])
def test_permanent_statuses(status: int) -> None:
    assert isinstance(error_for_status(status, None, "bad"), PermanentError)


def test_success_is_no_error() -> None:
    assert error_for_status(200, None, "") is None
    assert error_for_status(202, None, "") is None


async def test_sleep_is_interrupted_by_stop() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, stopping.set)
    started = loop.time()
    assert await sleep_unless_stopped(10, stopping) is True
    assert loop.time() - started < 1
    assert await sleep_unless_stopped(0.01, asyncio.Event()) is False


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_steps_on_its_own_clock_and_forgets_on_recovery() -> None:
    clock = FakeClock()
    policy = RetryPolicy(initial_interval=1, multiplier=2, max_interval=10, jitter=0)
    backoff = Backoff(policy, clock)
    assert not backoff.failing and backoff.remaining() == 0.0 and backoff.status() == {}
    assert backoff.failed("down") is True
    assert backoff.failed("still down") is False, "one outage, one first failure"
    assert [backoff.step(), backoff.step()] == [1.0, 2.0]
    assert backoff.remaining() == 2.0
    clock.now += 1.5
    assert backoff.remaining() == 0.5 and backoff.failing_for() == 1.5
    assert backoff.status()["last_error"] == "still down"
    assert backoff.step(retry_after=7) == 7.0, "the server's Retry-After wins"
    assert backoff.recovered() == 1.5
    assert not backoff.failing and backoff.attempt == 0 and backoff.recovered() is None


def test_backoff_ignores_wall_clock_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = Backoff(RetryPolicy(initial_interval=5, jitter=0), clock=time.monotonic)
    backoff.failed("down")
    backoff.step()
    monkeypatch.setattr(time, "time", lambda: 0.0)  # the wall clock jumps back to 1970
    assert 4.0 < backoff.remaining() <= 5.0


def test_classify_keeps_our_errors_and_sorts_the_others() -> None:
    retry = RetryableError("503")
    assert classify(retry) is retry
    assert isinstance(classify(ValueError("Cannot combine AUTHORIZATION")), PermanentError)
    assert isinstance(classify(TypeError("bad header")), PermanentError)
    assert isinstance(classify(RuntimeError("session closed")), RetryableError)
    assert isinstance(classify(ConnectionResetError()), RetryableError)
    assert "ValueError: bad" in str(classify(ValueError("bad")))
