"""The dead-letter API on the proxy port against a real Redis: page, retry by id (the one
asked for, not the oldest), delete, and clear refusals of bad requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.harness import RedisServer
from tests.integration.messages.subscribe.app import ReceivingApp, Seen, eventually, subscription
from tests.integration.messages.support import pipelines, post, url

pytestmark = pytest.mark.integration


async def call(
    http: aiohttp.ClientSession, method: str, target: str, body: Any = None
) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    async with http.request(method, target, data=data) as response:
        return response.status, await response.json()


async def test_retry_by_id_redelivers_that_message_and_delete_removes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    healed: set[int] = set()

    def fail_unless_healed(seen: Seen, count: int) -> web.Response | None:
        return None if seen.body["data"]["n"] in healed else web.Response(status=500)

    app = ReceivingApp(answer=fail_unless_healed)
    await app.start()
    db = redis_server.client()
    try:
        async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
            pipeline = await start(*subscription(app, "jobs", max_retries=0))
            publish = url(pipeline, "/v1/topics/jobs/messages")
            ids = []
            for n in range(4):  # one request each: the dead letters land in this order
                _, answer = await post(http, publish, {"data": {"n": n}})
                ids.append(answer["ids"][0])
                await eventually(lambda n=n: db.llen("dlq:jobs") == n + 1, "dead letter")
            listing = url(pipeline, "/v1/topics/jobs/dead-letters")
            status, page = await call(http, "GET", listing + "?offset=1&limit=2")
            assert status == 200 and page["total"] == 4 and page["next_offset"] == 3
            assert [item["id"] for item in page["items"]] == ids[1:3]
            assert page["items"][0]["message"]["data"] == {"n": 1}

            healed.add(2)
            status, answer = await call(http, "POST", listing + "/retry", {"ids": [ids[2], "x"]})
            assert status == 200 and answer == {"retried": 1, "ids": [ids[2]], "not_found": ["x"]}
            await eventually(lambda: app.ids().count(ids[2]) == 2, "the retried message")
            remaining = [orjson.loads(raw)["id"] for raw in db.lrange("dlq:jobs", 0, -1)]
            assert remaining == [ids[0], ids[1], ids[3]]
            redelivered = [s for s in app.seen if s.body["id"] == ids[2]][-1]
            assert redelivered.body["retry_count"] == 0

            status, answer = await call(http, "DELETE", listing, {"ids": [ids[1]]})
            assert status == 200 and answer == {"deleted": 1}
            healed.update({0, 3})
            status, answer = await call(http, "POST", listing + "/retry")
            assert status == 200 and sorted(answer["ids"]) == sorted([ids[0], ids[3]])
            await eventually(lambda: app.ids().count(ids[3]) == 2, "retry of all")
            assert db.llen("dlq:jobs") == 0
    finally:
        await app.stop()


async def test_without_subscriptions_delete_all_and_bad_requests(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    db.rpush("dlq:old", orjson.dumps({"id": "m1", "data": 1}), b"not json")
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        listing = url(pipeline, "/v1/topics/old/dead-letters")
        status, page = await call(http, "GET", listing)
        assert status == 200 and page["items"][1] == {"position": 1, "id": None, "raw": "not json"}
        for target, body, code in (
            (listing + "?limit=0", None, "bad_parameter"),
            (listing + "?offset=x", None, "bad_parameter"),
            (url(pipeline, "/v1/topics/bad%20topic/dead-letters"), None, "bad_topic"),
        ):
            status, answer = await call(http, "GET", target, body)
            assert status == 400 and answer["error"]["code"] == code
        status, answer = await call(http, "POST", listing + "/retry", {"ids": "m1"})
        assert status == 400 and answer["error"]["code"] == "bad_body"
        db.set("stream:old", "not a stream")  # the XADD will fail: nothing may be lost
        status, answer = await call(http, "POST", listing + "/retry", {"ids": ["m1"]})
        assert status == 200 and answer["retried"] == 0 and answer["not_found"] == []
        assert answer["failed"][0]["id"] == "m1" and "WRONGTYPE" in answer["failed"][0]["error"]
        assert db.llen("dlq:old") == 2
        status, answer = await call(http, "DELETE", listing)
        assert status == 200 and answer == {"deleted": 2}
        assert db.exists("dlq:old") == 0
        redis_server.stop()
        status, answer = await call(http, "GET", listing)
        assert status == 503 and answer["error"]["code"] == "redis_unavailable"


async def test_dead_letter_routes_need_the_bearer_token(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start("proxy.auth_token=s3cret")
        listing = url(pipeline, "/v1/topics/any/dead-letters")
        status, answer = await call(http, "DELETE", listing)
        assert status == 401 and answer["error"]["code"] == "unauthorized"
        async with http.get(listing, headers={"Authorization": "Bearer s3cret"}) as response:
            assert response.status == 200 and (await response.json())["total"] == 0
