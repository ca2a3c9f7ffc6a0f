"""Requests the publish API refuses: the answer says what is wrong (and which entry), nothing
of the request reaches Redis, and the agent goes on serving the next request."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest

from agent.messages.codec import MAX_BATCH_ENTRIES, MAX_HEADER_NAME_CHARS, MAX_HEADERS
from tests.harness import RedisServer
from tests.integration.messages.support import delivered, pipelines, post, url, xrange

pytestmark = pytest.mark.integration

TOPICS_YAML = """
messages:
  topics:
    flat:
      layout: fields
    bytes:
      layout: raw
"""
DAPR = "/v1.0/publish/pubsub"
BULK = "/v1.0-alpha1/publish/bulk/pubsub"
TOO_MANY = MAX_BATCH_ENTRIES + 1
DEEP = b"[" * 300 + b"]" * 300  # parses, but nests deeper than orjson writes
# Enough body for the batch-limit cases: MAX_BATCH_ENTRIES + 1 small entries are ~3 MB.
BIG_BODIES = ("proxy.max_body_bytes=8MiB",)


@dataclass(frozen=True)
class Refusal:
    path: str  # the route, topic included (its stream is stream:<topic>)
    body: bytes
    status: int
    code: str
    words: str  # what the error message must say
    index: int | None = None  # the entry the error names, if it names one
    content_type: str = "application/json"
    overrides: tuple[str, ...] = ()


def json_body(value: Any) -> bytes:
    return orjson.dumps(value)


def metadata_query(count: int) -> str:
    return "&".join(f"metadata.h{n:03}=v" for n in range(count))


REFUSALS = {
    "dapr_invalid_json": Refusal(
        f"{DAPR}/orders",
        b'{"order": 1,',
        400,
        "bad_body",
        "invalid JSON at line 1 column 13",
    ),
    "dapr_metadata_empty_name": Refusal(
        f"{DAPR}/orders?metadata.=x",
        b'{"order": 1}',
        400,
        "invalid_entry",
        "entry 0: header names must be non-empty strings",
        index=0,
    ),
    "dapr_metadata_long_name": Refusal(
        f"{DAPR}/orders?metadata.{'n' * (MAX_HEADER_NAME_CHARS + 1)}=x",
        b'{"order": 1}',
        400,
        "invalid_entry",
        f"entry 0: header name longer than {MAX_HEADER_NAME_CHARS} characters",
        index=0,
    ),
    "dapr_metadata_too_many": Refusal(
        f"{DAPR}/orders?{metadata_query(MAX_HEADERS + 1)}",
        b'{"order": 1}',
        400,
        "invalid_entry",
        f"headers; the limit is {MAX_HEADERS}",
        index=0,
    ),
    "dapr_metadata_named_like_a_layout_field": Refusal(
        f"{DAPR}/orders?metadata.topic=elsewhere",
        b'{"order": 1}',
        400,
        "invalid_entry",
        "entry 0: header 'topic' clashes with a jobfirst field",
        index=0,
    ),
    "bulk_text_body": Refusal(
        f"{BULK}/orders",
        json_body([{"entryId": "e-1", "event": 1}]),
        415,
        "unsupported_media_type",
        "a bulk publish body is JSON",
        content_type="text/plain",
    ),
    "bulk_msgpack_body": Refusal(
        f"{BULK}/orders",
        msgpack.packb([{"entryId": "e-1", "event": 1}]),
        415,
        "unsupported_media_type",
        "a bulk publish body is JSON",
        content_type="application/msgpack",
    ),
    "bulk_entry_not_an_object": Refusal(
        f"{BULK}/orders",
        json_body([{"entryId": "e-1", "event": 1}, 5]),
        400,
        "invalid_entry",
        "entry 1: must be an object, not a number",
        index=1,
    ),
    "bulk_content_type_not_a_string": Refusal(
        f"{BULK}/orders",
        json_body(
            [{"entryId": "e-1", "event": 1}, {"entryId": "e-2", "event": 2, "contentType": 7}]
        ),
        400,
        "invalid_entry",
        "entry 1: contentType must be a string",
        index=1,
    ),
    "bulk_metadata_not_an_object": Refusal(
        f"{BULK}/orders",
        json_body(
            [{"entryId": "e-1", "event": 1}, {"entryId": "e-2", "event": 2, "metadata": ["k"]}]
        ),
        400,
        "invalid_entry",
        "entry 1: metadata must be an object",
        index=1,
    ),
    "bulk_too_many_entries": Refusal(
        f"{BULK}/orders",
        json_body([{"entryId": str(n), "event": n} for n in range(TOO_MANY)]),
        400,
        "bad_body",
        f"{TOO_MANY} entries in one request; the limit is {MAX_BATCH_ENTRIES}",
        overrides=BIG_BODIES,
    ),
    "publish_too_many_messages": Refusal(
        "/v1/topics/orders/messages",
        json_body([{"data": n} for n in range(TOO_MANY)]),
        400,
        "bad_body",
        f"{TOO_MANY} messages in one request; the limit is {MAX_BATCH_ENTRIES}",
        overrides=BIG_BODIES,
    ),
    "fields_integer_keys": Refusal(
        "/v1/topics/flat/messages",
        msgpack.packb([{"data": {"sku": "a"}}, {"data": {1: "a"}}]),
        400,
        "invalid_entry",
        "entry 1: the fields layout needs non-empty string keys in data",
        index=1,
        content_type="application/msgpack",
    ),
    "fields_bytes_keys": Refusal(
        "/v1/topics/flat/messages",
        msgpack.packb([{"data": {"sku": "a"}}, {"data": {b"sku": "a"}}]),
        400,
        "invalid_entry",
        "entry 1: the fields layout needs non-empty string keys in data",
        index=1,
        content_type="application/msgpack",
    ),
    "fields_empty_key": Refusal(
        "/v1/topics/flat/messages",
        json_body([{"data": {"sku": "a"}}, {"data": {"": "a"}}]),
        400,
        "invalid_entry",
        "entry 1: the fields layout needs non-empty string keys in data",
        index=1,
    ),
    "fields_value_too_deep": Refusal(
        "/v1/topics/flat/messages",
        b'[{"data": {"sku": "a"}}, {"data": {"sku": ' + DEEP + b"}}]",
        400,
        "invalid_entry",
        "entry 1: value cannot be written as JSON",
        index=1,
    ),
    "raw_value_too_deep": Refusal(
        "/v1/topics/bytes/messages",
        b'[{"data": "fine"}, {"data": ' + DEEP + b"}]",
        400,
        "invalid_entry",
        "entry 1: value cannot be written as JSON",
        index=1,
    ),
    "raw_msgpack_extension_type": Refusal(
        "/v1/topics/bytes/messages",
        msgpack.packb([{"data": "fine"}, {"data": msgpack.ExtType(5, b"\x01")}]),
        400,
        "invalid_entry",
        "entry 1: value cannot be written as JSON: msgpack extension type 5 has no JSON form",
        index=1,
        content_type="application/msgpack",
    ),
    # The data-only msgpack batch of the default (jobfirst) layout: the typed fast path.
    "jobfirst_msgpack_extension_type": Refusal(
        "/v1/topics/orders/messages",
        msgpack.packb([{"data": "fine"}, {"data": [msgpack.ExtType(5, b"\x01")]}]),
        400,
        "invalid_entry",
        "entry 1: data cannot be written as JSON: msgpack extension type 5 has no JSON form",
        index=1,
        content_type="application/msgpack",
    ),
    # Year 10000: msgpack holds it, a datetime cannot (this was an unhandled OverflowError).
    "msgpack_timestamp_out_of_range": Refusal(
        "/v1/topics/orders/messages",
        msgpack.packb([{"data": msgpack.Timestamp(253_402_300_800, 0)}]),
        400,
        "bad_body",
        "msgpack timestamp near byte",
        content_type="application/msgpack",
    ),
}


def topic_of(path: str) -> str:
    route = path.partition("?")[0]
    return route.rsplit("/", 2)[-2] if route.startswith("/v1/") else route.rsplit("/", 1)[-1]


def good_request(path: str) -> tuple[str, bytes, int]:
    """A request the route of `path` accepts (in every layout) for the same topic, and the
    status it gets."""
    topic = topic_of(path)
    if path.startswith(BULK):
        return f"{BULK}/{topic}", json_body([{"entryId": "ok", "event": {"ok": "yes"}}]), 204
    if path.startswith(DAPR):
        return f"{DAPR}/{topic}", json_body({"ok": "yes"}), 204
    return f"/v1/topics/{topic}/messages", json_body({"data": {"ok": "yes"}}), 202


async def send(
    http: aiohttp.ClientSession, target: str, body: bytes, content_type: str
) -> tuple[int, Any]:
    # As a file: aiohttp warns about (and pytest fails on) large bodies given as bytes.
    headers = {"Content-Type": content_type}
    async with http.post(target, data=io.BytesIO(body), headers=headers) as response:
        return response.status, orjson.loads(await response.read())


def assert_error(status: int, body: Any, refusal: Refusal) -> None:
    assert status == refusal.status, body
    error = body["error"]
    assert error["code"] == refusal.code and refusal.words in error["message"], error
    assert error.get("index") == refusal.index


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_refused_request_names_the_problem_and_stores_nothing(
    tmp_path: Path, redis_server: RedisServer, refusal: Refusal
) -> None:
    db = redis_server.client()
    stream = f"stream:{topic_of(refusal.path)}"
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        pipeline = await start(*refusal.overrides, yaml=TOPICS_YAML)
        target = url(pipeline, refusal.path)
        status, body = await send(http, target, refusal.body, refusal.content_type)
        assert_error(status, body, refusal)
        assert pipeline.queue.stats().depth_items == 0
        good_path, good_body, good_status = good_request(refusal.path)
        status, _ = await post(http, url(pipeline, good_path), data=good_body)
        assert status == good_status
        await delivered(pipeline)
    # The queue is delivered in order: had the refused request been queued, it would be here.
    assert db.xlen(stream) == 1
    assert set(db.keys()) == {stream.encode()}


async def test_a_record_that_can_never_fit_the_buffer_is_413(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db = redis_server.client()
    async with pipelines(tmp_path, redis_server.url) as start, aiohttp.ClientSession() as http:
        # The smallest buffer allowed: 1 MiB in segments of 128 KiB, which a 200 kB record outgrows.
        pipeline = await start("messages.queue.max_bytes=1MiB")
        for query in ("", "?ack=redis"):
            target = url(pipeline, f"/v1/topics/huge/messages{query}")
            status, body = await post(http, target, {"data": "x" * 200_000})
            assert status == 413, body
            assert body["error"]["code"] == "too_large_for_buffer"
            assert "does not fit a segment" in body["error"]["message"]
            assert "messages.queue.max_bytes" in body["error"]["message"], "what to change"
        health = pipeline.health()
        assert health.ready, health.reason
        assert pipeline.queue.stats().depth_items == 0
        status, body = await post(
            http, url(pipeline, "/v1/topics/huge/messages?ack=redis"), {"data": "x" * 50_000}
        )
        assert status == 201, body
        await delivered(pipeline)
    assert db.xlen("stream:huge") == 1
    ((_, fields),) = xrange(db, "stream:huge")
    assert orjson.loads(fields[b"data"])["id"] == body["ids"][0]
