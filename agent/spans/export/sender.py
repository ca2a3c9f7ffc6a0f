"""`SpanSender`: sends ready batches through a push function, with concurrency, retries and a
disk queue.

Knows nothing of what a record holds: a record is opaque bytes, a complete request that the
push function can send (now or after a restart), and every record submitted carries a token
that is handed back through `on_settled(token, outcome)` once the record is safe:

- ``SENT``: the push function returned;
- ``SPILLED``: the record is fsync'd in the disk queue, which now owns it;
- ``DEAD_LETTERED``: the push function raised PermanentError (or an exception `classify`
  calls permanent) and `dead_letter` wrote it.

Normal mode sends directly, up to `max_in_flight` requests at once; `submit` waits for a free
slot, which is the backpressure the caller feels. When a send fails retryably the record is
spilled to the queue and the sender switches to spilling: every new record goes to the queue
too, behind it, until the drain loop has emptied the queue. So records reach the endpoint in
the order they were submitted, except within one window of `max_in_flight` concurrent
requests, and the caller can settle (checkpoint) past data that is durable on disk.

The drain loop sends the queue head (up to `max_in_flight` records at once) and retries
forever with the backoff policy (a `Backoff` on the loop's monotonic clock), honouring
Retry-After; a full queue makes `submit` wait for
space (never drops); a stop interrupts the backoff and leaves unsent records in the queue.

Without a queue (`sidecar-agent ship`) a retryable failure is retried in place, holding its
slot, until it succeeds or the sender is closed; tokens of records abandoned that way are
never settled, so the caller can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agent.core.diskqueue.queue import (
    DiskQueue,
    DiskQueueError,
    Item,
    QueueFullError,
    RecordTooLargeError,
)
from agent.core.lifecycle import Health, TaskSupervisor
from agent.core.metrics import Metrics
from agent.core.retry import (
    Backoff,
    PermanentError,
    RetryableError,
    RetryPolicy,
    classify,
    sleep_unless_stopped,
)
from agent.spans.export.queuedepth import QueueAccount, QueueDepth, UnitsFunction

T = TypeVar("T")
log = logging.getLogger("agent.spans.sender")

PushFunction = Callable[[bytes], Awaitable[None]]
DeadLetterFunction = Callable[[bytes, PermanentError], Awaitable[None]]
# While the queue is full, how often a waiting spill looks for space again.
FULL_QUEUE_POLL = 0.2
# How long the idle drain loop waits on an empty queue before looking at `stopping` again.
DRAIN_IDLE_WAIT = 0.5


class Outcome(enum.Enum):
    SENT = "sent"
    SPILLED = "spilled"
    DEAD_LETTERED = "dead_lettered"


class SenderClosedError(RuntimeError):
    """`submit` after `close` began."""


@dataclass(slots=True)
class _Outgoing(Generic[T]):
    record: bytes
    token: T
    settled: bool = False
    queued: bool = False


class SpanSender(Generic[T]):
    def __init__(
        self,
        name: str,
        push: PushFunction,
        *,
        on_settled: Callable[[T, Outcome], None],
        dead_letter: DeadLetterFunction,
        policy: RetryPolicy,
        max_in_flight: int,
        metrics: Metrics,
        queue: DiskQueue | None = None,
        units_of: UnitsFunction = lambda record: 1,
    ) -> None:
        self.name = name
        self._push = push
        self._on_settled = on_settled
        self._dead_letter = dead_letter
        self._max_in_flight = max(1, max_in_flight)
        self._queue = queue
        self._units_of = units_of
        self._slots = asyncio.Semaphore(self._max_in_flight)
        self._supervisor = TaskSupervisor(f"sender-{name}", metrics)
        self._sends: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._closed = False
        self._drain_task: asyncio.Task[None] | None = None
        self.spilling = False
        self.waiting_for_space = False
        self._drain_idle = False
        self._backoff = Backoff(policy)  # what the sender waits out; shown in /status
        self._account = QueueAccount(units_of)
        self.counts = {outcome: 0 for outcome in Outcome}
        self.units = {outcome: 0 for outcome in Outcome}
        self.retries = 0
        self._retries = metrics.counter(
            "sender_retries_total", "Retryable send failures, by sender.", ("sender",)
        )
        self._outcomes = metrics.counter(
            "sender_records_total",
            "Records settled by the sender, by outcome (sent, spilled, dead_lettered).",
            ("sender", "outcome"),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the queue; a queue holding records from before starts the sender spilling."""
        if self._queue is None:
            return
        await self._queue.open()
        self.spilling = self._queue.stats().depth_items > 0
        self._drain_task = self._supervisor.spawn("drain", self._drain_loop())

    def begin_close(self) -> None:
        """Stop waiting: backoff sleeps and waits for queue space end now (their records stay
        unsettled, or in the queue); requests in flight go on. `close` follows."""
        self._stopping.set()

    async def close(self, deadline: float) -> None:
        """Finish in-flight sends by the loop-clock `deadline`, spill what is still out, stop
        the drain loop and close the queue. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await self._let_sends_finish(deadline)
        self._stopping.set()
        for task in list(self._sends):
            task.cancel()  # each one spills its record on the way out (see _send)
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=max(1.0, deadline - loop.time()))
        if self._drain_task is not None:
            if self._drain_idle:
                self._drain_task.cancel()  # get() is cancel-safe: nothing handed out is lost
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(
                    asyncio.shield(self._drain_task), max(0.1, deadline - loop.time())
                )
        await self._supervisor.close(grace=1.0)
        if self._queue is not None:
            await self._queue.close()

    async def _let_sends_finish(self, deadline: float) -> None:
        """Wait for in-flight sends, but not for a full queue to make room: while the
        endpoint is down that never happens, and the records stay unsettled anyway."""
        loop = asyncio.get_running_loop()
        while self._sends and not self.waiting_for_space:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(set(self._sends), timeout=min(FULL_QUEUE_POLL, remaining))

    @property
    def failed(self) -> bool:
        """A send or the drain loop died of an unexpected error (see the log)."""
        return self._supervisor.failed

    def failure_health(self) -> Health:
        return self._supervisor.failure_health()

    # -- submitting --------------------------------------------------------------------------

    async def submit(self, record: bytes, token: T) -> None:
        """Hand over one record. Returns once it is on its way (a send slot was free) or on
        disk; waits while every slot is busy or the queue is full."""
        if self._closed:
            raise SenderClosedError(f"sender {self.name} is closed")
        outgoing = _Outgoing(record, token)
        if self.spilling and await self._spill_behind_sends(outgoing):
            return
        await self._slots.acquire()
        if self.spilling:  # a send failed while we waited for the slot
            self._slots.release()
            if await self._spill_behind_sends(outgoing):
                return
            await self._slots.acquire()
        task = self._supervisor.spawn("send", self._send(outgoing))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, outgoing: _Outgoing[T]) -> None:
        try:
            await self._send_until_settled(outgoing)
        finally:
            self._slots.release()
            if not outgoing.settled and not outgoing.queued and self._closed:
                # Cancelled by close(): a record still out goes to disk, not to oblivion.
                await self._spill_at_close(outgoing)

    async def _send_until_settled(self, outgoing: _Outgoing[T]) -> None:
        """Send, dead-letter or spill; retries in place only when there is no queue to use."""
        while not outgoing.settled:
            error = await self._attempt(outgoing.record)
            if error is None:
                self._settle(outgoing, Outcome.SENT)
            elif isinstance(error, PermanentError):
                await self._dead_letter(outgoing.record, error)
                self._settle(outgoing, Outcome.DEAD_LETTERED)
            else:
                # One backoff step per failure: the drain loop waits it out after a spill,
                # this loop when the record could not be spilled.
                delay = self._backoff.step(error.retry_after)
                if self._queue is not None:
                    self.spilling = True
                    if await self._spill(outgoing):
                        return
                if await sleep_unless_stopped(delay, self._stopping):
                    return

    async def _attempt(self, record: bytes) -> PermanentError | RetryableError | None:
        """Push once. Whatever the push raises is classified, never let through: an escaped
        exception would kill the send task and leave its record unsettled."""
        try:
            await self._push(record)
        except Exception as raised:  # classified: permanent or retryable, nothing swallowed
            error = classify(raised)
            if error is not raised:
                log.error("push raised %r", raised, extra={"sender": self.name})
            if isinstance(error, RetryableError):
                self._record_retry(error)
            return error
        lasted = self._backoff.recovered()
        if lasted is not None:
            log.info(
                "sending works again",
                extra={"sender": self.name, "failed_for_seconds": round(lasted, 3)},
            )
        return None

    # -- the queue ---------------------------------------------------------------------------

    async def _spill_behind_sends(self, outgoing: _Outgoing[T]) -> bool:
        """Spill after the direct sends still out have settled, so that those of them that
        fail reach the queue first and the queue keeps submission order."""
        if self._queue is None:
            return False
        while self._sends:
            await asyncio.wait(set(self._sends))
        spilled = await self._spill(outgoing)
        if spilled:
            # The drain loop may have seen the queue empty while this put waited for space:
            # later records must queue up behind this one, not overtake it with a direct send.
            self.spilling = True
        return spilled

    async def _spill(self, outgoing: _Outgoing[T]) -> bool:
        """Put the record in the queue, waiting as long as it takes for space. False when the
        queue cannot take it (record too large, disk failed): the caller retries in memory."""
        while True:
            try:
                await self._spill_once(outgoing)
            except QueueFullError:
                self.waiting_for_space = True
                if await sleep_unless_stopped(FULL_QUEUE_POLL, self._stopping):
                    return False
                continue
            except DiskQueueError as error:
                self._queue_broken(error)
                return False
            finally:
                self.waiting_for_space = False
            return True

    async def _spill_once(self, outgoing: _Outgoing[T]) -> None:
        assert self._queue is not None
        outgoing.queued = True  # from here a cancelled put may still land: never put twice
        try:
            seq = await self._queue.put(outgoing.record)
        except DiskQueueError:
            outgoing.queued = False
            raise
        self._account.put(seq, outgoing.record)
        self._settle(outgoing, Outcome.SPILLED)

    async def _spill_at_close(self, outgoing: _Outgoing[T]) -> None:
        if self._queue is None:
            return
        try:
            await self._spill_once(outgoing)
        except DiskQueueError as error:
            # Not settled, so the caller's checkpoint stays before it: re-read after restart.
            log.warning("could not spill at shutdown", extra={"error": str(error)})

    def _queue_broken(self, error: DiskQueueError) -> None:
        if isinstance(error, RecordTooLargeError):
            log.error("record does not fit the disk queue; retrying it in memory")
            return
        # The queue recovers from I/O errors by itself: this record retries in memory, the
        # next failure spills again.
        log.error(
            "disk queue refused the record; retrying it in memory",
            extra={"sender": self.name, "error": str(error)},
        )

    async def _drain_loop(self) -> None:
        assert self._queue is not None
        while not self._stopping.is_set():
            self._drain_idle = True
            try:
                items = await self._queue.get(self._max_in_flight, timeout=DRAIN_IDLE_WAIT)
            finally:
                self._drain_idle = False
            wait = self._backoff.remaining()
            if items and wait > 0 and await sleep_unless_stopped(wait, self._stopping):
                return  # the items stay unacked: handed out again after the next open
            if items:
                await self._drain(items)
            if self._queue.stats().depth_items == 0:
                self.spilling = False

    async def _drain(self, items: list[Item]) -> None:
        assert self._queue is not None
        errors = await asyncio.gather(*(self._attempt(item.data) for item in items))
        retry: list[int] = []
        retry_error: RetryableError | None = None
        for item, error in zip(items, errors, strict=True):
            if isinstance(error, RetryableError):
                retry.append(item.seq)
                retry_error = error
                continue
            if isinstance(error, PermanentError):
                await self._dead_letter(item.data, error)
                self._count(Outcome.DEAD_LETTERED, item.data)
            else:
                self._count(Outcome.SENT, item.data)
            self._account.acked(item)
            self._queue.ack(item.seq)
        if retry_error is not None:
            self._queue.requeue(retry)
            self._backoff.step(retry_error.retry_after)

    # -- bookkeeping -------------------------------------------------------------------------

    def _record_retry(self, error: RetryableError) -> None:
        self.retries += 1
        self._retries.labels(self.name).inc()
        if self._backoff.failed(str(error)):
            log.warning("send failed; retrying", extra={"sender": self.name, "error": str(error)})

    def _settle(self, outgoing: _Outgoing[T], outcome: Outcome) -> None:
        outgoing.settled = True
        self._count(outcome, outgoing.record)
        self._on_settled(outgoing.token, outcome)

    def _count(self, outcome: Outcome, record: bytes) -> None:
        self.counts[outcome] += 1
        self.units[outcome] += self._units_of(record)
        self._outcomes.labels(self.name, outcome.value).inc()

    @property
    def healthy(self) -> bool:
        """False from a retryable failure until the next successful send."""
        return not self._backoff.failing

    @property
    def last_error(self) -> str:
        return self._backoff.last_error

    def queue_depth(self) -> QueueDepth:
        return self._account.depth(self._queue)

    def status(self) -> dict[str, Any]:
        return {
            "state": self._state(),
            "in_flight": len(self._sends),
            "retries": self.retries,
            "settled": {o.value: n for o, n in self.counts.items()},
            "queue": {**self.queue_depth().status(), "waiting_for_space": self.waiting_for_space},
            **self._backoff.status(),
        }

    def _state(self) -> str:
        if self._closed:
            return "closed"
        if self.waiting_for_space:
            return "queue_full"
        if self._backoff.failing:
            return "backoff"
        return "spilling" if self.spilling else "sending"
