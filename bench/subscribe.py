"""Subscription delivery rate into a bare aiohttp app, beside the app's own request rate and
beside Dapr's daprd delivering the same backlog to the same app, all in one run.

    python bench/subscribe.py [--messages 20000] [--rounds 3] [--concurrency 10] [--bulk 100]

Setup, stated in the output: a real redis-server; the receiving app (bench/subscribe_app.py)
as its own process; each contender drains a backlog of `--messages` entries written before it
starts, and the app times first to last message (so start-up is not measured) and counts
distinct ids (duplicates = messages - distinct). Each round runs every contender back to back
(the machine is shared and noisy), `--rounds` times; figures are medians over rounds, ratios
are per round against that round's daprd, then the median.

  client        a plain aiohttp client POSTing the same Message JSON, `--concurrency` connections
                (the app's own request rate with a Python client)
  agent         the agent (`python -m agent run`), one message per request, concurrency as given
  daprd         Dapr 1.14 daprd, pubsub.redis, the app subscribed via GET /dapr/subscribe
                (bench/peers/build-daprd; DAPRD_BIN to use another binary)
  agent bulk    the agent with `bulk` entries per request (a JSON array of Messages)
  agent uvloop  `agent`, on uvloop's event loop (with --uvloop, when uvloop is installed)
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
import orjson  # noqa: E402
import redis  # noqa: E402

from agent.messages.message import message_json  # noqa: E402
from tests.harness import RedisServer, eventually_sync, free_port  # noqa: E402
from tests.harness.agent_process import AgentProcess  # noqa: E402
from tests.harness.ports import LOOPBACK  # noqa: E402
from tests.harness.process import ManagedProcess  # noqa: E402

TOPIC = "bench"
DAPR_TOPIC = "bench-dapr"
PUBSUB = "bench-pubsub"
PYTHON = sys.executable
UVLOOP_RUN = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from agent.cli.main import main; sys.exit(main(['run']))"
)


def message(number: int, prefix: str) -> bytes:
    data = {"order_id": number, "customer": "c-1234", "amount": 42.5, "items": ["sku-1", "sku-2"]}
    return message_json(
        f"{prefix}-{number}",
        TOPIC,
        data,
        headers=None,
        metadata=None,
        timestamp="2026-12-05T09:00:00.123456789Z",
    )


def cloudevent(number: int, prefix: str) -> bytes:
    data = {"order_id": number, "customer": "c-1234", "amount": 42.5, "items": ["sku-1", "sku-2"]}
    event = {
        "specversion": "1.0",
        "id": f"{prefix}-{number}",
        "source": "bench",
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "data": data,
        "topic": DAPR_TOPIC,
        "pubsubname": PUBSUB,
    }
    return orjson.dumps(event)


def prefill(client: redis.Redis, key: str, bodies: list[bytes], jobfirst: bool) -> None:
    client.delete(key)
    pipe = client.pipeline(transaction=False)
    for index, body in enumerate(bodies):
        fields = {"data": body, "topic": TOPIC, "timestamp": "1"} if jobfirst else {"data": body}
        pipe.xadd(key, fields)  # type: ignore[arg-type]
        if index % 5000 == 4999:
            pipe.execute()
    pipe.execute()


class App:
    def __init__(self, workdir: Path, dapr_bulk: int) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        log = (workdir / "app.log").open("ab")
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "subscribe_app.py"), str(self.port), str(dapr_bulk)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        eventually_sync(self._up, timeout=20, what="the bench app")

    def _up(self) -> bool:
        try:
            self.stats()
        except OSError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/stats", timeout=5) as response:
            result: dict[str, Any] = orjson.loads(response.read())
            return result

    def reset(self) -> None:
        import urllib.request

        request = urllib.request.Request(self.url + "/reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=5).close()

    def wait_for(self, count: int, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["unique"] >= count:
                time.sleep(0.3)  # late duplicates, if any, would show now
                return self.stats()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stats['unique']} of {count} delivered: {stats}")
            time.sleep(0.05)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate_of(stats: dict[str, Any]) -> float:
    span = stats["last"] - stats["first"]
    return (stats["received"] - 1) / span if span > 0 else float("nan")


async def drive_client(url: str, bodies: list[bytes], connections: int) -> None:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        position = iter(range(len(bodies)))

        async def worker() -> None:
            for index in position:
                headers = {"Content-Type": "application/json"}
                async with http.post(url, data=bodies[index], headers=headers) as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(connections)))


def run_client(app: App, count: int, connections: int, round_number: int) -> dict[str, Any]:
    bodies = [message(n, f"c{round_number}") for n in range(count)]
    app.reset()
    asyncio.run(drive_client(app.url + "/events", bodies, connections))
    return app.wait_for(count)


def run_agent(
    app: App,
    server: RedisServer,
    workdir: Path,
    *,
    count: int,
    concurrency: int,
    bulk: int,
    round_number: int,
    uvloop: bool = False,
) -> dict[str, Any]:
    client = server.client()
    topic = f"{TOPIC}-{round_number}-{bulk}"
    bodies = [message(n, f"a{round_number}-{bulk}") for n in range(count)]
    prefill(client, f"stream:{topic}", bodies, jobfirst=True)
    app.reset()
    prefix = "SIDECAR_MESSAGES_SUBSCRIPTIONS_0_"
    settings = {
        "SIDECAR_SPANS_ENABLED": "false",
        "SIDECAR_REDIS_URL": server.url,
        prefix + "TOPIC": topic,
        prefix + "ENDPOINT": app.url + "/events",
        prefix + "CONCURRENCY": str(concurrency),
        prefix + "BATCH_SIZE": str(max(10, concurrency)),
        prefix + "BULK": str(bulk),
    }
    agent = AgentProcess(workdir / f"agent-{round_number}-{bulk}-{uvloop}", settings)
    if uvloop:
        agent.process = ManagedProcess(
            "sidecar-agent",
            [PYTHON, "-c", UVLOOP_RUN],
            agent.workdir / "agent.log",
            env=agent.env,
            cwd=ROOT,
        )
    agent.start()
    try:
        # From ready on: start-up (imports, connections) is not delivery work.
        cpu_before = cpu_seconds(agent.process.pid)
        stats = app.wait_for(count)
        stats["cpu"] = cpu_seconds(agent.process.pid) - cpu_before
    finally:
        agent.terminate()
    stats["pending_after"] = client.xpending(f"stream:{topic}", "jobfirst-consumer-group")[
        "pending"
    ]
    return stats


def daprd_binary() -> str:
    built = subprocess.run(
        [str(ROOT / "bench" / "peers" / "build-daprd")], check=True, capture_output=True, text=True
    )
    return built.stdout.strip().splitlines()[-1]


def run_daprd(
    binary: str,
    app: App,
    server: RedisServer,
    workdir: Path,
    *,
    count: int,
    concurrency: int,
    round_number: int,
) -> dict[str, Any]:
    client = server.client()
    prefill(client, DAPR_TOPIC, [cloudevent(n, f"d{round_number}") for n in range(count)], False)
    app.reset()
    resources = workdir / f"dapr-{round_number}"
    resources.mkdir(parents=True, exist_ok=True)
    group = f"bench-group-{round_number}"
    (resources / "pubsub.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + PUBSUB + "\n"
        "spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n"
        f"  - name: redisHost\n    value: {LOOPBACK}:{server.port}\n"
        f"  - name: consumerID\n    value: {group}\n"
        f'  - name: concurrency\n    value: "{concurrency}"\n'
    )
    ports = [str(free_port()) for _ in range(5)]
    argv = [
        binary,
        "--app-id",
        "benchapp",
        "--app-port",
        str(app.port),
        "--resources-path",
        str(resources),
        "--dapr-http-port",
        ports[0],
        "--dapr-grpc-port",
        ports[1],
        "--metrics-port",
        ports[2],
        "--profile-port",
        ports[3],
        "--dapr-internal-grpc-port",
        ports[4],
        "--log-level",
        "warn",
        "--enable-metrics=false",
    ]
    log = (resources / "daprd.log").open("ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        stats = app.wait_for(count)
        stats["cpu"] = cpu_seconds(process.pid)  # start-up included: daprd's is small
    finally:
        process.terminate()
        process.wait(20)
    stats["pending_after"] = client.xpending(DAPR_TOPIC, group)["pending"]
    return stats


def summarise(rounds: list[dict[str, dict[str, Any]]], count: int) -> None:
    names = list(rounds[0])
    print(
        f"\n{'contender':<12} {'msg/s':>9} {'vs daprd':>9} {'msg/CPU-s':>10} {'dupes':>6}"
        f" {'unacked':>8}  msg/s per round"
    )
    for name in names:
        rates = [rate_of(r[name]) for r in rounds]
        ratios = [rate_of(r[name]) / rate_of(r["daprd"]) for r in rounds if "daprd" in r]
        per_cpu = [r[name]["received"] / r[name]["cpu"] for r in rounds if r[name].get("cpu")]
        dupes = max(r[name]["received"] - r[name]["unique"] for r in rounds)
        unacked = max(r[name].get("pending_after", 0) for r in rounds)
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        cpu = f"{statistics.median(per_cpu):,.0f}" if per_cpu else "-"
        each = ", ".join(f"{rate:,.0f}" for rate in rates)
        print(
            f"{name:<12} {statistics.median(rates):>9,.0f} {ratio:>9} {cpu:>10} {dupes:>6}"
            f" {unacked:>8}  {each}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--bulk", type=int, default=100)
    parser.add_argument("--bulk-messages", type=int, default=200_000)
    parser.add_argument("--no-daprd", action="store_true")
    parser.add_argument("--uvloop", action="store_true", help="also run the agent on uvloop")
    args = parser.parse_args()
    binary = None if args.no_daprd else daprd_binary()
    print(
        f"{os.cpu_count()} CPUs (shared); {args.messages:,} messages per run "
        f"({args.bulk_messages:,} for bulk), concurrency {args.concurrency}, bulk {args.bulk}"
    )
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        server = RedisServer(workdir / "redis")
        server.start()
        app = App(workdir, 0)
        rounds: list[dict[str, dict[str, Any]]] = []
        try:
            for number in range(args.rounds):
                results: dict[str, dict[str, Any]] = {}
                results["client"] = run_client(app, args.messages, args.concurrency, number)
                single = {"count": args.messages, "concurrency": args.concurrency}
                results["agent"] = run_agent(
                    app, server, workdir, **single, bulk=0, round_number=number
                )
                if args.uvloop:
                    results["agent uvloop"] = run_agent(
                        app, server, workdir, **single, bulk=0, round_number=number, uvloop=True
                    )
                if binary:
                    results["daprd"] = run_daprd(
                        binary, app, server, workdir, **single, round_number=number
                    )
                results["agent bulk"] = run_agent(
                    app,
                    server,
                    workdir,
                    count=args.bulk_messages,
                    concurrency=args.concurrency,
                    bulk=args.bulk,
                    round_number=number,
                )
                print(
                    f"round {number + 1}: "
                    + ", ".join(
                        f"{name} {rate_of(stats):,.0f}/s" for name, stats in results.items()
                    ),
                    flush=True,
                )
                rounds.append(results)
        finally:
            app.close()
            server.close()
    summarise(rounds, args.messages)


if __name__ == "__main__":
    main()
