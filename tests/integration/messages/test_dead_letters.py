"""Entries Redis will never take go to the dead-letter file and dlq:<topic>, and the rest of
the stream keeps flowing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.harness import RedisServer
from tests.integration.messages.support import delivered, pipelines, post, url

pytestmark = pytest.mark.integration


def dead_letter_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "data" / "messages" / "dead-letters.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_wrongtype_is_dead_lettered_and_other_streams_keep_flowing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    db.set("stream:broken", "not a stream")
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start()
        status, body = await post(
            http, url(pipeline, "/v1/topics/broken/messages?ack=redis"), [{"data": {"n": 1}}]
        )
        assert status == 502 and body["error"]["code"] == "dead_lettered"
        assert body["failed"][0]["index"] == 0 and "WRONGTYPE" in body["failed"][0]["error"]
        status, _ = await post(http, url(pipeline, "/v1/topics/fine/messages"), [{"data": 2}])
        assert status == 202
        bulk = url(pipeline, "/v1.0-alpha1/publish/bulk/p/broken?ack=redis")
        status, body = await post(http, bulk, [{"entryId": "e-1", "event": {"n": 3}}])
        assert status == 500 and body["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
        assert body["failedEntries"][0]["entryId"] == "e-1"
        await delivered(pipeline)
        summary = pipeline.summary()
    assert db.xlen("stream:fine") == 1
    listed = [orjson.loads(item) for item in db.lrange("dlq:broken", 0, -1)]
    assert [message["data"] for message in listed] == [{"n": 1}, {"n": 3}]
    lines = dead_letter_lines(tmp_path)
    assert [line["reason"] for line in lines] == ["WRONGTYPE", "WRONGTYPE"]
    assert lines[0]["topic"] == "broken" and orjson.loads(lines[0]["raw"])["data"] == {"n": 1}
    assert summary["dead_lettered"] == 2


async def test_oom_is_retried_then_dead_lettered_after_max_attempts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    db.config_set("maxmemory-policy", "noeviction")
    db.config_set("maxmemory", "1")  # every write is refused with OOM
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start("messages.max_attempts=3")
        status, _ = await post(http, url(pipeline, "/v1/topics/big/messages"), {"data": "x"})
        assert status == 202
        await delivered(pipeline)
        retried = pipeline.sender.retried
    db.config_set("maxmemory", "0")
    assert [line["reason"] for line in dead_letter_lines(tmp_path)] == ["OOM"]
    assert retried == 2  # attempts 1 and 2 were retried; the third gave up
    assert db.llen("dlq:big") == 0  # Redis refused that write too: the file has it
