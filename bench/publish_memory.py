"""Agent memory under worst-case publish bodies: the request budget and malloc_trim, each
against a baseline agent measured in the same run.

    python bench/publish_memory.py [--rounds 3] [--concurrent 8]

Each round starts three agents in turn (a real redis-server, the agent as its own process)
and sends each one burst of `--concurrent` 1 MiB JSON bodies of ~95k `{"data":0}` entries at
once (the most entries a body can hold, so the most Python objects per byte):

  budget      the agent as shipped (proxy.max_inflight_bytes default, malloc_trim after a burst)
  no-trim     the same, with malloc_trim disabled (the agent's module patched at start)
  no-budget   proxy.max_inflight_bytes at 1 TiB: every request decoded at once (the old agent)

Printed per variant: peak RSS (VmHWM), RSS 2 s after the burst was delivered to Redis, and the
status codes. Medians over the rounds; ratios against `no-budget` (peak) and `no-trim` (idle).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.harness import RedisServer, eventually_sync  # noqa: E402
from tests.harness.agent_process import AgentProcess  # noqa: E402

MiB = 1024 * 1024
NO_TRIM = (
    "import agent.core.budget as budget; budget._malloc_trim = lambda: None; "
    "from agent.cli.main import main; raise SystemExit(main(['run']))"
)
VARIANTS = ("budget", "no-trim", "no-budget")


def worst_case_body() -> bytes:
    entry = b'{"data":0}'
    return b"[" + b",".join([entry] * ((MiB - 2) // (len(entry) + 1))) + b"]"


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


async def burst(url: str, body: bytes, concurrent: int) -> list[int]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def one() -> int:
            headers = {"Content-Type": "application/json"}
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(concurrent))))


def measure(variant: str, workdir: Path, concurrent: int, body: bytes) -> tuple[float, float, str]:
    redis = RedisServer(workdir / "redis")
    redis.start()
    settings = {
        "SIDECAR_SPANS_ENABLED": "false",
        "SIDECAR_REDIS_URL": redis.url,
        "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "2GiB",
    }
    if variant == "no-budget":
        settings["SIDECAR_PROXY_MAX_INFLIGHT_BYTES"] = "1TiB"
    agent = AgentProcess(workdir, settings)
    if variant == "no-trim":
        agent.process.argv = [sys.executable, "-c", NO_TRIM]
    try:
        agent.start()
        pid = agent.process.pid
        assert pid is not None
        url = f"{agent.proxy_url}/v1/topics/bulk/messages?ack=disk"
        statuses = asyncio.run(burst(url, body, concurrent))
        entries = (len(body) - 1) // len(b'{"data":0},')
        client = redis.client()
        expected = entries * statuses.count(202)
        eventually_sync(
            lambda: client.xlen("stream:bulk") == expected, timeout=300, what="delivery"
        )
        time.sleep(2.0)
        peak, idle = kib(pid, "VmHWM") / 1024, kib(pid, "VmRSS") / 1024
        codes = ",".join(f"{statuses.count(c)}x{c}" for c in sorted(set(statuses)))
        return peak, idle, codes
    finally:
        agent.terminate()
        redis.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=8)
    args = parser.parse_args()
    body = worst_case_body()
    peaks: dict[str, list[float]] = {v: [] for v in VARIANTS}
    idles: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for number in range(args.rounds):
        for variant in VARIANTS:
            with tempfile.TemporaryDirectory() as directory:
                peak, idle, codes = measure(variant, Path(directory), args.concurrent, body)
            peaks[variant].append(peak)
            idles[variant].append(idle)
            print(
                f"round {number + 1} {variant:>9}: peak {peak:6.1f} MiB  idle {idle:6.1f} MiB"
                f"  {codes}",
                flush=True,
            )
    print(
        f"\n{args.concurrent} concurrent 1 MiB bodies of {(len(body) - 1) // 11:,} entries; "
        f"medians of {args.rounds} rounds"
    )
    for variant in VARIANTS:
        peak, idle = statistics.median(peaks[variant]), statistics.median(idles[variant])
        print(f"  {variant:>9}: peak RSS {peak:6.1f} MiB, idle RSS after {idle:6.1f} MiB")
    ratio = statistics.median(
        b / n for b, n in zip(peaks["budget"], peaks["no-budget"], strict=True)
    )
    trim = statistics.median(b / n for b, n in zip(idles["budget"], idles["no-trim"], strict=True))
    print(f"  peak RSS, budget / no-budget: {ratio:.2f}")
    print(f"  idle RSS after the burst, trim / no-trim: {trim:.2f}")


if __name__ == "__main__":
    main()
