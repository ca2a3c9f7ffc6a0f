"""Every publish route lands in Redis as its topic's layout says, and JobFirst reads it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgpack
import pytest

from tests.harness import RedisServer, eventually
from tests.harness.fixture_types import RedisServerFactory
from tests.integration.messages.support import (
    delivered,
    jobfirst_consume,
    pipelines,
    post,
    url,
    xrange,
)

pytestmark = pytest.mark.integration

TOPICS_YAML = """
messages:
  topics:
    flat:
      layout: fields
    bytes:
      layout: raw
      key: "raw:{topic}"
    capped:
      maxlen: 10
"""


async def test_json_msgpack_and_dapr_routes_reach_a_jobfirst_consumer(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        publish = url(pipeline, "/v1/topics/orders/messages")
        status, batch = await post(
            http,
            publish,
            [
                {"data": {"order": 1}, "headers": {"trace-id": "t-1"}},
                {"data": "two <&>", "id": "order-2", "metadata": {"m": True}},
            ],
        )
        assert status == 202
        packed = msgpack.packb({"data": {"order": 3, "blob": b"\x00\x01"}})
        status, single = await post(http, publish, data=packed, content_type="application/msgpack")
        assert status == 202
        dapr = url(pipeline, "/v1.0/publish/pubsub/orders?metadata.source=dapr-sdk")
        status, _ = await post(http, dapr, {"order": 4})
        assert status == 204
        bulk = url(pipeline, "/v1.0-alpha1/publish/bulk/pubsub/orders")
        entries = [
            {"entryId": "e1", "event": "five", "contentType": "text/plain"},
            {"entryId": "e2", "event": {"order": 6}, "contentType": "application/json"},
        ]
        status, _ = await post(http, bulk, entries)
        assert status == 204
        await eventually(lambda: db.xlen("stream:orders") == 6)

    messages = jobfirst_consume(db, "orders")
    assert [m["data"] for m in messages] == [
        {"order": 1},
        "two <&>",
        {"order": 3, "blob": "AAE="},
        {"order": 4},
        "five",
        {"order": 6},
    ]
    assert [m["id"] for m in messages[:3]] == [*batch["ids"], *single["ids"]]
    first, second = messages[0], messages[1]
    assert first["headers"] == {"trace-id": "t-1"} and first["_fields"]["trace-id"] == "t-1"
    assert first["_fields"]["topic"] == "orders" and first["topic"] == "orders"
    assert int(first["_fields"]["timestamp"]) > 1_600_000_000 and first["retry_count"] == 0
    assert second["metadata"] == {"m": True} and second["headers"] is None
    raw_data = xrange(db, "stream:orders", count=2)[1][1][b"data"]
    assert b"\\u003c\\u0026\\u003e" in raw_data  # escaped as Go's encoder does
    assert messages[3]["headers"] == {"source": "dapr-sdk", "content-type": "application/json"}
    assert messages[4]["headers"]["content-type"] == "text/plain"


async def test_fields_raw_and_capped_topics(tmp_path: Path, redis_server: RedisServer) -> None:
    db = redis_server.client()
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start(yaml=TOPICS_YAML)
        flat = [{"data": {"sku": "a-1", "qty": 2}, "id": "f-1", "headers": {"h": "v"}}]
        assert (await post(http, url(pipeline, "/v1/topics/flat/messages"), flat))[0] == 202
        raw = url(pipeline, "/v1.0/publish/p/bytes")
        assert (await post(http, raw, data=b"\x00raw\xff", content_type="image/png"))[0] == 204
        capped = url(pipeline, "/v1/topics/capped/messages")
        for start_at in range(0, 300, 100):
            batch = [{"data": n} for n in range(start_at, start_at + 100)]
            assert (await post(http, capped, batch))[0] == 202
        await eventually(lambda: db.exists("raw:bytes") and db.exists("stream:flat"))
        await delivered(pipeline)

    ((_, fields),) = xrange(db, "stream:flat")
    assert fields == {b"message_id": b"f-1", b"sku": b"a-1", b"qty": b"2", b"h": b"v"}
    ((_, fields),) = xrange(db, "raw:bytes")
    assert fields == {b"body": b"\x00raw\xff"}
    assert 10 <= db.xlen("stream:capped") < 300  # MAXLEN ~ trims whole nodes, roughly


async def test_ack_redis_answers_with_the_stream_entry_ids(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        target = url(pipeline, "/v1/topics/acks/messages?ack=redis")
        status, body = await post(http, target, [{"data": 1}, {"data": 2, "id": "k-2"}])
        assert status == 201
        entries = [entry_id.decode() for entry_id, _ in xrange(db, "stream:acks")]
        assert body["entry_ids"] == entries and body["ids"][1] == "k-2"
        # A client retrying the same id gets the original answer, and no second copy.
        status, again = await post(http, target, [{"data": 2, "id": "k-2"}])
        assert status == 201 and again["entry_ids"] == [entries[1]] and again["duplicates"] == 1
        status, disk_again = await post(
            http, url(pipeline, "/v1/topics/acks/messages"), {"data": 2, "id": "k-2"}
        )
        assert status == 202 and disk_again["duplicates"] == 1
    assert db.xlen("stream:acks") == 2


async def test_concurrent_retries_of_one_id_store_one_copy(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        target = url(pipeline, "/v1/topics/dupes/messages")
        results = await asyncio.gather(
            *(post(http, target, {"data": 1, "id": "same"}) for _ in range(20))
        )
        assert {status for status, _ in results} == {202}
        assert sum(body.get("duplicates", 0) for _, body in results) == 19
        await delivered(pipeline)
    assert db.xlen("stream:dupes") == 1


async def test_auth_and_database_from_the_url(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    server = redis_server_factory(password="s3cret")
    url_with_db = server.url.rsplit("/", 1)[0] + "/3"
    async with pipelines(tmp_path, url_with_db) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        status, _ = await post(
            http, url(pipeline, "/v1/topics/authed/messages?ack=redis"), {"data": 1}
        )
        assert status == 201
    assert server.client(db=3).xlen("stream:authed") == 1
    assert server.client(db=0).xlen("stream:authed") == 0


async def test_a_wrong_password_buffers_and_says_why(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    server = redis_server_factory(password="right")
    wrong = server.url.replace(":right@", ":wrong@")
    async with pipelines(tmp_path, wrong) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        status, _ = await post(http, url(pipeline, "/v1/topics/locked/messages"), {"data": 1})
        assert status == 202
        await eventually(lambda: not pipeline.health().dependency_ok)
        health = pipeline.health()
    assert health.ready and "WRONGPASS" in health.reason and "buffering 1 requests" in health.reason
    assert "wrong" not in health.reason  # the password never shows
