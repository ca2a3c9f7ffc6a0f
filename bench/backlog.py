"""Memory with a 1 GiB backlog on disk, and the rate it drains at once Redis is back.

    python bench/backlog.py [--gib 1.0] [--message-bytes 1024]

Setup: a real redis-server that is stopped, the agent as its own process (`python -m agent run`,
ack mode disk, a disk queue limit above the backlog), and a client in this process publishing
1,000-message requests until the agent's disk queue holds the backlog. Then Redis starts and
the backlog drains. The agent's RSS is read from /proc (VmRSS while it runs, VmHWM for the peak)
and set beside its own idle RSS measured in the same run, right after start-up, before any
message: the target (docs/architecture.md) is RSS <= 100 MB whatever the backlog, drain >= 250k
msg/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from tests.harness import RedisServer  # noqa: E402
from tests.harness.agent_process import AgentProcess  # noqa: E402

TOPIC = "backlog"
BATCH = 1000


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB"


class AgentUnderTest(AgentProcess):
    """The agent as its own process (tests/harness), with its RSS read from /proc."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        super().__init__(
            workdir,
            {
                "SIDECAR_SPANS_ENABLED": "false",
                "SIDECAR_REDIS_URL": redis_url,
                "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "8GiB",
                "SIDECAR_PROXY_MAX_BODY_BYTES": "8MiB",
                "SIDECAR_MESSAGES_RETRY_INITIAL_INTERVAL": "50ms",
                "SIDECAR_MESSAGES_RETRY_MAX_INTERVAL": "200ms",
                "SIDECAR_LOG_LEVEL": "warning",
            },
        )
        self.start(timeout=30)

    @property
    def url(self) -> str:
        return f"{self.proxy_url}/v1/topics/{TOPIC}/messages"

    def rss_kib(self) -> int:
        return proc_kib(self.process.pid, "VmRSS")

    def peak_kib(self) -> int:
        return proc_kib(self.process.pid, "VmHWM")

    def stop(self) -> None:
        self.terminate(60)


def batch_body(message_bytes: int, first: int) -> bytes:
    filler = "x" * max(0, message_bytes - 60)
    return orjson.dumps([{"data": {"n": first + i, "pad": filler}} for i in range(BATCH)])


async def publish(url: str, total_bytes: int, message_bytes: int) -> int:
    """Publish batches (4 connections) until about `total_bytes` of messages were accepted."""
    target = total_bytes // message_bytes
    published = 0
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal published
            while published < target:
                first, published = published, published + BATCH
                body = batch_body(message_bytes, first)
                headers = {"Content-Type": "application/json"}
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 202:
                        raise SystemExit(
                            f"publish failed: {response.status} {await response.text()}"
                        )

        await asyncio.gather(*(worker() for _ in range(4)))
    return published


def directory_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="backlog size (default 1)")
    parser.add_argument("--message-bytes", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as temp:
        run(Path(temp), int(args.gib * 1024**3), args.message_bytes)


def run(tmp: Path, backlog_bytes: int, message_bytes: int) -> None:
    server = RedisServer(tmp / "redis")
    server.start()
    server.stop()
    agent = AgentUnderTest(tmp / "agent", server.url)
    try:
        time.sleep(1.0)
        idle = agent.rss_kib()
        started = time.perf_counter()
        total = asyncio.run(publish(agent.url, backlog_bytes, message_bytes))
        filled = time.perf_counter() - started
        on_disk = directory_bytes(tmp / "agent" / "data")
        after_fill, fill_peak = agent.rss_kib(), agent.peak_kib()
        server.start()
        drain_started = time.perf_counter()
        client = server.client()
        drain_peak = after_fill
        while client.xlen(f"stream:{TOPIC}") < total:
            drain_peak = max(drain_peak, agent.rss_kib())
            time.sleep(0.2)
        drained = time.perf_counter() - drain_started
        overall_peak = agent.peak_kib()
    finally:
        agent.stop()
        server.close()
    print(f"backlog: {total:,} messages of ~{message_bytes} B, {on_disk / 1024**3:.2f} GiB on disk")
    print(
        f"filled in {filled:.1f} s ({total / filled:,.0f} msg/s accepted with ack=disk, Redis down)"
    )
    print()
    print(f"{'agent RSS':<40}{'MiB':>10}{'vs idle':>10}")
    for label, kib in (
        ("idle, same run (baseline)", idle),
        ("after the backlog was written", after_fill),
        ("peak while filling (VmHWM)", fill_peak),
        ("peak sampled while draining", drain_peak),
        ("peak over the whole run (VmHWM)", overall_peak),
    ):
        print(f"{label:<40}{kib / 1024:>10.1f}{kib / idle:>9.2f}x")
    print()
    print(f"RSS target <= 100 MB with a 1 GiB backlog: peak {mib(overall_peak)}")
    rate = total / drained
    print(
        f"drain: {rate:,.0f} msg/s ({total:,} in {drained:.1f} s, clock from Redis's start; "
        "target >= 250,000)"
    )


if __name__ == "__main__":
    main()
