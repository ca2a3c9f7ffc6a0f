"""Message throughput into a Redis Cluster beside one redis-server, in the same run.

    python bench/cluster.py [--seconds 3] [--rounds 3] [--partitions 12]

What `bench/proxy.py --cluster` measures (it calls `run` here), kept in its own script so the
two can change independently; it reuses bench/proxy.py's load client (a separate process
posting 1,000-message JSON requests on 8 keep-alive connections), CPU accounting and report
helpers by import.

Three agents (each its own process, ack=disk), measured interleaved round by round:

  standalone           one redis-server, the topic as one stream: the baseline
  standalone, split    one redis-server, the topic over `--partitions` streams (round robin)
  cluster, split       3 masters (no replicas), the same partitions, spread over the masters

Every figure is end to end: the requests posted in `--seconds`, divided by the time until the
last of their messages is in Redis. On a shared 2-core machine the masters, the agent and the
load client share the CPUs, so the cluster cannot be faster here; what this shows is what
splitting a batch per master costs the agent (see docs/scaling.md for sizing).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy import BATCH, client, cpu_seconds, each, median, row  # noqa: E402

from tests.harness import RedisServer  # noqa: E402
from tests.harness.agent_process import AgentProcess  # noqa: E402
from tests.harness.redis_cluster import ReplicatedRedisCluster  # noqa: E402

TOPIC = "bench"  # the topic publish_load.py posts to


class BenchAgent(AgentProcess):
    def __init__(self, workdir: Path, settings: dict[str, str]) -> None:
        super().__init__(
            workdir,
            {
                "SIDECAR_SPANS_ENABLED": "false",
                "SIDECAR_MESSAGES_ACK": "disk",
                "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "4GiB",
                "SIDECAR_LOG_LEVEL": "warning",
                **settings,
            },
        )
        self.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


def partitions_env(partitions: int) -> dict[str, str]:
    return {"SIDECAR_MESSAGES_TOPICS": f"{{{TOPIC}: {{partitions: {partitions}}}}}"}


def streams(partitions: int) -> list[str]:
    if partitions == 1:
        return [f"stream:{TOPIC}"]
    return [f"stream:{TOPIC}:{p}" for p in range(partitions)]


def one_round(
    agent: BenchAgent,
    total: Callable[[], int],
    clear: Callable[[], None],
    seconds: float,
) -> tuple[float, float]:
    """(msg/s end to end, agent CPU µs per message) for one closed-loop run."""
    started = time.perf_counter()
    cpu_before = cpu_seconds(agent.pid)
    result = client(
        {"mode": "closed", "base": agent.proxy_url, "body": "json", "batch": BATCH,
         "connections": 8, "seconds": seconds}
    )  # fmt: skip
    messages = result["ok"] * BATCH
    deadline = time.monotonic() + 120
    while total() < messages:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {total()} of {messages} messages arrived")
        time.sleep(0.005)
    finished = time.perf_counter()
    cost = (cpu_seconds(agent.pid) - cpu_before) / messages * 1e6
    clear()
    return messages / (finished - started), cost


def run(tmp: Path, seconds: float, rounds: int, partitions: int) -> None:
    print(f"setup: {os.cpu_count()} CPUs shared by every redis-server, three agents (one busy")
    print("at a time) and the load client; 1,000-message requests, 8 connections, ack=disk;")
    print(f"{rounds} interleaved rounds of {seconds:g}s, medians (each round in brackets)")
    cluster = ReplicatedRedisCluster(tmp / "cluster", masters=3, replicas=0)
    with RedisServer(tmp / "redis") as server:
        cluster.start()
        try:
            measure(tmp, server, cluster, (seconds, rounds, partitions))
        finally:
            cluster.close()


def measure(
    tmp: Path,
    server: RedisServer,
    cluster: ReplicatedRedisCluster,
    plan: tuple[float, int, int],
) -> None:
    seconds, rounds, partitions = plan
    single = server.client()
    spread = cluster.client()
    agents = {
        "standalone": BenchAgent(tmp / "a1", {"SIDECAR_REDIS_URL": server.url}),
        "standalone, split": BenchAgent(
            tmp / "a2", {"SIDECAR_REDIS_URL": server.url, **partitions_env(partitions)}
        ),
        "cluster, split": BenchAgent(
            tmp / "a3",
            {
                "SIDECAR_REDIS_URL": cluster.nodes[0].url,
                "SIDECAR_REDIS_MODE": "cluster",
                "SIDECAR_REDIS_SEEDS": ",".join(cluster.seeds),
                **partitions_env(partitions),
            },
        ),
    }
    counters = {
        "standalone": (single, streams(1)),
        "standalone, split": (single, streams(partitions)),
        "cluster, split": (spread, streams(partitions)),
    }
    rates: dict[str, list[float]] = {name: [] for name in agents}
    costs: dict[str, list[float]] = {name: [] for name in agents}
    try:
        for _ in range(rounds):
            for name, agent in agents.items():
                db, keys = counters[name]
                rate, cost = one_round(
                    agent,
                    lambda db=db, keys=keys: sum(int(db.xlen(key)) for key in keys),
                    lambda db=db, keys=keys: [db.delete(key) for key in keys] and None,
                    seconds,
                )
                rates[name].append(rate)
                costs[name].append(cost)
    finally:
        for agent in agents.values():
            agent.terminate()
    report(rates, costs, partitions)


def report(rates: dict[str, list[float]], costs: dict[str, list[float]], partitions: int) -> None:
    print(f"\nbatched publish end to end (topic over {partitions} streams where split)")
    base = rates["standalone"]
    for name, measured in rates.items():
        ratios = [rate / b for rate, b in zip(measured, base, strict=True)]
        row(
            name,
            f"{median(measured):>9,.0f} msg/s {each(measured, ',.0f')}"
            f"  = {median(ratios):.2f}x standalone {each(ratios, '.2f')};"
            f" agent CPU {median(costs[name]):.2f} µs/msg",
        )
    ratios = [c / b for c, b in zip(rates["cluster, split"], base, strict=True)]
    verdict = "met" if median(ratios) >= 0.8 else "NOT met"
    print(f"  target cluster >= 0.8x standalone on this machine: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--partitions", type=int, default=12, help="streams of the split topic")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-", dir=ROOT) as tmp:
        run(Path(tmp), args.seconds, args.rounds, args.partitions)


if __name__ == "__main__":
    main()
