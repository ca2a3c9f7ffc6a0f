"""After a crash the previous run may have written far more than one batch past the records the
new run replays first. Those records are found in Redis (read forward from when they were
queued, not only in the stream's tail) and not written twice."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from agent.messages.record import Record
from agent.messages.redis.replay import MARGIN
from agent.messages.redis.resp import decode_command
from tests.harness import RedisServer
from tests.harness.ports import free_port, release_port
from tests.integration.messages.support import (
    delivered,
    make_config,
    post,
    stream_message_ids,
    url,
)

pytestmark = pytest.mark.integration

RECORDS = 3 * MARGIN  # the tail lookup of a 4-message batch reaches 2 * 4 + MARGIN entries back


async def test_records_written_long_before_the_stream_tail_are_not_written_twice(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # The previous run: everything queued, Redis away, then stopped.
    nowhere = free_port()
    try:
        config = make_config(tmp_path, f"redis://127.0.0.1:{nowhere}/0")
        first = MessagePipeline(config, Metrics(), Path(config.data_dir))
        await first.start()
        ids: list[str] = []
        async with aiohttp.ClientSession() as http:
            for n in range(RECORDS):  # one record each
                status, answer = await post(
                    http, url(first, "/v1/topics/replay/messages"), {"data": n}
                )
                assert status == 202, answer
                ids += answer["ids"]
        await first.stop()
    finally:
        release_port(nowhere)
    # What it wrote before it died (the crash this stands for lost the queue's acks).
    client = redis_server.client()
    async with DiskQueue(Path(config.data_dir) / "messages" / "queue") as queue:
        items = await queue.get(RECORDS, timeout=1.0)
    assert len(items) == RECORDS
    for item in items:
        record = Record.decode(item.data)
        client.execute_command(*decode_command(record.commands))

    # The next run reads the backlog a few messages a batch.
    config = make_config(tmp_path, redis_server.url, "messages.batch.max_messages=4")
    second = MessagePipeline(config, Metrics(), Path(config.data_dir))
    await second.start()
    try:
        await delivered(second)
        skipped = second.sender.replays_skipped
    finally:
        await second.stop()
    assert stream_message_ids(client, "stream:replay") == ids  # once each, in order
    assert skipped == RECORDS
