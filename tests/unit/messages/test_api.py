"""The publish API against a real disk queue (no Redis needed: nothing is written here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import msgpack
import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request

from agent.config.tree import MessagesConfig, ProxyConfig
from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import Metrics
from agent.messages.api import PublishApi
from agent.messages.intake import Intake
from agent.messages.record import Record

Client = TestClient[Request, Application]
MakeClient = Callable[..., Awaitable[Client]]
URL = "/v1/topics/orders/messages"


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    opened: list[tuple[Client, DiskQueue]] = []

    async def make(
        queue_bytes: int = 1 << 20,
        messages: MessagesConfig | None = None,
        metrics: Metrics | None = None,
        **proxy: object,
    ) -> Client:
        queue = DiskQueue(tmp_path / f"q{len(opened)}", max_bytes=queue_bytes, when_full="reject")
        await queue.open()
        config = replace(ProxyConfig(), **proxy)  # type: ignore[arg-type]
        intake = Intake(messages or MessagesConfig(), queue, retry_after=config.retry_after)
        api = PublishApi(config, intake, metrics or Metrics())
        client = TestClient(TestServer(api.app))
        await client.start_server()
        opened.append((client, queue))
        client.queue = queue  # type: ignore[attr-defined]
        return client

    yield make
    for client, queue in opened:
        await client.close()
        await queue.close()


async def error_of(response: object) -> dict[str, object]:
    body = await response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


async def test_json_and_msgpack_publishes_are_accepted(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(URL, json=[{"data": {"a": 1}}, {"data": 2, "id": "given"}])
    assert response.status == 202
    body = await response.json()
    assert body["accepted"] == 2 and body["ids"][1] == "given"
    packed = msgpack.packb({"data": {"n": b"\x00"}, "headers": {"h": "v"}})
    for kind in ("application/msgpack", "application/x-msgpack"):
        response = await client.post(URL, data=packed, headers={"Content-Type": kind})
        assert response.status == 202, await response.text()
    items = await client.queue.get(10, timeout=0.1)  # type: ignore[attr-defined]
    assert [len(Record.decode(item.data)) for item in items] == [2, 1, 1]


async def test_bodies_are_counted_by_the_route_that_decoded_them(
    make_client: MakeClient,
) -> None:
    metrics = Metrics()
    client = await make_client(metrics=metrics)
    msgpack_kind = {"Content-Type": "application/msgpack"}
    sent = [
        client.post(URL, json={"data": {"a": 1}}),  # data-only JSON
        client.post(URL, json={"data": 1, "id": "x"}),  # an id: the general route
        client.post(URL, data=msgpack.packb({"data": b"\x00"}), headers=msgpack_kind),
        client.post(URL, data=b"{", headers={"Content-Type": "application/json"}),  # refused
    ]
    assert [(await request).status for request in sent] == [202, 202, 202, 400]

    def count(route: str) -> float:
        sample = metrics.registry.get_sample_value(
            "sidecar_publish_body_routes_total", {"route": route}
        )
        return sample or 0.0

    # bin data is declined by the transcoder: the typed route, counted as such
    assert (count("json_raw"), count("general"), count("msgpack_typed")) == (1, 1, 1)
    assert count("msgpack_transcoded") == 0


async def test_bad_json_names_the_position(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(
        URL, data=b'{"data": [1, }', headers={"Content-Type": "application/json"}
    )
    error = await error_of(response)
    assert (
        response.status == 400
        and error["code"] == "bad_body"
        and "column 14" in str(error["message"])
    )


async def test_one_bad_entry_fails_the_batch_naming_its_index(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(URL, json=[{"data": 1}, {"data": 2}, {"nodata": 3}])
    assert response.status == 400
    assert (await response.json())["error"]["index"] == 2
    assert await client.queue.get(10, timeout=0.05) == []  # type: ignore[attr-defined]


async def test_deep_nesting_is_a_400(make_client: MakeClient) -> None:
    client = await make_client()
    deep = b'{"data":' + b"[" * 2000 + b"]" * 2000 + b"}"
    response = await client.post(URL, data=deep, headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await error_of(response))["code"] == "bad_body"
    medium = {"data": orjson.loads(b"[" * 400 + b"]" * 400)}  # parses, but too deep for the JSON
    response = await client.post(URL, json=medium)
    assert response.status == 400 and (await error_of(response))["code"] == "invalid_entry"


async def test_body_size_limit_is_413_declared_or_streamed(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=1000)
    big = orjson.dumps({"data": "x" * 2000})
    response = await client.post(URL, data=big, headers={"Content-Type": "application/json"})
    assert response.status == 413 and (await error_of(response))["code"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 400

    response = await client.post(URL, data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status == 413


async def test_unsupported_content_type_is_415(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(URL, data=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert response.status == 415 and (await error_of(response))["code"] == "unsupported_media_type"


async def test_topics_outside_the_allowed_list_are_403(make_client: MakeClient) -> None:
    client = await make_client(allowed_topics=["orders"])
    assert (await client.post(URL, json={"data": 1})).status == 202
    response = await client.post("/v1/topics/payments/messages", json={"data": 1})
    assert response.status == 403 and (await error_of(response))["code"] == "topic_forbidden"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/topics/-leading-dash/messages",
        "/v1/topics/has%20space/messages",
        "/v1/topics/%FF%FE/messages",  # not UTF-8
        "/v1/topics/a%0D%0Ab/messages",  # CR LF
        "/v1/topics/" + "x" * 201 + "/messages",
    ],
)
async def test_bad_topic_names_are_400(make_client: MakeClient, path: str) -> None:
    client = await make_client()
    response = await client.post(path, json={"data": 1})
    assert response.status == 400 and (await error_of(response))["code"] == "bad_topic"


async def test_bearer_token(make_client: MakeClient) -> None:
    client = await make_client(auth_token="s3cret")
    missing = await client.post(URL, json={"data": 1})
    wrong = await client.post(URL, json={"data": 1}, headers={"Authorization": "Bearer s3cres"})
    right = await client.post(URL, json={"data": 1}, headers={"Authorization": "Bearer s3cret"})
    assert (missing.status, wrong.status, right.status) == (401, 401, 202)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert (await error_of(wrong))["code"] == "unauthorized"


async def test_a_full_buffer_is_503_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(queue_bytes=32 * 1024, retry_after=2.0)
    statuses = []
    for _ in range(40):
        response = await client.post(URL, json={"data": "x" * 2000})
        statuses.append(response.status)
        if response.status == 503:
            assert response.headers["Retry-After"] == "2"
            assert (await error_of(response))["code"] == "buffer_full"
            break
    assert statuses[0] == 202 and statuses[-1] == 503


async def test_bad_ack_mode_404_and_405_are_json(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(URL + "?ack=sometimes", json={"data": 1})
    assert response.status == 400 and (await error_of(response))["code"] == "bad_ack"
    response = await client.get(URL)
    assert response.status == 405 and response.headers["Allow"] == "POST"
    assert (await error_of(response))["code"] == "method_not_allowed"
    response = await client.post("/v2/whatever", json={})
    assert response.status == 404 and (await error_of(response))["code"] == "not_found"


async def test_redis_ack_without_redis_is_504_and_stays_buffered(make_client: MakeClient) -> None:
    client = await make_client(messages=replace(MessagesConfig(), redis_ack_timeout=0.05))
    response = await client.post(URL + "?ack=redis", json={"data": 1})
    assert response.status == 504 and (await error_of(response))["code"] == "redis_ack_timeout"
    assert len(await client.queue.get(10, timeout=0.1)) == 1  # type: ignore[attr-defined]


async def test_dapr_routes(make_client: MakeClient) -> None:
    client = await make_client()
    single = await client.post(
        "/v1.0/publish/pubsub/orders?metadata.ttlInSeconds=60",
        data=b"hello",
        headers={"Content-Type": "text/plain"},
    )
    bulk = await client.post(
        "/v1.0-alpha1/publish/bulk/pubsub/orders",
        json=[{"entryId": "1", "event": {"a": 1}, "contentType": "application/json"}],
    )
    assert (single.status, bulk.status) == (204, 204)
    bad_bulk = await client.post("/v1.0-alpha1/publish/bulk/pubsub/orders", json={"not": "a list"})
    assert bad_bulk.status == 400 and (await error_of(bad_bulk))["code"] == "bad_body"
    records = [Record.decode(item.data) for item in await client.queue.get(10, timeout=0.1)]  # type: ignore[attr-defined]
    assert [len(record) for record in records] == [1, 1]


async def test_huge_http_headers_are_refused_and_the_server_carries_on(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    response = await client.post(URL, json={"data": 1}, headers={"X-Big": "v" * 20_000})
    assert response.status in (400, 431)
    response = await client.post(URL, json={"data": 1})
    assert response.status == 202


async def test_a_slow_body_times_out_with_408(make_client: MakeClient) -> None:
    client = await make_client(read_timeout=0.2)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    assert b" 408 " in status_line
    writer.close()


async def test_a_slowloris_does_not_stall_other_clients(make_client: MakeClient) -> None:
    client = await make_client()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    request = f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()

    async def drip() -> None:
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)

    dripping = asyncio.ensure_future(drip())
    base = f"http://{client.host}:{client.port}"
    async with ClientSession() as other:
        started = time.monotonic()
        for _ in range(20):
            async with other.post(base + URL, json={"data": 1}) as response:
                assert response.status == 202
        elapsed = time.monotonic() - started
    assert not dripping.done() and elapsed < 2.0
    dripping.cancel()
    writer.close()
    del reader
