"""An OTLP `ExportTraceServiceRequest` body (protobuf or JSON) as spans of the span model.

Protobuf is parsed by opentelemetry-proto (the upb-backed `protobuf` runtime), then each span
is checked by the same rules as every file format (`agent.spans.validate`). A body that does
not parse at all is a `BadRequestError` (answered 400); a span that breaks the rules (IDs of
the wrong length or all zeros, end before start, ...) is rejected alone and counted in the
answer's partial success, so its siblings still go through.

A received span counts as sampled (see `SAMPLED_FLAG`); the configured root sampler
(`traceidratio`) still applies.

JSON follows the OTLP/JSON mapping and is decoded by the `otlp-json` file decoder, so a
request and a log line holding the same object give the same spans.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from agent.spans.decode.common import pop_service_name
from agent.spans.decode.otlpjson import OtlpJsonDecoder
from agent.spans.model import Attributes, AttrValue, DecodeResult, Span, SpanEvent, SpanLink
from agent.spans.types import EncodedSpan
from agent.spans.validate import MAX_ATTR_DEPTH, BadRecord, check_span

_ZERO_SPAN_ID = bytes(8)
# SDKs export only spans they sampled, but Python's leaves the W3C sampled bit out of `flags`
# (it writes only the parent-is-remote bits 8-9): a received span is marked sampled, so that
# parent-based samplers do not drop what the application already chose to keep.
SAMPLED_FLAG = 0x01
# How many rejected spans the answer's message describes (the count covers them all).
MESSAGE_EXAMPLES = 3


class BadRequestError(Exception):
    """A body that is not an ExportTraceServiceRequest at all."""


@dataclass(slots=True)
class Decoded:
    """The spans of one request, and those rejected (by reason, with a few examples)."""

    spans: list[Span] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    encoded: list[EncodedSpan] = field(default_factory=list)
    """Spans kept as received, sampled and framed (`passthrough`)."""
    sampled_out: int = 0
    """Spans `passthrough` dropped by the sampler."""

    @property
    def accepted_count(self) -> int:
        return len(self.spans) + len(self.encoded) + self.sampled_out

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        if len(self.examples) < MESSAGE_EXAMPLES:
            self.examples.append(f"{reason}: {detail}")

    def message(self) -> str:
        """The partial-success message: how many, and why (the first few)."""
        if not self.rejected:
            return ""
        more = self.rejected_count - len(self.examples)
        tail = f"; and {more} more" if more > 0 else ""
        return f"{self.rejected_count} spans rejected: " + "; ".join(self.examples) + tail


def parse_request(body: bytes) -> ExportTraceServiceRequest:
    try:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError, RecursionError) as error:
        raise BadRequestError(f"body is not an OTLP ExportTraceServiceRequest: {error}") from None
    return request


def decode_protobuf(body: bytes) -> Decoded:
    request = parse_request(body)
    decoded = Decoded()
    for i, resource_spans in enumerate(request.resource_spans):
        try:
            resource = key_values(resource_spans.resource.attributes, 0)
        except BadRecord as error:
            for scope_spans in resource_spans.scope_spans:
                for _ in scope_spans.spans:
                    decoded.reject(error.reason, f"resourceSpans[{i}].resource: {error.detail}")
            continue
        service = pop_service_name(resource, None)
        for j, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            for k, proto_span in enumerate(scope_spans.spans):
                try:
                    span = span_from_proto(proto_span, service, resource, scope.name, scope.version)
                except BadRecord as error:
                    where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                    decoded.reject(error.reason, f"{where}: {error.detail}")
                    continue
                decoded.spans.append(span)
    return decoded


def span_from_proto(
    span: ProtoSpan, service: str | None, resource: Attributes, scope_name: str, version: str
) -> Span:
    parent = span.parent_span_id
    return check_span(
        Span(
            trace_id=_id(span.trace_id, 16, "traceId", "bad_trace_id"),
            span_id=_id(span.span_id, 8, "spanId", "bad_span_id"),
            name=span.name,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            parent_span_id=(
                b""
                if not parent or parent == _ZERO_SPAN_ID
                else _id(parent, 8, "parentSpanId", "bad_parent_span_id")
            ),
            kind=span.kind,
            attributes=key_values(span.attributes, 0) if span.attributes else {},
            events=[
                SpanEvent(event.time_unix_nano, event.name, key_values(event.attributes, 0))
                for event in span.events
            ],
            links=[_link(link) for link in span.links],
            status_code=span.status.code,
            status_message=span.status.message,
            trace_state=span.trace_state,
            service_name=service,
            resource=resource,
            scope_name=scope_name,
            scope_version=version,
            flags=span.flags | SAMPLED_FLAG if span.flags else None,
        )
    )


def _link(link: ProtoSpan.Link) -> SpanLink:
    return SpanLink(
        _id(link.trace_id, 16, "link traceId", "bad_trace_id"),
        _id(link.span_id, 8, "link spanId", "bad_span_id"),
        link.trace_state,
        key_values(link.attributes, 0),
        link.flags or None,
    )


def _id(value: bytes, size: int, what: str, reason: str) -> bytes:
    if len(value) != size:
        raise BadRecord(reason, f"{what} has {len(value)} bytes, not {size}")
    if value == bytes(size):
        raise BadRecord(reason, f"{what} is all zeros")
    return value


def key_values(items: Any, depth: int) -> Attributes:
    """Repeated KeyValue as attributes (a later duplicate key wins, as in a JSON object)."""
    out: Attributes = {}
    item: KeyValue
    for item in items:
        out[item.key] = any_value(item.value, depth)
    return out


def any_value(value: AnyValue, depth: int) -> AttrValue:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    if kind is None:
        return None
    if depth >= MAX_ATTR_DEPTH:
        raise BadRecord("bad_attribute", f"attribute value nested over {MAX_ATTR_DEPTH} levels")
    if kind == "array_value":
        return [any_value(item, depth + 1) for item in value.array_value.values]
    return key_values(value.kvlist_value.values, depth + 1)


def decode_json(body: bytes) -> Decoded:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequestError(f"body is not JSON: {error}") from None
    if type(obj) is not dict:
        raise BadRequestError("body is not a JSON object (an ExportTraceServiceRequest)")
    if "resourceSpans" not in obj and "resource_spans" not in obj:
        if obj:
            raise BadRequestError("no resourceSpans in the body")
        return Decoded()  # {} is a valid, empty request
    result = DecodeResult()
    try:
        OtlpJsonDecoder(default_service=None).decode_obj(obj, body, result)
    except BadRecord as error:
        raise BadRequestError(f"{error.reason}: {error.detail}") from None
    for span in result.spans:
        if span.flags:
            span.flags |= SAMPLED_FLAG
    decoded = Decoded(spans=result.spans)
    for dead in result.dead:
        decoded.reject(dead.reason, dead.detail)
    return decoded
