"""Deliveries of a real Redis stream to a real local app: acks only for what was handled,
retries with backoff, dead letters with retry_count = max_retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.harness import RedisServer
from tests.harness.ports import free_port
from tests.integration.messages.subscribe.app import (
    ReceivingApp,
    Seen,
    eventually,
    subscription,
)
from tests.integration.messages.support import pipelines, post, url

pytestmark = pytest.mark.integration


async def test_failing_app_gets_retries_then_the_message_is_dead_lettered(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = ReceivingApp(answer=lambda seen, count: web.Response(status=500))
    await app.start()
    db = redis_server.client()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(*subscription(app, "orders", max_retries=2))
            status, body = await post(
                http, url(pipeline, "/v1/topics/orders/messages"), {"data": {"n": 1}}
            )
            assert status == 202
            await eventually(lambda: db.llen("dlq:orders") == 1, "the dead letter")
            dead = orjson.loads(db.lindex("dlq:orders", 0))  # type: ignore[arg-type]
            assert dead["id"] == body["ids"][0] and dead["data"] == {"n": 1}
            assert dead["retry_count"] == 2
            assert [s.headers["X-Delivery-Attempt"] for s in app.seen] == ["1", "2", "3"]
            assert [s.body["retry_count"] for s in app.seen] == [0, 1, 2]
            assert app.seen[0].headers["X-Message-Id"] == body["ids"][0]
            assert app.seen[0].headers["X-Topic"] == "orders"
            pending = db.xpending("stream:orders", "jobfirst-consumer-group")
            assert pending["pending"] == 0  # acked once it was in the dead-letter list
    finally:
        await app.stop()


async def test_handled_after_failures_is_acked_once_and_not_dead_lettered(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    def flaky(seen: object, count: int) -> web.Response | None:
        return web.Response(status=503) if count <= 2 else None

    app = ReceivingApp(answer=flaky)
    await app.start()
    db = redis_server.client()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(*subscription(app, "orders", max_retries=3))
            await post(http, url(pipeline, "/v1/topics/orders/messages"), {"data": "x"})
            await eventually(lambda: len(app.seen) == 3, "the third attempt")
            await eventually(
                lambda: db.xpending("stream:orders", "jobfirst-consumer-group")["pending"] == 0,
                "the ack",
            )
            assert db.llen("dlq:orders") == 0
            metrics = pipeline.subscriptions
            assert metrics is not None and metrics.consumers[0].stats.handled == 1
    finally:
        await app.stop()


async def test_group_is_created_with_mkstream_and_earlier_entries_are_delivered(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = ReceivingApp()
    await app.start()
    db = redis_server.client()
    message = {
        "id": "msg_early",
        "topic": "t",
        "data": 1,
        "headers": None,
        "metadata": None,
        "timestamp": "2026-01-01T00:00:00Z",
        "retry_count": 0,
    }
    db.xadd("stream:t", {"data": orjson.dumps(message), "topic": "t", "timestamp": "1"})
    try:
        async with pipelines(tmp_path, redis_server.url) as start:
            await start(*subscription(app, "t"), *subscription(app, "empty", index=1))
            await eventually(lambda: app.ids() == ["msg_early"], "the earlier entry")
            assert db.exists("stream:empty") == 1  # MKSTREAM: the group waits on a new stream
            groups = db.xinfo_groups("stream:empty")
            assert groups[0]["name"] == b"jobfirst-consumer-group"
    finally:
        await app.stop()


async def test_app_down_for_a_while_gets_everything_when_it_returns(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = ReceivingApp()  # not started yet: connections are refused
    db = redis_server.client()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            # max_retries 1: a refused connection must not use up attempts.
            pipeline = await start(*subscription(app, "orders", max_retries=1))
            body = [{"data": {"n": n}} for n in range(10)]
            status, answer = await post(http, url(pipeline, "/v1/topics/orders/messages"), body)
            assert status == 202

            def app_reported_down() -> bool:
                health = pipeline.health()
                return health.ready and "failing" in health.reason and not health.dependency_ok

            await eventually(app_reported_down, "/readyz to name the app")
            subscriptions = pipeline.subscriptions
            assert subscriptions is not None
            stats = subscriptions.consumers[0].stats
            await eventually(lambda: stats.app_failing_for() > 0.5, "several backoffs")
            await app.start()
            await eventually(lambda: sorted(app.ids()) == sorted(answer["ids"]), "delivery")
            await eventually(lambda: pipeline.health().state == "running", "health recovered")
            assert len(app.ids()) == 10 and db.llen("dlq:orders") == 0
    finally:
        await app.stop()


async def test_dapr_app_answering_retry_and_drop(tmp_path: Path, redis_server: RedisServer) -> None:
    retried: dict[int, int] = {}

    def dapr_answer(seen: Seen, count: int) -> web.Response:
        assert seen.headers["Content-Type"] == "application/cloudevents+json"
        n = seen.body["data"]["n"]
        retried[n] = retried.get(n, 0) + 1
        status = {0: "SUCCESS", 2: "DROP", 3: "RETRY"}.get(n, "SUCCESS")
        if n == 1 and retried[n] <= 2:
            status = "RETRY"
        return web.json_response({"status": status})

    app = ReceivingApp(answer=dapr_answer)
    await app.start()
    db = redis_server.client()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            overrides = subscription(app, "events", protocol="dapr", max_retries=2)
            pipeline = await start(*overrides)
            publish = url(pipeline, "/v1.0/publish/pubsub/events")
            for n in range(4):
                status, _ = await post(http, publish, {"n": n})
                assert status == 204
            await eventually(lambda: db.llen("dlq:events") == 1, "RETRY forever dead-lettered")
            await eventually(
                lambda: db.xpending("stream:events", "jobfirst-consumer-group")["pending"] == 0,
                "everything acked",
            )
            assert retried == {0: 1, 1: 3, 2: 1, 3: 3}  # DROP is not retried
            dead = orjson.loads(db.lindex("dlq:events", 0))  # type: ignore[arg-type]
            assert dead["data"] == {"n": 3} and dead["retry_count"] == 2
            event = app.seen[0].body
            assert event["specversion"] == "1.0" and event["topic"] == "events"
            assert event["pubsubname"] == "pubsub" and event["type"] == "com.dapr.event.sent"
    finally:
        await app.stop()


async def test_ordered_delivers_one_at_a_time_in_stream_order_retries_included(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    def fail_third_twice(seen: Seen, count: int) -> web.Response | None:
        return web.Response(status=500) if seen.body["data"] == 2 and count <= 4 else None

    app = ReceivingApp(answer=fail_third_twice)
    await app.start()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(*subscription(app, "seq", ordered="true", concurrency=8))
            _, answer = await post(
                http, url(pipeline, "/v1/topics/seq/messages"), [{"data": n} for n in range(6)]
            )
            ids = answer["ids"]
            await eventually(lambda: len(app.seen) == 8, "six messages, two retries")
            # The retried message holds back the ones after it: nothing overtakes it.
            assert app.ids() == [ids[0], ids[1], ids[2], ids[2], ids[2], ids[3], ids[4], ids[5]]
    finally:
        await app.stop()


async def test_dapr_subscriptions_discovered_from_the_app(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    received: dict[str, list[object]] = {"/orders": [], "/audit": []}

    async def subscribe(request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"},
                {
                    "pubsubname": "pubsub",
                    "topic": "audit",
                    "route": "/audit",
                    "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10},
                },
            ]
        )

    async def deliver(request: web.Request) -> web.Response:
        received[request.path].append(orjson.loads(await request.read()))
        if request.path == "/audit":
            statuses = [
                {"entryId": e["entryId"], "status": "SUCCESS"}
                for e in received["/audit"][-1]["entries"]
            ]  # type: ignore[index]
            return web.json_response({"statuses": statuses})
        return web.json_response({"status": "SUCCESS"})

    app = web.Application()
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_post("/orders", deliver)
    app.router.add_post("/audit", deliver)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(
                "messages.subscriptions.0.protocol=dapr",
                f"messages.subscriptions.0.endpoint=http://127.0.0.1:{port}",
                "messages.subscriptions.0.consumer=c",
            )
            await post(http, url(pipeline, "/v1.0/publish/pubsub/orders"), {"n": 1})
            await post(http, url(pipeline, "/v1.0/publish/pubsub/audit"), {"n": 2})
            await eventually(lambda: bool(received["/orders"] and received["/audit"]), "both")
            assert received["/orders"][0]["data"] == {"n": 1}  # type: ignore[index]
            bulk = received["/audit"][0]
            assert bulk["entries"][0]["event"]["data"] == {"n": 2}  # type: ignore[index]
    finally:
        await runner.cleanup()


async def test_redis_away_is_reported_and_delivery_resumes_when_it_returns(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = ReceivingApp()
    await app.start()
    # Redis keeps its data across the restart, so the group and the pending list survive.
    redis_server.extra_args = ("--appendonly", "yes", "--appendfsync", "always")
    redis_server.restart()
    try:
        async with pipelines(tmp_path, redis_server.url) as start:
            pipeline = await start(*subscription(app, "steady"))
            subscriptions = pipeline.subscriptions
            assert subscriptions is not None
            consumer = subscriptions.consumers[0]
            await eventually(
                lambda: consumer.redis_error is None and app.seen == [], "a first read"
            )
            await asyncio.to_thread(redis_server.stop)

            def reported() -> bool:
                health = pipeline.health()
                return "subscription steady/" in health.reason and "Redis" in health.reason

            await eventually(reported, "/readyz to name Redis for the subscription")
            assert pipeline.health().ready  # entries wait in Redis; the agent stays ready
            await asyncio.to_thread(redis_server.start)
            message = orjson.dumps(
                {
                    "id": "msg_after",
                    "topic": "steady",
                    "data": 1,
                    "headers": None,
                    "metadata": None,
                    "timestamp": "2026-01-01T00:00:00Z",
                    "retry_count": 0,
                }
            )
            redis_server.client().xadd("stream:steady", {"data": message})
            await eventually(lambda: app.ids() == ["msg_after"], "delivery after the outage")
            await eventually(lambda: consumer.redis_error is None, "the error cleared")
    finally:
        await app.stop()


async def test_a_dead_letter_list_that_is_not_a_list_leaves_the_entry_pending(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = ReceivingApp(answer=lambda seen, count: web.Response(status=500))
    await app.start()
    db = redis_server.client()
    db.set("dlq:orders", "not a list")
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(*subscription(app, "orders", max_retries=0))
            await post(http, url(pipeline, "/v1/topics/orders/messages"), {"data": 1})
            subscriptions = pipeline.subscriptions
            assert subscriptions is not None
            consumer = subscriptions.consumers[0]
            await eventually(lambda: "WRONGTYPE" in (consumer.redis_error or ""), "the error")
            assert db.xpending("stream:orders", "jobfirst-consumer-group")["pending"] == 1
            assert "WRONGTYPE" in pipeline.health().reason
    finally:
        await app.stop()
