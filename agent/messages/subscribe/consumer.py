"""One subscription's consumer: read, deliver, ack, retry with backoff, dead-letter, claim.

Never ack what was not handled: an entry leaves the group's pending list only when the app
handled it (or asked to drop it), or after it was pushed to `dlq:<topic>` (one script: RPUSH,
then XACK). Everything else stays pending, so a crash, a stop or a Redis error mid-way leads to
redelivery (our pending list on restart, or XAUTOCLAIM by another consumer after
processing_timeout), with the attempt count kept in the group's delivery counter.

Bounded: at most `concurrency` deliveries (of one entry, or of up to `bulk` entries) are in
flight, and an entry being retried keeps its slot, so a failing app slows reading instead of
piling entries up in memory. `ordered` delivers one entry (or one bulk) at a time in stream
order, retries included.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from redis.exceptions import RedisError

from agent.config.tree import SubscriptionConfig
from agent.core.retry import RetryPolicy, sleep_unless_stopped
from agent.messages.subscribe.model import Entry, Verdict
from agent.messages.subscribe.protocols import DeliveryProtocol, Reply
from agent.messages.subscribe.stats import SubscriptionStats
from agent.messages.subscribe.streams import NEW, GroupStream
from agent.messages.subscribe.tracing import DeliveryTracer
from agent.messages.subscribe.transport import AppClient, AppUnreachableError

log = logging.getLogger("agent.messages.subscribe")

BLOCK_MS = 1000  # XREADGROUP BLOCK: how long one read waits for new entries
REDIS_RETRY = RetryPolicy(initial_interval=0.2, multiplier=2.0, max_interval=5.0, jitter=0.2)


class Consumer:
    def __init__(
        self,
        config: SubscriptionConfig,
        stream: GroupStream,
        app: AppClient,
        *,
        protocol: DeliveryProtocol,
        stats: SubscriptionStats,
        tracer: DeliveryTracer,
    ) -> None:
        self.config = config
        self.stream = stream
        self.app = app
        self.protocol = protocol
        self.stats = stats
        self.tracer = tracer
        self.policy = RetryPolicy(
            initial_interval=config.retry_delay,
            multiplier=2.0,
            max_interval=config.max_retry_delay,
            jitter=0.2,
        )
        self.slots = 1 if config.ordered else config.concurrency
        self._free = asyncio.Semaphore(self.slots)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.redis_error: str | None = None

    # -- the read loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Until stopped: (re)connect, resume our pending entries, then consume new ones."""
        failures = 0
        while not self.stopping.is_set():
            try:
                await self.stream.ensure_group()
                await self._resume_own_pending()
                self.redis_error = None
                failures = 0
                await self._consume()
            except (RedisError, OSError) as error:
                failures += 1
                self.redis_error = f"Redis: {type(error).__name__}: {error}"
                log.warning("subscription read failed", extra=self._log_fields(error))
                await sleep_unless_stopped(REDIS_RETRY.delay(failures), self.stopping)

    async def _resume_own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart, oldest first."""
        start = b"0"
        while not self.stopping.is_set():
            entries = await self.stream.read(start.decode(), self.config.batch_size, None)
            if not entries:
                return
            start = entries[-1].entry_id
            await self._dispatch(entries)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        claim_every = max(0.05, self.config.processing_timeout / 4)
        next_claim = loop.time()
        while not self.stopping.is_set():
            if loop.time() >= next_claim:
                next_claim = loop.time() + claim_every
                stale = await self.stream.claim_stale(
                    self.config.processing_timeout, self.config.batch_size
                )
                self.stats.claimed.inc(len(stale))
                await self._dispatch(stale)
            count = max(self.config.batch_size, self.config.bulk)
            block = int(min(BLOCK_MS, claim_every * 1000)) or 1
            await self._dispatch(await self.stream.read(NEW, count, block))

    async def _dispatch(self, entries: list[Entry]) -> None:
        """Hand entries to deliveries, waiting for a free slot for each group of them."""
        size = self.config.bulk or 1
        for start in range(0, len(entries), size):
            group = entries[start : start + size]
            await self._free.acquire()
            if self.config.ordered:
                try:
                    await self._handle(group)
                finally:
                    self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._handle_then_release(group))
            self._tasks.add(task)
            task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        """A delivery that died of an unexpected error is logged, never silent; its entries
        stay pending and are claimed again after processing_timeout."""
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error(
                "delivery failed unexpectedly",
                extra=self._log_fields(error),
                exc_info=(type(error), error, error.__traceback__),
            )

    async def _handle_then_release(self, entries: list[Entry]) -> None:
        try:
            await self._handle(entries)
        finally:
            self._free.release()

    async def stop(self, grace: float) -> None:
        """Let deliveries in flight finish within `grace`; the rest stays pending in Redis."""
        self.stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        try:
            async with asyncio.timeout(grace):
                await self.stream.flush_acks()
        except TimeoutError:
            pass  # unacked entries stay pending: delivered again after a restart or claim
        await self.app.close()

    # -- one delivery, its retries and its end -----------------------------------------------

    async def _handle(self, entries: list[Entry]) -> None:
        try:
            await self._deliver_until_done(entries)
        except RedisError as error:
            # Whatever was not acked stays pending: claimed and redelivered later.
            self.redis_error = f"Redis: {type(error).__name__}: {error}"
            log.warning("subscription ack failed", extra=self._log_fields(error))

    async def _deliver_until_done(self, entries: list[Entry]) -> None:
        limit = self.config.max_retries + 1
        waits = 0
        while entries:
            # Claimed entries may already have used up their attempts (a crash each time).
            exhausted = [entry for entry in entries if entry.attempt > limit]
            await self._dead_letter(exhausted)
            entries = [entry for entry in entries if entry.attempt <= limit]
            if not entries:
                return
            verdicts = await self._attempt(entries)
            if Verdict.UNREACHABLE in verdicts:
                waits += 1
                entries = await self._wait_for_app(entries, waits)
                continue
            waits = 0
            outcomes = list(zip(entries, verdicts, strict=True))
            self.stream.ack_soon([e.entry_id for e, v in outcomes if v is not Verdict.RETRY])
            retry = [e for e, v in outcomes if v is Verdict.RETRY]
            await self._dead_letter([entry for entry in retry if entry.attempt >= limit])
            entries = await self._next_attempt([entry for entry in retry if entry.attempt < limit])

    async def _wait_for_app(self, entries: list[Entry], waits: int) -> list[Entry]:
        """The app refused the connection: back off and try the same attempt again."""
        if await sleep_unless_stopped(self.policy.delay(waits), self.stopping):
            return []
        return [entry for entry in entries if await self.stream.touch(entry)]

    async def _next_attempt(self, entries: list[Entry]) -> list[Entry]:
        if not entries:
            return []
        self.stats.retries.inc(len(entries))
        if await sleep_unless_stopped(self.policy.delay(entries[0].attempt), self.stopping):
            return []  # stopping: they stay pending and are delivered again later
        kept = []
        for entry in entries:
            entry.attempt += 1
            if await self.stream.touch(entry):
                kept.append(entry)
        return kept

    async def _attempt(self, entries: Sequence[Entry]) -> list[Verdict]:
        if self.config.bulk:
            return await self._attempt_bulk(entries)
        entry = entries[0]
        span = self.tracer.attempt(self.stream.topic, entry)
        verdict, status = await self._post_single(entry, span.traceparent)
        span.end(verdict.value, status)
        return [verdict]

    async def _post_single(
        self, entry: Entry, traceparent: str | None
    ) -> tuple[Verdict, int | None]:
        try:
            reply = await self.app.post(self.protocol.single(entry, traceparent))
        except AppUnreachableError as error:
            return self._unreachable(error, 1)[0], None
        verdict = self.protocol.verdict(reply)
        self._answered(reply, [verdict])
        return verdict, reply.status

    async def _attempt_bulk(self, entries: Sequence[Entry]) -> list[Verdict]:
        try:
            reply = await self.app.post(self.protocol.bulk(entries))
        except AppUnreachableError as error:
            return self._unreachable(error, len(entries))
        verdicts = self.protocol.bulk_verdicts(reply, entries)
        self._answered(reply, verdicts)
        return verdicts

    def _answered(self, reply: Reply, verdicts: list[Verdict]) -> None:
        self.stats.app_answered(reply.status)
        for verdict, count in Counter(verdicts).items():
            self.stats.outcome(verdict.value, count)

    def _unreachable(self, error: AppUnreachableError, count: int) -> list[Verdict]:
        self.stats.app_unreachable(str(error))
        verdict = Verdict.RETRY if error.connected else Verdict.UNREACHABLE
        self.stats.outcome(verdict.value, count)
        return [verdict] * count

    async def _dead_letter(self, entries: list[Entry]) -> None:
        if not entries:
            return
        # An entry claimed past its last attempt counts only the retries it had.
        retries = self.config.max_retries
        messages = [e.message_bytes(retry_count=min(e.attempt - 1, retries)) for e in entries]
        await self.stream.dead_letter(entries, messages)
        self.stats.dead_letters.inc(len(entries))
        log.warning(
            "messages dead-lettered",
            extra={
                "topic": self.stream.topic,
                "group": self.stream.group,
                "message_ids": [entry.message_id for entry in entries][:20],
                "retry_count": min(entries[0].attempt - 1, retries),
            },
        )

    def _log_fields(self, error: BaseException) -> dict[str, str]:
        return {"topic": self.stream.topic, "group": self.stream.group, "error": repr(error)}
