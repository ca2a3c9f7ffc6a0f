"""The consumer group's Redis commands, through redis-py's asyncio client (hiredis parser).

Only this module talks to Redis for subscriptions: group creation (MKSTREAM, from the start of
the stream so nothing published before the first consumer came up is skipped), reads of new and
of our own pending entries, XAUTOCLAIM of stale ones, attempt counts from XPENDING (the group's
delivery counter is the attempt number: XREADGROUP and XAUTOCLAIM both raise it), acks, and the
dead-letter move (RPUSH then XACK in one script, so a dead letter is never lost between the
two, nor both pending and listed; in cluster mode two commands, see `moves_are_atomic`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from agent.messages.subscribe.model import Entry, entry_from_fields

log = logging.getLogger("agent.messages.subscribe")

NEW = ">"
MAX_ACK_IDS = 1000
_DEAD_LETTER = """
local count = tonumber(ARGV[1])
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2, count + 1))
return redis.call('XACK', KEYS[2], unpack(ARGV, count + 2))
"""
ACK_LINGER = 0.002  # seconds an ack waits for others; a crash in it means a redelivery
OWN_PENDING = "0"


RedisClient = aioredis.Redis | RedisCluster


def dead_letter_key(topic: str) -> str:
    return f"dlq:{topic}"


def moves_are_atomic(client: RedisClient) -> bool:
    """False in cluster mode: `dlq:<topic>` and a stream are on different masters there, so a
    move between them is two commands, not one script (docs/delivery-guarantees.md says
    what a crash between the two leaves: a copy too many, never none)."""
    return not isinstance(client, RedisCluster)


class _AckBatch:
    __slots__ = ("done", "ids")

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Every waiter may have gone (cancelled at stop): the outcome is then still retrieved.
        self.done.add_done_callback(lambda future: future.cancelled() or future.exception())


class AckBatcher:
    """Acks of deliveries finishing close together go in one XACK: each batch waits `linger`
    for company (unless it is already large), and one XACK is in flight at a time; ids
    arriving meanwhile go into the next one."""

    def __init__(
        self, send: Callable[[Sequence[bytes]], Awaitable[None]], linger: float = 0.0
    ) -> None:
        self._send = send
        self._linger = linger
        self._next: _AckBatch | None = None
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def ack_soon(self, entry_ids: Sequence[bytes]) -> asyncio.Future[None] | None:
        """Queue the ids for the next XACK; the future tells how it went."""
        if not entry_ids:
            return None
        if self._next is None:
            self._next = _AckBatch()
        batch = self._next
        batch.ids.extend(entry_ids)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return batch.done

    async def ack(self, entry_ids: Sequence[bytes]) -> None:
        """Returns once the ids are acked (raises what the XACK raised)."""
        done = self.ack_soon(entry_ids)
        if done is not None:
            await asyncio.shield(done)

    async def flush(self) -> None:
        """Wait for every queued ack to be sent (or to fail)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        while self._next is not None:
            if self._linger and len(self._next.ids) < MAX_ACK_IDS:
                await asyncio.sleep(self._linger)
            batch, self._next = self._next, None
            try:
                await self._send(batch.ids)
            except Exception as error:  # their entries stay pending: claimed later
                self.failures += 1
                log.warning("XACK failed", extra={"error": repr(error), "ids": len(batch.ids)})
                batch.done.set_exception(error)
            else:
                batch.done.set_result(None)


class GroupStream:
    """One (stream, group, consumer) triple over a shared client."""

    def __init__(
        self, client: RedisClient, stream: str, topic: str, group: str, consumer: str
    ) -> None:
        self.client = client
        self.stream = stream
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self._acks = AckBatcher(self._xack, ACK_LINGER)

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        """New entries (`start` = NEW) or our own pending ones from `start` (an id)."""
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        if not reply:
            return []
        raw = reply[0][1]
        return await self._entries(raw, counted=start != NEW)

    async def claim_stale(self, min_idle: float, count: int) -> list[Entry]:
        """Entries idle longer than `min_idle` seconds in any consumer's pending list."""
        reply: Any = await self.client.xautoclaim(
            self.stream, self.group, self.consumer, int(min_idle * 1000), "0-0", count=count
        )
        raw = reply[1] if reply else []
        deleted = reply[2] if reply and len(reply) > 2 else []
        if deleted:  # trimmed away while pending: nothing left to deliver
            await self.ack([bytes(entry_id) for entry_id in deleted])
        return await self._entries(raw, counted=True)

    async def _entries(self, raw: Sequence[Any], *, counted: bool) -> list[Entry]:
        entries: list[Entry] = []
        gone: list[bytes] = []
        for entry_id, fields in raw:
            if fields is None:  # a pending entry trimmed from the stream
                gone.append(bytes(entry_id))
                continue
            entries.append(entry_from_fields(self.topic, bytes(entry_id), fields))
        if gone:
            await self.ack(gone)
        if counted and entries:
            await self._load_attempts(entries)
        return entries

    async def _load_attempts(self, entries: list[Entry]) -> None:
        """Delivery counts of re-read or claimed entries (new ones are at 1 by definition)."""
        first, last = entries[0].entry_id, entries[-1].entry_id
        rows: Any = await self.client.xpending_range(
            self.stream, self.group, first, last, len(entries), consumername=self.consumer
        )
        counts = {bytes(row["message_id"]): int(row["times_delivered"]) for row in rows}
        for entry in entries:
            entry.attempt = max(1, counts.get(entry.entry_id, 1))

    async def touch(self, entry: Entry) -> bool:
        """Record the next attempt as the entry's delivery count, and reset its idle time so no
        one claims it during our backoff. False when it is no longer ours (claimed by another
        consumer or acked): then it is not ours to deliver."""
        rows: Any = await self.client.xpending_range(
            self.stream, self.group, entry.entry_id, entry.entry_id, 1
        )
        if not rows or bytes(rows[0]["consumer"]).decode() != self.consumer:
            return False
        claimed: Any = await self.client.xclaim(
            self.stream,
            self.group,
            self.consumer,
            0,
            [entry.entry_id],
            retrycount=entry.attempt,
            justid=True,
        )
        return bool(claimed)

    async def ack(self, entry_ids: Sequence[bytes]) -> None:
        """Returns once the ids are acked (see AckBatcher)."""
        await self._acks.ack(entry_ids)

    def ack_soon(self, entry_ids: Sequence[bytes]) -> None:
        """Ack without waiting: the delivery slot is free at once. Acks are coalesced into
        few XACKs; one that fails leaves its entries pending (claimed and delivered again)."""
        self._acks.ack_soon(entry_ids)

    async def flush_acks(self) -> None:
        await self._acks.flush()

    async def _xack(self, entry_ids: Sequence[bytes]) -> None:
        await self.client.xack(self.stream, self.group, *entry_ids)

    async def dead_letter(self, entries: Sequence[Entry], messages: Sequence[bytes]) -> None:
        """RPUSH the Messages to dlq:<topic>, then XACK the entries, in one script: an RPUSH
        that fails (the key holds something else) ends it before the XACK, so the entries
        stay pending rather than vanish."""
        ids = [entry.entry_id for entry in entries]
        if not moves_are_atomic(self.client):  # RPUSH first: a failure between keeps them
            await self.client.rpush(dead_letter_key(self.topic), *messages)
            await self.client.xack(self.stream, self.group, *ids)
            return
        script = self.client.register_script(_DEAD_LETTER)
        keys = [dead_letter_key(self.topic), self.stream]
        await script(keys=keys, args=[len(messages), *messages, self.group, *ids])

    async def lag(self) -> int | None:
        """Entries of the stream not yet read by the group (Redis >= 7), None if unknown."""
        groups: Any = await self.client.xinfo_groups(self.stream)
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = group.get("lag")
                return int(lag) if lag is not None else None
        return None
