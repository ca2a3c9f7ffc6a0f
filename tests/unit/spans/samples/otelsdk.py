"""What OpenTelemetry SDKs' console/stdout exporters print, for the decoder tests."""

from __future__ import annotations

from io import StringIO
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import Link, Status, StatusCode


def python_console_output(formatter: Any = None) -> tuple[str, list[ReadableSpan]]:
    """Run the real SDK: two nested spans, a link, an event, statuses, a trace state."""
    out = StringIO()
    exporter = ConsoleSpanExporter(out=out, **({"formatter": formatter} if formatter else {}))
    provider = TracerProvider(resource=Resource.create({"service.name": "py-svc", "team": "core"}))
    recorded: list[ReadableSpan] = []

    class Recorder(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            recorded.append(span)
            super().on_end(span)

    provider.add_span_processor(Recorder(exporter))
    tracer = provider.get_tracer("my.lib", "1.2")
    state = trace.TraceState([("vendor", "abc")])
    parent_context = trace.SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        trace_state=state,
    )
    remote_parent = trace.set_span_in_context(trace.NonRecordingSpan(parent_context))
    with tracer.start_as_current_span(
        "GET /jobs",
        context=remote_parent,
        kind=trace.SpanKind.SERVER,
        attributes={"http.status_code": 200, "tags": ["a", "b"], "ratio": 0.25, "ok": True},
    ) as server:
        server.add_event("picked", {"queue": "q1"})
        link = Link(parent_context, {"reason": "follows"})
        with tracer.start_as_current_span(
            "call db", kind=trace.SpanKind.CLIENT, links=[link]
        ) as db:
            db.set_status(Status(StatusCode.ERROR, "deadlock"))
        server.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return out.getvalue(), recorded


def go_stub(**overrides: Any) -> dict[str, Any]:
    """The shape stdouttrace writes (tracetest.SpanStub), field names from its source."""
    stub: dict[str, Any] = {
        "Name": "GET /jobs",
        "SpanContext": {
            "TraceID": "0102030405060708090a0b0c0d0e0f10",
            "SpanID": "0102030405060708",
            "TraceFlags": "01",
            "TraceState": "key=val",
            "Remote": False,
        },
        "Parent": {
            "TraceID": "0102030405060708090a0b0c0d0e0f10",
            "SpanID": "0a0b0c0d0e0f0102",
            "TraceFlags": "01",
            "TraceState": "",
            "Remote": True,
        },
        "SpanKind": 2,
        "StartTime": "2024-11-28T15:04:05.123456789+08:00",
        "EndTime": "2024-11-28T15:04:05.223456789+08:00",
        "Attributes": [
            {"Key": "http.method", "Value": {"Type": "STRING", "Value": "GET"}},
            {"Key": "http.status_code", "Value": {"Type": "INT64", "Value": 200}},
            {"Key": "ratio", "Value": {"Type": "FLOAT64", "Value": 2}},
            {"Key": "hosts", "Value": {"Type": "STRINGSLICE", "Value": ["a", "b"]}},
            {"Key": "blob", "Value": {"Type": "BYTES", "Value": "AAE="}},
        ],
        "Events": [
            {
                "Name": "retry",
                "Attributes": [{"Key": "n", "Value": {"Type": "INT64", "Value": 1}}],
                "DroppedAttributeCount": 0,
                "Time": "2024-11-28T15:04:05.150000000+08:00",
            }
        ],
        "Links": [
            {
                "SpanContext": {
                    "TraceID": "1112131415161718191a1b1c1d1e1f20",
                    "SpanID": "1112131415161718",
                    "TraceFlags": "00",
                    "TraceState": "",
                    "Remote": True,
                },
                "Attributes": None,
                "DroppedAttributeCount": 0,
            }
        ],
        "Status": {"Code": "Error", "Description": "boom"},
        "DroppedAttributes": 0,
        "DroppedEvents": 0,
        "DroppedLinks": 0,
        "ChildSpanCount": 0,
        "Resource": [
            {"Key": "service.name", "Value": {"Type": "STRING", "Value": "go-svc"}},
            {"Key": "host.name", "Value": {"Type": "STRING", "Value": "box"}},
        ],
        "InstrumentationScope": {"Name": "net/http", "Version": "0.1", "SchemaURL": ""},
        "InstrumentationLibrary": {"Name": "net/http", "Version": "0.1", "SchemaURL": ""},
    }
    stub.update(overrides)
    return stub
