"""Publish throughput and latency for every body, each figure beside its baseline from the run.

    python bench/proxy.py [--seconds 2] [--rounds 3] [--parts batched,single,latency,uvloop,drain]
    python bench/proxy.py --cluster [--seconds 3] [--rounds 3] [--partitions 12]  # bench/cluster.py

Setup, stated in the output: a real redis-server, the agent as its own process
(`python -m agent run`, default ack=disk, disk queue in a temp dir), a bare aiohttp server as
its own process, and each load from a fresh client process (bench/publish_load.py, aiohttp on
uvloop, keep-alive). The machine is shared and noisy, so every comparison is interleaved: each
round measures the baselines and then the agent back to back, `--rounds` times; figures are the
medians over the rounds, and a ratio is the median of each round's own ratio.

  batched  msg/s accept → in Redis, 1,000 messages a request, 4 connections, per body (JSON,
           msgpack, Dapr bulk), against raw RESP pipelining of the same XADDs with hiredis
           parsing and against redis-py's pipeline API
  single   single-message requests/s and server CPU µs per request, per body and ack mode,
           against a bare aiohttp handler (same client, 32 connections, same body)
  latency  p50/p99 at 1,000 msg/s, against the bare handler (HTTP alone) plus the disk's own
           append + fdatasync, and a direct redis-py XADD
  uvloop   the agent and the bare handler on asyncio's loop and on uvloop (rate, CPU, and
           the agent's ack=disk and ack=memory latency at 1,000 msg/s)
  drain    messages buffered while Redis was down, delivered once it is back
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from publish_load import client
from publish_rig import (
    ROOT,
    Agent,
    BareServer,
    cpu_seconds,
    each,
    median,
    p50_p99,
    ratios,
    row,
    wait_for_length,
)

from agent import native
from tests.harness import RedisServer

BATCH = 1000
STREAM = "stream:bench"
PARTS = ("batched", "single", "latency", "uvloop", "drain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts to run")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="instead: a Redis Cluster beside one redis-server (bench/cluster.py's run)",
    )
    parser.add_argument("--partitions", type=int, default=12, help="with --cluster")
    args = parser.parse_args()
    if args.cluster:
        from cluster import run as run_cluster  # it imports this module's helpers

        with tempfile.TemporaryDirectory(prefix="bench-cluster-", dir=ROOT) as tmp:
            run_cluster(Path(tmp), args.seconds, args.rounds, args.partitions)
        return
    parts = args.parts.split(",")
    print(f"setup: {os.cpu_count()} CPUs shared by redis-server, the agent, the bare aiohttp")
    print("server and one load-client process; agent disk queue on the repo's filesystem;")
    print(f"{args.rounds} interleaved rounds of {args.seconds:g}s per measurement, medians")
    print("shown (each round's values in brackets)")
    print(f"agent code: {native.STATUS.describe()}")
    with tempfile.TemporaryDirectory(prefix="bench-proxy-", dir=ROOT) as tmp:
        run(Path(tmp), parts, args.seconds, args.rounds)


def run(tmp: Path, parts: list[str], seconds: float, rounds: int) -> None:
    with RedisServer(tmp / "redis") as server, BareServer() as bare:
        db = server.client()
        agent = Agent(tmp / "agent", server.url)
        try:
            if "batched" in parts:
                batched(agent, server, db, seconds, rounds)
            if "single" in parts:
                single(agent, bare, db, seconds, rounds)
            if "latency" in parts:
                latency(agent, bare, server, seconds, rounds)
            if "uvloop" in parts:
                uvloop(tmp, agent, bare, server, seconds=seconds, rounds=rounds)
        finally:
            agent.stop()
        if "drain" in parts:
            drain(tmp, server)


def end_to_end(agent: Agent, db: redis.Redis, spec: dict[str, Any]) -> tuple[float, float]:
    """msg/s from the first request until the last message is in Redis; agent CPU µs/msg."""
    before = db.xlen(STREAM)
    cpu_before = cpu_seconds(agent.pid)
    result = client({**spec, "base": agent.base})
    messages = result["ok"] * spec["batch"]
    finished = wait_for_length(db, STREAM, before + messages)
    started = result["started"]  # the first request, not the client process's start
    cost = (cpu_seconds(agent.pid) - cpu_before) / messages * 1e6
    db.delete(STREAM)
    if result["errors"]:
        raise SystemExit(f"{result['errors']} requests failed: {spec}")
    return messages / (finished - started), cost


def batched(
    agent: Agent, server: RedisServer, db: redis.Redis, seconds: float, rounds: int
) -> None:
    bodies = ("json", "msgpack", "dapr-bulk")
    load = {"mode": "closed", "batch": BATCH, "connections": 4, "seconds": seconds}
    redis_spec = {"host": server.host, "port": server.port, "batch": BATCH, "seconds": seconds}
    raw: list[float] = []
    pipeline: list[float] = []
    rates: dict[str, list[float]] = {body: [] for body in bodies}
    costs: dict[str, list[float]] = {body: [] for body in bodies}
    for _ in range(rounds):
        for mode, into in (("resp", raw), ("redispy-pipeline", pipeline)):
            result = client({**redis_spec, "mode": mode})
            into.append(result["messages"] / result["elapsed"])
        db.delete("stream:resp-baseline", "stream:redispy-baseline")
        for body in bodies:
            rate, cost = end_to_end(agent, db, {**load, "body": body})
            rates[body].append(rate)
            costs[body].append(cost)
    print(f"\nbatched publish ({BATCH:,} messages a request, 4 connections, ack=disk),")
    print("accept → in Redis")
    row("raw RESP pipelined XADD (hiredis)", f"{median(raw):>10,.0f} msg/s  {each(raw, ',.0f')}")
    row(
        "redis-py pipeline",
        f"{median(pipeline):>10,.0f} msg/s  {each(pipeline, ',.0f')}"
        f"  = {median(ratios(pipeline, raw)):.2f}× raw",
    )
    for body in bodies:
        row(
            f"agent, {body} body",
            f"{median(rates[body]):>10,.0f} msg/s  {each(rates[body], ',.0f')}"
            f"  = {median(ratios(rates[body], raw)):.2f}× raw,"
            f" {median(ratios(rates[body], pipeline)):.1f}× redis-py;"
            f" agent CPU {median(costs[body]):.2f} µs/msg",
        )
    print(
        f"  msgpack / JSON: {median(ratios(rates['msgpack'], rates['json'])):.2f}"
        f" {each(ratios(rates['msgpack'], rates['json']), '.2f')}"
        " (targets: msgpack >= JSON; both >= 0.5× raw)"
    )


SINGLE_CASES = (
    ("json", "memory"),
    ("json", "disk"),
    ("json", "redis"),
    ("msgpack", "disk"),
    ("dapr", "disk"),
    ("dapr-bulk", "disk"),
)


def single(agent: Agent, bare: BareServer, db: redis.Redis, seconds: float, rounds: int) -> None:
    load = {"mode": "closed", "batch": 1, "connections": 32, "seconds": seconds}
    base_rates: list[float] = []
    base_costs: list[float] = []
    rates: dict[tuple[str, str], list[float]] = {case: [] for case in SINGLE_CASES}
    costs: dict[tuple[str, str], list[float]] = {case: [] for case in SINGLE_CASES}
    errors = dict.fromkeys(SINGLE_CASES, 0)
    for _ in range(rounds):
        rate, cost, _ = closed(bare.pid, {**load, "body": "json", "base": bare.base})
        base_rates.append(rate)
        base_costs.append(cost)
        for body, ack in SINGLE_CASES:
            spec = {**load, "body": body, "ack": ack, "base": agent.base}
            rate, cost, failed = closed(agent.pid, spec)
            rates[body, ack].append(rate)
            costs[body, ack].append(cost)
            errors[body, ack] += failed
        db.delete(STREAM)
    print("\nsingle-message requests (32 keep-alive connections, the same client and data)")
    row(
        "bare aiohttp handler",
        f"{median(base_rates):>8,.0f} req/s {each(base_rates, ',.0f')}"
        f"  {median(base_costs):5.1f} µs CPU/req",
    )
    for case in SINGLE_CASES:
        body, ack = case
        row(
            f"agent {body} ack={ack}",
            f"{median(rates[case]):>8,.0f} req/s {each(rates[case], ',.0f')}"
            f"  {median(costs[case]):5.1f} µs CPU/req"
            f"  = {median(ratios(rates[case], base_rates)):.0%} of bare"
            f" {each(ratios(rates[case], base_rates), '.0%')}; errors={errors[case]}",
        )
    print("  (targets: ack=disk >= 70% of the bare handler's rate, ack=memory >= 90%)")


def closed(pid: int, spec: dict[str, Any]) -> tuple[float, float, int]:
    """Requests/s, the server's CPU µs per request, failed requests."""
    before = cpu_seconds(pid)
    result = client(spec)
    cost = (cpu_seconds(pid) - before) / max(result["ok"], 1) * 1e6
    return result["ok"] / result["elapsed"], cost, result["errors"]


def latency(
    agent: Agent, bare: BareServer, server: RedisServer, seconds: float, rounds: int
) -> None:
    rate = 1000.0
    paced = {"mode": "paced", "rate": rate, "seconds": seconds}
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("bare aiohttp handler (HTTP alone)", {**paced, "body": "json", "base": bare.base}),
        ("append + fdatasync (disk alone)", {**paced, "mode": "fsync", "dir": str(agent.workdir)}),
        ("direct redis-py XADD", {**paced, "mode": "redispy", "url": server.url}),
    ]
    for body, ack in (("json", "disk"), ("json", "memory"), ("json", "redis"), ("dapr", "disk")):
        kinds.append((f"agent {body} ack={ack}", {**paced, "body": body, "ack": ack}))
    latencies: dict[str, list[float]] = {name: [] for name, _ in kinds}
    errors = dict.fromkeys(latencies, 0)
    for _ in range(rounds):
        for name, spec in kinds:
            result = client({"base": agent.base, **spec})
            latencies[name] += result["latencies"]
            errors[name] += result["errors"]
    print(f"\nlatency at {rate:,.0f} msg/s (single-message requests, open loop, rounds pooled)")
    http50, http99 = p50_p99(latencies[kinds[0][0]])
    disk50, disk99 = p50_p99(latencies[kinds[1][0]])
    for name, _ in kinds[:3]:
        p50, p99 = p50_p99(latencies[name])
        row(name, f"p50 {p50 * 1e3:5.2f}  p99 {p99 * 1e3:5.2f} ms")
    row(
        "bare HTTP + disk (the floor of ack=disk)",
        f"p50 {(http50 + disk50) * 1e3:5.2f}  p99 {(http99 + disk99) * 1e3:5.2f} ms",
    )
    for name, _ in kinds[3:]:
        p50, p99 = p50_p99(latencies[name])
        row(
            name,
            f"p50 {p50 * 1e3:5.2f}  p99 {p99 * 1e3:5.2f} ms   vs HTTP + disk:"
            f" p50 {(p50 - http50 - disk50) * 1e3:+.2f}  p99 {(p99 - http99 - disk99) * 1e3:+.2f}"
            f" ms; errors={errors[name]}",
        )
    print("  (targets for ack=disk: p50 within 0.4 ms and p99 within 2 ms of HTTP + disk)")
    server.client().delete("stream:redispy", STREAM)


def uvloop(
    tmp: Path, agent: Agent, bare: BareServer, server: RedisServer, *, seconds: float, rounds: int
) -> None:
    """The same agent and bare handler on asyncio's loop: what uvloop changed, in rate, CPU
    and latency at 1,000 msg/s."""
    db = server.client()
    stdlib = Agent(tmp / "agent-asyncio", server.url, event_loop="asyncio")
    single_load = {"mode": "closed", "batch": 1, "connections": 32, "seconds": seconds}
    batch_load = {"mode": "closed", "batch": BATCH, "connections": 4, "seconds": seconds}
    paced = {"mode": "paced", "rate": 1000.0, "seconds": seconds}
    figures: dict[str, list[float]] = {}
    waits: dict[str, list[float]] = {}
    try:
        with BareServer("asyncio") as bare_stdlib:
            for _ in range(rounds):
                for name, target in (("uvloop", bare), ("asyncio", bare_stdlib)):
                    spec = {**single_load, "body": "json", "base": target.base}
                    rate, cost, _ = closed(target.pid, spec)
                    figures.setdefault(f"bare {name} rate", []).append(rate)
                    figures.setdefault(f"bare {name} cost", []).append(cost)
                for name, target in (("uvloop", agent), ("asyncio", stdlib)):
                    spec = {**single_load, "body": "json", "base": target.base}
                    rate, cost, _ = closed(target.pid, spec)
                    figures.setdefault(f"agent {name} rate", []).append(rate)
                    figures.setdefault(f"agent {name} cost", []).append(cost)
                    rate, cost = end_to_end(target, db, {**batch_load, "body": "json"})
                    figures.setdefault(f"batched {name} rate", []).append(rate)
                    figures.setdefault(f"batched {name} cost", []).append(cost)
                    for ack in ("disk", "memory"):
                        spec = {**paced, "body": "json", "ack": ack, "base": target.base}
                        waits.setdefault(f"{name} {ack}", []).extend(client(spec)["latencies"])
    finally:
        stdlib.stop()
    print("\nuvloop against asyncio's own loop (single: JSON, ack=disk, 32 connections;")
    print(f"batched: JSON, {BATCH:,} a request, in Redis)")
    for label, key, unit in (
        ("bare handler, single", "bare", "req/s"),
        ("agent, single ack=disk", "agent", "req/s"),
        ("agent, batched", "batched", "msg/s"),
    ):
        fast, slow = figures[f"{key} uvloop rate"], figures[f"{key} asyncio rate"]
        fast_cost, slow_cost = figures[f"{key} uvloop cost"], figures[f"{key} asyncio cost"]
        row(
            label,
            f"asyncio {median(slow):>9,.0f} {unit}, {median(slow_cost):5.2f} µs CPU;"
            f" uvloop {median(fast):>9,.0f} {unit}, {median(fast_cost):5.2f} µs CPU"
            f"  = {median(ratios(fast, slow)):.2f}× rate {each(ratios(fast, slow), '.2f')}",
        )
    row(
        "agent/bare single, same loop",
        f"asyncio {median(ratios(figures['agent asyncio rate'], figures['bare asyncio rate'])):.0%}"
        f", uvloop {median(ratios(figures['agent uvloop rate'], figures['bare uvloop rate'])):.0%}",
    )
    for ack in ("disk", "memory"):
        slow, fast = p50_p99(waits[f"asyncio {ack}"]), p50_p99(waits[f"uvloop {ack}"])
        row(
            f"latency at 1,000 msg/s, ack={ack}",
            f"asyncio p50 {slow[0] * 1e3:5.2f} p99 {slow[1] * 1e3:5.2f} ms;"
            f" uvloop p50 {fast[0] * 1e3:5.2f} p99 {fast[1] * 1e3:5.2f} ms (rounds pooled)",
        )


def drain(tmp: Path, server: RedisServer) -> None:
    """Publish into a stopped Redis, start it, time the delivery of the backlog."""
    backlog = 300_000
    server.stop()
    agent = Agent(tmp / "agent-drain", server.url)
    try:
        spec = {
            "mode": "closed",
            "body": "json",
            "ack": "memory",
            "batch": BATCH,
            "connections": 4,
            "seconds": 0.5,
            "base": agent.base,
        }
        published = 0
        while published * BATCH < backlog:
            published += client(spec)["ok"]
        total = published * BATCH
        server.start()
        started = time.perf_counter()
        finished = wait_for_length(server.client(), STREAM, total, timeout=300)
    finally:
        agent.stop()
    rate = total / (finished - started)
    print(f"\nbacklog drain: {total:,} messages buffered while Redis was down")
    row(
        "delivered after Redis came back",
        f"{rate:>10,.0f} msg/s  (the clock starts at Redis's start, so it includes the reconnect)",
    )


if __name__ == "__main__":
    main()
