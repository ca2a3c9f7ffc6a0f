"""Redis going away under load: publishes keep getting 2xx (buffered on disk), and once Redis
is back every acknowledged message is in its stream once, in order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from agent.messages.pipeline import MessagePipeline
from tests.harness.eventually import eventually
from tests.harness.fixture_types import RedisServerFactory
from tests.integration.messages.support import (
    delivered,
    pipelines,
    post,
    stream_message_ids,
    url,
)

pytestmark = pytest.mark.integration

PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")
BUSY_SCRIPT = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1]) then break end
end
return 1
"""


class Publisher:
    """One sequential publisher per topic, so acknowledged order is the order to expect."""

    def __init__(self, pipeline: MessagePipeline, topic: str) -> None:
        self.target = url(pipeline, f"/v1/topics/{topic}/messages")
        self.stream = f"stream:{topic}"
        self.acked: list[str] = []
        self.refused: list[int] = []
        self.stop = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession) -> None:
        number = 0
        while not self.stop.is_set():
            size = 1 + number % 4
            batch = [{"data": {"n": number + i}} for i in range(size)]
            status, body = await post(http, self.target, batch)
            if status == 202:
                self.acked.extend(body["ids"])
            else:
                self.refused.append(status)
            number += size
            await asyncio.sleep(0.002)


async def more_acked(publishers: list[Publisher], count: int = 50) -> None:
    """Until every publisher has had `count` more messages accepted: time has passed under
    load, measured by the load itself."""
    targets = [len(publisher.acked) + count for publisher in publishers]
    await eventually(
        lambda: all(len(p.acked) >= t for p, t in zip(publishers, targets, strict=True)),
        what=f"{count} more accepted messages per publisher",
    )


@asynccontextmanager
async def publishing(
    pipeline: MessagePipeline, http: aiohttp.ClientSession, *topics: str
) -> AsyncIterator[list[Publisher]]:
    """A Publisher per topic, publishing until the block ends."""
    publishers = [Publisher(pipeline, topic) for topic in topics]
    tasks = [asyncio.ensure_future(publisher.run(http)) for publisher in publishers]
    try:
        yield publishers
    finally:
        for publisher in publishers:
            publisher.stop.set()
        await asyncio.gather(*tasks)


async def test_stop_redis_under_load_then_every_acked_message_arrives_once_in_order(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    server = redis_server_factory(*PERSISTENT)
    async with pipelines(tmp_path, server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        async with publishing(pipeline, http, "orders", "payments") as publishers:
            await more_acked(publishers, 100)
            await asyncio.to_thread(server.stop)
            await eventually(lambda: not pipeline.health().dependency_ok, what="the outage seen")
            await more_acked(publishers, 50)  # accepted while Redis is down
            health = pipeline.health()
            assert health.ready and not health.dependency_ok and "buffering" in health.reason
            buffered = pipeline.queue.stats().depth_items
            await asyncio.to_thread(server.start)
            await eventually(lambda: pipeline.health().dependency_ok, what="recovery")
            await more_acked(publishers, 50)
        await delivered(pipeline)
        assert pipeline.health().dependency_ok
    client = server.client()
    for publisher in publishers:
        assert publisher.refused == []
        assert len(publisher.acked) > 200
        assert stream_message_ids(client, publisher.stream) == publisher.acked
    assert buffered > 10  # the outage really was buffered


async def test_redis_killed_under_load_writes_each_acked_message_once(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    # kill -9 loses the replies of XADDs Redis had already made durable (appendfsync always):
    # those entries are found in the stream after the restart and not written again.
    server = redis_server_factory(*PERSISTENT)
    async with pipelines(tmp_path, server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        async with publishing(pipeline, http, "killed-a", "killed-b") as publishers:
            for _ in range(2):
                await more_acked(publishers, 100)
                await asyncio.to_thread(server.kill)
                await more_acked(publishers, 20)  # accepted while Redis is down
                await asyncio.to_thread(server.start)
            await more_acked(publishers, 50)
        await delivered(pipeline)
    client = server.client()
    for publisher in publishers:
        assert publisher.refused == []
        assert stream_message_ids(client, publisher.stream) == publisher.acked


# One message a batch: the retries outnumber one batch, so a retried batch that fails again
# must go back ahead of the retries not yet sent (they are newer), not behind them.
@pytest.mark.parametrize("overrides", [(), ("messages.batch.max_messages=1",)], ids=["", "tiny"])
async def test_busy_script_replies_are_retried_in_order(
    tmp_path: Path, redis_server_factory: RedisServerFactory, overrides: tuple[str, ...]
) -> None:
    server = redis_server_factory("--busy-reply-threshold", "100")
    async with pipelines(tmp_path, server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start(*overrides)
        async with publishing(pipeline, http, "busy") as [publisher]:
            await more_acked([publisher], 50)
            blocker = threading.Thread(
                target=lambda: server.client(socket_timeout=10).eval(BUSY_SCRIPT, 0, 1_200_000)
            )
            blocker.start()
            await eventually(lambda: pipeline.sender.retry_reasons["BUSY"] > 0, what="BUSY")
            await asyncio.to_thread(blocker.join)
            await more_acked([publisher], 50)
        await delivered(pipeline)
        reasons = pipeline.sender.retry_reasons
    assert publisher.refused == []
    assert stream_message_ids(server.client(), publisher.stream) == publisher.acked
    assert reasons["BUSY"] > 0  # BUSY replies were seen and retried


async def test_a_loading_window_after_a_restart_is_retried_in_order(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    # A save point makes SIGTERM write the dataset; the load is slowed down per key and
    # interleaved with client handling, so clients see LOADING replies for about a second.
    server = redis_server_factory(
        "--save", "3600 1",
        "--key-load-delay", "100",
        "--loading-process-events-interval-bytes", "1024",
    )  # fmt: skip
    filler = server.client().pipeline(transaction=False)
    for number in range(8000):
        filler.set(f"filler:{number}", "x")
    filler.execute()
    async with pipelines(tmp_path, server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        async with publishing(pipeline, http, "loading") as [publisher]:
            await more_acked([publisher], 50)
            await asyncio.to_thread(server.restart)  # returns once the load is over
            await more_acked([publisher], 50)
        await delivered(pipeline)
        reasons = pipeline.sender.retry_reasons
    assert publisher.refused == []
    assert stream_message_ids(server.client(), publisher.stream) == publisher.acked
    assert reasons["LOADING"] > 0, reasons
