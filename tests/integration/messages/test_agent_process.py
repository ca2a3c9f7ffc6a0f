"""The agent as a real process: kill -9 under load loses no acknowledged publish, and a full
buffer answers 503 with Retry-After while memory stays bounded."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.harness import RedisServer, eventually, eventually_sync
from tests.harness.agent_process import AgentProcess
from tests.integration.messages.support import stream_message_ids

pytestmark = pytest.mark.integration

SETTINGS = {
    "SIDECAR_SPANS_ENABLED": "false",
    "SIDECAR_MESSAGES_RETRY_INITIAL_INTERVAL": "50ms",
    "SIDECAR_MESSAGES_RETRY_MAX_INTERVAL": "300ms",
    "SIDECAR_REDIS_CONNECT_TIMEOUT": "1s",
}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Load:
    """`workers` sequential publishers (one topic each) recording every id answered 2xx."""

    def __init__(self, base: str, workers: int = 4) -> None:
        self.base = base
        self.acked: dict[str, list[str]] = {f"crash-{n}": [] for n in range(workers)}
        self.failures = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(self._worker(http, topic) for topic in self.acked))

    async def _worker(self, http: aiohttp.ClientSession, topic: str) -> None:
        number = 0
        while not self.stop.is_set():
            batch = [{"data": {"n": number + i}} for i in range(1 + number % 10)]
            number += len(batch)
            try:
                async with http.post(f"{self.base}/v1/topics/{topic}/messages", json=batch) as r:
                    if r.status == 202:
                        self.acked[topic].extend((await r.json())["ids"])
                        continue
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.failures += 1
            await asyncio.sleep(0.01)  # the agent is down: do not spin


async def test_kill_9_under_load_loses_no_acknowledged_publish(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    agent = AgentProcess(tmp_path, {**SETTINGS, "SIDECAR_REDIS_URL": redis_server.url})
    agent.start()
    load = Load(agent.proxy_url)
    running = asyncio.ensure_future(load.run())
    rng = random.Random(4)
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.6, 1.4))
        agent.kill()
        await asyncio.sleep(0.2)
        await asyncio.to_thread(agent.start)
    # Load goes on after the last restart until more publishes are acknowledged.
    acked = sum(map(len, load.acked.values()))
    await eventually(lambda: sum(map(len, load.acked.values())) >= acked + 100, what="more acks")
    load.stop.set()
    await running
    eventually_sync(
        lambda: agent.status()["components"]["messages"]["buffer"]["buffered_requests"] == 0,
        timeout=30,
        what="the backlog to drain",
    )
    assert agent.terminate() == 0
    client = redis_server.client()
    duplicates = 0
    for topic, acked in load.acked.items():
        stored = stream_message_ids(client, f"stream:{topic}")
        wanted = set(acked)
        missing = wanted - set(stored)
        assert not missing, f"{len(missing)} acknowledged messages of {topic} are not in Redis"
        first_seen = list(dict.fromkeys(i for i in stored if i in wanted))
        assert first_seen == acked  # order kept across the kills
        duplicates += len(stored) - len(set(stored))
    total = sum(map(len, load.acked.values()))
    print(f"\nkill -9 x3: {total} acknowledged, 0 lost, {duplicates} duplicates")
    assert total > 1000
    # Replayed entries are looked up in their stream before a resend (replay.py): with no
    # other producer on these streams, none is written twice.
    assert duplicates == 0


async def test_full_buffer_answers_503_with_retry_after_and_memory_stays_bounded(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.stop()
    settings = {
        **SETTINGS,
        "SIDECAR_REDIS_URL": redis_server.url,
        "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "1MiB",
        "SIDECAR_PROXY_RETRY_AFTER": "2s",
    }
    agent = AgentProcess(tmp_path, settings)
    agent.start()
    pid = agent.process.pid
    assert pid is not None
    body = orjson.dumps([{"data": "x" * 1000} for _ in range(30)])
    acked: list[str] = []
    statuses: list[int] = []
    async with aiohttp.ClientSession() as http:
        target = f"{agent.proxy_url}/v1/topics/pressure/messages"
        for _ in range(300):
            async with http.post(
                target, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                statuses.append(r.status)
                answer = await r.json()
                if r.status == 202:
                    acked.extend(answer["ids"])
                else:
                    assert r.status == 503 and r.headers["Retry-After"] == "2"
                    assert answer["error"]["code"] == "buffer_full"
        assert rss_bytes(pid) < 150 * 1024**2
        ready, readiness = agent.get("/readyz")
        assert ready == 503
        state = orjson.loads(readiness)["components"]["messages"]
        assert state["state"] == "full" and "disk queue full" in state["reason"]
        assert statuses[0] == 202 and statuses.count(503) > 200
        redis_server.start()
        eventually_sync(lambda: agent.get("/readyz")[0] == 200, timeout=20, what="ready again")
        async with http.post(target, data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 202
            acked.extend((await r.json())["ids"])
    eventually_sync(
        lambda: redis_server.client().xlen("stream:pressure") >= len(acked),
        timeout=20,
        what="the backlog to drain",
    )
    assert agent.terminate() == 0
    assert stream_message_ids(redis_server.client(), "stream:pressure") == acked
