"""`StreamSender`: disk queue → pipelined batches → Redis, in order, with retries and acks.

Two tasks share one ordered lane:
  feed      waits for a free slot (at most `max_in_flight` batches outstanding), takes records
            (first the ones to retry, then the queue's), connects if needed, and writes them
            as one pipelined batch. When nothing is in flight it sends what it has at once; it
            lingers (until that batch is answered, at most `batch.linger`) only while another
            batch is outstanding, so an idle stream pays no batching delay and a busy one gets
            big batches.
  complete  takes the replies of the oldest batch, dead-letters what is dead, acks records
            whose every entry is written or dead, hands the rest back for a retry.

Order per stream: one connection and one lane, so Redis applies records in queue order.
After a retryable failure the lane drops to one batch at a time, backs off (a `Backoff` on the
loop's monotonic clock) and resends the unfinished entries, oldest first, before anything
newer; only a batch with no retryable failure restores the full window. Batches already on
the wire when a failure happened may still succeed behind it (e.g. at the end of a LOADING
window): that is the bounded reorder of pipelining, at most `max_in_flight - 1` batches, and
never happens on a lost connection (every later batch fails with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from agent.core.diskqueue.queue import DiskQueue, Item
from agent.core.metrics import SIZE_BUCKETS, Metrics
from agent.core.retry import Backoff, RetryPolicy
from agent.messages.deadletters import MessageDeadLetters
from agent.messages.record import BadRecordError, Record
from agent.messages.redis.replay import StreamLookup, ids_in_tail, lookups, mark_found
from agent.messages.redis.resp import ConnectionLostError, ReplyError, RespConnection
from agent.messages.redis.writer import BatchOutcome, SentBatch, StreamWriter, classify, error_code

log = logging.getLogger("agent.messages.sender")

QUEUE_POLL = 0.1  # how often an idle feeder looks up from the queue to check for retries
CLEAN_STREAMS_MAX = 4096  # stream names follow client-chosen topics: forget them past this


@dataclass(frozen=True, slots=True)
class SenderLimits:
    max_records: int
    max_bytes: int
    linger: float
    max_in_flight: int
    command_timeout: float


class StreamSender:
    def __init__(
        self,
        queue: DiskQueue,
        writer: StreamWriter,
        dead_letters: MessageDeadLetters,
        *,
        on_finished: Callable[[Record], None],
        policy: RetryPolicy,
        limits: SenderLimits,
        metrics: Metrics,
    ) -> None:
        self._queue = queue
        self._writer = writer
        self._dead_letters = dead_letters
        self._on_finished = on_finished
        self._backoff = Backoff(policy)
        self._limits = limits
        self._retry: deque[Record] = deque()  # unfinished, in queue order; only `complete` adds
        self._held: deque[Record] = deque()  # taken from the queue, not sent yet
        self._in_flight: deque[SentBatch] = deque()
        self._changed = asyncio.Event()
        self._degraded = False
        self.written = 0
        self.retried = 0
        self.replays_skipped = 0
        self._started_ns = time.time_ns()
        self._clean_streams: set[bytes] = set()  # looked up, none of ours was there: stop looking
        self.retry_reasons: Counter[str] = Counter()
        self._metrics(metrics)

    def _metrics(self, metrics: Metrics) -> None:
        self._written_total = metrics.counter(
            "messages_written_total", "Messages written to Redis (XADD succeeded)."
        )
        self._retried_total = metrics.counter(
            "messages_retried_total",
            "Message XADDs sent again, by what failed (an error code, or connection).",
            ("reason",),
        )
        self._replays_skipped_total = metrics.counter(
            "messages_replays_skipped_total",
            "Entries of unknown fate found already in their stream, so not sent again.",
        )
        self._batch_sizes = metrics.histogram(
            "message_batch_entries", "XADDs per pipelined batch.", buckets=SIZE_BUCKETS
        )
        self._latency = metrics.histogram(
            "message_delivery_seconds", "From accepting a publish to its XADD reply (per request)."
        )
        self._reconnects = metrics.counter(
            "message_redis_connects_total", "Connections opened to Redis, by result.", ("result",)
        )

    @property
    def last_error(self) -> str:
        """Why Redis is not taking messages now ("" while it is)."""
        return self._backoff.last_error

    @property
    def redis_ok(self) -> bool:
        return self._writer.connected and not self.last_error

    @property
    def idle(self) -> bool:
        """Nothing in memory waits to be sent or confirmed."""
        return not (self._retry or self._held or self._in_flight)

    # -- feed --------------------------------------------------------------------------------

    async def feed(self) -> None:
        while True:
            await self._wait_for_window()
            if not await self._connect_if_needed():
                continue
            records = self._take(self._retry) or self._take(self._held)
            if not records:
                records = await self._collect()
                if not records:
                    continue
                if self._retry or self._degraded or not self._writer.connected:
                    self._held.extend(records)  # a failure came in meanwhile: retries go first
                    continue
            if any(record.uncertain for record in records):
                records = await self._skip_already_written(records)
                if not records:
                    continue
            self._send(records)

    async def _wait_for_window(self) -> None:
        while True:
            self._changed.clear()
            if self._degraded and not self._in_flight:
                pause = self._backoff.remaining()
                if pause <= 0:
                    return
                await asyncio.sleep(pause)
                continue
            healthy = not self._degraded and self._writer.connected
            if healthy and len(self._in_flight) < self._limits.max_in_flight:
                return
            if not self._degraded and not self._in_flight:
                return  # not connected yet (or any more): connect first
            await self._changed.wait()

    async def _connect_if_needed(self) -> bool:
        if self._writer.connected:
            return True
        try:
            server = await self._writer.connect()
        except (OSError, TimeoutError, ReplyError) as error:
            self._reconnects.labels("failed").inc()
            self._note_failure(f"redis unreachable: {type(error).__name__}: {error}".rstrip(": "))
            server = None
        if server is None:  # waited outside the handler (docs/architecture.md: mypyc)
            await asyncio.sleep(self._backoff.step())
            return False
        self._reconnects.labels("ok").inc()
        log.info(
            "connected to Redis",
            extra={
                "redis": self._writer.target.description,
                "version": server.version_text,
                "idmp": server.supports_idmp,
            },
        )
        return True

    def _take(self, source: deque[Record]) -> list[Record]:
        taken: list[Record] = []
        size = 0
        while source and len(taken) < self._limits.max_records:
            record = source[0]
            if taken and size + len(record.commands) > self._limits.max_bytes:
                break
            taken.append(source.popleft())
            size += len(record.commands)
        return taken

    async def _collect(self) -> list[Record]:
        limits = self._limits
        items = await self._queue.get(limits.max_records, limits.max_bytes, timeout=QUEUE_POLL)
        if items and self._in_flight:
            # Another batch is on the wire: this one will not go sooner. Let more arrive until
            # that batch is answered or the linger ends, then take them in one go (a wake-up
            # per arriving record would cost more than the record itself).
            await self._linger(limits.linger)
            count, size = len(items), sum(len(item.data) for item in items)
            if count < limits.max_records and size < limits.max_bytes:
                items += await self._queue.get(
                    limits.max_records - count, limits.max_bytes - size, timeout=0
                )
        return await self._decode(items)

    async def _linger(self, seconds: float) -> None:
        """Until a batch is answered (or another change), at most `seconds`."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()

    async def _decode(self, items: list[Item]) -> list[Record]:
        records: list[Record] = []
        for item in items:
            record = item.decoded
            if isinstance(record, Record):  # put in this run and still in memory: as it was
                record.seq, record.enqueued_ns = item.seq, item.enqueued_ns
                records.append(record)
                continue
            record = _read(item)
            if isinstance(record, str):
                log.error("unreadable queue record %d: %s", item.seq, record)
                await self._dead_letters.unreadable([item], record)
                self._queue.ack(item.seq)
                continue
            if item.enqueued_ns < self._started_ns and record.stream not in self._clean_streams:
                # From an earlier run: it may have been written before that run ended.
                record.uncertain = set(range(len(record)))
            records.append(record)
        return records

    async def _skip_already_written(self, records: list[Record]) -> list[Record]:
        """Look up entries that may be in Redis already (replay.py); returns what to send."""
        server = self._writer.server
        if server is None or server.supports_idmp or self._writer.wait_replicas:
            # IDMP makes the resend harmless. With wait_replicas an entry found in the
            # master's stream is not one a replica has: its WAIT failed or never came, and the
            # master may die before replicating it. The resend's own WAIT confirms it (a
            # replica that has the resend has everything the master wrote before it), at the
            # cost of a second copy with the same message id (replay.py).
            for record in records:
                record.uncertain = None
            return records
        found: dict[str, bytes] = {}
        for stream, lookup in lookups(records).items():
            connection = self._writer.connection_for(stream)
            if connection is None:
                return records  # the send fails the same way and is retried, checks and all
            try:
                async with asyncio.timeout(self._limits.command_timeout):
                    in_stream = await self._written_in(connection, stream, lookup)
            except (ConnectionError, TimeoutError):
                return records
            except ReplyError as error:
                if classify(str(error)) == "retry":
                    return records  # LOADING, MOVED and the like: the send will be retried too
                in_stream = {}  # not a stream (WRONGTYPE...): nothing of ours is in it
            found.update(in_stream)
            if not in_stream:
                if len(self._clean_streams) >= CLEAN_STREAMS_MAX:
                    self._clean_streams.clear()  # costs a lookup again, never a message
                self._clean_streams.add(stream)
        marked = mark_found([record for record in records if record.uncertain], found)
        self.replays_skipped += marked
        self._replays_skipped_total.inc(marked)
        self._finish([record for record in records if record.finished])
        return [record for record in records if not record.finished]

    @staticmethod
    async def _written_in(
        connection: RespConnection, stream: bytes, lookup: StreamLookup
    ) -> dict[str, bytes]:
        """Message ids of ours in the stream's tail and, if some are missing there, in what
        was written since the oldest record was queued (replay.py)."""
        reply = await connection.call(
            b"XREVRANGE", stream, b"+", b"-", b"COUNT", lookup.tail_count()
        )
        in_stream = ids_in_tail(lookup.layout, reply)
        if not lookup.wanted <= in_stream.keys():
            start, count = lookup.forward_range()
            reply = await connection.call(b"XRANGE", stream, start, b"+", b"COUNT", count)
            for message_id, entry_id in ids_in_tail(lookup.layout, reply).items():
                in_stream.setdefault(message_id, entry_id)
        return in_stream

    def _send(self, records: list[Record]) -> None:
        batch = self._writer.send(records)
        self._in_flight.append(batch)
        self._batch_sizes.observe(batch.count)
        self._changed.set()

    # -- complete ----------------------------------------------------------------------------

    async def complete(self) -> None:
        while True:
            self._changed.clear()
            if not self._in_flight:
                await self._changed.wait()
                continue
            batch = self._in_flight[0]
            replies, failure = await self._replies(batch)
            self._in_flight.popleft()
            outcome = self._writer.settle(batch, replies, failure)
            await self._apply(outcome)
            self._changed.set()

    async def _replies(self, batch: SentBatch) -> tuple[list[Any], str]:
        loop = asyncio.get_running_loop()
        remaining = batch.sent_at + self._limits.command_timeout - loop.time()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await asyncio.shield(batch.replies), ""
        except ConnectionLostError as error:
            return error.replies, f"connection lost: {error}"
        except TimeoutError:
            pass
        # No answer in time: the connection cannot be trusted any more, and with it every
        # batch behind this one (they fail now, keeping the replies that did arrive).
        self._writer.disconnect()
        try:
            return await batch.replies, ""
        except ConnectionLostError as error:
            return error.replies, "no reply within redis.command_timeout"

    async def _apply(self, outcome: BatchOutcome) -> None:
        if outcome.dead:
            await self._dead_letters.write(outcome.dead)
        self._finish(outcome.finished)
        self.written += outcome.written
        self._written_total.inc(outcome.written)
        if outcome.unfinished:
            # In queue order: a batch taken from the head of `_retry` that fails again goes
            # back ahead of the retries not sent yet (they are newer), a newer batch behind.
            merged = heapq.merge(self._retry, outcome.unfinished, key=attrgetter("seq"))
            self._retry = deque(merged)
            resend = sum(len(record.pending_entries()) for record in outcome.unfinished)
            reason = "connection" if outcome.connection_failed else error_code(outcome.retry_reason)
            self.retried += resend
            self.retry_reasons[reason] += resend
            self._retried_total.labels(reason).inc(resend)
            self._degraded = True
            reconnect = outcome.connection_failed or outcome.retry_reason.startswith("READONLY")
            if reconnect:
                self._writer.disconnect()
            self._note_failure(outcome.retry_reason)
            self._backoff.step()
        elif not self._retry:
            self._recovered()

    def _finish(self, records: list[Record]) -> None:
        """Every entry of these is written or dead: ack them and tell who waits."""
        now_ns = time.time_ns()
        for record in records:
            self._queue.ack(record.seq)
            self._on_finished(record)
            self._latency.observe(max(0, now_ns - record.enqueued_ns) / 1e9)

    def _note_failure(self, reason: str) -> None:
        if self._backoff.failed(reason):
            log.warning("Redis is not taking messages; buffering", extra={"reason": reason})

    def _recovered(self) -> None:
        failures = self._backoff.attempt
        if self._backoff.recovered() is not None:
            log.info("Redis is taking messages again", extra={"after_failures": failures})
        self._degraded = False

    # -- stopping ----------------------------------------------------------------------------

    async def drain(self) -> bool:
        """Wait until everything queued is delivered (True), or give up at once while Redis
        is away (False: the queue keeps it for the next start). Bound it with a timeout."""
        while not (self.idle and self._queue.stats().depth_items == 0):
            if self.last_error:
                return False
            await asyncio.sleep(0.02)
        return True


def _read(item: Item) -> Record | str:
    """The record a queue item holds, or why it cannot be read."""
    try:
        return Record.decode(item.data, item.seq, item.enqueued_ns)
    except BadRecordError as error:
        return str(error)
