"""OTLP/JSON encoding (the `http/json` exporter protocol), shaped like `encode.protobuf`.

    body = encode_span_json(span)                         # one Span JSON object
    request = build_request_json({key: [body, ...]}, resources)

Follows the OTLP/JSON mapping: lowerCamelCase keys, hex trace/span IDs, enums as
integers, 64-bit integers as decimal strings, non-finite doubles as "NaN" /
"Infinity" / "-Infinity", bytes as base64. Keys and resources come from
`agent.spans.encode.protobuf` (`resource_key`, `Resources`), so the resource merge is the same
for both encodings. `request_size_json(groups, resources)` is exact.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from agent.spans.encode.resources import Resources
from agent.spans.model import AttrValue, Span, SpanEvent, SpanLink
from agent.spans.types import ResourceKey
from agent.spans.validate import INT64_MAX, INT64_MIN

JsonObject = dict[str, Any]


def any_value_json(value: AttrValue) -> JsonObject:
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is bool:
        return {"boolValue": value}
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if kind is float:
        return {"doubleValue": value if math.isfinite(value) else _non_finite(value)}  # type: ignore[arg-type]
    if value is None:
        return {}
    if kind is bytes:
        return {"bytesValue": base64.b64encode(value).decode()}  # type: ignore[arg-type]
    if kind is list:
        return {"arrayValue": {"values": [any_value_json(v) for v in value]}}  # type: ignore[union-attr]
    if kind is dict:
        return {"kvlistValue": {"values": key_values_json(value)}}  # type: ignore[arg-type]
    raise TypeError(f"not an attribute value: {kind.__name__}")


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def key_values_json(attributes: Mapping[str, AttrValue]) -> list[JsonObject]:
    return [{"key": k, "value": any_value_json(v)} for k, v in attributes.items()]


def _event_json(event: SpanEvent) -> JsonObject:
    obj: JsonObject = {"timeUnixNano": str(event.time_ns), "name": event.name}
    if event.attributes:
        obj["attributes"] = key_values_json(event.attributes)
    return obj


def _link_json(link: SpanLink) -> JsonObject:
    obj: JsonObject = {"traceId": link.trace_id.hex(), "spanId": link.span_id.hex()}
    if link.trace_state:
        obj["traceState"] = link.trace_state
    if link.attributes:
        obj["attributes"] = key_values_json(link.attributes)
    if link.flags is not None:
        obj["flags"] = link.flags
    return obj


def span_json_obj(span: Span) -> JsonObject:
    obj: JsonObject = {"traceId": span.trace_id.hex(), "spanId": span.span_id.hex()}
    if span.trace_state:
        obj["traceState"] = span.trace_state
    if span.parent_span_id:
        obj["parentSpanId"] = span.parent_span_id.hex()
    if span.flags is not None:
        obj["flags"] = span.flags
    obj["name"] = span.name
    obj["kind"] = span.kind
    obj["startTimeUnixNano"] = str(span.start_ns)
    obj["endTimeUnixNano"] = str(span.end_ns)
    if span.attributes:
        obj["attributes"] = key_values_json(span.attributes)
    if span.events:
        obj["events"] = [_event_json(e) for e in span.events]
    if span.links:
        obj["links"] = [_link_json(link) for link in span.links]
    if span.status_code or span.status_message:
        obj["status"] = {"code": span.status_code, "message": span.status_message}
    return obj


def encode_span_json(span: Span) -> bytes:
    """One OTLP/JSON Span object, compact."""
    return orjson.dumps(span_json_obj(span))


def _headers_json(key: ResourceKey, resources: Resources) -> bytes:
    resource = orjson.dumps({"attributes": key_values_json(resources.attributes_for(key))})
    scope: JsonObject = {}
    if key[2]:
        scope["name"] = key[2]
    if key[3]:
        scope["version"] = key[3]
    return b'{"resource":' + resource + b',"scopeSpans":[{"scope":' + orjson.dumps(scope)


_GROUP_TAIL: Final = b',"spans":[]}]}'


def build_request_json(
    groups: Mapping[ResourceKey, Sequence[bytes]], resources: Resources
) -> bytes:
    """An OTLP/JSON ExportTraceServiceRequest from spans encoded with `encode_span_json`."""
    parts = [
        _headers_json(key, resources) + b',"spans":[' + b",".join(bodies) + b"]}]}"
        for key, bodies in groups.items()
        if bodies
    ]
    return b'{"resourceSpans":[' + b",".join(parts) + b"]}"


def request_size_json(groups: Mapping[ResourceKey, Sequence[bytes]], resources: Resources) -> int:
    sizes = [
        len(_headers_json(key, resources))
        + len(_GROUP_TAIL)
        + sum(map(len, bodies))
        + len(bodies)
        - 1
        for key, bodies in groups.items()
        if bodies
    ]
    return len(b'{"resourceSpans":[]}') + sum(sizes) + max(len(sizes) - 1, 0)
