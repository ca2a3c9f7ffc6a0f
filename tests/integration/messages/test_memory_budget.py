"""Issue 10 item 3: memory far beyond the body limit. Eight concurrent 1 MiB bodies of the
worst kind (about 95k tiny entries each) must keep the agent's peak RSS (VmHWM, read from
/proc) at or under 200 MB: the request memory budget answers 503 + Retry-After past it, and
memory goes back once the burst is over. A real agent process and a real redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.harness import RedisServer, eventually_sync
from tests.harness.agent_process import AgentProcess

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PEAK_LIMIT = 200 * 1000 * 1000
CONCURRENT = 8
IDLE_LIMIT = 150 * 1000 * 1000


def worst_case_body() -> bytes:
    """The most entries a 1 MiB JSON array can hold: each costs a whole record to decode."""
    entry = b'{"data":0}'
    count = (MiB - 2) // (len(entry) + 1)
    return b"[" + b",".join([entry] * count) + b"]"


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def burst(base: str, body: bytes) -> list[int]:
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Content-Type": "application/json"}
    url = f"{base}/v1/topics/bulk/messages?ack=disk"
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one() -> int:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status == 503:
                    assert response.headers["Retry-After"].isdigit()
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(CONCURRENT))))


async def test_concurrent_worst_case_bodies_keep_peak_rss_under_200mb(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    agent = AgentProcess(
        tmp_path,
        {
            "SIDECAR_SPANS_ENABLED": "false",
            "SIDECAR_REDIS_URL": redis_server.url,
            "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "1GiB",
        },
    )
    agent.start()
    pid = agent.process.pid
    assert pid is not None
    body = worst_case_body()
    statuses = await burst(agent.proxy_url, body)
    peak = proc_status_kib(pid, "VmHWM") * 1024
    assert set(statuses) <= {202, 503}
    assert 202 in statuses, "the budget must still let one worst-case body in"
    assert peak <= PEAK_LIMIT, f"peak RSS {peak / 1e6:.0f} MB over {PEAK_LIMIT / 1e6:.0f} MB"
    metrics = agent.metrics()
    refused = metrics.get('sidecar_publish_errors_total{code="over_memory_budget"}', 0.0)
    assert refused == statuses.count(503)
    client = redis_server.client()
    count = (len(body) - 1) // len(b'{"data":0},')
    eventually_sync(
        lambda: client.xlen("stream:bulk") == count * statuses.count(202),
        timeout=30,
        what="the accepted bodies in Redis",
    )
    # Memory goes back once the burst is over (free pages handed back to the system).
    eventually_sync(
        lambda: proc_status_kib(pid, "VmRSS") * 1024 <= IDLE_LIMIT,
        timeout=10,
        what=f"RSS back under {IDLE_LIMIT / 1e6:.0f} MB",
    )
    assert agent.terminate() == 0
