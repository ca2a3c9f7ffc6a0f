"""otel-sdk: real Python ConsoleSpanExporter output, and Go stdouttrace's shape."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import Link, Status, StatusCode

from agent.spans.decode.registry import make_decoder
from agent.spans.model import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_OK, DecodeResult


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


def decode_text(text: str, fmt: str = "otel-sdk") -> DecodeResult:
    decoder = make_decoder(fmt, orphan_timeout_ns=0, default_service="fallback")
    result: DecodeResult = decoder.feed_many(text.encode().split(b"\n"), 0)
    assert decoder.pending == 0
    return result


@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
def test_python_console_exporter_pretty_output(fmt: str) -> None:
    text, recorded = python_console_output()
    assert text.startswith("{\n")
    result = decode_text(text, fmt)
    assert result.dead == []
    assert len(result.spans) == len(recorded) == 2
    db, server = result.spans
    db_sdk, server_sdk = recorded
    assert db.trace_id == server.trace_id == db_sdk.context.trace_id.to_bytes(16, "big")
    assert db.span_id == db_sdk.context.span_id.to_bytes(8, "big")
    assert db.parent_span_id == server.span_id
    assert server.parent_span_id == (0xB7AD6B7169203331).to_bytes(8, "big")
    assert (db.kind, server.kind) == (KIND_CLIENT, KIND_SERVER)
    assert (db.status_code, db.status_message) == (STATUS_ERROR, "deadlock")
    assert server.status_code == STATUS_OK
    assert server.attributes == {
        "http.status_code": 200,
        "tags": ["a", "b"],
        "ratio": 0.25,
        "ok": True,
    }
    assert server.events[0].name == "picked"
    assert server.events[0].attributes == {"queue": "q1"}
    assert server.trace_state == "vendor=abc"
    assert db.links[0].span_id == (0xB7AD6B7169203331).to_bytes(8, "big")
    assert db.links[0].attributes == {"reason": "follows"}
    assert server.service_name == "py-svc"
    assert server.resource["team"] == "core"
    assert "service.name" not in server.resource
    # ISO strings keep microseconds: the decoded times are the SDK's, to the µs.
    assert abs(server.start_ns - server_sdk.start_time) < 1000  # type: ignore[operator]
    assert abs(server.end_ns - server_sdk.end_time) < 1000  # type: ignore[operator]


def test_python_console_exporter_one_object_per_line() -> None:
    text, _ = python_console_output(lambda span: span.to_json(indent=None) + "\n")
    assert text.count("\n") == 2
    result = decode_text(text)
    assert (len(result.spans), result.dead) == (2, [])


def test_python_nan_attributes_are_accepted() -> None:
    text, _ = python_console_output()
    text = text.replace('"ratio": 0.25', '"ratio": NaN', 1)
    result = decode_text(text)
    assert result.dead == []
    assert result.spans[1].attributes["ratio"] != result.spans[1].attributes["ratio"]


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


@pytest.mark.parametrize("pretty", [True, False])
@pytest.mark.parametrize("fmt", ["otel-sdk", "auto"])
def test_go_stdouttrace_output(pretty: bool, fmt: str) -> None:
    # json.NewEncoder(w).SetIndent("", "\t") in pretty mode; one Encode per span.
    text = "".join(json.dumps(go_stub(), indent="\t" if pretty else None) + "\n" for _ in range(2))
    result = decode_text(text, fmt)
    assert result.dead == []
    assert len(result.spans) == 2
    span = result.spans[0]
    assert span.trace_id == bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
    assert span.parent_span_id == bytes.fromhex("0a0b0c0d0e0f0102")
    assert span.kind == KIND_SERVER
    assert (span.start_ns, span.end_ns) == (1732777445123456789, 1732777445223456789)
    assert span.attributes == {
        "http.method": "GET",
        "http.status_code": 200,
        "ratio": 2.0,
        "hosts": ["a", "b"],
        "blob": b"\x00\x01",
    }
    assert type(span.attributes["ratio"]) is float
    assert span.events[0].time_ns == 1732777445150000000
    assert span.links[0].trace_id == bytes.fromhex("1112131415161718191a1b1c1d1e1f20")
    assert (span.status_code, span.status_message) == (STATUS_ERROR, "boom")
    assert span.service_name == "go-svc"
    assert span.resource == {"host.name": "box"}
    assert (span.scope_name, span.scope_version) == ("net/http", "0.1")
    assert span.trace_state == "key=val"
    assert span.flags == 0x01 | 0x100 | 0x200  # sampled; parent known to be remote


def test_go_root_span_and_older_library_key() -> None:
    zero = {
        "TraceID": "0" * 32,
        "SpanID": "0" * 16,
        "TraceFlags": "00",
        "TraceState": "",
        "Remote": False,
    }
    stub = go_stub(Parent=zero, Links=None, Events=None, Attributes=None)
    del stub["InstrumentationScope"]
    result = decode_text(json.dumps(stub))
    (span,) = result.spans
    assert span.parent_span_id == b""
    assert span.flags == 0x01
    assert span.scope_name == "net/http"


def test_go_without_timestamps_is_a_dead_letter() -> None:
    stub = go_stub(StartTime="0001-01-01T00:00:00Z", EndTime="0001-01-01T00:00:00Z")
    result = decode_text(json.dumps(stub))
    assert [d.reason for d in result.dead] == ["bad_time"]
    assert "WithoutTimestamps" in result.dead[0].detail


def test_framing_errors_resync_at_the_next_object() -> None:
    good = json.dumps(go_stub(), indent="\t")
    truncated = "\n".join(good.split("\n")[:7])
    text = "\n".join(["garbage line", truncated, good, "", good])
    result = decode_text(text)
    assert [d.reason for d in result.dead] == ["not_json", "truncated_object"]
    assert result.dead[1].raw == truncated.encode()
    assert len(result.spans) == 2
    assert result.skipped == 1


def test_unknown_object_shape() -> None:
    result = decode_text('{"hello": "world"}')
    assert [d.reason for d in result.dead] == ["unknown_format"]
