"""The SpanSender: direct sends, spilling to the disk queue, draining, backpressure, close.

The push function here is a scripted stand-in for *any* push function (the sender knows
nothing of OTLP); HTTP behaviour is tested against the receiver double in tests/integration.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path

import pytest

from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError, RetryableError, RetryPolicy
from agent.spans.export.sender import Outcome, SpanSender
from tests.harness.eventually import eventually

FAST = RetryPolicy(initial_interval=0.01, multiplier=2.0, max_interval=0.05, jitter=0.0)


class ScriptedPush:
    """A push function that raises the scripted errors in turn, then succeeds."""

    def __init__(self, *errors: Exception | None, delay: float = 0.0) -> None:
        self.errors: deque[Exception | None] = deque(errors)
        self.delay = delay
        self.delivered: list[bytes] = []
        self.attempts: list[tuple[float, bytes]] = []
        self.failing: Exception | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, record: bytes) -> None:
        self.attempts.append((time.monotonic(), record))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            error = self.errors.popleft() if self.errors else self.failing
            if error is not None:
                raise error
            self.delivered.append(record)
        finally:
            self.in_flight -= 1


class Harness:
    def __init__(self, push: ScriptedPush, queue: DiskQueue | None, max_in_flight: int = 2):
        self.settled: list[tuple[str, Outcome]] = []
        self.dead: list[tuple[bytes, str]] = []
        self.sender: SpanSender[str] = SpanSender(
            "test",
            push,
            on_settled=lambda token, outcome: self.settled.append((token, outcome)),
            dead_letter=self._dead_letter,
            policy=FAST,
            max_in_flight=max_in_flight,
            metrics=Metrics(),
            queue=queue,
        )

    async def _dead_letter(self, record: bytes, error: PermanentError) -> None:
        self.dead.append((record, str(error)))

    async def close(self, grace: float = 2.0) -> None:
        await self.sender.close(asyncio.get_running_loop().time() + grace)


def queue_at(path: Path, **options: object) -> DiskQueue:
    return DiskQueue(path, when_full="reject", **options)  # type: ignore[arg-type]


async def test_direct_sends_settle_in_order_within_the_in_flight_limit(tmp_path: Path) -> None:
    push = ScriptedPush(delay=0.01)
    harness = Harness(push, queue_at(tmp_path), max_in_flight=3)
    await harness.sender.start()
    for i in range(10):
        await harness.sender.submit(b"r%d" % i, f"t{i}")
    await harness.close()
    assert push.delivered == [b"r%d" % i for i in range(10)]
    assert sorted(harness.settled) == sorted((f"t{i}", Outcome.SENT) for i in range(10))
    assert push.max_in_flight == 3


async def test_retryable_failure_spills_then_everything_drains_in_order(tmp_path: Path) -> None:
    push = ScriptedPush()
    push.failing = RetryableError("down")
    harness = Harness(push, queue_at(tmp_path), max_in_flight=1)
    await harness.sender.start()
    for i in range(5):
        await harness.sender.submit(b"r%d" % i, f"t{i}")
    await eventually(lambda: len(harness.settled) == 5)
    assert all(outcome is Outcome.SPILLED for _, outcome in harness.settled)
    assert harness.sender.spilling and not harness.sender.healthy
    assert harness.sender.queue_depth()[0] == 5
    push.failing = None
    await eventually(lambda: len(push.delivered) == 5)
    assert push.delivered == [b"r%d" % i for i in range(5)]
    await eventually(lambda: not harness.sender.spilling)
    assert harness.sender.status()["state"] == "sending"
    await harness.sender.submit(b"after", "t-after")
    await eventually(lambda: ("t-after", Outcome.SENT) in harness.settled)
    await harness.close()


async def test_retry_after_from_the_server_sets_the_next_attempt(tmp_path: Path) -> None:
    push = ScriptedPush(RetryableError("busy", retry_after=0.3))
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: push.delivered == [b"r"])
    first, second = push.attempts[0][0], push.attempts[1][0]
    assert second - first >= 0.29
    await harness.close()


async def test_backoff_grows_between_failed_drain_attempts(tmp_path: Path) -> None:
    push = ScriptedPush(*[RetryableError("down")] * 4)
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: push.delivered == [b"r"])
    gaps = [b[0] - a[0] for a, b in zip(push.attempts, push.attempts[1:], strict=False)]
    # 0.01, 0.02, 0.04 then capped at 0.05: each wait at least the policy's delay.
    assert len(gaps) == 4
    expected = [0.01, 0.02, 0.04, 0.05]
    assert all(gap >= delay * 0.95 for gap, delay in zip(gaps, expected, strict=True))
    assert gaps[3] < 0.5, "the cap bounds the delay"
    assert harness.sender.retries == 4
    await harness.close()


async def test_permanent_error_is_dead_lettered_once_with_the_message(tmp_path: Path) -> None:
    push = ScriptedPush(PermanentError("HTTP 400: bad span"))
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"bad", "t-bad")
    await harness.sender.submit(b"good", "t-good")
    await eventually(lambda: len(harness.settled) == 2)
    assert harness.dead == [(b"bad", "HTTP 400: bad span")]
    assert ("t-bad", Outcome.DEAD_LETTERED) in harness.settled
    assert len([a for a in push.attempts if a[1] == b"bad"]) == 1
    await harness.close()


async def test_full_queue_blocks_submit_until_the_endpoint_drains_it(tmp_path: Path) -> None:
    push = ScriptedPush()
    push.failing = RetryableError("down")
    queue = queue_at(tmp_path, max_bytes=64 * 1024, segment_bytes=8 * 1024)
    harness = Harness(push, queue, max_in_flight=1)
    await harness.sender.start()
    record = b"x" * 3000
    submitted = 0

    async def producer() -> None:
        nonlocal submitted
        for i in range(40):  # 120 KB: twice what the queue holds
            await harness.sender.submit(record, f"t{i}")
            submitted += 1

    task = asyncio.create_task(producer())
    await eventually(lambda: harness.sender.waiting_for_space)
    assert submitted < 40, "submit must block while the queue is full"
    assert harness.sender.status()["state"] == "queue_full"
    push.failing = None
    await asyncio.wait_for(task, 10)
    await eventually(lambda: len(push.delivered) == 40)
    assert push.delivered == [record] * 40
    await harness.close()


async def test_without_a_queue_retries_in_place_and_abandons_on_close() -> None:
    push = ScriptedPush(RetryableError("down"), RetryableError("down"))
    harness = Harness(push, None)
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: harness.settled == [("t", Outcome.SENT)])
    assert len(push.attempts) == 3
    push.failing = RetryableError("down for good")
    await harness.sender.submit(b"lost", "t-lost")
    await harness.close(grace=0.1)
    assert ("t-lost", Outcome.SENT) not in harness.settled
    assert len(harness.settled) == 1


async def test_close_spills_hung_sends_and_the_next_start_delivers_them(tmp_path: Path) -> None:
    push = ScriptedPush(delay=30)
    harness = Harness(push, queue_at(tmp_path), max_in_flight=2)
    await harness.sender.start()
    await harness.sender.submit(b"a", "ta")
    await harness.sender.submit(b"b", "tb")
    await harness.close(grace=0.2)
    assert sorted(harness.settled) == [("ta", Outcome.SPILLED), ("tb", Outcome.SPILLED)]

    again = ScriptedPush()
    second = Harness(again, queue_at(tmp_path))
    await second.sender.start()
    assert second.sender.spilling, "a queue holding records starts the sender spilling"
    await second.sender.submit(b"c", "tc")
    await eventually(lambda: len(again.delivered) == 3)
    assert sorted(again.delivered[:2]) == [b"a", b"b"] and again.delivered[2] == b"c"
    await second.close()


async def test_status_reports_backoff_and_queue_depth(tmp_path: Path) -> None:
    push = ScriptedPush()
    push.failing = RetryableError("otlp endpoint unreachable: refused")
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: harness.sender.status()["state"] == "backoff")
    status = harness.sender.status()
    assert status["last_error"] == "otlp endpoint unreachable: refused"
    assert status["queue"]["records"] == 1
    assert status["queue"]["oldest_age_seconds"] is not None
    await harness.close()


async def test_a_failing_dead_letter_write_is_not_silent(tmp_path: Path) -> None:
    push = ScriptedPush(PermanentError("HTTP 400: bad"))
    harness = Harness(push, queue_at(tmp_path))

    async def broken(record: bytes, error: PermanentError) -> None:
        raise OSError("disk full")

    harness.sender._dead_letter = broken
    await harness.sender.start()
    await harness.sender.submit(b"bad", "t")
    await eventually(lambda: harness.sender.failed)
    health = harness.sender.failure_health()
    assert not health.ready and "disk full" in health.reason
    assert harness.settled == [], "not settled, so no checkpoint moves past it"
    await harness.close()


async def test_a_wall_clock_step_back_does_not_stall_the_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backoff runs on the loop's monotonic clock: an NTP step of the wall clock an hour
    back, taken while a retry waits, leaves the retry due when the policy says."""
    wall_clock = time.time
    loop = asyncio.get_running_loop()

    def step_back() -> None:
        monkeypatch.setattr(time, "time", lambda: wall_clock() - 3600)

    class StepsTheClockWhileFailing(ScriptedPush):
        async def __call__(self, record: bytes) -> None:
            if not self.attempts:
                # Runs once the sender has computed its next attempt and yields (to spill).
                loop.call_soon(step_back)
            await super().__call__(record)

    push = StepsTheClockWhileFailing(RetryableError("down", retry_after=0.05))
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: push.delivered == [b"r"], timeout=5.0)
    assert time.time() < wall_clock() - 3000, "the wall clock was stepped back meanwhile"
    assert harness.sender.healthy
    await harness.close()


async def test_a_value_error_from_the_push_is_dead_lettered_with_its_reason(
    tmp_path: Path,
) -> None:
    push = ScriptedPush(ValueError("Cannot combine AUTHORIZATION header with AUTH argument"))
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"bad", "t-bad")
    await harness.sender.submit(b"good", "t-good")
    await eventually(lambda: len(harness.settled) == 2)
    assert ("t-bad", Outcome.DEAD_LETTERED) in harness.settled
    assert ("t-good", Outcome.SENT) in harness.settled
    [(record, reason)] = harness.dead
    assert record == b"bad" and "ValueError: Cannot combine AUTHORIZATION" in reason
    assert not harness.sender.failed
    await harness.close()


async def test_an_unexpected_runtime_error_from_the_push_is_retried(tmp_path: Path) -> None:
    push = ScriptedPush(RuntimeError("session is closed"))
    harness = Harness(push, queue_at(tmp_path))
    await harness.sender.start()
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: push.delivered == [b"r"])
    assert harness.dead == [] and harness.sender.retries == 1
    assert not harness.sender.failed
    await harness.close()


async def test_without_a_queue_an_unexpected_error_still_settles_the_record() -> None:
    push = ScriptedPush(ValueError("bad URL"))
    harness = Harness(push, None)
    await harness.sender.submit(b"r", "t")
    await eventually(lambda: harness.settled == [("t", Outcome.DEAD_LETTERED)])
    assert not harness.sender.failed
    await harness.close()
