"""Shared pieces of the message-proxy integration tests: config, an in-process pipeline,
publishing, and reading streams back the way JobFirst consumers do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis

from agent.config.load import load_config
from agent.config.tree import Config
from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from tests.harness.eventually import eventually

# Fast retries so outage tests take seconds, not minutes.
FAST = [
    "proxy.listen=127.0.0.1:0",
    "spans.enabled=false",
    "messages.retry.initial_interval=50ms",
    "messages.retry.max_interval=300ms",
    "redis.connect_timeout=1s",
    "redis.command_timeout=2s",
    "shutdown_timeout=5s",
]


def make_config(tmp_path: Path, redis_url: str, *overrides: str, yaml: str = "") -> Config:
    path = None
    if yaml:
        path = tmp_path / "agent.yaml"
        path.write_text(yaml)
    settings = [*FAST, f"data_dir={tmp_path / 'data'}", f"redis.url={redis_url}", *overrides]
    return load_config(config_path=str(path) if path else None, environ={}, cli_overrides=settings)


PipelineFactory = Callable[..., Awaitable[MessagePipeline]]


@asynccontextmanager
async def pipelines(tmp_path: Path, redis_url: str) -> AsyncIterator[PipelineFactory]:
    started: list[MessagePipeline] = []

    async def start(*overrides: str, yaml: str = "") -> MessagePipeline:
        config = make_config(tmp_path, redis_url, *overrides, yaml=yaml)
        pipeline = MessagePipeline(config, Metrics(), Path(config.data_dir))
        await pipeline.start()
        started.append(pipeline)
        return pipeline

    try:
        yield start
    finally:
        for pipeline in started:
            await pipeline.stop()


async def delivered(pipeline: MessagePipeline, timeout: float = 20.0) -> None:
    """Wait until nothing is queued or in flight: every accepted request has reached Redis (or
    the dead letters)."""
    try:
        await eventually(
            lambda: pipeline.sender.idle and pipeline.queue.stats().depth_items == 0,
            timeout=timeout,
        )
    except AssertionError:
        raise AssertionError(f"backlog not delivered: {pipeline.health()}") from None


def url(pipeline: MessagePipeline, path: str) -> str:
    assert pipeline.api is not None
    return f"http://127.0.0.1:{pipeline.api.port}{path}"


async def post(
    session: aiohttp.ClientSession,
    target: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    payload = data if data is not None else orjson.dumps(body)
    async with session.post(target, data=payload, headers={"Content-Type": content_type}) as r:
        text = await r.read()
        return r.status, orjson.loads(text) if text else None


Entry = tuple[bytes, dict[bytes, bytes]]


def xrange(
    client: redis.Redis, stream: str, start: str = "-", count: int | None = None
) -> list[Entry]:
    """XRANGE with plain types (redis-py's annotations are unions of everything)."""
    entries: Any = client.xrange(stream, min=start, count=count)
    return [(bytes(entry_id), dict(fields)) for entry_id, fields in entries]


def jobfirst_consume(
    client: redis.Redis, topic: str, group: str = "jobfirst-consumer-group"
) -> list[dict[str, Any]]:
    """What JobFirst's consumer does: XREADGROUP on stream:<topic>, field `data` → Message."""
    stream = f"stream:{topic}"
    try:
        client.xgroup_create(stream, group, id="0")
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
    messages: list[dict[str, Any]] = []
    while True:
        batch: Any = client.xreadgroup(group, "consumer:test", {stream: ">"}, count=1000)
        if not batch:
            return messages
        for entry_id, fields in batch[0][1]:
            message = orjson.loads(fields[b"data"])
            message["_entry_id"] = entry_id.decode()
            message["_fields"] = {k.decode(): v.decode() for k, v in fields.items()}
            messages.append(message)
            client.xack(stream, group, entry_id)


def stream_message_ids(client: redis.Redis, stream: str) -> list[str]:
    """Message ids in stream order (jobfirst layout: the id inside the data JSON)."""
    ids: list[str] = []
    last = "-"
    while True:
        entries = xrange(client, stream, start=last, count=10_000)
        if last != "-":
            entries = entries[1:]
        if not entries:
            return ids
        ids.extend(orjson.loads(fields[b"data"])["id"] for _, fields in entries)
        last = entries[-1][0].decode()
