"""Every input format, tailed by the pipeline and read back from a real Jaeger's query API.

Checks what a user sees in Jaeger: service, operation, start and duration in µs, tags,
span.kind, error tags for an error status, logs for events, CHILD_OF for parents. The
otel-sdk input is written by the real opentelemetry-sdk ConsoleSpanExporter.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.harness import Jaeger, StoredSpan
from tests.integration.spans.helpers import append, pipeline_config, running_pipeline, span_json

pytestmark = pytest.mark.integration

NOW_NS = time.time_ns() - 120 * 1_000_000_000  # two minutes ago, well inside the lookback
TRACE = "5b8efff798038103d269b633813fc60c"
ROOT, CHILD = "eee19b7ec3c1b174", "a1b2c3d4e5f60718"


def by_operation(spans: list[StoredSpan]) -> dict[str, StoredSpan]:
    return {span.operation_name: span for span in spans}


async def stored(jaeger: Jaeger, service: str, count: int) -> dict[str, StoredSpan]:
    found = await asyncio.to_thread(jaeger.query.wait_for_spans, service, count, timeout=15)
    return by_operation(found)


def assert_child_error_span(span: StoredSpan, service: str) -> None:
    """The shape every format's test input gives its child span."""
    assert span.service_name == service
    assert span.kind == "client"
    assert span.tags["error"] is True
    assert span.tags["otel.status_description"] == "upstream timeout"
    assert span.parent_span_id == ROOT
    assert [log.fields["event"] for log in span.logs] == ["retry"]
    assert span.logs[0].fields["attempt"] == 2


async def test_span_json(tmp_path: Path, jaeger: Jaeger, service_name: str) -> None:
    root = {
        "trace_id": TRACE,
        "span_id": ROOT,
        "name": "GET /jobs/{id}",
        "kind": "server",
        "start_time_unix_nano": NOW_NS,
        "duration_ms": 12.5,
        "service": service_name,
        "attributes": {"http.method": "GET", "http.status_code": 200, "cache.hit": False},
    }
    child = {
        "trace_id": TRACE,
        "span_id": CHILD,
        "parent_span_id": ROOT,
        "name": "redis GET",
        "kind": "client",
        "start_time_unix_nano": NOW_NS + 1_000_000,
        "end_time_unix_nano": NOW_NS + 4_000_000,
        "service": service_name,
        "status": {"code": "error", "message": "upstream timeout"},
        "events": [
            {"name": "retry", "time_unix_nano": NOW_NS + 2_000_000, "attributes": {"attempt": 2}}
        ],
    }
    found = await export_lines(
        tmp_path, jaeger, service_name, "span-json", [root, child], expected_spans=2
    )
    assert found["GET /jobs/{id}"].start_time_us == NOW_NS // 1000
    assert found["GET /jobs/{id}"].duration_us == 12_500
    assert found["GET /jobs/{id}"].tags["http.status_code"] == 200
    assert found["GET /jobs/{id}"].tags["cache.hit"] is False
    assert found["GET /jobs/{id}"].kind == "server"
    assert found["GET /jobs/{id}"].parent_span_id is None
    assert found["redis GET"].duration_us == 3_000
    assert found["redis GET"].logs[0].timestamp_us == (NOW_NS + 2_000_000) // 1000
    assert_child_error_span(found["redis GET"], service_name)


async def test_otlp_json(tmp_path: Path, jaeger: Jaeger, service_name: str) -> None:
    def span(span_id: str, name: str, **extra: object) -> dict[str, Any]:
        return {
            "traceId": TRACE,
            "spanId": span_id,
            "name": name,
            "startTimeUnixNano": str(NOW_NS),
            "endTimeUnixNano": str(NOW_NS + 7_000_000),
            **extra,
        }

    request: dict[str, Any] = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service_name}},
                        {"key": "k8s.pod.name", "value": {"stringValue": "api-7f9c"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "checkout", "version": "2.1"},
                        "spans": [
                            span(
                                ROOT,
                                "POST /orders",
                                kind=2,
                                attributes=[{"key": "order.items", "value": {"intValue": "3"}}],
                            ),
                            span(
                                CHILD,
                                "redis GET",
                                kind=3,
                                parentSpanId=ROOT,
                                status={"code": 2, "message": "upstream timeout"},
                                events=[
                                    {
                                        "name": "retry",
                                        "timeUnixNano": str(NOW_NS + 1_000),
                                        "attributes": [
                                            {"key": "attempt", "value": {"intValue": "2"}}
                                        ],
                                    }
                                ],
                            ),
                        ],
                    }
                ],
            }
        ]
    }
    found = await export_lines(
        tmp_path, jaeger, service_name, "otlp-json", [request], expected_spans=2
    )
    root = found["POST /orders"]
    assert (root.start_time_us, root.duration_us) == (NOW_NS // 1000, 7_000)
    assert root.tags["order.items"] == 3
    assert root.tags["otel.scope.name"] == "checkout"
    assert root.process_tags["k8s.pod.name"] == "api-7f9c"
    assert root.kind == "server"
    assert_child_error_span(found["redis GET"], service_name)


async def test_otel_sdk_console_exporter_output(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    log_file = tmp_path / "logs" / "sdk.log"
    log_file.parent.mkdir()
    recorded = InMemorySpanExporter()
    with log_file.open("w") as out:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
        provider.add_span_processor(SimpleSpanProcessor(recorded))
        tracer = provider.get_tracer("tests.formats")
        with tracer.start_as_current_span("handle order", kind=SpanKind.SERVER) as sdk_parent:
            sdk_parent.set_attribute("order.id", "o-42")
            with tracer.start_as_current_span("redis GET", kind=SpanKind.CLIENT) as sdk_call:
                sdk_call.add_event("retry", {"attempt": 2})
                sdk_call.set_status(Status(StatusCode.ERROR, "upstream timeout"))
        provider.shutdown()
    sdk_spans: dict[str, ReadableSpan] = {s.name: s for s in recorded.get_finished_spans()}
    config = pipeline_config(tmp_path, jaeger.otlp_http_endpoint, spans__format="otel-sdk")
    async with running_pipeline(config):
        found = await stored(jaeger, service_name, 2)
    root, child = found["handle order"], found["redis GET"]
    sdk_root, sdk_child = sdk_spans["handle order"], sdk_spans["redis GET"]
    assert sdk_root.start_time is not None and sdk_root.end_time is not None
    # The console exporter prints each time rounded to the microsecond, after a float division
    # of the nanoseconds (a quarter of a microsecond of float error at today's epoch): a time is
    # off by under 1 µs, a duration (two such times) by under 2.
    assert abs(root.start_time_us - sdk_root.start_time / 1000) <= 1
    assert abs(root.duration_us - (sdk_root.end_time - sdk_root.start_time) / 1000) <= 2
    assert root.tags["order.id"] == "o-42"
    assert root.kind == "server"
    assert child.parent_span_id == f"{sdk_root.context.span_id:016x}"
    assert child.trace_id == f"{sdk_child.context.trace_id:032x}"
    assert child.kind == "client" and child.tags["error"] is True
    assert child.tags["otel.status_description"] == "upstream timeout"
    assert [log.fields["event"] for log in child.logs] == ["retry"]


def jobfirst_id(kind: str, nanos: int) -> str:
    return f"{kind}_{nanos}"


async def test_jobfirst_logrus_lines(tmp_path: Path, jaeger: Jaeger, service_name: str) -> None:
    start = NOW_NS - NOW_NS % 1_000_000_000 + 250_000_000
    trace, span = jobfirst_id("trace", start), jobfirst_id("span", start)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start // 1_000_000_000))
    base = {"level": "info", "span_name": "GET /api/v1/jobs", "timestamp": stamp}
    lines: list[dict[str, Any]] = [
        {**base, "message": "Span started", "span_id": span, "trace_id": trace},
        {"level": "info", "message": "listing jobs", "timestamp": stamp},  # not a span line
        {**base, "message": "Span event added", "event_name": "cache miss", "trace_id": trace},
        {
            **base,
            "message": "Span ended",
            "span_id": span,
            "trace_id": trace,
            "duration": "1.5ms",
            "status": 1,
            "status_desc": "database unavailable",
        },
    ]
    found = await export_lines(
        tmp_path,
        jaeger,
        service_name,
        "jobfirst",
        lines,
        expected_spans=1,
        default_service=service_name,
    )
    stored_span = found["GET /api/v1/jobs"]
    assert stored_span.service_name == service_name
    assert (stored_span.start_time_us, stored_span.duration_us) == (start // 1000, 1_500)
    assert stored_span.kind == "server"
    assert stored_span.tags["http.method"] == "GET"
    assert stored_span.tags["error"] is True
    assert stored_span.tags["otel.status_description"] == "database unavailable"
    assert stored_span.tags["jobfirst.span_id"] == span
    assert [log.fields["event"] for log in stored_span.logs] == ["cache miss"]
    assert stored_span.parent_span_id is None


async def export_lines(
    tmp_path: Path,
    jaeger: Jaeger,
    service: str,
    fmt: str,
    records: list[dict[str, Any]],
    *,
    expected_spans: int,
    default_service: str = "",
) -> dict[str, StoredSpan]:
    log_file = tmp_path / "logs" / "input.log"
    log_file.parent.mkdir(exist_ok=True)
    append(log_file, b"".join(orjson.dumps(record) + b"\n" for record in records))
    config = pipeline_config(
        tmp_path, jaeger.otlp_http_endpoint, spans__format=fmt, service__name=default_service
    )
    async with running_pipeline(config):
        return await stored(jaeger, service, expected_spans)


async def test_http_json_protocol_without_compression(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    log_file = tmp_path / "logs" / "input.log"
    log_file.parent.mkdir()
    append(log_file, b"".join(span_json(i, service_name) for i in range(20)))
    config = pipeline_config(
        tmp_path,
        jaeger.otlp_http_endpoint,
        export__protocol="http/json",
        export__compression="none",
    )
    async with running_pipeline(config) as pipeline:
        found = await stored(jaeger, service_name, 20)
        exported = pipeline.exporter.spans_exported
    assert sorted(found) == sorted(f"op-{i}" for i in range(20))
    assert found["op-3"].tags["seq"] == 3 and found["op-3"].duration_us == 1500
    assert exported == 20
