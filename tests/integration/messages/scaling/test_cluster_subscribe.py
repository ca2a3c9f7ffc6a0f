"""Subscriptions in cluster mode: a topic of 8 partitions spread over three masters is read from
every partition stream, each message delivered once and in order per key; a dead letter goes
to `dlq:<topic>` (on whichever master owns it), is retried back into its partition stream and
delivered, and the rest of the list is deleted."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.harness.redis_cluster import ReplicatedRedisCluster
from tests.integration.messages.scaling.test_cluster import PARTITIONS, start_pipeline
from tests.integration.messages.subscribe.app import ReceivingApp, Seen, eventually, subscription
from tests.integration.messages.subscribe.test_dead_letter_api import call
from tests.integration.messages.support import post, url

pytestmark = pytest.mark.integration


async def test_a_partitioned_topic_over_the_masters_is_delivered_and_dead_letters_work(
    tmp_path: Path, replicated_cluster: ReplicatedRedisCluster
) -> None:
    cluster = replicated_cluster
    failing: set[int] = {7, 9}

    def fail_some(seen: Seen, count: int) -> web.Response | None:
        return web.Response(status=500) if seen.body["data"]["n"] in failing else None

    app = ReceivingApp(answer=fail_some)
    await app.start()
    pipeline = await start_pipeline(
        tmp_path, cluster, *subscription(app, "orders", max_retries=0, ordered="true")
    )
    db = cluster.client()
    try:
        async with aiohttp.ClientSession() as http:
            batch = [{"data": {"n": n, "key": f"k{n % 5}"}, "key": f"k{n % 5}"} for n in range(40)]
            status, answer = await post(http, url(pipeline, "/v1/topics/orders/messages"), batch)
            assert status == 202, answer
            ids = answer["ids"]
            streams = [f"stream:orders:{p}" for p in range(PARTITIONS)]
            owners = {cluster.master_of_key(stream).port for stream in streams}
            assert len(owners) >= 2, "the partitions should spread over the masters"
            await eventually(lambda: len(set(app.ids())) == 40, "every message once")
            assert sorted(app.ids()) == sorted(ids)
            for key in range(5):  # one key, one partition: delivered in publish order
                order = [
                    s.body["data"]["n"] for s in app.seen if s.body["data"]["key"] == f"k{key}"
                ]
                assert order == sorted(order), order
            await eventually(lambda: db.llen("dlq:orders") == 2, "the dead letters of 7 and 9")
            # Acks are batched, and in a cluster a dead letter's XACK follows its RPUSH.
            await eventually(
                lambda: all(
                    db.xpending(stream, "jobfirst-consumer-group")["pending"] == 0
                    for stream in streams
                ),
                "every entry acked",
            )

            failing.clear()
            listing = url(pipeline, "/v1/topics/orders/dead-letters")
            status, retried = await call(http, "POST", listing + "/retry", {"ids": [ids[7]]})
            assert status == 200 and retried["ids"] == [ids[7]], retried
            await eventually(lambda: app.ids().count(ids[7]) == 2, "the retried message")
            assert db.llen("dlq:orders") == 1
            status, deleted = await call(http, "DELETE", listing)
            assert status == 200 and db.llen("dlq:orders") == 0, deleted
            assert db.exists("stream:orders") == 0  # retried into its partition, not the topic
    finally:
        await pipeline.stop()
        await app.stop()
