"""The publish fast lane on real sockets: the same answers as aiohttp on the same requests, and
HTTP/1.1 kept (pipelining, split heads, Connection: close, hand-off to aiohttp, timeouts, caps,
stop). Each API runs on its real listener over a real disk queue (no Redis needed)."""

from __future__ import annotations

import asyncio
import gzip
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import msgpack
import orjson
import pytest

from agent.config.tree import MessagesConfig, ProxyConfig
from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import Metrics
from agent.messages.api import PublishApi
from agent.messages.intake import Intake

pytestmark = pytest.mark.integration

KEY_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate", "Allow")
JSON = b"Content-Type: application/json\r\n"


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class Api(NamedTuple):
    api: PublishApi
    queue: DiskQueue
    metrics: Metrics


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_api(tmp_path: Path) -> AsyncIterator[StartApi]:
    started: list[Api] = []

    async def start(queue_bytes: int = 1 << 22, **proxy: object) -> Api:
        queue = DiskQueue(tmp_path / f"q{len(started)}", max_bytes=queue_bytes, when_full="reject")
        await queue.open()
        config = replace(ProxyConfig(listen="127.0.0.1:0"), **proxy)  # type: ignore[arg-type]
        metrics = Metrics()
        intake = Intake(MessagesConfig(), queue, retry_after=config.retry_after)
        api = PublishApi(config, intake, metrics)
        await api.start()
        started.append(Api(api, queue, metrics))
        return started[-1]

    yield start
    for api, queue, _ in started:
        await api.stop()
        await queue.close()


def request(path: str, body: bytes, *fields: str, method: str = "POST") -> bytes:
    """A raw request; JSON unless `fields` name a Content-Type (or say `Content-Type: none`)."""
    if not any(field.startswith("Content-Type") for field in fields):
        fields = ("Content-Type: application/json", *fields)
    fields = tuple(field for field in fields if field != "Content-Type: none")
    head = [f"{method} {path} HTTP/1.1", "Host: agent", f"Content-Length: {len(body)}", *fields]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    length = int(headers.get("Content-Length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
    return Answer(status, headers, body)


async def exchange(port: int, data: bytes, answers: int = 1) -> list[Answer]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return [await read_answer(reader) for _ in range(answers)]
    finally:
        writer.close()


def normalised(answer: Answer) -> tuple[int, dict[str, str], object]:
    """Status, the headers that carry meaning, and the body with generated ids masked."""
    headers = {name: answer.headers[name] for name in KEY_HEADERS if name in answer.headers}
    body: object = orjson.loads(answer.body) if answer.body else None
    if isinstance(body, dict) and "ids" in body:
        body["ids"] = [i if i.startswith("given") else "generated" for i in body["ids"]]
    return answer.status, headers, body


CLOUD_EVENT = orjson.dumps(
    {"id": "given-ce", "source": "s", "specversion": "1.0", "type": "t", "data": {"a": 1}}
)
BULK = orjson.dumps([{"entryId": "1", "event": {"a": 1}}, {"entryId": "2", "event": "text"}])
CASES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("/v1/topics/orders/messages", b'{"data": {"a": 1}}', ("Content-Type: application/json",)),
    ("/v1/topics/orders/messages", b'[{"data": 1}, {"data": 2, "id": "given-1"}]', ()),
    ("/v1/topics/orders/messages", b'{"data": 1}', ("Content-Type: none",)),
    (
        "/v1/topics/orders/messages?ack=memory",
        msgpack.packb({"data": {"n": b"\x00"}, "headers": {"h": "v"}}),
        ("Content-Type: application/msgpack",),
    ),
    ("/v1/topics/orders/messages", b'{"data": [1, }', ("Content-Type: application/json",)),
    ("/v1/topics/orders/messages", b'[{"data": 1}, {"x": 2}]', ()),
    ("/v1/topics/orders/messages", b"\xc1", ("Content-Type: application/msgpack",)),
    ("/v1/topics/orders/messages", b"x", ("Content-Type: text/csv",)),
    ("/v1/topics/-bad/messages", b'{"data": 1}', ()),
    ("/v1/topics/secret/messages", b'{"data": 1}', ()),
    ("/v1/topics/orders/messages?ack=never", b'{"data": 1}', ()),
    ("/v1/topics/orders/messages", b"", ()),
    ("/v1.0/publish/pubsub/orders", b'{"a": 1}', ("Content-Type: application/json",)),
    ("/v1.0/publish/pubsub/orders", b"plain text", ("Content-Type: none",)),
    ("/v1.0/publish/pubsub/orders", CLOUD_EVENT, ("Content-Type: application/cloudevents+json",)),
    ("/v1.0/publish/pubsub/orders?ack=memory", b"\x00\x01", ("Content-Type: image/png",)),
    ("/v1.0/publish/pubsub/orders", b"{", ("Content-Type: application/json",)),
    ("/v1.0-alpha1/publish/bulk/pubsub/orders", BULK, ()),
    ("/v1.0-alpha1/publish/bulk/pubsub/orders", b"[]", ()),
    ("/v1.0-alpha1/publish/bulk/pubsub/orders", b"x", ("Content-Type: text/plain",)),
    ("/v1/topics/orders/messages", b'{"data": 1}', ("Authorization: Bearer wrong",)),
    ("/v1/topics/orders/messages", b"x" * 3000, ()),  # over max_body_bytes: aiohttp's 413
    ("/v1/dlq/orders", b"", ()),  # 404
]


async def test_the_fast_lane_answers_as_aiohttp_does(start_api: StartApi) -> None:
    settings = {"allowed_topics": ["orders", "-bad"], "max_body_bytes": 2048}
    fast = await start_api(**settings)
    slow = await start_api(**settings, fast_lane=False)
    tokened = [await start_api(auth_token="t"), await start_api(auth_token="t", fast_lane=False)]
    statuses = set()
    for path, body, fields in CASES:
        apis = tokened if fields and fields[0].startswith("Authorization") else [fast, slow]
        data = request(path, body, *fields)
        fast_answer, slow_answer = [(await exchange(a.api.port, data))[0] for a in apis]
        assert normalised(fast_answer) == normalised(slow_answer), (path, body, fields)
        assert fast_answer.headers.get("Server") == slow_answer.headers.get("Server")
        statuses.add(fast_answer.status)
    assert fast.api.lane.handoffs._value.get() == 2  # type: ignore[attr-defined]
    assert slow.api.lane.handoffs._value.get() == 0  # type: ignore[attr-defined]
    assert statuses == {202, 204, 400, 401, 403, 404, 413, 415}


async def test_405_is_the_same_on_both_roads(start_api: StartApi) -> None:
    fast, slow = await start_api(), await start_api(fast_lane=False)
    data = request("/v1/topics/orders/messages", b"", method="GET")
    answers = [(await exchange(a.api.port, data))[0] for a in (fast, slow)]
    assert normalised(answers[0]) == normalised(answers[1])
    assert answers[0].status == 405 and answers[0].headers["Allow"] == "POST"


async def test_pipelined_requests_are_answered_in_order(start_api: StartApi) -> None:
    api = await start_api()
    data = b"".join(
        request(f"/v1/topics/orders/messages?ack={ack}", b'{"data": 1, "id": "given-%d"}' % n)
        for n, ack in enumerate(["disk", "memory", "disk", "never", "memory"])
    )
    answers = await exchange(api.api.port, data, answers=5)
    assert [a.status for a in answers] == [202, 202, 202, 400, 202]
    ids = [orjson.loads(a.body)["ids"] for a in answers if a.status == 202]
    assert ids == [["given-0"], ["given-1"], ["given-2"], ["given-4"]]


async def test_a_head_and_body_sent_byte_by_byte(start_api: StartApi) -> None:
    api = await start_api()
    reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
    data = request("/v1.0/publish/pubsub/orders", b'{"a": 1}', "Content-Type: application/json")
    for byte in data * 2:
        writer.write(bytes([byte]))
        await writer.drain()
    assert [(await read_answer(reader)).status for _ in range(2)] == [204, 204]
    writer.close()
    assert api.api.lane.handoffs._value.get() == 0  # type: ignore[attr-defined]


async def test_connection_close_is_honoured(start_api: StartApi) -> None:
    api = await start_api()
    reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
    writer.write(request("/v1/topics/orders/messages", b'{"data": 1}', "Connection: close"))
    answer = await read_answer(reader)
    assert answer.status == 202 and answer.headers["Connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_http10_chunked_and_gzip_go_to_aiohttp(start_api: StartApi) -> None:
    api = await start_api()
    port = api.api.port
    old = request("/v1/topics/orders/messages", b'{"data": 1}').replace(b"1.1", b"1.0", 1)
    assert (await exchange(port, old))[0].status == 202
    chunked = (
        b"POST /v1/topics/orders/messages HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n"
        b'5\r\n{"dat\r\n6\r\na": 1}\r\n0\r\n\r\n'
    )
    assert (await exchange(port, chunked))[0].status == 202
    packed = gzip.compress(b'{"data": 1}')
    zipped = request("/v1/topics/orders/messages", packed, "Content-Encoding: gzip")
    assert (await exchange(port, zipped))[0].status == 202
    assert api.api.lane.handoffs._value.get() == 3  # type: ignore[attr-defined]
    items = await api.queue.get(10, timeout=1)
    assert len(items) == 3


async def test_a_head_without_host_is_refused_by_aiohttp(start_api: StartApi) -> None:
    api = await start_api()
    data = request("/v1/topics/orders/messages", b'{"data": 1}').replace(b"Host: agent\r\n", b"")
    assert (await exchange(api.api.port, data))[0].status == 400


async def test_a_publish_then_other_routes_on_one_connection(start_api: StartApi) -> None:
    api = await start_api()
    data = (
        request("/v1/topics/orders/messages", b'{"data": 1}')
        + request("/v1/dlq/orders", b"", method="GET")
        + request("/v1/topics/orders/messages", b'{"data": 2}')
    )
    answers = await exchange(api.api.port, data, answers=3)
    assert [a.status for a in answers] == [202, 404, 202]


async def test_a_slow_body_gets_408_and_a_silent_connection_is_closed(
    start_api: StartApi,
) -> None:
    api = await start_api(read_timeout=0.3, idle_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
    writer.write(request("/v1/topics/orders/messages", b'{"data": 1}')[:-3])
    answer = await read_answer(reader)
    assert answer.status == 408 and orjson.loads(answer.body)["error"]["code"] == "body_timeout"
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
    writer.write(b"POST /v1/topics/orders/messages HTTP/1.1\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_the_idle_timeout_counts_from_the_last_answer(start_api: StartApi) -> None:
    """Requests that keep coming keep the connection open past the idle timeout (one timer per
    connection, checked again when it fires); once they stop it closes within the timeout."""
    api = await start_api(idle_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
    started = time.monotonic()
    for sent in range(8):  # 0.7 s or more: past the first timer and the ones it re-arms
        if sent:
            await asyncio.sleep(0.1)
        writer.write(request("/v1/topics/orders/messages", b'{"data": 1}'))
        assert (await read_answer(reader)).status == 202
    answered = time.monotonic()
    assert answered - started > 0.6
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.2 < time.monotonic() - answered < 2
    writer.close()


async def test_oversize_and_over_budget(start_api: StartApi) -> None:
    api = await start_api(max_body_bytes=4096, max_inflight_bytes=4096)
    port = api.api.port
    answer = (await exchange(port, request("/v1/topics/t/messages", b"x" * 5000)))[0]
    assert answer.status == 413
    # One request holds the budget while its body trickles; the next is refused 503 at once.
    holder_reader, holder = await asyncio.open_connection("127.0.0.1", port)
    holder.write(request("/v1/topics/t/messages", b'{"data": "' + b"a" * 4000 + b'"}')[:-100])
    await asyncio.sleep(0.2)
    answer = (await exchange(port, request("/v1/topics/t/messages", b'{"data": 1}')))[0]
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert orjson.loads(answer.body)["error"]["code"] == "over_memory_budget"
    holder.write(request("/v1/topics/t/messages", b'{"data": "' + b"a" * 4000 + b'"}')[-100:])
    assert (await read_answer(holder_reader)).status == 202
    holder.close()


async def test_the_connection_cap_holds(start_api: StartApi) -> None:
    api = await start_api(max_connections=2)
    opened = [await asyncio.open_connection("127.0.0.1", api.api.port) for _ in range(2)]
    await asyncio.sleep(0.1)
    refused = (await exchange(api.api.port, request("/v1/topics/t/messages", b'{"data":1}')))[0]
    assert refused.status == 503 and b"too_many_connections" in refused.body
    for reader, writer in opened:
        writer.write(request("/v1/topics/t/messages", b'{"data": 1}'))
        assert (await read_answer(reader)).status == 202
        writer.close()


async def test_stop_lets_a_request_in_flight_finish_and_closes_idle_ones(
    start_api: StartApi,
) -> None:
    api = await start_api()
    idle_reader, idle = await asyncio.open_connection("127.0.0.1", api.api.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
    data = request("/v1/topics/t/messages", b'{"data": 1}')
    writer.write(data[:-2])
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(api.api.stop())
    await asyncio.sleep(0.1)
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    writer.write(data[-2:])
    answer = await read_answer(reader)
    assert answer.status == 202 and answer.headers["Connection"] == "close"
    await asyncio.wait_for(stopping, 10)
    idle.close()
    writer.close()


async def test_hostile_input_never_stops_the_server(start_api: StartApi) -> None:
    api = await start_api(idle_timeout=0.5)
    rng = random.Random(11)
    valid = request("/v1/topics/t/messages", b'{"data": 1}')
    for _ in range(60):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        cut = valid[: rng.randrange(len(valid))]
        for junk in (noise, cut + noise, valid.replace(b"1.1", b"1.1\x00")):
            _reader, writer = await asyncio.open_connection("127.0.0.1", api.api.port)
            writer.write(junk)
            writer.close()
    assert (await exchange(api.api.port, valid))[0].status == 202
