"""The span lines the span benchmarks read, in every input format, from one generator of span
contents (4 attributes and 1 event each, varied IDs and values; the same lines for the same
seed), so bench/encode.py and bench/spans.py compare formats on the same spans.

    lines_for("otlp-json", 1000)   # 1000 spans as that format writes them, one line each
                                   # (jobfirst: 3 lines a span plus a non-span line every 10)

Formats: span-json, otlp-json (one ResourceSpans a line), jobfirst (logrus JSON as the Go
services write it), otel-sdk-go (stdouttrace, compact), otel-sdk-py (ConsoleSpanExporter with a
one-line formatter) and otel-sdk-py-pretty (its default: indented over ~40 lines).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_METHODS = ("GET", "POST", "PUT", "DELETE")
_ROUTES = ("/api/v1/jobs", "/api/v1/users", "/api/v1/companies", "/healthz")
_START = 1_732_777_445_000_000_000
SERVICE = "jobs-api"
FORMATS = ("jobfirst", "span-json", "otlp-json", "otel-sdk-py", "otel-sdk-go", "otel-sdk-py-pretty")


@dataclass
class SampleSpan:
    trace_id: str
    span_id: str
    name: str
    method: str
    route: str
    status_code: int
    user: str
    start: int
    end: int

    @property
    def attributes(self) -> dict[str, Any]:
        return {
            "http.method": self.method,
            "http.route": self.route,
            "http.status_code": self.status_code,
            "user.id": self.user,
        }


def sample_spans(count: int, seed: int = 7) -> Iterator[SampleSpan]:
    rng = random.Random(seed)
    for i in range(count):
        method, route = rng.choice(_METHODS), rng.choice(_ROUTES)
        begin = _START + i * 1_000_000
        yield SampleSpan(
            trace_id=rng.getrandbits(128).to_bytes(16, "big").hex(),
            span_id=rng.getrandbits(64).to_bytes(8, "big").hex(),
            name=f"{method} {route}",
            method=method,
            route=route,
            status_code=rng.choice((200, 200, 200, 404, 500)),
            user=f"u-{rng.randrange(100_000)}",
            start=begin,
            end=begin + rng.randrange(100_000, 50_000_000),
        )


def _compact(record: Any) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def span_json_lines(count: int, seed: int = 7) -> Iterator[bytes]:
    """`count` span-json records, one compact JSON object each, without a newline."""
    for span in sample_spans(count, seed):
        record = {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "name": span.name,
            "kind": "server",
            "start_time_unix_nano": span.start,
            "end_time_unix_nano": span.end,
            "attributes": span.attributes,
            "events": [
                {
                    "name": "db.query",
                    "time_unix_nano": span.start + 50_000,
                    "attributes": {"rows": 3},
                }
            ],
            "service": SERVICE,
        }
        yield _compact(record)


def _otlp_value(value: Any) -> dict[str, Any]:
    if type(value) is int:
        return {"intValue": str(value)}  # proto3 JSON writes int64 as a string
    return {"stringValue": value}


def _otlp_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _otlp_value(v)} for k, v in attributes.items()]


def otlp_json_lines(count: int, seed: int = 7) -> Iterator[bytes]:
    """One ResourceSpans with one span a line, as an ExportTraceServiceRequest (what the
    Collector's file exporter writes, and what its otlpjson connector reads)."""
    for span in sample_spans(count, seed):
        resource_spans = {
            "resource": {"attributes": _otlp_attributes({"service.name": SERVICE})},
            "scopeSpans": [
                {
                    "scope": {"name": "jobs-api/http", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": span.trace_id,
                            "spanId": span.span_id,
                            "name": span.name,
                            "kind": 2,
                            "startTimeUnixNano": str(span.start),
                            "endTimeUnixNano": str(span.end),
                            "attributes": _otlp_attributes(span.attributes),
                            "events": [
                                {
                                    "timeUnixNano": str(span.start + 50_000),
                                    "name": "db.query",
                                    "attributes": _otlp_attributes({"rows": 3}),
                                }
                            ],
                            "status": {},
                        }
                    ],
                }
            ],
        }
        yield _compact({"resourceSpans": [resource_spans]})


def _rfc3339(nanos: int, digits: int = 9) -> str:
    seconds, fraction = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return stamp + "Z"
    return f"{stamp}.{str(fraction).rjust(9, '0')[:digits]}Z"


def _logrus(message: str, stamp: str, **fields: Any) -> bytes:
    """A line as logrus' JSONFormatter writes it: keys sorted, compact."""
    fields = {"level": "info", "message": message, "timestamp": stamp, **fields}
    return json.dumps(dict(sorted(fields.items())), separators=(",", ":")).encode()


def _go_duration(nanos: int) -> str:
    if nanos >= 1_000_000:
        return f"{nanos / 1_000_000:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{nanos / 1_000:.3f}".rstrip("0").rstrip(".") + "µs"


def jobfirst_lines(count: int, seed: int = 7) -> Iterator[bytes]:
    """Start, one event and end per span (IDs `trace_<nanos>` / `span_<nanos>`, whole-second
    times), and a non-span log line after every 10 spans, as the Go services write them."""
    for i, span in enumerate(sample_spans(count, seed)):
        trace, span_id = f"trace_{span.start}", f"span_{span.start + 1}"
        stamp, end_stamp = _rfc3339(span.start, 0), _rfc3339(span.end, 0)
        name = span.name
        yield _logrus("Span started", stamp, span_id=span_id, span_name=name, trace_id=trace)
        yield _logrus(
            "Span event added", stamp, event_name="db.query", span_name=name, trace_id=trace
        )
        yield _logrus(
            "Span ended",
            end_stamp,
            duration=_go_duration(span.end - span.start - 1),
            span_id=span_id,
            span_name=name,
            status=1 if span.status_code == 500 else 0,
            status_desc="internal error" if span.status_code == 500 else "",
            trace_id=trace,
            user_id=span.user,
        )
        if i % 10 == 9:
            yield _logrus("request served", end_stamp, path=span.route, status=span.status_code)


def _python_record(span: SampleSpan) -> dict[str, Any]:
    """What `ReadableSpan.to_json()` holds for such a span."""
    return {
        "name": span.name,
        "context": {
            "trace_id": "0x" + span.trace_id,
            "span_id": "0x" + span.span_id,
            "trace_state": "[]",
        },
        "kind": "SpanKind.SERVER",
        "parent_id": None,
        "start_time": _rfc3339(span.start, 6),
        "end_time": _rfc3339(span.end, 6),
        "status": {"status_code": "UNSET"},
        "attributes": span.attributes,
        "events": [
            {
                "name": "db.query",
                "timestamp": _rfc3339(span.start + 50_000, 6),
                "attributes": {"rows": 3},
            }
        ],
        "links": [],
        "resource": {
            "attributes": {
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.version": "1.38.0",
                "service.name": SERVICE,
            },
            "schema_url": "",
        },
    }


def otel_sdk_python_lines(count: int, seed: int = 7, *, pretty: bool = False) -> Iterator[bytes]:
    """ConsoleSpanExporter output: `pretty` is its default (indent 4, one object over many
    lines); otherwise one object a line, as with a `formatter` that writes compact JSON."""
    for span in sample_spans(count, seed):
        record = _python_record(span)
        if pretty:
            yield from json.dumps(record, indent=4).encode().split(b"\n")
        else:
            yield json.dumps(record).encode()


def _go_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    typed = [
        {"Key": k, "Value": {"Type": "INT64" if type(v) is int else "STRING", "Value": v}}
        for k, v in attributes.items()
    ]
    return typed


def otel_sdk_go_lines(count: int, seed: int = 7) -> Iterator[bytes]:
    """Go's stdouttrace output (a tracetest.SpanStub, compact: its default)."""
    zero_context = {
        "TraceID": "00000000000000000000000000000000",
        "SpanID": "0000000000000000",
        "TraceFlags": "00",
        "TraceState": "",
        "Remote": False,
    }
    for span in sample_spans(count, seed):
        record = {
            "Name": span.name,
            "SpanContext": {
                "TraceID": span.trace_id,
                "SpanID": span.span_id,
                "TraceFlags": "01",
                "TraceState": "",
                "Remote": False,
            },
            "Parent": zero_context,
            "SpanKind": 2,
            "StartTime": _rfc3339(span.start),
            "EndTime": _rfc3339(span.end),
            "Attributes": _go_attributes(span.attributes),
            "Events": [
                {
                    "Name": "db.query",
                    "Attributes": _go_attributes({"rows": 3}),
                    "DroppedAttributeCount": 0,
                    "Time": _rfc3339(span.start + 50_000),
                }
            ],
            "Links": None,
            "Status": {"Code": "Unset", "Description": ""},
            "DroppedAttributes": 0,
            "DroppedEvents": 0,
            "DroppedLinks": 0,
            "ChildSpanCount": 0,
            "Resource": _go_attributes({"service.name": SERVICE}),
            "InstrumentationScope": {"Name": "net/http", "Version": "0.1", "SchemaURL": ""},
        }
        yield _compact(record)


def lines_for(sample: str, count: int, seed: int = 7) -> Iterator[bytes]:
    """`count` spans in the format named by `sample` (one of FORMATS)."""
    if sample == "span-json":
        return span_json_lines(count, seed)
    if sample == "otlp-json":
        return otlp_json_lines(count, seed)
    if sample == "jobfirst":
        return jobfirst_lines(count, seed)
    if sample == "otel-sdk-py":
        return otel_sdk_python_lines(count, seed)
    if sample == "otel-sdk-py-pretty":
        return otel_sdk_python_lines(count, seed, pretty=True)
    if sample == "otel-sdk-go":
        return otel_sdk_go_lines(count, seed)
    raise ValueError(f"unknown sample {sample!r}; expected one of {', '.join(FORMATS)}")


def agent_format(sample: str) -> str:
    """The agent's `spans.format` for a sample."""
    return "otel-sdk" if sample.startswith("otel-sdk") else sample
