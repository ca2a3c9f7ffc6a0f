"""Where messages Redis will never take go: the local dead-letter file, then `dlq:<topic>`.

The file is the durable record (fsync'd before the queue record is acked); the Redis list is
JobFirst's dead-letter queue (`RPUSH dlq:<topic> <Message JSON>`, what its tooling lists and
retries), pushed best-effort when Redis is reachable: a failure there is logged and counted,
never retried forever, and never blocks the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from agent.core.deadletter import DeadLetterFile, raw_field
from agent.core.diskqueue.queue import Item
from agent.core.metrics import Metrics
from agent.messages.layout import dead_letter_message
from agent.messages.redis.resp import ReplyError, RespConnection, encode_command
from agent.messages.redis.writer import DeadEntry, StreamWriter

log = logging.getLogger("agent.messages.deadletters")


class MessageDeadLetters:
    def __init__(self, file: DeadLetterFile, writer: StreamWriter, metrics: Metrics) -> None:
        self.file = file
        self._writer = writer
        self._pushes = metrics.counter(
            "message_dlq_pushes_total",
            "Dead-lettered messages pushed to dlq:<topic> in Redis, by result.",
            ("result",),
        )

    async def write(self, dead: Sequence[DeadEntry]) -> None:
        """Record each entry durably in the file, then push it to its dlq:<topic> list."""
        messages = [self._message(entry) for entry in dead]
        await self.file.write_many(
            [
                {
                    "reason": entry.reason,
                    "detail": entry.detail,
                    "source": "messages",
                    "topic": entry.record.topic,
                    "stream": entry.record.stream.decode(errors="replace"),
                    "message_id": entry.record.message_ids[entry.index],
                    **raw_field(message),
                }
                for entry, message in zip(dead, messages, strict=True)
            ]
        )
        topics = [entry.record.topic for entry in dead]
        await self._push(topics, messages)

    async def unreadable(self, items: Sequence[Item], detail: str) -> None:
        """Queue records this version cannot decode: kept whole in the file, never retried."""
        await self.file.write_many(
            [
                {
                    "reason": "unreadable_record",
                    "detail": detail,
                    "source": "messages",
                    "seq": i.seq,
                }
                | raw_field(i.data)
                for i in items
            ]
        )

    @staticmethod
    def _message(entry: DeadEntry) -> bytes:
        record = entry.record
        try:
            return dead_letter_message(
                record.layout,
                record.topic,
                record.message_ids[entry.index],
                record.command(entry.index),
                record.timestamp,
            )
        except ValueError:
            return record.command(entry.index)  # keep the bytes, whatever they are

    async def _push(self, topics: list[str], messages: list[bytes]) -> None:
        # Per connection: in a cluster each dlq:<topic> list lives on the master of its slot.
        groups: dict[int, tuple[RespConnection, list[bytes], int]] = {}
        skipped = 0
        for topic, message in zip(topics, messages, strict=True):
            key = b"dlq:" + topic.encode()
            connection = self._writer.connection_for(key)
            if connection is None or connection.closed:
                skipped += 1
                continue
            _, wire, count = groups.get(id(connection), (connection, [], 0))
            wire.append(encode_command((b"RPUSH", key, message)))
            groups[id(connection)] = (connection, wire, count + 1)
        if skipped:
            self._pushes.labels("skipped").inc(skipped)
        for connection, wire, count in groups.values():
            await self._push_to(connection, b"".join(wire), count)

    async def _push_to(self, connection: RespConnection, wire: bytes, count: int) -> None:
        try:
            async with asyncio.timeout(self._writer.target.command_timeout):
                replies: list[Any] = await connection.send(wire, count)
        except (ConnectionError, TimeoutError) as error:
            log.warning("could not push dead letters to Redis: %r", error)
            self._pushes.labels("failed").inc(count)
            return
        failed = [reply for reply in replies if isinstance(reply, ReplyError)]
        if failed:
            log.warning("Redis refused %d dead-letter pushes: %s", len(failed), failed[0])
        self._pushes.labels("failed").inc(len(failed))
        self._pushes.labels("pushed").inc(len(replies) - len(failed))
