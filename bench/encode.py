"""Micro benchmark: span-json line -> OTLP request bytes, ours vs the naive path.

(a) fast:    orjson.loads -> SpanJsonWire.encode (parsed line to framed span bytes, what the
             agent runs for span-json files) -> build_request_framed
(b) general: SpanJsonDecoder.feed_many -> encode_span + resource_key -> build_request (the
             path every other format, and every record the fast path declines, takes)
(c) naive:   json.loads -> opentelemetry-proto message objects -> SerializeToString

All read the same lines (4 attributes, 1 event, varied IDs and values) in batches of
--batch spans, in the same process, interleaved, and report the best of --repeat runs as
µs/span and spans/s, then the ratios to the naive path. No gzip, no I/O: bench/spans.py
measures the whole pipeline. Run: `.venv/bin/python bench/encode.py`.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from naive_otlp import naive_request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from orjson import loads
from sample_spans import span_json_lines

from agent.spans.decode.spanjson import SpanJsonDecoder
from agent.spans.encode.protobuf import (
    Resources,
    build_request,
    build_request_framed,
    encode_span,
    resource_key,
)
from agent.spans.encode.spanjson_direct import SAMPLED_OUT, SpanJsonWire


def fast(batch: list[bytes], wire: SpanJsonWire, resources: Resources) -> bytes:
    groups: dict[Any, list[bytes]] = {}
    for line in batch:
        encoded = wire.encode(loads(line), None)
        if encoded is None or encoded is SAMPLED_OUT:
            raise SystemExit("a benchmark line missed the fast path")
        key, framed = encoded
        spans = groups.get(key)
        if spans is None:
            spans = groups[key] = []
        spans.append(framed)
    return build_request_framed(groups, resources)


def general(batch: list[bytes], decoder: SpanJsonDecoder, resources: Resources) -> bytes:
    groups: dict[Any, list[bytes]] = {}
    for span in decoder.feed_many(batch, 0).spans:
        key = resource_key(span)
        bodies = groups.get(key)
        if bodies is None:
            bodies = groups[key] = []
        bodies.append(encode_span(span))
    return build_request(groups, resources)


def naive(batch: list[bytes]) -> bytes:
    body: bytes = naive_request(batch).SerializeToString()
    return body


def best_us_per_span(
    runs: dict[str, Callable[[list[bytes]], bytes]], lines: list[bytes], batch: int, repeat: int
) -> dict[str, float]:
    """Best-of-`repeat` µs/span for each path, the paths interleaved so that load from
    other processes hits them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            began = time.perf_counter()
            for i in range(0, len(lines), batch):
                run(lines[i : i + batch])
            best[name] = min(best[name], time.perf_counter() - began)
    return {name: seconds / len(lines) * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before timing")
    args = parser.parse_args()
    lines = list(span_json_lines(args.spans))
    decoder = SpanJsonDecoder(default_service=None)
    wire = SpanJsonWire(keep_trace=None)
    resources = Resources(service_name="bench")
    runs: dict[str, Callable[[list[bytes]], bytes]] = {
        "fast": lambda b: fast(b, wire, resources),
        "general": lambda b: general(b, decoder, resources),
        "naive": naive,
    }
    decoded = [
        ExportTraceServiceRequest.FromString(run(lines[:50])).resource_spans[0].scope_spans[0]
        for run in runs.values()
    ]
    if any(scope_spans.spans != decoded[-1].spans for scope_spans in decoded):
        raise SystemExit("the paths disagree; the comparison would be meaningless")
    gc.collect()
    if args.gc_freeze:
        gc.freeze()  # what a long-running agent can do after start-up
    timings = best_us_per_span(runs, lines, args.batch, args.repeat)
    avg = sum(map(len, lines)) // len(lines)
    gc_mode = "frozen" if args.gc_freeze else "default"
    print(f"lines: {args.spans}, batch: {args.batch}, average line {avg} B, gc: {gc_mode}")
    for label, name in (
        ("fast    (line -> span bytes)", "fast"),
        ("general (line -> Span -> wire)", "general"),
        ("naive   (json -> otel-proto)", "naive"),
    ):
        us = timings[name]
        ratio = timings["naive"] / us
        print(f"{label:32} {us:6.2f} µs/span {1e6 / us:10,.0f} spans/s {ratio:6.2f}x naive")


if __name__ == "__main__":
    main()
