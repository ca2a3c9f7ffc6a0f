"""Publishing under load and reading everything back, for the scale-out tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from agent.messages.pipeline import MessagePipeline
from tests.integration.messages.support import post, url


@dataclass
class KeyedPublisher:
    """Publishes small batches, each message with a key out of `keys`, one request at a time,
    so the order of acknowledged ids per key is the order to expect in Redis."""

    target: str
    keys: list[str | None]
    acked: dict[str | None, list[str]] = field(default_factory=dict)
    refused: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: aiohttp.ClientSession) -> None:
        number = 0
        while not self.stop.is_set():
            keys = [self.keys[(number + i) % len(self.keys)] for i in range(3)]
            batch = [_entry(number + i, key) for i, key in enumerate(keys)]
            status, body = await post(http, self.target, batch)
            if status == 202:
                for key, message_id in zip(keys, body["ids"], strict=True):
                    self.acked.setdefault(key, []).append(message_id)
            else:
                self.refused.append(status)
            number += len(batch)
            await asyncio.sleep(0.002)

    @property
    def total(self) -> int:
        return sum(map(len, self.acked.values()))


def _entry(number: int, key: str | None) -> dict[str, Any]:
    return {"data": {"n": number}} if key is None else {"data": {"n": number}, "key": key}


@asynccontextmanager
async def publishing(
    pipeline: MessagePipeline, http: aiohttp.ClientSession, topics: dict[str, list[str | None]]
) -> AsyncIterator[list[KeyedPublisher]]:
    publishers = [
        KeyedPublisher(url(pipeline, f"/v1/topics/{topic}/messages"), keys)
        for topic, keys in topics.items()
    ]
    tasks = [asyncio.ensure_future(publisher.run(http)) for publisher in publishers]
    try:
        yield publishers
    finally:
        for publisher in publishers:
            publisher.stop.set()
        await asyncio.gather(*tasks)


async def until(condition: Any, timeout: float, what: str) -> None:
    """Poll `condition()` (sync) until true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def messages_in(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every Message JSON in a stream (jobfirst layout), in stream order."""
    entries: Any = client.xrange(stream)
    return [orjson.loads(fields[b"data"]) for _, fields in entries]


def check_per_key_order(
    publishers: list[KeyedPublisher], stored: dict[str | None, list[str]], *, keyless_ordered: bool
) -> None:
    """Every acked id is stored; per key, stored ids (first copies) keep the acked order."""
    for publisher in publishers:
        for key, acked in publisher.acked.items():
            got = list(dict.fromkeys(stored.get(key, [])))
            missing = set(acked) - set(got)
            assert not missing, f"{len(missing)} acked messages of key {key!r} missing"
            if key is not None or keyless_ordered:
                positions = {message_id: index for index, message_id in enumerate(got)}
                order = [positions[message_id] for message_id in acked]
                assert order == sorted(order), f"order of key {key!r} not kept: " + _first_swap(
                    acked, order
                )


def _first_swap(acked: list[str], order: list[int]) -> str:
    """The first acked id stored after the id acked next, with both stream positions."""
    at = next(i for i in range(len(order) - 1) if order[i] > order[i + 1])
    return (
        f"acked #{at} {acked[at]} is stored at {order[at]}, "
        f"after #{at + 1} {acked[at + 1]} at {order[at + 1]} (of {len(order)} acked)"
    )
