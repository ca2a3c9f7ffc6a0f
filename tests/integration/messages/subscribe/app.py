"""A real local aiohttp application that receives deliveries and answers as a test tells it:
what it records is what the app saw, so tests assert on the app's side of the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.harness.ports import LOOPBACK, free_port


@dataclass
class Seen:
    body: Any
    headers: dict[str, str]


Answer = Callable[[Seen, int], web.Response | None]
"""Given a delivery and how many the app has seen so far, the response (None: 200)."""


@dataclass
class ReceivingApp:
    answer: Answer = lambda seen, count: None
    seen: list[Seen] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    path: str = "/events"
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    async def _receive(self, request: web.Request) -> web.Response:
        seen = Seen(orjson.loads(await request.read()), dict(request.headers))
        self.seen.append(seen)
        return self.answer(seen, len(self.seen)) or web.Response(status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ids(self) -> list[str]:
        """Message ids of the jobfirst deliveries seen, in arrival order."""
        return [seen.body["id"] for seen in self.seen]


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll `check` until it holds, failing with `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def subscription(app: ReceivingApp, topic: str, index: int = 0, **fields: Any) -> list[str]:
    """`--set` overrides for subscription `index` (fast retries unless told otherwise)."""
    values = {
        "topic": topic,
        "endpoint": app.url,
        "consumer": f"consumer-{index}",
        "retry_delay": "50ms",
        "max_retry_delay": "200ms",
        "processing_timeout": "2s",
        "delivery_timeout": "1s",
        **fields,
    }
    return [f"messages.subscriptions.{index}.{key}={value}" for key, value in values.items()]
