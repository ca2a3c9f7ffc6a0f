"""Load clients for the publish benches (bench/proxy.py, bench/dapr.py), one process each.

    python bench/publish_load.py '{"mode": "closed", ...}'   # prints what it measured as JSON

Every body the publish API takes is built here, the same for the agent, the bare aiohttp
baseline and daprd: JSON and msgpack envelopes (`/v1/topics/{topic}/messages`), Dapr's single
publish (`/v1.0/publish/pubsub/{topic}`, the body is the data) and Dapr's bulk publish
(`/v1.0-alpha1/publish/bulk/pubsub/{topic}`). The clients run on uvloop where it is installed,
so the client process is not what limits a server that answers faster.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import hiredis  # noqa: E402
import msgpack  # noqa: E402
import orjson  # noqa: E402

from agent.config.tree import TopicConfig  # noqa: E402
from agent.core.eventloop import loop_factory  # noqa: E402
from agent.messages.layout import EncodedEntries, TopicLayout, fields_of  # noqa: E402
from agent.messages.message import AcceptTime, MessageIds  # noqa: E402

TOPIC = "bench"
BODIES = ("json", "msgpack", "dapr", "dapr-bulk")


def sample_data(number: int) -> dict[str, Any]:
    return {"order_id": number, "customer": "c-1234", "amount": 42.5, "items": ["sku-1", "sku-2"]}


class Request(NamedTuple):
    path: str
    body: bytes
    content_type: str


def request_for(kind: str, batch: int, first: int = 0) -> Request:
    """The request that publishes `batch` sample messages as body `kind` (path without host).
    `dapr` (the single publish) holds one message whatever `batch` says."""
    datas = [sample_data(first + n) for n in range(batch)]
    if kind == "json":
        value = [{"data": data} for data in datas] if batch > 1 else {"data": datas[0]}
        return Request(f"/v1/topics/{TOPIC}/messages", orjson.dumps(value), "application/json")
    if kind == "msgpack":
        packed = [{"data": data} for data in datas] if batch > 1 else {"data": datas[0]}
        return Request(f"/v1/topics/{TOPIC}/messages", msgpack.packb(packed), "application/msgpack")
    if kind == "dapr":
        return Request(f"/v1.0/publish/pubsub/{TOPIC}", orjson.dumps(datas[0]), "application/json")
    if kind == "dapr-bulk":
        entries = [
            {"entryId": str(n), "event": data, "contentType": "application/json"}
            for n, data in enumerate(datas)
        ]
        path = f"/v1.0-alpha1/publish/bulk/pubsub/{TOPIC}"
        return Request(path, orjson.dumps(entries), "application/json")
    raise SystemExit(f"unknown body {kind}")


def with_query(path: str, ack: str | None) -> str:
    return f"{path}?ack={ack}" if ack else path


# -- closed and open loops over HTTP ----------------------------------------------------------


async def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """`connections` keep-alive loops posting one request as fast as answers come back."""
    request = request_for(spec["body"], spec["batch"])
    url = spec["base"] + with_query(request.path, spec.get("ack"))
    headers = {"Content-Type": request.content_type}
    counts = {"ok": 0, "errors": 0}
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + spec["seconds"]

        async def loop() -> None:
            while time.perf_counter() < deadline:
                async with session.post(url, data=request.body, headers=headers) as response:
                    await response.read()
                    counts["ok" if response.status < 300 else "errors"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(spec["connections"])))
        elapsed = time.perf_counter() - started
    # perf_counter is CLOCK_MONOTONIC, one clock for every process: the caller times the
    # messages' way into Redis from `started` on, without this process's start-up.
    return {**counts, "elapsed": elapsed, "started": started}


async def paced_http(spec: dict[str, Any]) -> dict[str, Any]:
    """Open loop: one single-message request every 1/rate s; the latency of each."""
    latencies: list[float] = []
    errors = 0
    template = request_for(spec["body"], 1)
    url = spec["base"] + with_query(template.path, spec.get("ack"))
    headers = {"Content-Type": template.content_type}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one(number: int) -> None:
            nonlocal errors
            body = request_for(spec["body"], 1, number).body
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                errors += response.status >= 300
            latencies.append(time.perf_counter() - started)

        await paced(one, spec["rate"], spec["seconds"])
    return {"latencies": latencies, "errors": errors}


async def paced(work: Callable[[int], Awaitable[None]], rate: float, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    tasks = []
    start = loop.time()
    for number in range(int(rate * seconds)):
        delay = start + number / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(work(number)))
    await asyncio.gather(*tasks)


# -- baselines without HTTP -------------------------------------------------------------------


def jobfirst_commands(count: int) -> EncodedEntries:
    """The agent's own encoding of `count` jobfirst XADDs (what it sends to Redis)."""
    layout = TopicLayout("resp-baseline", TopicConfig())
    ids = MessageIds()
    first = ids.reserve(count, time.time_ns())
    envelopes = [(None, sample_data(n), None, None) for n in range(count)]
    return layout.encode(
        envelopes, [ids.make(first + n) for n in range(count)], AcceptTime.at(first)
    )


async def raw_resp(spec: dict[str, Any]) -> dict[str, Any]:
    """Raw RESP: pre-encoded batches of XADDs, 4 batches in flight, hiredis parses replies."""
    batch, depth = spec["batch"], 4
    wire = jobfirst_commands(batch).blob
    reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
    parser = hiredis.Reader()
    sent = replies = 0  # batches written, replies read
    started = time.perf_counter()
    deadline = started + spec["seconds"]
    while time.perf_counter() < deadline or replies < sent * batch:
        while sent * batch - replies < depth * batch and time.perf_counter() < deadline:
            writer.write(wire)
            sent += 1
        parser.feed(await reader.read(1 << 20))
        while parser.gets() is not False:
            replies += 1
    elapsed = time.perf_counter() - started
    writer.close()
    return {"messages": replies, "errors": 0, "elapsed": elapsed}


def redispy_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """redis-py's own pipeline API (hiredis parser): batches of XADDs with the jobfirst fields
    of the same messages, one connection, what an application would write by hand."""
    import redis

    encoded = jobfirst_commands(spec["batch"])
    starts = [0, *encoded.ends[:-1]]
    entries = [fields_of(encoded.blob[a:b])[1] for a, b in zip(starts, encoded.ends, strict=True)]
    client = redis.Redis(host=spec["host"], port=spec["port"])
    messages = 0
    started = time.perf_counter()
    deadline = started + spec["seconds"]
    while time.perf_counter() < deadline:
        pipe = client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd("stream:redispy-baseline", fields)  # type: ignore[arg-type]
        messages += len(pipe.execute())
    elapsed = time.perf_counter() - started
    client.close()
    return {"messages": messages, "errors": 0, "elapsed": elapsed}


async def redispy_paced(spec: dict[str, Any]) -> dict[str, Any]:
    """Direct redis-py XADDs of a jobfirst-shaped entry at `rate`: Redis alone, per message."""
    import redis.asyncio as aioredis

    # A blocking pool: a stall on this shared machine must not turn into "too many
    # connections" errors; the HTTP clients likewise share at most 64.
    pool = aioredis.BlockingConnectionPool.from_url(spec["url"], max_connections=64)
    client = aioredis.Redis(connection_pool=pool)
    latencies: list[float] = []
    at = AcceptTime.at(time.time_ns())

    async def one(number: int) -> None:
        fields: dict[Any, Any] = {
            "data": orjson.dumps(sample_data(number)),
            "topic": TOPIC,
            "timestamp": at.unix_seconds,
        }
        started = time.perf_counter()
        await client.xadd("stream:redispy", fields)
        latencies.append(time.perf_counter() - started)

    await paced(one, spec["rate"], spec["seconds"])
    await client.aclose()
    return {"latencies": latencies, "errors": 0}


async def fsync_paced(spec: dict[str, Any]) -> dict[str, Any]:
    """The disk alone: a 300-byte append + fdatasync at `rate`, in the agent's filesystem."""
    latencies: list[float] = []
    with tempfile.NamedTemporaryFile(dir=spec["dir"]) as file:
        fd = file.fileno()

        async def one(number: int) -> None:
            started = time.perf_counter()
            os.write(fd, b"%299d\n" % number)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)

        await paced(one, spec["rate"], spec["seconds"])
    return {"latencies": latencies, "errors": 0}


MODES: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "closed": closed_loop,
    "paced": paced_http,
    "resp": raw_resp,
    "redispy": redispy_paced,
    "fsync": fsync_paced,
}


def run_mode(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["mode"] == "redispy-pipeline":
        return redispy_pipeline(spec)
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        return runner.run(MODES[spec["mode"]](spec))


def client(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load client in a fresh process and return what it measured."""
    output = subprocess.run(
        [sys.executable, __file__, json.dumps(spec)], capture_output=True, check=False, cwd=ROOT
    )
    if output.returncode:
        raise SystemExit(f"load client {spec} failed:\n{output.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(output.stdout)
    return result


if __name__ == "__main__":
    sys.stdout.write(json.dumps(run_mode(json.loads(sys.argv[1]))))
