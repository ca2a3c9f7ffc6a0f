"""Message proxy throughput and latency, each figure next to its baseline from the same run.

    python bench/proxy.py [--seconds 4]

Setup, stated in the output: a real redis-server, the agent as its own process
(`python -m agent run`, disk queue in a temp dir), and load from a separate client process
(aiohttp, keep-alive connections). The machine is shared and noisy, so what matters are the
ratios to the baselines measured in the same run:

  batched      msg/s through the agent (1,000-message JSON requests, accept → XADD) against
               raw RESP pipelining of the same XADDs with hiredis parsing (no HTTP, no Python
               per message)
  single       single-message requests/s against a bare aiohttp handler that reads the body
               and answers 202 with a small JSON body
  latency      p50/p99 of a request at 1,000 msg/s, per ack mode, against a direct redis-py
               XADD at the same rate; "added" is the difference
  drain        backlog drain rate: messages buffered while Redis was down, delivered once it
               is back
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import hiredis  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402

from agent.messages.message import AcceptTime, MessageIds  # noqa: E402
from tests.harness import RedisServer, free_port  # noqa: E402

TOPIC = "bench"
BATCH = 1000
PYTHON = sys.executable


def sample_data(number: int) -> dict[str, Any]:
    return {"order_id": number, "customer": "c-1234", "amount": 42.5, "items": ["sku-1", "sku-2"]}


def batch_body(size: int) -> bytes:
    return orjson.dumps([{"data": sample_data(n)} for n in range(size)])


# -- load client (runs in its own process) ---------------------------------------------------


async def client_closed_loop(
    url: str, body: bytes, connections: int, seconds: float
) -> dict[str, Any]:
    """`connections` keep-alive loops posting `body` as fast as answers come back."""
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Content-Type": "application/json"}
    counts = {"ok": 0, "errors": 0}
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            while time.perf_counter() < deadline:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    counts["ok" if response.status < 300 else "errors"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {**counts, "elapsed": elapsed, "started": started}


async def client_paced(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: one single-message request every 1/rate s; the latency of each."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=64)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(number: int) -> None:
            nonlocal errors
            body = orjson.dumps({"data": sample_data(number)})
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    errors += 1
            latencies.append(time.perf_counter() - started)

        await _paced(one, rate, seconds)
    return {"latencies": latencies, "errors": errors}


async def _paced(work: Any, rate: float, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    tasks = []
    start = loop.time()
    total = int(rate * seconds)
    for number in range(total):
        delay = start + number / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(work(number)))
    await asyncio.gather(*tasks)


async def client_redispy(redis_url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Direct redis-py XADDs of a jobfirst-shaped entry at `rate`: the latency baseline."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
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

    await _paced(one, rate, seconds)
    await client.aclose()
    return {"latencies": latencies, "errors": 0}


def resp_commands(count: int) -> bytes:
    """The agent's own encoding of `count` jobfirst XADDs (what it would send to Redis)."""
    from agent.config import TopicConfig
    from agent.messages.layout import TopicLayout

    layout = TopicLayout("resp-baseline", TopicConfig())
    ids = MessageIds()
    first = ids.reserve(count, time.time_ns())
    envelopes = [(None, sample_data(n), None, None) for n in range(count)]
    encoded = layout.encode(
        envelopes, [ids.make(first + n) for n in range(count)], AcceptTime.at(first)
    )
    return encoded.blob


async def client_resp(host: str, port: int, seconds: float, depth: int = 4) -> dict[str, Any]:
    """Raw RESP: pre-encoded batches of 1,000 XADDs, `depth` batches in flight, hiredis replies."""
    wire = resp_commands(BATCH)
    reader, writer = await asyncio.open_connection(host, port)
    parser = hiredis.Reader()
    sent = replies = 0  # batches written, replies read
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline or replies < sent * BATCH:
        while sent * BATCH - replies < depth * BATCH and time.perf_counter() < deadline:
            writer.write(wire)
            sent += 1
        parser.feed(await reader.read(1 << 20))
        while parser.gets() is not False:
            replies += 1
    elapsed = time.perf_counter() - started
    writer.close()
    return {"ok": replies // BATCH, "errors": 0, "elapsed": elapsed}


def run_client_mode(spec: dict[str, Any]) -> dict[str, Any]:
    mode = spec["mode"]
    if mode == "closed":
        body = (
            batch_body(spec["batch"])
            if spec["batch"] > 1
            else orjson.dumps({"data": sample_data(1)})
        )
        return asyncio.run(
            client_closed_loop(spec["url"], body, spec["connections"], spec["seconds"])
        )
    if mode == "paced":
        return asyncio.run(client_paced(spec["url"], spec["rate"], spec["seconds"]))
    if mode == "redispy":
        return asyncio.run(client_redispy(spec["url"], spec["rate"], spec["seconds"]))
    if mode == "resp":
        return asyncio.run(client_resp(spec["host"], spec["port"], spec["seconds"]))
    raise SystemExit(f"unknown client mode {mode}")


def client(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load client in a fresh process and return what it measured."""
    output = subprocess.run(
        [PYTHON, __file__, "--client", json.dumps(spec)], capture_output=True, check=True, cwd=ROOT
    )
    result: dict[str, Any] = json.loads(output.stdout)
    return result


# -- servers under test ----------------------------------------------------------------------


def bare_server(port: int) -> None:
    """The baseline: aiohttp with a handler that reads the body and answers 202 JSON."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=orjson.dumps({"accepted": 1, "ids": ["msg_0"]}),
            status=202,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_post("/v1/topics/{topic}/messages", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (robust where wall-clock rates are noisy)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run a load client against process `pid`; the client's result and the CPU `pid` used."""
    before = cpu_seconds(pid)
    result = client(spec)
    return result, cpu_seconds(pid) - before


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


class Agent:
    def __init__(self, workdir: Path, redis_url: str, ack: str = "disk") -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.env = {
            **os.environ,
            "SIDECAR_DATA_DIR": str(workdir),
            "SIDECAR_PROXY_LISTEN": f"127.0.0.1:{self.port}",
            "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "SIDECAR_SPANS_ENABLED": "false",
            "SIDECAR_REDIS_URL": redis_url,
            "SIDECAR_MESSAGES_ACK": ack,
            "SIDECAR_MESSAGES_RETRY_INITIAL_INTERVAL": "50ms",
            "SIDECAR_MESSAGES_RETRY_MAX_INTERVAL": "200ms",
            "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "4GiB",
            "SIDECAR_LOG_LEVEL": "warning",
        }
        self.process = subprocess.Popen(
            [PYTHON, "-m", "agent", "run"], env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def url(self, ack: str | None = None) -> str:
        query = f"?ack={ack}" if ack else ""
        return f"http://127.0.0.1:{self.port}/v1/topics/{TOPIC}/messages{query}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def wait_for_length(client: redis.Redis, key: str, length: int, timeout: float = 120.0) -> float:
    """Seconds (perf_counter) at which `key` reached `length` entries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.xlen(key) >= length:
            return time.perf_counter()
        time.sleep(0.005)
    raise SystemExit(f"{key} never reached {length} entries (has {client.xlen(key)})")


def row(label: str, figures: str) -> None:
    print(f"  {label:<34}{figures}")


def millis(p50: float, p99: float) -> str:
    return f"p50 {p50 * 1e3:6.2f} ms   p99 {p99 * 1e3:6.2f} ms"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        sys.stdout.write(json.dumps(run_client_mode(json.loads(args.client))))
        return
    if args.bare_server:
        bare_server(args.bare_server)
        return
    with tempfile.TemporaryDirectory(prefix="bench-proxy-", dir=ROOT) as tmp:
        run(Path(tmp), args.seconds)


def run(tmp: Path, seconds: float) -> None:
    print(f"setup: {os.cpu_count()} CPUs shared by redis-server, the agent process and one load")
    print("client process (aiohttp keep-alive); agent disk queue on the repo's filesystem")
    with RedisServer(tmp / "redis") as server:
        db = server.client()
        agent = Agent(tmp / "agent", server.url)
        try:
            batched(agent, server, db, seconds)
            single(agent, seconds)
            latency(agent, server, db, seconds)
        finally:
            agent.stop()
        drain(tmp, server)


def batched(agent: Agent, server: RedisServer, db: redis.Redis, seconds: float) -> None:
    spec = {"mode": "resp", "host": server.host, "port": server.port, "seconds": seconds}
    baseline = client(spec)
    resp_rate = baseline["ok"] * BATCH / baseline["elapsed"]
    db.delete("stream:resp-baseline")
    stream = f"stream:{TOPIC}"
    before = db.xlen(stream)
    started = time.perf_counter()
    cpu_before = cpu_seconds(agent.process.pid)
    load = {"mode": "closed", "url": agent.url(), "batch": BATCH, "connections": 8}
    result = client({**load, "seconds": seconds})
    messages = result["ok"] * BATCH
    finished = wait_for_length(db, stream, before + messages)
    cpu = cpu_seconds(agent.process.pid) - cpu_before
    rate = messages / (finished - started)
    db.delete(stream)
    print("\nbatched publish (1,000 messages a request, 8 connections, ack=disk)")
    print(f"  raw RESP pipelined XADD baseline  {resp_rate:>10,.0f} msg/s")
    print(f"  agent, accepted (HTTP 202)        {messages / result['elapsed']:>10,.0f} msg/s")
    print(
        f"  agent, end to end (in Redis)      {rate:>10,.0f} msg/s"
        f"  = {rate / resp_rate:.0%} of raw RESP; agent CPU {cpu / messages * 1e6:.2f} µs/msg"
    )
    verdict = "met" if rate >= 250_000 else "NOT met"
    print(f"  target >= 250,000 msg/s: {verdict}; errors={result['errors']}")


def single(agent: Agent, seconds: float) -> None:
    port = free_port()
    bare = subprocess.Popen([PYTHON, __file__, "--bare-server", str(port)], cwd=ROOT)
    spec = {"mode": "closed", "batch": 1, "connections": 32, "seconds": seconds}
    try:
        wait_for_port(port)
        bare_url = f"http://127.0.0.1:{port}/v1/topics/{TOPIC}/messages"
        bare_result, bare_cpu = measured(bare.pid, {**spec, "url": bare_url})
    finally:
        bare.terminate()
        bare.wait(10)
    bare_rate = bare_result["ok"] / bare_result["elapsed"]
    bare_cost = bare_cpu / bare_result["ok"] * 1e6
    print("\nsingle-message requests (32 connections)")
    row("bare aiohttp handler", f"{bare_rate:>10,.0f} req/s   {bare_cost:6.1f} µs CPU/req")
    for ack in ("memory", "disk"):
        result, cpu = measured(agent.process.pid, {**spec, "url": agent.url(ack)})
        rate = result["ok"] / result["elapsed"]
        cost = cpu / result["ok"] * 1e6
        print(
            f"  agent ack={ack:<7}                 {rate:>10,.0f} req/s   {cost:6.1f} µs CPU/req"
            f"  = {rate / bare_rate:.0%} of bare's rate, {bare_cost / cost:.0%} of its"
            f" CPU efficiency (target >= 80%); errors={result['errors']}"
        )


def latency(agent: Agent, server: RedisServer, db: redis.Redis, seconds: float) -> None:
    rate = 1000.0
    direct = client({"mode": "redispy", "url": server.url, "rate": rate, "seconds": seconds})
    base50, base99 = percentile(direct["latencies"], 0.5), percentile(direct["latencies"], 0.99)
    print(f"\nlatency at {rate:,.0f} msg/s (single-message requests, open loop)")
    row("direct redis-py XADD", millis(base50, base99))
    port = free_port()
    bare = subprocess.Popen([PYTHON, __file__, "--bare-server", str(port)], cwd=ROOT)
    try:
        wait_for_port(port)
        bare_url = f"http://127.0.0.1:{port}/v1/topics/{TOPIC}/messages"
        http = client({"mode": "paced", "url": bare_url, "rate": rate, "seconds": seconds})
    finally:
        bare.terminate()
        bare.wait(10)
    http50, http99 = percentile(http["latencies"], 0.5), percentile(http["latencies"], 0.99)
    row("bare aiohttp handler (HTTP alone)", millis(http50, http99))
    for ack in ("memory", "disk", "redis"):
        result = client({"mode": "paced", "url": agent.url(ack), "rate": rate, "seconds": seconds})
        p50, p99 = percentile(result["latencies"], 0.5), percentile(result["latencies"], 0.99)
        row(
            f"agent ack={ack}",
            f"{millis(p50, p99)}   added vs XADD: p50 {(p50 - base50) * 1e3:+.2f}"
            f" p99 {(p99 - base99) * 1e3:+.2f} ms; vs bare HTTP: p50 {(p50 - http50) * 1e3:+.2f}"
            f" p99 {(p99 - http99) * 1e3:+.2f} ms; errors={result['errors']}",
        )
    print("  (target: p99 added <= 2 ms)")
    db.delete("stream:redispy", f"stream:{TOPIC}")


def drain(tmp: Path, server: RedisServer) -> None:
    """Publish into a stopped Redis, start it, time the delivery of the backlog."""
    backlog = 300_000
    server.stop()
    agent = Agent(tmp / "agent-drain", server.url)
    try:
        spec = {"mode": "closed", "url": agent.url("memory"), "batch": BATCH, "connections": 4}
        published = 0
        while published * BATCH < backlog:
            published += client({**spec, "seconds": 0.5})["ok"]
        total = published * BATCH
        server.start()
        started = time.perf_counter()
        finished = wait_for_length(server.client(), f"stream:{TOPIC}", total, timeout=300)
    finally:
        agent.stop()
    rate = total / (finished - started)
    print(f"\nbacklog drain: {total:,} messages buffered while Redis was down")
    print(
        f"  delivered after Redis came back   {rate:>10,.0f} msg/s"
        "  (target >= 250,000; the clock starts at Redis's start, so it includes the reconnect)"
    )


if __name__ == "__main__":
    main()
