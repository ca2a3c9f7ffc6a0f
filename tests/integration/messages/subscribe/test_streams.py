"""The consumer group's commands against a real Redis: lag, attempt counts, touch, dead letters."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from agent.messages.subscribe.streams import NEW, GroupStream
from tests.harness import RedisServer

pytestmark = pytest.mark.integration


def message(n: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"m{n}",
            "topic": "t",
            "data": n,
            "headers": None,
            "metadata": None,
            "timestamp": "2026-01-01T00:00:00Z",
            "retry_count": 0,
        }
    )


async def test_lag_attempts_touch_and_dead_letter(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    mine = GroupStream(client, "stream:t", "t", "g", "mine")
    other = GroupStream(client, "stream:t", "t", "g", "other")
    try:
        await mine.ensure_group()
        await mine.ensure_group()  # BUSYGROUP is fine
        for n in range(5):
            await client.xadd("stream:t", {"data": message(n)})
        assert await mine.lag() == 5
        first = await mine.read(NEW, 2, None)
        assert [e.message_id for e in first] == ["m0", "m1"] and first[0].attempt == 1
        assert await mine.lag() == 3

        again = await mine.read("0", 10, None)  # our pending list, counted again
        assert [e.attempt for e in again] == [2, 2]
        entry = again[0]
        entry.attempt = 3
        assert await mine.touch(entry)
        claimed = await other.claim_stale(0, 10)  # idle 0: take both
        assert {e.entry_id for e in claimed} == {e.entry_id for e in first}
        assert {e.message_id: e.attempt for e in claimed} == {"m0": 4, "m1": 3}
        assert not await mine.touch(entry)  # no longer ours: we must let it go

        await other.dead_letter(claimed[:1], [b'{"id":"m0","retry_count":3}'])
        assert await client.lrange("dlq:t", 0, -1) == [b'{"id":"m0","retry_count":3}']
        await other.ack([claimed[1].entry_id])
        assert (await client.xpending("stream:t", "g"))["pending"] == 0
    finally:
        await client.aclose()
