"""Agents as real processes in one consumer group: the load is shared with no double delivery,
and kill -9 mid-delivery loses nothing (claimed by the other agent, or resumed on restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.harness import RedisServer
from tests.harness.agent_process import AgentProcess
from tests.integration.messages.subscribe.app import ReceivingApp, eventually

pytestmark = pytest.mark.integration

GROUP = "jobfirst-consumer-group"


def agent_settings(
    redis_url: str, app: ReceivingApp, consumer: str, **extra: str
) -> dict[str, str]:
    prefix = "SIDECAR_MESSAGES_SUBSCRIPTIONS_0_"
    fields = {
        "TOPIC": "work",
        "ENDPOINT": app.url,
        "CONSUMER": consumer,
        "RETRY_DELAY": "50ms",
        "MAX_RETRY_DELAY": "200ms",
        "DELIVERY_TIMEOUT": "1s",
        "PROCESSING_TIMEOUT": "2s",
        **extra,
    }
    return {
        "SIDECAR_SPANS_ENABLED": "false",
        "SIDECAR_REDIS_URL": redis_url,
        **{prefix + key: value for key, value in fields.items()},
    }


async def publish(agent: AgentProcess, count: int) -> list[str]:
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:
        for start in range(0, count, 50):
            batch = [{"data": {"n": n}} for n in range(start, min(count, start + 50))]
            target = f"{agent.proxy_url}/v1/topics/work/messages?ack=redis"
            async with http.post(target, json=batch) as response:
                assert response.status == 201, await response.text()
                ids.extend((await response.json())["ids"])
    return ids


def handled(agent: AgentProcess) -> float:
    key = 'sidecar_subscription_deliveries_total{group="%s",outcome="handled",topic="work"}'
    return agent.metrics().get(key % GROUP, 0.0)


async def test_two_agents_in_one_group_share_the_load_without_double_delivery(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = ReceivingApp()
    await app.start()
    first = AgentProcess(tmp_path / "a", agent_settings(redis_server.url, app, "agent-a"))
    second = AgentProcess(tmp_path / "b", agent_settings(redis_server.url, app, "agent-b"))
    try:
        await asyncio.gather(asyncio.to_thread(first.start), asyncio.to_thread(second.start))
        ids = await publish(first, 600)
        await eventually(lambda: set(app.ids()) == set(ids), "every message delivered", 60)
        db = redis_server.client()
        await eventually(lambda: db.xpending("stream:work", GROUP)["pending"] == 0, "the acks")
        assert len(app.ids()) == len(ids)  # each delivered exactly once
        shares = await asyncio.to_thread(lambda: (handled(first), handled(second)))
        assert sum(shares) == len(ids) and min(shares) > 0, shares
    finally:
        first.kill()
        second.kill()
        await app.stop()


class HoldingApp(ReceivingApp):
    """Holds every request open until released: deliveries stay in flight, unacked."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.answer = lambda seen, count: None

    async def _receive(self, request):  # type: ignore[no-untyped-def]
        response = await super()._receive(request)
        if not self.release.is_set():
            await self.release.wait()
        return response


async def _kill_mid_delivery(
    tmp_path: Path, redis_server: RedisServer, app: HoldingApp
) -> tuple[AgentProcess, list[str]]:
    victim = AgentProcess(tmp_path / "victim", agent_settings(redis_server.url, app, "victim"))
    await asyncio.to_thread(victim.start)
    ids = await publish(victim, 5)
    await eventually(lambda: len(app.seen) == 5, "five deliveries in flight")
    victim.kill()
    app.release.set()
    app.seen.clear()
    return victim, ids


async def test_kill_9_mid_delivery_is_redelivered_by_the_other_agent(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = HoldingApp()
    await app.start()
    other = AgentProcess(tmp_path / "other", agent_settings(redis_server.url, app, "other"))
    try:
        _, ids = await _kill_mid_delivery(tmp_path, redis_server, app)
        await asyncio.to_thread(other.start)  # claims them once idle past processing_timeout
        await eventually(lambda: sorted(app.ids()) == sorted(ids), "redelivery by the other")
        assert {seen.headers["X-Delivery-Attempt"] for seen in app.seen} == {"2"}
        db = redis_server.client()
        await eventually(lambda: db.xpending("stream:work", GROUP)["pending"] == 0, "the acks")
    finally:
        other.kill()
        await app.stop()


async def test_kill_9_mid_delivery_is_resumed_after_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    app = HoldingApp()
    await app.start()
    try:
        _, ids = await _kill_mid_delivery(tmp_path, redis_server, app)
        # Same data dir and consumer name; a long processing_timeout shows that what comes
        # back is the consumer's own pending list, not a claim of stale entries.
        settings = agent_settings(
            redis_server.url, app, "victim", PROCESSING_TIMEOUT="10m", MAX_RETRY_DELAY="1s"
        )
        victim = AgentProcess(tmp_path / "victim", settings)
        await asyncio.to_thread(victim.start)
        await eventually(lambda: sorted(app.ids()) == sorted(ids), "redelivery after restart")
        assert {seen.headers["X-Delivery-Attempt"] for seen in app.seen} == {"2"}
        victim.kill()
    finally:
        await app.stop()
