"""The accept path: envelopes in, one queue record out, answered per the ack mode.

Every ack mode takes the same ordered path (one record per request into the disk queue, which
the writer drains in order), so per-stream order holds whatever mode each request chose:
  disk     answer once the record is fsync'd (group commit: concurrent requests share one fsync)
  memory   answer once the record is queued in memory (lost if the process dies before the
           queue writes it, within 10 ms, or the host before it is synced, within 100 ms)
  redis    answer once the XADDs replied; the record is fsync'd as well, in parallel, so a
           request that times out waiting for Redis is still delivered later
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.config.tree import AckMode, MessagesConfig
from agent.core.diskqueue.queue import (
    DiskQueueError,
    QueueClosedError,
    QueueFullError,
    RecordTooLargeError,
)
from agent.messages.codec import BodyError, Envelope
from agent.messages.dedupe import DedupeCache, Seen
from agent.messages.message import AcceptTime, MessageIds
from agent.messages.partition import StreamLayout, layout_for
from agent.messages.record import Record

ACK_MODES: tuple[AckMode, ...] = ("disk", "redis", "memory")
LAYOUT_CACHE_SIZE = 4096


class RecordQueue(Protocol):
    """What the intake needs of its queue (agent.core.diskqueue.queue.DiskQueue). A protocol,
    not the class, so that tests can hand it a queue that holds a put back: compiled with
    mypyc, an argument annotated with a class must be an instance of it."""

    async def put(self, record: bytes, *, durable: bool = True, decoded: object = None) -> int: ...

    async def sync(self) -> None: ...


class PublishRefused(Exception):
    """The request was valid but cannot be taken now (or not confirmed in time)."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(slots=True)
class Accepted:
    ids: list[str]
    duplicates: int = 0
    entry_ids: list[str | None] | None = None  # ?ack=redis: per message, None if dead-lettered
    failures: dict[int, str] = field(default_factory=dict)  # ?ack=redis: index → why


@dataclass(slots=True)
class _Plan:
    """Which entries of a request are new, and the dedupe state of the rest."""

    ids: list[str]
    fresh: list[int]
    reserved: list[tuple[str, Seen]] = field(default_factory=list)
    repeats: list[tuple[int, Seen | None]] = field(default_factory=list)  # None: same request


class Intake:
    def __init__(
        self,
        config: MessagesConfig,
        queue: RecordQueue,
        *,
        retry_after: float,
        ids: MessageIds | None = None,
    ) -> None:
        self._config = config
        self._queue = queue
        self._retry_after = retry_after
        self._ids = ids or MessageIds()
        self._layouts: dict[str, StreamLayout] = {}
        self.dedupe = DedupeCache(config.dedupe_window, config.dedupe_max_ids)
        # Tokens start at a random point so a record replayed after a restart cannot match a
        # request waiting in this process.
        self._tokens = itertools.count(secrets.randbits(48) + 1)
        self._confirmations: dict[int, asyncio.Future[Record]] = {}
        self.accepted_total = 0
        self.duplicates_total = 0
        # Size of the last record refused for space (None after a put succeeds): readiness
        # says "full" while a record that size still would not fit.
        self.refused_bytes: int | None = None

    def layout(self, topic: str) -> StreamLayout:
        layout = self._layouts.get(topic)
        if layout is None:
            if len(self._layouts) >= LAYOUT_CACHE_SIZE:
                self._layouts.clear()  # topic names are client-chosen: keep memory bounded
            config = self._config.topics.get(topic, self._config.default_topic)
            layout = self._layouts[topic] = layout_for(topic, config)
        return layout

    async def publish(
        self, topic: str, envelopes: Sequence[Envelope], ack: AckMode, *, escape: bool = True
    ) -> Accepted:
        """Raises BodyError (an entry cannot be written) or PublishRefused. `escape=False`
        when the request body cannot hold a character Go's JSON encoder escapes."""
        at = AcceptTime.at(time.time_ns())
        ids = self._ids.make_many(len(envelopes), at.unix_ns)
        if (
            envelopes[0][0] is not None
            if len(envelopes) == 1
            else any(envelope[0] is not None for envelope in envelopes)
        ):
            return await self._publish_chosen_ids(topic, envelopes, ids, at, ack=ack, escape=escape)
        # The common case: every id is ours, nothing to deduplicate.
        record = self._record(topic, envelopes, ids, at, ack, escape=escape)
        await self._put(record, ack)
        self.accepted_total += len(ids)
        result = Accepted(ids)
        if ack == "redis":
            await self._confirm(record, _Plan(ids, list(range(len(ids)))), result)
        return result

    async def _publish_chosen_ids(
        self,
        topic: str,
        envelopes: Sequence[Envelope],
        ids: list[str],
        at: AcceptTime,
        *,
        ack: AckMode,
        escape: bool,
    ) -> Accepted:
        plan = await self._plan(topic, envelopes, ids)
        result = Accepted(plan.ids, duplicates=len(plan.repeats))
        record: Record | None = None
        if plan.fresh:
            try:
                record = self._fresh_record(topic, envelopes, plan, at, ack=ack, escape=escape)
                await self._put(record, ack)
            except BaseException as error:
                for message_id, seen in plan.reserved:
                    self.dedupe.settle(topic, message_id, seen, error)
                raise
            for message_id, seen in plan.reserved:
                self.dedupe.settle(topic, message_id, seen, None)
        if ack == "disk" and plan.repeats:
            # A repeat answers for a record an earlier request may have put with ?ack=memory:
            # a disk ack still means that record is on disk.
            await self._sync()
        self.accepted_total += len(plan.fresh)
        self.duplicates_total += len(plan.repeats)
        if ack == "redis":
            await self._confirm(record, plan, result)
        return result

    async def _plan(self, topic: str, envelopes: Sequence[Envelope], ids: list[str]) -> _Plan:
        """Which entries are new; `ids` (generated) take the client's where it chose one."""
        given = [index for index, envelope in enumerate(envelopes) if envelope[0] is not None]
        for index in given:
            ids[index] = envelopes[index][0] or ""
        await self._wait_out_requests_in_progress(topic, [ids[index] for index in given])
        # From here on nothing awaits: checking and reserving the ids is one atomic step, so
        # two requests sharing ids can neither both store them nor wait for each other.
        plan = _Plan(ids, [])
        chosen = set(given)
        in_request: set[str] = set()
        for index, message_id in enumerate(ids):
            if index not in chosen:
                plan.fresh.append(index)
            elif message_id in in_request:
                plan.repeats.append((index, None))
            elif (seen := self.dedupe.get(topic, message_id)) is not None:
                in_request.add(message_id)
                plan.repeats.append((index, seen))
            else:
                in_request.add(message_id)
                plan.reserved.append((message_id, self.dedupe.reserve(topic, message_id)))
                plan.fresh.append(index)
        return plan

    async def _wait_out_requests_in_progress(self, topic: str, message_ids: list[str]) -> None:
        """Wait (holding no reservation) until no other request is storing one of these ids:
        its outcome decides whether ours is a repeat."""
        while True:
            in_progress = {
                seen.accepted
                for message_id in message_ids
                if (seen := self.dedupe.get(topic, message_id)) is not None
                and seen.accepted is not None
            }
            if not in_progress:
                return
            await asyncio.wait(in_progress)

    def _fresh_record(
        self,
        topic: str,
        envelopes: Sequence[Envelope],
        plan: _Plan,
        at: AcceptTime,
        *,
        ack: AckMode,
        escape: bool,
    ) -> Record:
        """The record of the entries that are not repeats (errors name the client's index)."""
        every = len(plan.fresh) == len(envelopes)
        chosen = envelopes if every else [envelopes[index] for index in plan.fresh]
        fresh_ids = plan.ids if every else [plan.ids[index] for index in plan.fresh]
        try:
            return self._record(topic, chosen, fresh_ids, at, ack, escape=escape, tracked=True)
        except BodyError as error:
            if error.index is not None and not every:
                original = plan.fresh[error.index]
                error.message = error.message.replace(f"entry {error.index}:", f"entry {original}:")
                error.index = original
            raise

    def _record(
        self,
        topic: str,
        envelopes: Sequence[Envelope],
        ids: list[str],
        at: AcceptTime,
        ack: AckMode,
        *,
        escape: bool,
        tracked: bool = False,
    ) -> Record:
        layout = self.layout(topic)
        encoded = layout.encode(envelopes, ids, at, escape=escape)
        order = encoded.order
        return Record(
            topic=topic,
            stream=layout.stream if encoded.stream is None else encoded.stream,
            layout=layout.kind,
            message_ids=ids if order is None else [ids[i] for i in order],
            ends=encoded.ends,
            commands=encoded.blob,
            confirm_token=next(self._tokens) if ack == "redis" else 0,
            tracked=tracked,
            timestamp=at.rfc3339,
            runs=encoded.runs,
        )

    async def _put(self, record: Record, ack: AckMode) -> None:
        """Into the queue (with the Record beside its bytes, so the sender need not decode
        it); a `?ack=redis` request gets its confirmation future first."""
        data = record.encode()
        token = record.confirm_token
        if token:
            self._confirmations[token] = asyncio.get_running_loop().create_future()
        try:
            await self._queue.put(data, durable=ack != "memory", decoded=record)
        except BaseException as error:
            if token:
                self._confirmations.pop(token, None)
            if isinstance(error, DiskQueueError):
                raise self._refusal(error, len(data)) from None
            raise
        self.refused_bytes = None

    async def _sync(self) -> None:
        try:
            await self._queue.sync()
        except DiskQueueError as error:
            raise self._refusal(error, 0) from None

    def _refusal(self, error: DiskQueueError, size: int) -> PublishRefused:
        if isinstance(error, QueueFullError):
            self.refused_bytes = size
            return PublishRefused(503, "buffer_full", str(error), self._retry_after)
        if isinstance(error, RecordTooLargeError):
            hint = (
                "; a request must fit one queue segment: an eighth of messages.queue.max_bytes, "
                "at most 64 MiB (past 512 MiB raising the buffer does not help: send smaller "
                "requests)"
            )
            return PublishRefused(413, "too_large_for_buffer", f"{error}{hint}")
        if isinstance(error, QueueClosedError):
            return PublishRefused(503, "shutting_down", "the agent is stopping", 1.0)
        return PublishRefused(503, "buffer_failed", str(error), self._retry_after)

    async def _confirm(self, record: Record | None, plan: _Plan, result: Accepted) -> None:
        """?ack=redis: wait for the XADD replies of our entries (and of repeated ids)."""
        timeout = self._config.redis_ack_timeout
        entry_ids: list[str | None] = [None] * len(plan.ids)
        try:
            async with asyncio.timeout(timeout):
                if record is not None:
                    done = await self._confirmations[record.confirm_token]
                    self._copy_results(done, plan.fresh, plan.ids, entry_ids, result)
                for index, seen in plan.repeats:
                    entry = seen and await self.dedupe.wait_written(seen)
                    entry_ids[index] = entry.decode() if entry else None
        except TimeoutError:
            raise PublishRefused(
                504,
                "redis_ack_timeout",
                f"Redis did not confirm within {timeout:g}s; the messages are buffered and "
                "will still be delivered (retrying with the same ids is safe)",
            ) from None
        finally:
            if record is not None:
                self._confirmations.pop(record.confirm_token, None)
        copies = [index for index, seen in plan.repeats if seen is None]
        if copies:  # repeated within the request: the first copy's answer
            first: dict[str, int] = {}
            for index, message_id in enumerate(plan.ids):
                first.setdefault(message_id, index)  # a dict: list.index per copy is quadratic
            for index in copies:
                entry_ids[index] = entry_ids[first[plan.ids[index]]]
        result.entry_ids = entry_ids

    @staticmethod
    def _copy_results(
        done: Record, fresh: list[int], ids: list[str], entry_ids: list[str | None],
        result: Accepted,
    ) -> None:  # fmt: skip
        written = done.entry_ids or []
        places: Sequence[int] = fresh
        if not done.stream:  # grouped by partition: each entry found by its id (unique here)
            where = {ids[index]: index for index in fresh}
            places = [where[message_id] for message_id in done.message_ids]
        for entry_index, index in enumerate(places):
            entry = written[entry_index] if entry_index < len(written) else None
            entry_ids[index] = entry.decode() if entry else None
            if entry_index in done.failures:
                result.failures[index] = done.failures[entry_index]

    def finished(self, record: Record) -> None:
        """The writer is done with a record: wake its ?ack=redis request, feed the dedupe."""
        if record.confirm_token:
            future = self._confirmations.get(record.confirm_token)
            if future is not None and not future.done():
                future.set_result(record)
        if record.tracked and record.entry_ids is not None:
            for message_id, entry_id in zip(record.message_ids, record.entry_ids, strict=True):
                self.dedupe.written(record.topic, message_id, entry_id)

    def mode(self, requested: str | None) -> AckMode:
        if not requested:
            return self._config.ack
        for mode in ACK_MODES:
            if mode == requested:
                return mode
        raise BodyError(400, "bad_ack", f"ack must be one of {', '.join(ACK_MODES)}")
