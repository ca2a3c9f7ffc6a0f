"""Message proxy throughput and latency, each figure next to its baseline from the same run.

    python bench/proxy.py [--seconds 2] [--rounds 3]

Setup, stated in the output: a real redis-server, the agent as its own process
(`python -m agent run`, disk queue in a temp dir), a bare aiohttp server as its own process, and
load from a separate client process (aiohttp, keep-alive connections). The machine is shared and
noisy, so every comparison is interleaved: each round measures the baseline and then the agent
(every mode) back to back, `--rounds` times, and the figures are the medians over the rounds
(with each round's own ratio, whose median is the fairest single number):

  batched      msg/s through the agent (1,000-message JSON requests, accept → in Redis) against
               raw RESP pipelining of the same XADDs with hiredis parsing (no HTTP, no Python
               per message)
  single       single-message requests/s and server CPU µs per request, per ack mode, against a
               bare aiohttp handler that reads the body and answers 202 with a small JSON body:
               same client, same 32 keep-alive connections, same body
  latency      p50/p99 of a request at 1,000 msg/s, per ack mode, against a direct redis-py
               XADD at the same rate (and the bare handler, HTTP alone); "added" is the
               difference of the pooled percentiles
  drain        backlog drain rate: messages buffered while Redis was down, delivered once it
               is back
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
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
from tests.harness import RedisServer, free_port, wait_until  # noqa: E402
from tests.harness.agent_process import AgentProcess  # noqa: E402
from tests.harness.ports import LOOPBACK  # noqa: E402

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


async def client_fsync(directory: str, rate: float, seconds: float) -> dict[str, Any]:
    """The disk alone: a 300-byte append + fdatasync at `rate`, in the agent's filesystem."""
    latencies: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory) as file:
        fd = file.fileno()

        async def one(number: int) -> None:
            started = time.perf_counter()
            os.write(fd, b"%299d\n" % number)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)

        await _paced(one, rate, seconds)
    return {"latencies": latencies, "errors": 0}


def resp_commands(count: int) -> bytes:
    """The agent's own encoding of `count` jobfirst XADDs (what it would send to Redis)."""
    from agent.config.tree import TopicConfig
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
    if mode == "fsync":
        return asyncio.run(client_fsync(spec["dir"], spec["rate"], spec["seconds"]))
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
    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex((LOOPBACK, port)) == 0

    wait_until(listening, timeout=timeout, what=f"a listener on port {port}")


class Agent(AgentProcess):
    """The agent as its own process (tests/harness), ready once its proxy listens."""

    def __init__(self, workdir: Path, redis_url: str, ack: str = "disk") -> None:
        super().__init__(
            workdir,
            {
                "SIDECAR_SPANS_ENABLED": "false",
                "SIDECAR_REDIS_URL": redis_url,
                "SIDECAR_MESSAGES_ACK": ack,
                "SIDECAR_MESSAGES_RETRY_INITIAL_INTERVAL": "50ms",
                "SIDECAR_MESSAGES_RETRY_MAX_INTERVAL": "200ms",
                "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "4GiB",
                "SIDECAR_LOG_LEVEL": "warning",
            },
        )
        self.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def url(self, ack: str | None = None) -> str:
        query = f"?ack={ack}" if ack else ""
        return f"{self.proxy_url}/v1/topics/{TOPIC}/messages{query}"

    def stop(self) -> None:
        self.terminate()


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


def millis(p50: float, p90: float, p99: float) -> str:
    return f"p50 {p50 * 1e3:5.2f}  p90 {p90 * 1e3:5.2f}  p99 {p99 * 1e3:5.2f} ms"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure")
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
        run(Path(tmp), args.seconds, args.rounds)


def run(tmp: Path, seconds: float, rounds: int) -> None:
    print(f"setup: {os.cpu_count()} CPUs shared by redis-server, the agent, the bare aiohttp")
    print("server and one load-client process (aiohttp keep-alive); agent disk queue on the")
    print(f"repo's filesystem; {rounds} interleaved rounds of {seconds:g}s per measurement,")
    print("medians shown (each round's values in brackets)")
    with RedisServer(tmp / "redis") as server, BareServer() as bare:
        db = server.client()
        agent = Agent(tmp / "agent", server.url)
        try:
            batched(agent, server, db, seconds, rounds)
            single(agent, bare, seconds, rounds)
            latency(agent, bare, server, seconds, rounds)
        finally:
            agent.stop()
        drain(tmp, server)


class BareServer:
    """The baseline HTTP server (`bare_server`) in its own process, for the whole run."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/topics/{TOPIC}/messages"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareServer:
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--bare-server", str(self.port)], cwd=ROOT
        )
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def median(values: list[float]) -> float:
    return statistics.median(values)


def each(values: list[float], spec: str) -> str:
    return "[" + ", ".join(format(value, spec) for value in values) + "]"


def batched(
    agent: Agent, server: RedisServer, db: redis.Redis, seconds: float, rounds: int
) -> None:
    resp_rates, rates, accepted, costs, errors = [], [], [], [], 0
    stream = f"stream:{TOPIC}"
    load = {"mode": "closed", "url": agent.url(), "batch": BATCH, "connections": 8}
    for _ in range(rounds):
        baseline = client(
            {"mode": "resp", "host": server.host, "port": server.port, "seconds": seconds}
        )
        resp_rates.append(baseline["ok"] * BATCH / baseline["elapsed"])
        db.delete("stream:resp-baseline")
        before = db.xlen(stream)
        started = time.perf_counter()
        cpu_before = cpu_seconds(agent.pid)
        result = client({**load, "seconds": seconds})
        messages = result["ok"] * BATCH
        finished = wait_for_length(db, stream, before + messages)
        costs.append((cpu_seconds(agent.pid) - cpu_before) / messages * 1e6)
        rates.append(messages / (finished - started))
        accepted.append(messages / result["elapsed"])
        errors += result["errors"]
        db.delete(stream)
    ratios = [rate / resp for rate, resp in zip(rates, resp_rates, strict=True)]
    print("\nbatched publish (1,000 messages a request, 8 connections, ack=disk)")
    row(
        "raw RESP pipelined XADD baseline",
        f"{median(resp_rates):>10,.0f} msg/s  {each(resp_rates, ',.0f')}",
    )
    row("agent, accepted (HTTP 202)", f"{median(accepted):>10,.0f} msg/s  {each(accepted, ',.0f')}")
    row(
        "agent, end to end (in Redis)",
        f"{median(rates):>10,.0f} msg/s  {each(rates, ',.0f')} = {median(ratios):.0%} of raw"
        f" RESP; agent CPU {median(costs):.2f} µs/msg {each(costs, '.2f')}",
    )
    verdict = "met" if median(rates) >= 250_000 else "NOT met"
    print(f"  target >= 250,000 msg/s end to end: {verdict}; errors={errors}")


ACK_MODES = ("memory", "disk", "redis")


def single(agent: Agent, bare: BareServer, seconds: float, rounds: int) -> None:
    spec = {"mode": "closed", "batch": 1, "connections": 32, "seconds": seconds}
    rates: dict[str, list[float]] = {}
    costs: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    targets = [("bare", bare.pid, bare.url)]
    targets += [(ack, agent.pid, agent.url(ack)) for ack in ACK_MODES]
    for _ in range(rounds):
        for name, pid, url in targets:
            result, cpu = measured(pid, {**spec, "url": url})
            rates.setdefault(name, []).append(result["ok"] / result["elapsed"])
            costs.setdefault(name, []).append(cpu / result["ok"] * 1e6)
            errors[name] = errors.get(name, 0) + result["errors"]
    print("\nsingle-message requests (32 keep-alive connections, the same client and body)")
    base_rate, base_cost = median(rates["bare"]), median(costs["bare"])
    row(
        "bare aiohttp handler",
        f"{base_rate:>8,.0f} req/s {each(rates['bare'], ',.0f')}  {base_cost:5.1f} µs CPU/req",
    )
    for ack in ACK_MODES:
        ratios = [rate / bare for rate, bare in zip(rates[ack], rates["bare"], strict=True)]
        cost = median(costs[ack])
        row(
            f"agent ack={ack}",
            f"{median(rates[ack]):>8,.0f} req/s {each(rates[ack], ',.0f')}  {cost:5.1f} µs CPU/req"
            f"  rate {median(ratios):.0%} of bare {each(ratios, '.0%')}, CPU efficiency"
            f" {base_cost / cost:.0%}; errors={errors[ack]}",
        )
    print("  (target: rate >= 80% of the bare handler's)")


def latency(
    agent: Agent, bare: BareServer, server: RedisServer, seconds: float, rounds: int
) -> None:
    rate = 1000.0
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("direct redis-py XADD", {"mode": "redispy", "url": server.url}),
        ("bare aiohttp handler (HTTP alone)", {"mode": "paced", "url": bare.url}),
        ("append + fdatasync (disk alone)", {"mode": "fsync", "dir": str(agent.workdir)}),
    ]
    kinds += [(f"agent ack={ack}", {"mode": "paced", "url": agent.url(ack)}) for ack in ACK_MODES]
    latencies: dict[str, list[float]] = {name: [] for name, _ in kinds}
    errors = dict.fromkeys(latencies, 0)
    for _ in range(rounds):
        for name, spec in kinds:
            result = client({**spec, "rate": rate, "seconds": seconds})
            latencies[name] += result["latencies"]
            errors[name] += result["errors"]
    print(f"\nlatency at {rate:,.0f} msg/s (single-message requests, open loop, rounds pooled)")
    base50, _, base99 = percentiles(latencies["direct redis-py XADD"])
    http50, _, http99 = percentiles(latencies["bare aiohttp handler (HTTP alone)"])
    for name, _ in kinds[:3]:
        row(name, millis(*percentiles(latencies[name])))
    for name, _ in kinds[3:]:
        p50, p90, p99 = percentiles(latencies[name])
        row(
            name,
            f"{millis(p50, p90, p99)}   added vs XADD: p50 {(p50 - base50) * 1e3:+.2f}"
            f" p99 {(p99 - base99) * 1e3:+.2f} ms; vs bare HTTP: p50 {(p50 - http50) * 1e3:+.2f}"
            f" p99 {(p99 - http99) * 1e3:+.2f} ms; errors={errors[name]}",
        )
    print("  (target: p99 added <= 2 ms; ack=disk and ack=redis wait for an fdatasync like the")
    print("  disk-alone row, so its p99 is a floor for theirs)")
    server.client().delete("stream:redispy", f"stream:{TOPIC}")


def percentiles(values: list[float]) -> tuple[float, float, float]:
    return percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)


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
