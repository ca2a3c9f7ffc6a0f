"""Issue 10 item 5: slow headers time out, idle sockets are closed, and a flood of connections
to either port is capped, so it cannot take the descriptors the disk queue needs.

A real agent process with a low `ulimit -n`, real sockets, a real redis-server."""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.harness import RedisServer, eventually_sync
from tests.harness.agent_process import AgentProcess
from tests.harness.ports import LOOPBACK

pytestmark = pytest.mark.integration

OPEN_FILES = 256
IDLE_SOCKETS = 1000
CAP = 32
SLOW_HEAD = b"POST /v1/topics/orders/messages HTTP/1.1\r\nHost: x\r\n"


def low_fd_agent(tmp_path: Path, redis: RedisServer) -> AgentProcess:
    agent = AgentProcess(
        tmp_path,
        {
            "SIDECAR_SPANS_ENABLED": "false",
            "SIDECAR_REDIS_URL": redis.url,
            "SIDECAR_ADMIN_MAX_CONNECTIONS": str(CAP),
            "SIDECAR_PROXY_MAX_CONNECTIONS": str(CAP),
            "SIDECAR_ADMIN_IDLE_TIMEOUT": "1s",
            "SIDECAR_PROXY_IDLE_TIMEOUT": "1s",
        },
    )
    # `ulimit -n` in sh lowers the soft and the hard limit, so the agent cannot raise it back.
    command = f"ulimit -n {OPEN_FILES} && exec {sys.executable} -m agent run"
    agent.process.argv = ["/bin/sh", "-c", command]
    return agent


def open_idle_sockets(ports: list[int], count: int) -> list[socket.socket]:
    sockets = []
    for number in range(count):
        sock = socket.create_connection((LOOPBACK, ports[number % len(ports)]), timeout=5)
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # refused and closed already
            sock.send(SLOW_HEAD[:20])  # a request head that never completes
        sockets.append(sock)
    return sockets


def wait_all_closed_by_server(sockets: list[socket.socket], timeout: float) -> None:
    """Every socket reads end-of-file (after a refusal's 503, if any) before the deadline."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(selector.get_map())} sockets still held by the agent"
            for key, _ in selector.select(min(remaining, 0.5)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    selector.unregister(sock)
    finally:
        selector.close()
        for sock in sockets:
            sock.close()


def publish(agent: AgentProcess, body: list[dict[str, object]]) -> int:
    request = urllib.request.Request(
        f"{agent.proxy_url}/v1/topics/orders/messages?ack=disk",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_slow_headers_and_idle_sockets_are_closed_and_the_disk_queue_stays_writable(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    agent = low_fd_agent(tmp_path, redis_server)
    agent.start()
    sockets = open_idle_sockets([agent.admin_port, agent.proxy_port], IDLE_SOCKETS)
    # Refused at once past the cap; held ones closed by the idle timeout, never an hour later.
    wait_all_closed_by_server(sockets, timeout=20)

    assert publish(agent, [{"data": {"n": n}} for n in range(10)]) == 202
    client = redis_server.client()
    eventually_sync(
        lambda: client.xlen("stream:orders") == 10, timeout=10, what="10 messages in Redis"
    )
    metrics = agent.metrics()
    assert metrics['sidecar_http_connections_refused_total{server="admin"}'] > 0
    assert metrics['sidecar_http_connections_refused_total{server="proxy"}'] > 0
    assert agent.get("/readyz")[0] == 200
    log = agent.process.log_path.read_text()
    assert "Too many open files" not in log
    assert agent.terminate() == 0


def test_connections_past_the_cap_get_503_with_retry_after(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    agent = low_fd_agent(tmp_path, redis_server)
    agent.start()
    held = [socket.create_connection((LOOPBACK, agent.admin_port), timeout=5) for _ in range(CAP)]
    try:
        eventually_sync(
            lambda: _refusal(agent.admin_port) is not None, timeout=10, what="a refused connection"
        )
        answer = _refusal(agent.admin_port)
        assert answer is not None
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in answer
        assert b'"too_many_connections"' in answer
    finally:
        for sock in held:
            sock.close()
    eventually_sync(lambda: agent.get("/healthz")[0] == 200, timeout=10, what="admin serving again")
    assert agent.terminate() == 0


def _refusal(port: int) -> bytes | None:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(65536)
    return answer if answer.startswith(b"HTTP/1.1 503") else None
