"""The servers of the publish benches, each its own process, and the figures' arithmetic.

Agent       `python -m agent run` (tests/harness), spans off, disk queue in a temp dir
BareServer  the baseline: aiohttp with a handler that reads the body and answers 202 JSON,
            on every route the benches post to, on uvloop or asyncio's loop as asked
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from tests.harness import eventually_sync, free_port  # noqa: E402
from tests.harness.agent_process import AgentProcess  # noqa: E402
from tests.harness.ports import LOOPBACK  # noqa: E402


def bare_server(port: int, loop: str) -> None:
    """The baseline: aiohttp with a handler that reads the body and answers 202 JSON."""
    import asyncio

    from aiohttp import web

    from agent.core.eventloop import loop_factory

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=orjson.dumps({"accepted": 1, "ids": ["msg_0"]}),
            status=202,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_post("/{path:.*}", handler)
    factory = loop_factory("auto" if loop == "uvloop" else "asyncio")
    event_loop = factory() if factory else asyncio.new_event_loop()
    web.run_app(app, host=LOOPBACK, port=port, print=None, access_log=None, loop=event_loop)


class BareServer:
    """`bare_server` in its own process, for the whole run."""

    def __init__(self, loop: str = "uvloop") -> None:
        self.loop = loop
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareServer:
        command = [sys.executable, __file__, str(self.port), self.loop]
        self.process = subprocess.Popen(command, cwd=ROOT)
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


class Agent(AgentProcess):
    """The agent as its own process, ready once its proxy listens."""

    def __init__(self, workdir: Path, redis_url: str, **settings: str) -> None:
        env = {
            "SIDECAR_SPANS_ENABLED": "false",
            "SIDECAR_REDIS_URL": redis_url,
            "SIDECAR_MESSAGES_RETRY_INITIAL_INTERVAL": "50ms",
            "SIDECAR_MESSAGES_RETRY_MAX_INTERVAL": "200ms",
            "SIDECAR_MESSAGES_QUEUE_MAX_BYTES": "4GiB",
            "SIDECAR_LOG_LEVEL": "warning",
        }
        env.update({f"SIDECAR_{key.upper()}": value for key, value in settings.items()})
        super().__init__(workdir, env)
        self.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def base(self) -> str:
        return self.proxy_url

    def stop(self) -> None:
        self.terminate()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (robust where wall-clock rates are noisy)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex((LOOPBACK, port)) == 0

    eventually_sync(listening, timeout=timeout, what=f"a listener on port {port}")


def wait_for_length(client: redis.Redis, key: str, length: int, timeout: float = 120.0) -> float:
    """perf_counter() at which stream `key` reached `length` entries (polled every 2 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.xlen(key) >= length:
            return time.perf_counter()
        time.sleep(0.002)
    raise SystemExit(f"{key} never reached {length} entries (has {client.xlen(key)})")


# -- figures ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def each(values: list[float], spec: str) -> str:
    return "[" + ", ".join(format(value, spec) for value in values) + "]"


def ratios(values: list[float], baselines: list[float]) -> list[float]:
    """Each round's value over the same round's baseline."""
    return [value / base for value, base in zip(values, baselines, strict=True)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def p50_p99(values: list[float]) -> tuple[float, float]:
    return percentile(values, 0.5), percentile(values, 0.99)


def row(label: str, figures: str) -> None:
    print(f"  {label:<38}{figures}")


if __name__ == "__main__":
    bare_server(int(sys.argv[1]), sys.argv[2])
