"""Spans per CPU-second received over OTLP/HTTP and exported, the agent beside the Collector.

The same load goes to each target in turn, interleaved for --rounds rounds:

  agent:      `python -m agent run` with `receivers.otlp` on (OTLP/HTTP), no files, no
              messages; exports OTLP/protobuf, gzip, to the sink; answers each request once
              its spans are sent or fsync'd in the disk queue.
  collector:  the OpenTelemetry Collector (bench/peers/build-otelcol): otlp receiver (HTTP) ->
              batch processor -> otlphttp exporter (protobuf, gzip) to the same sink; answers
              once the batch processor has the spans in memory.

The load: --requests ExportTraceServiceRequests of --spans-per-request SDK-shaped spans (server
spans, 6 attributes, 1 event, a resource with service.name and 3 more attributes), uncompressed
protobuf as the Python and Go SDKs send by default, from --connections concurrent clients
(keep-alive) in this process. The sink (another process) decodes every request and counts the
spans; a run ends when it has counted all of them.

CPU is the target process's user+sys from /proc/<pid>/stat (all threads) over the run; the
load generator's and the sink's are not counted. Medians over the rounds; the ratio is the
median of each round's own ratio. Run: `.venv/bin/python bench/otlp_receiver.py` (figures in
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the load ---------------------------------------------------------------------------------


def _kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def request_body(index: int, spans: int) -> bytes:
    now = time.time_ns()
    resource = Resource(
        attributes=[
            _kv("service.name", string_value="checkout"),
            _kv("service.version", string_value="1.4.2"),
            _kv("host.name", string_value="pod-7f9c"),
            _kv("telemetry.sdk.language", string_value="python"),
        ]
    )
    items = []
    for n in range(spans):
        seq = index * spans + n
        start = now - 5_000_000_000 + seq * 1000
        items.append(
            Span(
                trace_id=(seq + 1).to_bytes(16, "big"),
                span_id=(seq + 1).to_bytes(8, "big"),
                parent_span_id=(seq + 7).to_bytes(8, "big"),
                name=f"GET /orders/{{id}} {seq % 16}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 1_500_000,
                attributes=[
                    _kv("http.method", string_value="GET"),
                    _kv("http.route", string_value="/orders/{id}"),
                    _kv("http.status_code", int_value=200),
                    _kv("net.peer.ip", string_value="10.0.3.17"),
                    _kv("user.id", int_value=seq % 9973),
                    _kv("cache.hit", bool_value=seq % 3 == 0),
                ],
                events=[
                    Span.Event(
                        time_unix_nano=start + 500_000,
                        name="cache.miss",
                        attributes=[_kv("key", string_value=f"order:{seq}")],
                    )
                ],
                flags=0x101,
            )
        )
    scope = InstrumentationScope(name="opentelemetry.instrumentation.aiohttp", version="0.50b0")
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=items)])
        ]
    )
    return bytes(request.SerializeToString())


async def send_all(url: str, bodies: list[bytes], connections: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Content-Type": "application/x-protobuf"}

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            for _ in range(100):
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        break
                    await asyncio.sleep(0.05)  # 429/503: retry, as an SDK would
            else:
                raise SystemExit(f"{url} kept refusing: {response.status}")

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))


# --- the sink ---------------------------------------------------------------------------------


def _serve_sink(port: int, counted: Synchronized[int], ready: Any) -> None:
    async def count(request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp inflates gzip
        spans = sum(
            len(scope_spans.spans)
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
            for scope_spans in resource_spans.scope_spans
        )
        with counted.get_lock():
            counted.value += spans
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/traces", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- the targets ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def start_agent(workdir: Path, port: int, sink: str) -> subprocess.Popen[bytes]:
    data_dir = workdir / "agent-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SIDECAR_DATA_DIR": str(data_dir),
        "SIDECAR_RECEIVERS_OTLP_ENABLED": "true",
        "SIDECAR_RECEIVERS_OTLP_HTTP_LISTEN": f"127.0.0.1:{port}",
        "SIDECAR_EXPORT_ENDPOINT": sink,
        "SIDECAR_MESSAGES_ENABLED": "false",
        "SIDECAR_PROXY_ENABLED": "false",
        "SIDECAR_ADMIN_ENABLED": "false",
        "SIDECAR_LOG_LEVEL": "warning",
    }
    log = (workdir / "agent.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run"], cwd=REPO, env=env, stdout=log, stderr=log
    )


def start_collector(binary: str, workdir: Path, port: int, sink: str) -> subprocess.Popen[bytes]:
    config = workdir / "otelcol.yaml"
    config.write_text(
        f"""receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    send_batch_size: 4096
    timeout: 200ms
exporters:
  otlphttp:
    traces_endpoint: {sink}
    compression: gzip
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp]
"""
    )
    log = (workdir / "otelcol.log").open("ab")
    return subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=log)


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"target exited with {process.returncode}; see its log")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def measure(
    process: subprocess.Popen[bytes],
    port: int,
    *,
    bodies: list[bytes],
    total: int,
    counted: Synchronized[int],
    connections: int,
) -> tuple[float, float]:
    """(CPU seconds of the target, wall seconds) from the first request to the last span
    counted by the sink."""
    wait_listening(port, process)
    time.sleep(0.5)  # start-up work settles before the clock starts
    with counted.get_lock():
        counted.value = 0
    cpu, wall = cpu_seconds(process.pid), time.perf_counter()
    asyncio.run(send_all(f"http://127.0.0.1:{port}/v1/traces", bodies, connections))
    deadline = time.monotonic() + 120
    while counted.value < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"the sink counted {counted.value} of {total} spans")
        time.sleep(0.002)
    return cpu_seconds(process.pid) - cpu, time.perf_counter() - wall


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--spans-per-request", type=int, default=512)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    collector = (
        subprocess.run(
            [str(REPO / "bench" / "peers" / "build-otelcol")],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    bodies = [request_body(i, args.spans_per_request) for i in range(args.requests)]
    total = args.requests * args.spans_per_request
    print(
        f"load: {args.requests} requests x {args.spans_per_request} spans "
        f"({sum(map(len, bodies)) / total:.0f} bytes/span protobuf), "
        f"{args.connections} connections; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}"
    )

    context = multiprocessing.get_context("spawn")
    counted: Synchronized[int] = context.Value("q", 0)  # type: ignore[assignment]
    ready = context.Event()
    sink_port = free_port()
    sink: BaseProcess = context.Process(
        target=_serve_sink, args=(sink_port, counted, ready), daemon=True
    )
    sink.start()
    if not ready.wait(30):
        raise SystemExit("the sink did not start")
    sink_url = f"http://127.0.0.1:{sink_port}/v1/traces"

    rates: dict[str, list[float]] = {"agent": [], "collector": []}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-otlp-") as tmp:
        workdir = Path(tmp)
        for round_number in range(1, args.rounds + 1):
            results = {}
            for name in ("collector", "agent"):
                port = free_port()
                if name == "agent":
                    process = start_agent(workdir, port, sink_url)
                else:
                    process = start_collector(collector, workdir, port, sink_url)
                try:
                    cpu, wall = measure(
                        process,
                        port,
                        bodies=bodies,
                        total=total,
                        counted=counted,
                        connections=args.connections,
                    )
                finally:
                    stop(process)
                results[name] = total / cpu
                rates[name].append(results[name])
                print(
                    f"round {round_number} {name:9}: {total} spans, {cpu:.2f} CPU-s, "
                    f"{wall:.2f} s wall: {total / cpu:,.0f} spans/CPU-s, "
                    f"{total / wall:,.0f} spans/s"
                )
            ratios.append(results["agent"] / results["collector"])
    sink.terminate()
    agent, peer = statistics.median(rates["agent"]), statistics.median(rates["collector"])
    print(
        f"median: agent {agent:,.0f} spans/CPU-s, collector {peer:,.0f} spans/CPU-s, "
        f"ratio {statistics.median(ratios):.2f}x (per round: "
        + ", ".join(f"{ratio:.2f}" for ratio in ratios)
        + ")"
    )


if __name__ == "__main__":
    main()
