"""The naive path the span benchmarks compare the agent with: each span-json line through
`json.loads` into opentelemetry-proto message objects, one request for all of them."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


def _pb_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _pb_attributes(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_pb_value(v)) for k, v in attributes.items()]


def naive_request(lines: list[bytes]) -> ExportTraceServiceRequest:
    by_service: dict[str, list[PbSpan]] = {}
    for line in lines:
        record = json.loads(line)
        span = PbSpan(
            trace_id=bytes.fromhex(record["trace_id"]),
            span_id=bytes.fromhex(record["span_id"]),
            name=record["name"],
            kind=_KINDS[record["kind"]],  # type: ignore[arg-type]
            start_time_unix_nano=record["start_time_unix_nano"],
            end_time_unix_nano=record["end_time_unix_nano"],
            attributes=_pb_attributes(record["attributes"]),
            events=[
                PbSpan.Event(
                    name=e["name"],
                    time_unix_nano=e["time_unix_nano"],
                    attributes=_pb_attributes(e["attributes"]),
                )
                for e in record["events"]
            ],
        )
        by_service.setdefault(record["service"], []).append(span)
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=_pb_attributes({"service.name": service})),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(), spans=spans)],
            )
            for service, spans in by_service.items()
        ]
    )
