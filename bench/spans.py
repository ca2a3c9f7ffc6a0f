"""End-to-end span throughput per CPU-second: tail -> parse -> OTLP -> gzip -> HTTP.

Two paths read the same file of span-json lines (4 attributes, 1 event each) and POST gzip'd
OTLP/protobuf requests to the same sink, an aiohttp server in another process that reads and
discards the bodies:

  agent: the real SpanPipeline (Tailer, span-json decoder and fast path, SpanBatcher, SpanSender,
         OtlpHttpExporter) with its disk queue and checkpoints, as `sidecar-agent run` runs it
         with `spans.format: span-json` (--format auto: as an unconfigured agent runs it);
  naive: read lines, json.loads, build opentelemetry-proto message objects, SerializeToString,
         gzip (same level, the standard library's zlib; the agent uses ISA-L's gzip, and the
         per-stage breakdown shows the gzip share of both), POST with aiohttp (same in-flight
         limit).

CPU time is this process's user+sys (`time.process_time()`, all threads), measured around each
run; the sink's CPU is not counted. Each path runs --repeat times, alternating; every round is
printed and the best run of each path counts. Where the CPU goes is measured in the same runs:
`time.thread_time()` around functions that run once per read or per request (never per span,
so timing them costs nothing measurable), and the tailer's reading threads as the process's
CPU minus the event loop thread's. Run: `.venv/bin/python bench/spans.py` (about 45 s; see
docs/benchmarks.md for figures).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import gzip
import multiprocessing
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from naive_otlp import naive_request
from sample_spans import span_json_lines

from agent.config.load import load_config
from agent.core.metrics import Metrics
from agent.spans.export import outbound
from agent.spans.export.batcher import ProtobufEncoding, SpanBatcher
from agent.spans.export.exporter import GZIP_LEVEL
from agent.spans.pipeline import SpanPipeline

BATCH_SPANS = 4096
IN_FLIGHT = 4

# --- the sink ---------------------------------------------------------------------------------


def _serve_sink(port: int, ready: Any) -> None:
    async def discard(request: web.Request) -> web.Response:
        while await request.content.readany():
            pass
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/traces", discard)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_sink() -> tuple[BaseProcess, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_serve_sink, args=(port, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        raise SystemExit("the sink did not start")
    return process, f"http://127.0.0.1:{port}/v1/traces"


# --- the two paths ----------------------------------------------------------------------------


@dataclass
class Run:
    spans: int
    cpu: float
    wall: float
    stages: dict[str, float] = field(default_factory=dict)
    """CPU seconds by stage; they add up to `cpu`."""

    @property
    def per_cpu_second(self) -> float:
        return self.spans / self.cpu


class StageClock:
    """CPU seconds of the calling thread inside chosen functions, by stage.

    Only for functions called once per read or per request: each call costs two clock reads.
    An async function is timed across its awaits, so it must not suspend in the benchmark
    (`prepare_lines` only awaits dead-letter writes, and there are none)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(stage, time.thread_time() - began)

        return wrapper

    def timed_async(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return await function(*args, **kwargs)
            finally:
                self.add(stage, time.thread_time() - began)

        return wrapper

    def split(self, process_cpu: float, loop_thread_cpu: float) -> dict[str, float]:
        """The stages, the reading threads and the rest of the loop thread's CPU."""
        stages = dict(self.seconds)
        stages["read lines (tailer threads)"] = process_cpu - loop_thread_cpu
        stages["the rest (event loop, HTTP, delivery, checkpoints)"] = loop_thread_cpu - sum(
            self.seconds.values()
        )
        return stages


AGENT_CLOCK = StageClock()


def time_agent_stages() -> None:
    """Wrap the agent's per-read and per-request steps with AGENT_CLOCK (once)."""
    clock = AGENT_CLOCK
    outbound.Outbound.prepare_lines = clock.timed_async(  # type: ignore[method-assign]
        "parse + encode (orjson, fast path)", outbound.Outbound.prepare_lines
    )
    SpanBatcher.add_many = clock.timed("batch", SpanBatcher.add_many)  # type: ignore[method-assign]
    ProtobufEncoding.build = clock.timed("build request", ProtobufEncoding.build)  # type: ignore[method-assign]
    outbound.pack_request = clock.timed("gzip", outbound.pack_request)  # type: ignore[attr-defined]


async def run_agent(
    log_file: Path, endpoint: str, workdir: Path, spans: int, span_format: str
) -> Run:
    data_dir = workdir / "agent-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    config = load_config(
        environ={},
        cli_overrides=[
            f"data_dir={data_dir}",
            f"spans.paths={log_file}",
            f"spans.format={span_format}",
            f"export.endpoint={endpoint}",
            f"export.batch.max_spans={BATCH_SPANS}",
            f"export.max_in_flight={IN_FLIGHT}",
            "export.batch.linger=50ms",
        ],
    )
    pipeline = SpanPipeline(config, Metrics(), data_dir)
    AGENT_CLOCK.seconds.clear()
    cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await pipeline.start()
    while pipeline.exporter.spans_exported < spans:  # noqa: ASYNC110 - a counter, no event
        await asyncio.sleep(0.005)
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    wall = time.perf_counter() - wall
    await pipeline.stop()
    if pipeline.summary()["dead_lettered"]:
        raise SystemExit(f"unexpected dead letters: {pipeline.summary()}")
    return Run(spans, cpu, wall, AGENT_CLOCK.split(cpu, loop_cpu))


def naive_body(lines: list[bytes], clock: StageClock) -> bytes:
    began = time.thread_time()
    request = naive_request(lines)
    serialized = time.thread_time()
    body: bytes = request.SerializeToString()
    del request  # freeing the objects counts with serializing them
    compressed = time.thread_time()
    body = gzip.compress(body, GZIP_LEVEL)
    done = time.thread_time()
    clock.add("parse (json) + build objects", serialized - began)
    clock.add("SerializeToString, freeing the objects", compressed - serialized)
    clock.add("gzip", done - compressed)
    return body


async def run_naive(log_file: Path, endpoint: str, spans: int) -> Run:
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    slots = asyncio.Semaphore(IN_FLIGHT)
    sends: set[asyncio.Task[None]] = set()
    sent = 0

    async def post(session: aiohttp.ClientSession, body: bytes, count: int) -> None:
        nonlocal sent
        try:
            async with session.post(endpoint, data=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()
            sent += count
        finally:
            slots.release()

    clock = StageClock()
    cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    async with aiohttp.ClientSession() as session:
        with log_file.open("rb") as file:
            batch: list[bytes] = []
            for line in file:
                batch.append(line)
                if len(batch) == BATCH_SPANS:
                    await slots.acquire()
                    body = naive_body(batch, clock)
                    task = asyncio.create_task(post(session, body, len(batch)))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                    batch = []
            if batch:
                await slots.acquire()
                await post(session, naive_body(batch, clock), len(batch))
        while sends:
            await asyncio.wait(set(sends))
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    if sent != spans:
        raise SystemExit(f"naive path sent {sent} of {spans} spans")
    stages = clock.split(cpu, loop_cpu)
    del stages["read lines (tailer threads)"]  # it reads in the loop thread: part of the rest
    stages["the rest (read lines, event loop, HTTP)"] = stages.pop(
        "the rest (event loop, HTTP, delivery, checkpoints)"
    ) + (cpu - loop_cpu)
    return Run(spans, cpu, time.perf_counter() - wall, stages)


# --- report -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--format",
        default="span-json",
        choices=("span-json", "auto"),
        help="the agent's spans.format (auto: what an unconfigured agent detects per line)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-spans-"))
    sink, endpoint = start_sink()
    try:
        log_file = workdir / "spans.log"
        with log_file.open("wb") as file:
            file.writelines(line + b"\n" for line in span_json_lines(args.spans))
        size = log_file.stat().st_size
        time_agent_stages()
        agent_runs: list[Run] = []
        naive_runs: list[Run] = []
        for round_number in range(1, args.repeat + 1):
            gc.collect()
            agent_run = run_agent(log_file, endpoint, workdir, args.spans, args.format)
            agent_runs.append(asyncio.run(agent_run))
            gc.collect()
            naive_runs.append(asyncio.run(run_naive(log_file, endpoint, args.spans)))
            agent, naive = agent_runs[-1], naive_runs[-1]
            print(
                f"round {round_number}: agent {agent.per_cpu_second:,.0f} spans/CPU-s, "
                f"naive {naive.per_cpu_second:,.0f}, "
                f"{agent.per_cpu_second / naive.per_cpu_second:.2f}x"
            )
        print()
        ratios = [
            a.per_cpu_second / n.per_cpu_second for a, n in zip(agent_runs, naive_runs, strict=True)
        ]
        report(args, size, min(agent_runs, key=_cpu), min(naive_runs, key=_cpu), ratios)
    finally:
        sink.terminate()
        sink.join(5)
        shutil.rmtree(workdir, ignore_errors=True)


def _cpu(run: Run) -> float:
    return run.cpu


def report(
    args: argparse.Namespace, size: int, agent: Run, naive: Run, ratios: list[float]
) -> None:
    spans = args.spans
    print(
        f"{spans:,} span-json lines ({size / spans:.0f} B each), agent spans.format={args.format}"
    )
    print(
        f"gzip level {GZIP_LEVEL}, batches of {BATCH_SPANS} spans, {IN_FLIGHT} requests in flight, "
        "sink in another process"
    )
    print()
    print(
        f"{'path':<8} {'CPU s':>8} {'wall s':>8} {'µs/span':>9} {'spans/CPU-s':>13} {'spans/s':>10}"
    )
    for label, run in (("agent", agent), ("naive", naive)):
        print(
            f"{label:<8} {run.cpu:8.2f} {run.wall:8.2f} {run.cpu / spans * 1e6:9.2f} "
            f"{run.per_cpu_second:13,.0f} {spans / run.wall:10,.0f}"
        )
    print()
    print(f"agent vs naive, per CPU-second: {agent.per_cpu_second / naive.per_cpu_second:.2f}x")
    print(f"median of the rounds' own ratios: {statistics.median(ratios):.2f}x")
    print(f"agent vs target 100k spans/CPU-s: {agent.per_cpu_second / 100_000:.2f}x")
    stage_breakdown(spans, agent, naive)


def stage_breakdown(spans: int, agent: Run, naive: Run) -> None:
    for label, run in (("agent", agent), ("naive", naive)):
        print()
        print(f"{label}: CPU per span by stage (best run)")
        for stage, seconds in run.stages.items():
            print(f"  {stage:<52} {seconds / spans * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
