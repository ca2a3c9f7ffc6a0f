"""A subscription to a partitioned topic reads every partition stream, and a retried dead
letter goes back to a partition stream, where the consumers read it (not to the topic's
unpartitioned key, which nobody reads)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.harness import RedisServer
from tests.integration.messages.subscribe.app import ReceivingApp, Seen, eventually, subscription
from tests.integration.messages.subscribe.test_dead_letter_api import call
from tests.integration.messages.support import pipelines, post, url

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def test_every_partition_is_delivered_in_key_order_and_dead_letters_retry_into_one(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    failing: set[int] = {7}

    def fail_some(seen: Seen, count: int) -> web.Response | None:
        return web.Response(status=500) if seen.body["data"]["n"] in failing else None

    app = ReceivingApp(answer=fail_some)
    await app.start()
    db = redis_server.client()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(
                *subscription(app, "orders", max_retries=0, ordered="true"),
                yaml=f"messages:\n  topics:\n    orders:\n      partitions: {PARTITIONS}\n",
            )
            publish = url(pipeline, "/v1/topics/orders/messages")
            batch = [{"data": {"n": n, "key": f"k{n % 5}"}, "key": f"k{n % 5}"} for n in range(40)]
            status, answer = await post(http, publish, batch)
            assert status == 202, answer
            ids = answer["ids"]
            used = [f"stream:orders:{p}" for p in range(PARTITIONS)]
            assert sum(db.xlen(key) for key in used) == 40
            assert db.exists("stream:orders") == 0
            await eventually(lambda: len(set(app.ids())) == 40, "every message once")
            assert sorted(app.ids()) == sorted(ids)  # each delivered exactly once
            for key in range(5):  # one key lands in one partition: delivered in publish order
                order = [
                    s.body["data"]["n"] for s in app.seen if s.body["data"]["key"] == f"k{key}"
                ]
                assert order == sorted(order), order
            await eventually(lambda: db.llen("dlq:orders") == 1, "the dead letter of n=7")

            failing.clear()
            listing = url(pipeline, "/v1/topics/orders/dead-letters")
            status, retried = await call(http, "POST", listing + "/retry")
            assert status == 200 and retried["ids"] == [ids[7]]
            await eventually(lambda: app.ids().count(ids[7]) == 2, "the retried message")
            assert db.exists("stream:orders") == 0
            status_body = pipeline.status()["subscriptions"]
            assert sorted(row["stream"] for row in status_body) == used
    finally:
        await app.stop()
