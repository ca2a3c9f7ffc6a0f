"""Micro benchmark: span lines of every format -> OTLP request bytes, ours vs the naive path.

For each input format (bench/sample_spans.py: the same spans written as jobfirst, span-json,
otlp-json, otel-sdk lines), the agent's decoder with its `spans.format`, two ways:

(a) direct:  Decoder.feed_direct -> DirectWriter (parsed line to framed span bytes, what the
             agent runs when it exports OTLP/protobuf) -> build_request_framed
(b) general: Decoder.feed_many -> encode_span + resource_key -> build_request (the path of
             every record the direct path declines, and of OTLP/JSON export)

and once (c) naive: the span-json lines through json.loads -> opentelemetry-proto message
objects -> SerializeToString, the baseline. All run in batches of --batch spans, in one
process, interleaved, and report the median of --repeat runs as µs/span, then the ratios to
the naive path. No gzip, no I/O: bench/spans.py measures the whole pipeline.
Run: `.venv/bin/python bench/encode.py` (add --format NAME to pick inputs).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from naive_otlp import naive_request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sample_spans import FORMATS, agent_format, lines_for, span_json_lines

from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.encode.protobuf import (
    build_request,
    build_request_framed,
    encode_span,
    span_field,
)
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.model import DecodeResult, Span

Run = Callable[[list[bytes]], bytes]


def direct_run(fmt: str, resources: Resources) -> Run:
    decoder = make_decoder(fmt, orphan_timeout_ns=10**15, default_service=None)
    writer = DirectWriter(keep_trace=None)

    def run(batch: list[bytes]) -> bytes:
        into = DecodeResult()
        groups: dict[Any, list[bytes]] = {}
        for item in decoder.feed_direct(batch, 0, writer, into):
            if isinstance(item, Span):  # what the direct path hands to the general one
                key, framed = resource_key(item), span_field(encode_span(item))
            else:
                key, framed = item
            groups.setdefault(key, []).append(framed)
        return build_request_framed(groups, resources)

    return run


def general_run(fmt: str, resources: Resources) -> Run:
    decoder = make_decoder(fmt, orphan_timeout_ns=10**15, default_service=None)

    def run(batch: list[bytes]) -> bytes:
        groups: dict[Any, list[bytes]] = {}
        for span in decoder.feed_many(batch, 0).spans:
            groups.setdefault(resource_key(span), []).append(encode_span(span))
        return build_request(groups, resources)

    return run


def naive(batch: list[bytes]) -> bytes:
    body: bytes = naive_request(batch).SerializeToString()
    return body


def median_us_per_span(
    runs: dict[str, tuple[Run, list[bytes]]], spans: int, batch: int, repeat: int
) -> dict[str, float]:
    """Median-of-`repeat` µs/span for each path, the paths interleaved so that load from
    other processes hits them alike. `batch` is in lines (a jobfirst span is ~3.1 lines)."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (run, lines) in runs.items():
            began = time.perf_counter()
            for i in range(0, len(lines), batch):
                run(lines[i : i + batch])
            seconds[name].append(time.perf_counter() - began)
    return {name: statistics.median(times) / spans * 1e6 for name, times in seconds.items()}


def check_same_spans(runs: dict[str, tuple[Run, list[bytes]]], count: int) -> None:
    """The direct and general paths of a format must encode the same spans."""
    decoded = {}
    for name, (run, lines) in runs.items():
        request = ExportTraceServiceRequest.FromString(run(lines[: count * 3]))
        decoded[name] = [
            s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans
        ]
    for name in runs:
        if (
            name.endswith(" direct")
            and decoded[name] != decoded[name[: -len(" direct")] + " general"]
        ):
            raise SystemExit(f"{name}: the paths disagree; the comparison would be meaningless")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", action="append", choices=FORMATS, help="repeatable")
    args = parser.parse_args()
    samples = args.format or [f for f in FORMATS if f != "otel-sdk-py-pretty"]
    resources = Resources(service_name="bench")
    runs: dict[str, tuple[Run, list[bytes]]] = {"naive": (naive, list(span_json_lines(args.spans)))}
    for sample in samples:
        lines = list(lines_for(sample, args.spans))
        fmt = agent_format(sample)
        runs[f"{sample} direct"] = (direct_run(fmt, resources), lines)
        runs[f"{sample} general"] = (general_run(fmt, resources), lines)
    check_same_spans(runs, 50)
    gc.collect()
    timings = median_us_per_span(runs, args.spans, args.batch, args.repeat)
    print(f"spans: {args.spans}, batches of {args.batch} lines, median of {args.repeat} runs")
    for name, us in timings.items():
        ratio = timings["naive"] / us
        print(f"{name:28} {us:6.2f} µs/span {1e6 / us:10,.0f} spans/s {ratio:6.2f}x naive")


if __name__ == "__main__":
    main()
