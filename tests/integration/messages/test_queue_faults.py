"""The message buffer under real faults, with the agent as a process and a real redis-server:
descriptors run out (``ulimit -n`` and idle sockets), a bit flips in the buffer on disk."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import aiohttp
import pytest

from agent.core.diskqueue.frames import FRAME_OVERHEAD, SYNC_MARKER
from tests.harness import RedisServer, eventually_sync
from tests.harness.agent_process import AgentProcess
from tests.integration.messages.support import stream_message_ids

pytestmark = pytest.mark.integration

SETTINGS = {
    "SIDECAR_SPANS_ENABLED": "false",
    "SIDECAR_MESSAGES_RETRY_INITIAL_INTERVAL": "50ms",
    "SIDECAR_MESSAGES_RETRY_MAX_INTERVAL": "300ms",
    "SIDECAR_REDIS_CONNECT_TIMEOUT": "1s",
    # 512 KiB segments: a new segment (a new descriptor) every 50 requests or so.
    "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "4MiB",
}
FD_LIMIT = 128


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def publish(http: aiohttp.ClientSession, base: str, ids: list[str]) -> int:
    batch = [{"id": message_id, "data": "p" * 500} for message_id in ids]
    async with http.post(f"{base}/v1/topics/faults/messages", json=batch) as response:
        body = await response.json()
        if response.status == 503:
            assert body["error"]["code"] == "buffer_failed", body
        return response.status


def exhaust_descriptors(agent: AgentProcess, pid: int) -> list[socket.socket]:
    """Idle connections to the admin port until the agent has no descriptor left (the test
    lifts admin.max_connections above the descriptor limit so that they can)."""
    idle: list[socket.socket] = []
    try:
        for _ in range(FD_LIMIT * 2):
            try:  # a full listen backlog makes connect wait: enough connections then
                idle.append(socket.create_connection(("127.0.0.1", agent.admin_port), 0.5))
            except TimeoutError:
                break
        eventually_sync(lambda: open_fds(pid) >= FD_LIMIT, timeout=10, what="no descriptor left")
    except BaseException:
        for connection in idle:
            connection.close()
        raise
    return idle


async def test_one_io_error_does_not_disable_the_buffer_and_a_503_is_never_delivered(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.stop()  # everything stays in the buffer: what a 503 left there would show
    settings = {
        **SETTINGS,
        "SIDECAR_REDIS_URL": redis_server.url,
        "SIDECAR_ADMIN_MAX_CONNECTIONS": str(FD_LIMIT * 4),
    }
    agent = AgentProcess(tmp_path, settings)
    agent.process.argv = ["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", "--", *agent.process.argv]
    agent.start(wait_ready=False)
    pid = agent.process.pid
    assert pid is not None
    accepted: list[str] = []
    refused: list[str] = []
    connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection, opened up front
    async with aiohttp.ClientSession(connector=connector) as http:
        counter = 0

        async def attempt() -> int:
            nonlocal counter
            ids = [f"m{counter + n}" for n in range(20)]
            counter += 20
            status = await publish(http, agent.proxy_url, ids)
            (accepted if status == 202 else refused).extend(ids)
            return status

        assert await attempt() == 202
        idle = exhaust_descriptors(agent, pid)
        try:
            for _ in range(300):
                if await attempt() == 503:
                    break
        finally:
            for connection in idle:
                connection.close()
        assert refused, "running out of descriptors never failed a put"
        # The buffer comes back by itself once descriptors are free again.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while await attempt() != 202:
            assert loop.time() < deadline, agent.log_tail()
            await asyncio.sleep(0.1)
        for _ in range(5):
            await attempt()
    metrics = agent.metrics()
    assert metrics['sidecar_queue_io_errors_total{queue="messages"}'] >= 1
    assert metrics['sidecar_queue_recoveries_total{queue="messages"}'] >= 1
    assert agent.get("/healthz")[0] == 200
    assert agent.terminate() == 0
    # Redis comes back; the restarted agent delivers its buffer: the 503 answers are not in it.
    redis_server.start()
    restarted = AgentProcess(tmp_path, {**SETTINGS, "SIDECAR_REDIS_URL": redis_server.url})
    restarted.start()
    client = redis_server.client()
    eventually_sync(
        lambda: len(set(stream_message_ids(client, "stream:faults"))) >= len(accepted),
        timeout=30,
        what="the buffer to reach Redis",
    )
    stored = stream_message_ids(client, "stream:faults")
    assert restarted.terminate() == 0
    assert set(accepted) <= set(stored)
    assert not set(refused) & set(stored)


async def test_a_flipped_bit_in_the_active_segment_loses_only_that_record(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.stop()
    settings = {**SETTINGS, "SIDECAR_REDIS_URL": redis_server.url}
    agent = AgentProcess(tmp_path, settings)
    agent.start(wait_ready=False)
    ids = [f"bit-{n:02d}" for n in range(20)]
    async with aiohttp.ClientSession() as http:
        for message_id in ids:  # one request each: 20 records, each acknowledged from disk
            assert await publish(http, agent.proxy_url, [message_id]) == 202
    assert agent.terminate() == 0
    [segment] = (tmp_path / "data" / "messages" / "queue").glob("*.seg")
    raw = bytearray(segment.read_bytes())
    fifth = [index for index in range(len(raw)) if raw.startswith(SYNC_MARKER, index)][4]
    raw[fifth + FRAME_OVERHEAD + 40] ^= 0x08
    segment.write_bytes(bytes(raw))
    redis_server.start()
    agent.start()
    client = redis_server.client()
    eventually_sync(
        lambda: len(stream_message_ids(client, "stream:faults")) >= 19,
        timeout=30,
        what="19 messages in Redis",
    )
    assert stream_message_ids(client, "stream:faults") == ids[:4] + ids[5:]
    assert agent.metrics()['sidecar_queue_corrupt_records_total{queue="messages"}'] == 1
    buffer = agent.status()["components"]["messages"]["buffer"]
    assert buffer["corrupt_records"] == 1
    assert agent.terminate() == 0
    assert len(list((segment.parent / "quarantine").iterdir())) == 1
