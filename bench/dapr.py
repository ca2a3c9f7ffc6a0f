"""Single publishes on the Dapr route: the agent beside Dapr's own sidecar, in one run.

    python bench/dapr.py [--seconds 2] [--rounds 3]

daprd (v1.14, built by bench/peers/build-daprd into the per-machine cache, or DAPRD_BIN) runs
with a `pubsub.redis` component against the same real redis-server as the agent. Both get the
same load client (bench/publish_load.py: aiohttp on uvloop, 32 keep-alive connections) posting
the same body to `POST /v1.0/publish/pubsub/bench`, interleaved round by round:

  rate     requests/s and server CPU µs per request; the agent with its default ack=disk (it
           fsyncs every accepted publish, daprd answers once Redis replied) and with ack=redis
  latency  p50/p99 at 1,000 msg/s, open loop
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from publish_load import client
from publish_rig import ROOT, Agent, cpu_seconds, each, median, p50_p99, ratios, row

from agent import native
from tests.harness import RedisServer, eventually_sync, free_port
from tests.harness.ports import LOOPBACK

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - name: redisHost
      value: "{address}"
    - name: redisPassword
      value: ""
"""


def daprd_binary() -> str:
    """The cached daprd, built on first use (many minutes on a cold Go cache)."""
    script = ROOT / "bench" / "peers" / "build-daprd"
    output = subprocess.run([str(script)], check=True, capture_output=True, text=True)
    return output.stdout.strip().splitlines()[-1]


class Daprd:
    """daprd in standalone mode with one pubsub.redis component, ready once /healthz is 204."""

    def __init__(self, binary: str, workdir: Path, redis_address: str) -> None:
        workdir.mkdir(parents=True)
        resources = workdir / "resources"
        resources.mkdir()
        (resources / "pubsub.yaml").write_text(COMPONENT.format(address=redis_address))
        self.http_port = free_port()
        self.base = f"http://{LOOPBACK}:{self.http_port}"
        command = [
            binary,
            "--app-id=bench",
            f"--dapr-http-port={self.http_port}",
            f"--dapr-grpc-port={free_port()}",
            f"--dapr-internal-grpc-port={free_port()}",
            f"--metrics-port={free_port()}",
            "--enable-metrics=false",
            f"--dapr-listen-addresses={LOOPBACK}",
            f"--resources-path={resources}",
            "--log-level=warn",
        ]
        self.log = (workdir / "daprd.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        eventually_sync(self._healthy, timeout=60.0, what="daprd's /v1.0/healthz")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit(f"daprd exited with {self.process.returncode}; see {self.log.name}")
        try:
            with urllib.request.urlopen(f"{self.base}/v1.0/healthz", timeout=1) as answer:
                return bool(answer.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def closed(pid: int, spec: dict[str, Any]) -> tuple[float, float, int]:
    before = cpu_seconds(pid)
    result = client(spec)
    cost = (cpu_seconds(pid) - before) / max(result["ok"], 1) * 1e6
    return result["ok"] / result["elapsed"], cost, result["errors"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure")
    args = parser.parse_args()
    binary = daprd_binary()
    print(f"setup: {os.cpu_count()} CPUs shared by redis-server, daprd, the agent and one")
    print("load-client process; single publishes on the Dapr route, the same body for both;")
    print(f"{args.rounds} interleaved rounds of {args.seconds:g}s, medians (rounds in brackets)")
    print(f"agent code: {native.STATUS.describe()}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-dapr-", dir=ROOT) as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        dapr = Daprd(binary, Path(tmp) / "daprd", f"{server.host}:{server.port}")
        agent = Agent(Path(tmp) / "agent", server.url)
        try:
            rates(dapr, agent, server, args.seconds, args.rounds)
            latency(dapr, agent, args.seconds, args.rounds)
        finally:
            agent.stop()
            dapr.stop()


def rates(dapr: Daprd, agent: Agent, server: RedisServer, seconds: float, rounds: int) -> None:
    load = {"mode": "closed", "body": "dapr", "batch": 1, "connections": 32, "seconds": seconds}
    targets = (
        ("daprd", dapr.pid, dapr.base, None),
        ("agent ack=disk", agent.pid, agent.base, None),
        ("agent ack=redis", agent.pid, agent.base, "redis"),
    )
    figures: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    db = server.client()
    for _ in range(rounds):
        for name, pid, base, ack in targets:
            rate, cost, failed = closed(pid, {**load, "base": base, "ack": ack})
            figures.setdefault(f"{name} rate", []).append(rate)
            figures.setdefault(f"{name} cost", []).append(cost)
            errors[name] = errors.get(name, 0) + failed
        db.delete("bench", "stream:bench")  # daprd's stream is the topic, the agent's stream:
    print("\nsingle publishes, POST /v1.0/publish/pubsub/bench (32 connections)")
    dapr_rates = figures["daprd rate"]
    for name, *_ in targets:
        rate, cost = figures[f"{name} rate"], figures[f"{name} cost"]
        against = ratios(rate, dapr_rates)
        relative = (
            "" if name == "daprd" else f"  = {median(against):.2f}× daprd {each(against, '.2f')}"
        )
        row(
            name,
            f"{median(rate):>8,.0f} req/s {each(rate, ',.0f')}  {median(cost):6.1f} µs CPU/req"
            f"{relative}; errors={errors[name]}",
        )
    print("  (target: agent ack=disk >= 1.0× daprd)")


def latency(dapr: Daprd, agent: Agent, seconds: float, rounds: int) -> None:
    rate = 1000.0
    paced = {"mode": "paced", "body": "dapr", "rate": rate, "seconds": seconds}
    targets = (
        ("daprd", dapr.base, None),
        ("agent ack=disk", agent.base, None),
        ("agent ack=redis", agent.base, "redis"),
    )
    latencies: dict[str, list[float]] = {name: [] for name, *_ in targets}
    for _ in range(rounds):
        for name, base, ack in targets:
            latencies[name] += client({**paced, "base": base, "ack": ack})["latencies"]
    print(f"\nlatency at {rate:,.0f} msg/s (open loop, rounds pooled)")
    dapr50, dapr99 = p50_p99(latencies["daprd"])
    for name, *_ in targets:
        p50, p99 = p50_p99(latencies[name])
        versus = (
            ""
            if name == "daprd"
            else (
                f"   vs daprd: p50 {(p50 - dapr50) * 1e3:+.2f}  p99 {(p99 - dapr99) * 1e3:+.2f} ms"
            )
        )
        row(name, f"p50 {p50 * 1e3:5.2f}  p99 {p99 * 1e3:5.2f} ms{versus}")
    print("  (target: agent ack=disk p50 within 0.1 ms of daprd's)")


if __name__ == "__main__":
    main()
