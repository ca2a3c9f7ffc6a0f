"""End-to-end span throughput per CPU-second, every input format: tail -> decode -> OTLP
protobuf -> gzip -> HTTP.

For each input (bench/sample_spans.py: the same spans, 4 attributes and 1 event each, written
as jobfirst, span-json, otlp-json and otel-sdk lines) the real SpanPipeline (tailer, decoder
and its direct path, batcher, sender, exporter, disk queue, checkpoints), as `sidecar-agent run`
runs it, ships the file to a sink in another process (bench/sink.py), twice: with the format
configured (`spans.format: <format>`) and with `spans.format: auto`. Each round also runs the
baseline, the naive path: the span-json lines through json.loads into opentelemetry-proto
message objects, SerializeToString, gzip, POST with aiohttp (same batches, same in-flight
limit). With --collector, each round also runs the OpenTelemetry Collector on the otlp-json
file into the same sink (bench/collector.py; bench/peers/build-otelcol builds it).

CPU is the sender's own: this process's user+sys (`time.process_time()`, all threads) around an
agent or naive run, /proc/<pid>/stat for the Collector; the sink's is not counted. Rounds are
interleaved (every row once per round), figures are medians over rounds, and each ratio is
the median of the rounds' own ratios. Run: `.venv/bin/python bench/spans.py [--collector]`
(see docs/benchmarks.md for figures).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from naive_otlp import naive_request
from sample_spans import FORMATS, agent_format, lines_for, span_json_lines
from sink import Sink

from agent import native
from agent.config.load import load_config
from agent.core.metrics import Metrics
from agent.spans.export.exporter import GZIP_LEVEL
from agent.spans.pipeline import SpanPipeline

BATCH_SPANS = 4096
IN_FLIGHT = 4
REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLES = (
    "jobfirst",
    "span-json",
    "otlp-json",
    "otel-sdk-py",
    "otel-sdk-py-pretty",
    "otel-sdk-go",
)


@dataclass
class Row:
    """One measured line of the table: spans per CPU-second of each round."""

    label: str
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # to the naive path, per round

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


async def run_agent(
    log_file: Path, sink: Sink, workdir: Path, spans: int, fmt: str, *extra: str
) -> float:
    """CPU seconds the agent takes to ship `log_file` (`extra`: more config overrides)."""
    data_dir = workdir / "agent-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    config = load_config(
        environ={},
        cli_overrides=[
            f"data_dir={data_dir}",
            f"spans.paths={log_file}",
            f"spans.format={fmt}",
            f"export.endpoint={sink.endpoint}",
            f"export.batch.max_spans={BATCH_SPANS}",
            f"export.max_in_flight={IN_FLIGHT}",
            "export.batch.linger=50ms",
            *extra,
        ],
    )
    pipeline = SpanPipeline(config, Metrics(), data_dir)
    cpu = time.process_time()
    await pipeline.start()
    while pipeline.exporter.spans_exported < spans:  # noqa: ASYNC110 - a counter, no event
        await asyncio.sleep(0.005)
    cpu = time.process_time() - cpu
    await pipeline.stop()
    summary = pipeline.summary()
    if summary["dead_lettered"]:
        raise SystemExit(f"unexpected dead letters ({fmt}, {log_file.name}): {summary}")
    return cpu


async def run_naive(log_file: Path, sink: Sink, spans: int) -> float:
    """CPU seconds the naive path takes to ship the span-json file `log_file`."""
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    slots = asyncio.Semaphore(IN_FLIGHT)
    sends: set[asyncio.Task[None]] = set()
    sent = 0

    async def post(session: aiohttp.ClientSession, body: bytes, count: int) -> None:
        nonlocal sent
        try:
            async with session.post(sink.endpoint, data=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()
            sent += count
        finally:
            slots.release()

    def body_of(batch: list[bytes]) -> bytes:
        return gzip.compress(naive_request(batch).SerializeToString(), GZIP_LEVEL)

    cpu = time.process_time()
    async with aiohttp.ClientSession() as session:
        with log_file.open("rb") as file:
            batch: list[bytes] = []
            for line in file:
                batch.append(line)
                if len(batch) == BATCH_SPANS:
                    await slots.acquire()
                    task = asyncio.create_task(post(session, body_of(batch), len(batch)))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                    batch = []
            if batch:
                await slots.acquire()
                await post(session, body_of(batch), len(batch))
        while sends:
            await asyncio.wait(set(sends))
    cpu = time.process_time() - cpu
    if sent != spans:
        raise SystemExit(f"naive path sent {sent} of {spans} spans")
    return cpu


def write_inputs(workdir: Path, samples: list[str], spans: int) -> dict[str, Path]:
    files = {}
    for sample in [*samples, "naive"]:
        path = files[sample] = workdir / f"{sample}.log"
        lines = span_json_lines(spans) if sample == "naive" else lines_for(sample, spans)
        with path.open("wb") as out:
            out.writelines(line + b"\n" for line in lines)
    return files


def one_round(
    args: argparse.Namespace,
    files: dict[str, Path],
    sink: Sink,
    workdir: Path,
    rows: dict[str, Row],
    *,
    collector: str | None,
) -> None:
    spans = args.spans
    gc.collect()
    naive = spans / asyncio.run(run_naive(files["naive"], sink, spans))
    rows["naive"].rates.append(naive)
    for sample in args.samples:
        for fmt in (agent_format(sample), "auto"):
            gc.collect()
            rate = spans / asyncio.run(run_agent(files[sample], sink, workdir, spans, fmt))
            row = rows[f"{sample} {fmt}"]
            row.rates.append(rate)
            row.ratios.append(rate / naive)
    if collector is not None:
        from collector import run_collector

        cpu, _ = run_collector(
            collector, files["otlp-json"], sink, workdir, spans=spans, batch=BATCH_SPANS
        )
        rows["collector"].rates.append(spans / cpu)
        rows["collector"].ratios.append(spans / cpu / naive)


def report(args: argparse.Namespace, files: dict[str, Path], rows: dict[str, Row]) -> None:
    print()
    print(
        f"{args.spans:,} spans per run, {args.repeat} interleaved rounds, medians; gzip level "
        f"{GZIP_LEVEL}, batches of {BATCH_SPANS} spans, {IN_FLIGHT} requests in flight"
    )
    print(f"agent code: {native.STATUS.describe()}")
    header = f"{'input / format':34} {'B/span':>7} {'spans/CPU-s':>12} {'vs naive':>9}"
    print(header + f" {'vs explicit':>11} {'vs 100k':>8} {'vs Collector':>13}")
    collector = rows.get("collector")
    explicit: dict[str, float] = {}
    for name, row in rows.items():
        sample = name.split(" ")[0]
        path = files.get("otlp-json" if name == "collector" else sample, files["naive"])
        size = path.stat().st_size / args.spans
        vs_naive = statistics.median(row.ratios) if row.ratios else 1.0
        line = f"{name:34} {size:7.0f} {row.median:12,.0f} {vs_naive:8.2f}x"
        if name.endswith(" auto"):
            line += f" {row.median / explicit[sample]:10.2f}x"
        else:
            explicit[sample] = row.median
            line += f" {'':>11}"
        line += f" {row.median / 100_000:7.2f}x"
        if collector is not None and collector.rates and name != "collector":
            ratios = [a / c for a, c in zip(row.rates, collector.rates, strict=True)]
            line += f" {statistics.median(ratios):12.2f}x"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", action="append", choices=FORMATS, dest="samples")
    parser.add_argument("--collector", action="store_true", help="also run the Collector")
    args = parser.parse_args()
    args.samples = args.samples or list(DEFAULT_SAMPLES)
    collector = None
    if args.collector:
        from collector import find_binary

        if "otlp-json" not in args.samples:
            args.samples.append("otlp-json")
        collector = find_binary(REPO)
    workdir = Path(tempfile.mkdtemp(prefix="bench-spans-"))
    sink = Sink()
    try:
        files = write_inputs(workdir, args.samples, args.spans)
        rows = {"naive": Row("naive")}
        for sample in args.samples:
            for fmt in (agent_format(sample), "auto"):
                rows[f"{sample} {fmt}"] = Row(f"{sample} {fmt}")
        if collector is not None:
            rows["collector"] = Row("collector")
        for round_number in range(1, args.repeat + 1):
            one_round(args, files, sink, workdir, rows, collector=collector)
            done = ", ".join(f"{name} {row.rates[-1]:,.0f}" for name, row in rows.items())
            print(f"round {round_number}: {done}", flush=True)
        report(args, files, rows)
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
