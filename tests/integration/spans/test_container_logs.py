"""Span lines a service printed to stdout/stderr, read from the files containerd (CRI) and
Docker (json-file) write, for every span format, into a real Jaeger with the pod's attributes.

The files are written as the runtimes write them: CRI `<time> <stream> <P|F> <text>` with long
lines cut into `P` pieces, Docker `{"log": ..., "stream": ..., "time": ...}` with a cut line's
first pieces lacking their newline; stdout and stderr interleaved; kubelet's rotation (rename
to `0.log.<timestamp>`, a new `0.log`) and a container restart (`1.log`)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from agent.spans.pipeline import SpanPipeline
from tests.harness import Jaeger, StoredSpan
from tests.integration.spans.helpers import (
    append,
    dead_letters,
    pipeline_config,
    running_pipeline,
)
from tests.unit.spans.samples.jobfirst import ended, event, started

pytestmark = pytest.mark.integration

SPANS = 6
PIECE = 48  # bytes per runtime piece for the lines this test cuts (the runtimes use 16 KiB)


def container_of(service: str) -> str:
    """A DNS label (what a container name is) from the test's unique service name."""
    return re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-")[-60:].lstrip("-")


def pod_dir(root: Path, container: str) -> Path:
    return root / "pods" / "shop_checkout-7d9f_0f2c9a1e-5b1d-4c1e-9a8e-1f2e3d4c5b6a" / container


def now_ns(index: int) -> int:
    return time.time_ns() - 60_000_000_000 + index * 1_000_000


def span_json_lines(count: int, first: int = 0) -> Iterator[bytes]:
    for index in range(first, first + count):
        yield orjson.dumps(
            {
                "trace_id": f"{index + 1:032x}",
                "span_id": f"{index + 1:016x}",
                "name": f"op-{index}",
                "start_time_unix_nano": now_ns(index),
                "duration_ms": 2,
                "attributes": {"n": index},
            }
        )


def otlp_json_lines(count: int, first: int = 0) -> Iterator[bytes]:
    for index in range(first, first + count):
        span = {
            "traceId": f"{index + 1:032x}",
            "spanId": f"{index + 1:016x}",
            "name": f"op-{index}",
            "startTimeUnixNano": str(now_ns(index)),
            "endTimeUnixNano": str(now_ns(index) + 2_000_000),
        }
        resource = {"attributes": [{"key": "team", "value": {"stringValue": "core"}}]}
        yield orjson.dumps(
            {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
        )


def jobfirst_lines(count: int, first: int = 0) -> Iterator[bytes]:
    for index in range(first, first + count):
        start = now_ns(index)
        stamp = datetime.fromtimestamp(start / 1e9, UTC).isoformat(timespec="seconds")
        trace, span, name = f"trace_{start}", f"span_{start + 1}", f"op-{index}"
        yield started(name, trace, span, timestamp=stamp)
        yield event("picked", name, trace, timestamp=stamp)
        yield b"plain log line, not a span"
        yield ended("2ms", name=name, trace=trace, span=span, timestamp=stamp)


def otel_sdk_lines(count: int, service: str, first: int = 0) -> Iterator[bytes]:
    """The real Python SDK's ConsoleSpanExporter, one object a line."""
    lines: list[bytes] = []

    class Collect(ConsoleSpanExporter):
        def __init__(self) -> None:
            super().__init__(formatter=lambda span: span.to_json(indent=None) + "\n")

        def export(self, spans: object) -> object:
            for span in spans:  # type: ignore[attr-defined]
                assert isinstance(span, ReadableSpan)
                lines.append(span.to_json(indent=None).encode())
            return super().export([])  # type: ignore[arg-type]

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(Collect()))
    tracer = provider.get_tracer("container-test")
    for index in range(first, first + count):
        with tracer.start_as_current_span(f"op-{index}", start_time=now_ns(index)) as span:
            span.set_attribute("n", index)
    provider.shutdown()
    return iter(lines)


def lines_of(fmt: str, service: str, count: int, first: int = 0) -> list[bytes]:
    if fmt == "span-json":
        return list(span_json_lines(count, first))
    if fmt == "otlp-json":
        return list(otlp_json_lines(count, first))
    if fmt == "jobfirst":
        return list(jobfirst_lines(count, first))
    return list(otel_sdk_lines(count, service, first))


def cri_lines(lines: list[bytes]) -> bytes:
    """As containerd writes them: every third line cut in `P` pieces, odd lines on stderr."""
    out = []
    for number, line in enumerate(lines):
        stream = b"stderr" if number % 2 else b"stdout"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z").encode()
        pieces = (
            [line[i : i + PIECE] for i in range(0, len(line), PIECE)] if number % 3 == 0 else [line]
        )
        for index, piece in enumerate(pieces):
            tag = b"F" if index == len(pieces) - 1 else b"P"
            out.append(b" ".join((stamp, stream, tag, piece)) + b"\n")
    return b"".join(out)


def docker_lines(lines: list[bytes]) -> bytes:
    """As Docker's json-file driver writes them: a cut line's first pieces lack the newline."""
    out = []
    for number, line in enumerate(lines):
        stream = "stderr" if number % 2 else "stdout"
        text = line.decode() + "\n"
        pieces = (
            [text[i : i + PIECE] for i in range(0, len(text), PIECE)] if number % 3 == 0 else [text]
        )
        for piece in pieces:
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            out.append(orjson.dumps({"log": piece, "stream": stream, "time": stamp}) + b"\n")
    return b"".join(out)


async def stored(jaeger: Jaeger, service: str, count: int) -> list[StoredSpan]:
    return await asyncio.to_thread(jaeger.query.wait_for_spans, service, count, timeout=20)


def assert_pod_attributes(spans: list[StoredSpan], container: str, restarts: set[int]) -> None:
    assert {span.process_tags["k8s.namespace.name"] for span in spans} == {"shop"}
    assert {span.process_tags["k8s.pod.name"] for span in spans} == {"checkout-7d9f"}
    uid = {span.process_tags["k8s.pod.uid"] for span in spans}
    assert uid == {"0f2c9a1e-5b1d-4c1e-9a8e-1f2e3d4c5b6a"}
    assert {span.process_tags["k8s.container.name"] for span in spans} == {container}
    assert {span.process_tags["k8s.container.restart_count"] for span in spans} == restarts


@pytest.mark.parametrize("fmt", ["jobfirst", "span-json", "otlp-json", "otel-sdk"])
@pytest.mark.parametrize("runtime", ["cri", "docker"])
async def test_every_format_through_each_runtime_reaches_jaeger_with_pod_attributes(
    tmp_path: Path, jaeger: Jaeger, service_name: str, fmt: str, runtime: str
) -> None:
    container = container_of(service_name)
    service = container  # records name none (the SDK's does): the container's name is used
    directory = pod_dir(tmp_path, container)
    directory.mkdir(parents=True)
    wrap = cri_lines if runtime == "cri" else docker_lines
    append(directory / "0.log", wrap(lines_of(fmt, service, SPANS)))
    config = pipeline_config(
        tmp_path,
        jaeger.otlp_http_endpoint,
        [str(tmp_path / "pods" / "*" / "*" / "*.log")],
        spans__format=fmt,
        spans__container_logs=runtime,
    )
    async with running_pipeline(config) as pipeline:
        spans = await stored(jaeger, service, SPANS)
        assert sorted(span.operation_name for span in spans) == sorted(
            f"op-{index}" for index in range(SPANS)
        )
        assert pipeline.status()["dead_letters"]["by_reason"] == {}
    assert_pod_attributes(spans, container, {0})


async def test_kubelet_rotation_and_a_container_restart_under_auto(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    container = container_of(service_name)
    directory = pod_dir(tmp_path, container)
    directory.mkdir(parents=True)
    current = directory / "0.log"
    append(current, cri_lines(lines_of("span-json", container, 4)))
    config = pipeline_config(
        tmp_path,
        jaeger.otlp_http_endpoint,
        [str(tmp_path / "pods" / "*" / "*" / "*.log")],
        spans__format="auto",
        spans__container_logs="auto",
    )
    async with running_pipeline(config):
        await stored(jaeger, container, 4)
        # kubelet rotates between whole writes: rename to 0.log.<timestamp>, then a new 0.log;
        # the container restarting writes 1.log (here through Docker's format: auto decides
        # per file).
        current.rename(directory / "0.log.20261205-100000")
        append(current, cri_lines(lines_of("span-json", container, 4, first=4)))
        append(directory / "1.log", docker_lines(lines_of("span-json", container, 4, first=8)))
        spans = await stored(jaeger, container, 12)
    assert sorted(span.operation_name for span in spans) == sorted(f"op-{i}" for i in range(12))
    assert_pod_attributes(spans, container, {0, 1})


@pytest.mark.parametrize("ending", ["rotation", "timeout"])
async def test_a_line_the_container_never_finished_is_dead_lettered(
    tmp_path: Path, jaeger: Jaeger, service_name: str, ending: str
) -> None:
    """The container died after the runtime wrote the first piece of a line: the piece is
    dead-lettered and counted once its file is let go after kubelet's rotation, or once
    spans.orphan_timeout passes on a file that stays; the spans around it all arrive."""
    container = container_of(service_name)
    directory = pod_dir(tmp_path, container)
    directory.mkdir(parents=True)
    current = directory / "0.log"
    unfinished = lines_of("span-json", container, 1, first=99)[0][:PIECE]
    stamp = b"2026-12-05T10:00:00.000000001Z"
    append(current, cri_lines(lines_of("span-json", container, 4)))
    append(current, b" ".join((stamp, b"stdout", b"P", unfinished)) + b"\n")
    config = pipeline_config(
        tmp_path,
        jaeger.otlp_http_endpoint,
        [str(tmp_path / "pods" / "*" / "*" / "*.log")],
        spans__container_logs="cri",
        spans__orphan_timeout="1s" if ending == "timeout" else "1h",
    )
    async with running_pipeline(config) as pipeline:
        await stored(jaeger, container, 4)
        if ending == "rotation":
            current.rename(directory / "0.log.20261205-100000")
        else:  # the container restarted: its next log is 1.log, 0.log stays as it is
            current = directory / "1.log"
        append(current, cri_lines(lines_of("span-json", container, 2, first=4)))
        spans = await stored(jaeger, container, 6)
        by_reason = await dead_letters_counted(pipeline, "partial_line_unfinished")
    assert by_reason == {"partial_line_unfinished": 1}
    assert sorted(span.operation_name for span in spans) == sorted(f"op-{i}" for i in range(6))
    dead = dead_letters(config)
    assert [record["reason"] for record in dead] == ["partial_line_unfinished"]
    assert dead[0]["raw"] == unfinished.decode()
    assert dead[0]["source"] == str(directory / "0.log")  # the name it was found under


async def dead_letters_counted(pipeline: SpanPipeline, reason: str) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        by_reason: dict[str, int] = pipeline.status()["dead_letters"]["by_reason"]
        if reason in by_reason or time.monotonic() > deadline:
            return by_reason
        await asyncio.sleep(0.05)
