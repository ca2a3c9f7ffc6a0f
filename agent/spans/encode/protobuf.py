"""OTLP/protobuf encoding of spans, written straight to the wire format.

No protobuf objects at runtime: building opentelemetry-proto messages costs an
order of magnitude more than writing the bytes. The API is shaped for a batcher that
holds pre-encoded spans and must know request sizes exactly:

    body = encode_span(span)                # opentelemetry.proto.trace.v1.Span bytes
    key = resource_key(span)                # which ResourceSpans/ScopeSpans it joins
    size = framed_span_size(len(body))      # bytes it adds inside its ScopeSpans
    resources = Resources(service_name=..., attributes=...)   # from config
    resources.group_size(key, framed)       # a whole ResourceSpans holding `framed` bytes
    request = build_request({key: [body, ...]}, resources)   # ExportTraceServiceRequest
    framed = span_field(body)               # the span as its ScopeSpans holds it
    request = build_request_framed({key: [framed, ...]}, resources)   # the same request

`request_size(groups, resources) == len(build_request(groups, resources))`, and the
size of a request is the sum of `group_size` over its groups, so a batch can be split
to stay under a byte limit without encoding it twice.

Resources and their merge with the configured ones: `agent.spans.encode.resources`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final

from agent.spans.encode.resources import Resources
from agent.spans.encode.wire import (
    StringFields,
    field_bytes,
    key_values,
    pack_fixed32,
    string_field,
    varint,
    varint_size,
)
from agent.spans.model import Span, SpanLink
from agent.spans.types import ResourceKey

_pack_times: Final = struct.Struct("<BQBQ").pack
_pack_event_time: Final = struct.Struct("<BQ").pack

# Span field tags (opentelemetry/proto/trace/v1/trace.proto).
_TRACE_ID: Final = b"\x0a\x10"
_SPAN_ID: Final = b"\x12\x08"
_TRACE_STATE: Final = b"\x1a"
PARENT_SPAN_ID: Final = b"\x22\x08"
SPAN_NAME: Final = b"\x2a"
_KIND: Final = (b"", b"\x30\x01", b"\x30\x02", b"\x30\x03", b"\x30\x04", b"\x30\x05")
ATTRIBUTES: Final = b"\x4a"
_EVENT: Final = b"\x5a"
_LINK: Final = b"\x6a"
_STATUS: Final = b"\x7a"
_FLAGS: Final = b"\x85\x01"
_TAG_START, _TAG_END = 0x39, 0x41
# Span.Event: time 1 (fixed64), name 2, attributes 3.
_EVENT_TIME: Final = 0x09
_EVENT_NAME: Final = b"\x12"
EVENT_ATTRIBUTES: Final = b"\x1a"
# Span.Link: trace_id 1, span_id 2, trace_state 3, attributes 4, flags 6 (fixed32).
_LINK_TRACE_STATE: Final = b"\x1a"
_LINK_ATTRIBUTES: Final = b"\x22"
_LINK_FLAGS: Final = b"\x35"
# Status: message 2, code 3.
_STATUS_MESSAGE: Final = b"\x12"
_STATUS_CODE: Final = (b"", b"\x18\x01", b"\x18\x02")
_STATUS_ONLY_CODE: Final = (b"\x7a\x00", b"\x7a\x02\x18\x01", b"\x7a\x02\x18\x02")
# Request / ResourceSpans / ScopeSpans / Resource / InstrumentationScope.
_RESOURCE_SPANS: Final = b"\x0a"
_SCOPE_SPANS: Final = b"\x12"
_SPANS: Final = b"\x12"

SPAN_NAMES: Final = StringFields(SPAN_NAME)
EVENT_NAMES: Final = StringFields(_EVENT_NAME)
_STATUS_MESSAGES: Final = StringFields(_STATUS_MESSAGE)


def encode_span(span: Span) -> bytes:
    """The serialized `opentelemetry.proto.trace.v1.Span` message (no outer tag/length)."""
    parts = [_TRACE_ID, span.trace_id, _SPAN_ID, span.span_id]
    if span.trace_state:
        parts.append(string_field(_TRACE_STATE, span.trace_state))
    if span.parent_span_id:
        parts += (PARENT_SPAN_ID, span.parent_span_id)
    parts += (
        SPAN_NAMES[span.name],
        _KIND[span.kind],
        _pack_times(_TAG_START, span.start_ns, _TAG_END, span.end_ns),
    )
    if span.attributes:
        parts.append(key_values(ATTRIBUTES, span.attributes))
    for event in span.events:
        attributes = key_values(EVENT_ATTRIBUTES, event.attributes) if event.attributes else b""
        parts.append(event_field(event.time_ns, event.name, attributes))
    for link in span.links:
        parts.append(field_bytes(_LINK, _encode_link(link)))
    if span.status_code or span.status_message:
        parts.append(status_field(span.status_code, span.status_message))
    if span.flags is not None:
        parts += (_FLAGS, pack_fixed32(span.flags & 0xFFFFFFFF))
    return b"".join(parts)


def _encode_link(link: SpanLink) -> bytes:
    parts = [_TRACE_ID, link.trace_id, _SPAN_ID, link.span_id]
    if link.trace_state:
        parts.append(string_field(_LINK_TRACE_STATE, link.trace_state))
    if link.attributes:
        parts.append(key_values(_LINK_ATTRIBUTES, link.attributes))
    if link.flags is not None:
        parts += (_LINK_FLAGS, pack_fixed32(link.flags & 0xFFFFFFFF))
    return b"".join(parts)


def event_field(time_ns: int, name: str, attributes: bytes) -> bytes:
    """A `Span.events` field; `attributes` already encoded with the EVENT_ATTRIBUTES tag."""
    body = _pack_event_time(_EVENT_TIME, time_ns) + EVENT_NAMES[name]
    return field_bytes(_EVENT, body + attributes)


def status_field(code: int, message: str) -> bytes:
    """The `Span.status` field (encode_span leaves it out when code and message are unset)."""
    if not message:
        return _STATUS_ONLY_CODE[code]
    return field_bytes(_STATUS, _STATUS_MESSAGES[message] + _STATUS_CODE[code])


def framed_span_size(body_len: int) -> int:
    """Bytes a span of `body_len` adds to its ScopeSpans (tag + length + body)."""
    return 1 + varint_size(body_len) + body_len


def span_field(body: bytes) -> bytes:
    """A span as its ScopeSpans holds it: the `spans` field (tag, length, `encode_span` bytes).
    The batcher keeps spans framed like this, so a request is built with a single copy."""
    return field_bytes(_SPANS, body)


def span_body(framed: bytes) -> bytes:
    """The `encode_span` bytes inside a `span_field`."""
    start = 2
    while framed[start - 1] & 0x80:  # the length varint's continuation bit
        start += 1
    return framed[start:]


def build_request(groups: Mapping[ResourceKey, Sequence[bytes]], resources: Resources) -> bytes:
    """An ExportTraceServiceRequest from spans already encoded with `encode_span`."""
    framed = {key: [span_field(body) for body in bodies] for key, bodies in groups.items()}
    return build_request_framed(framed, resources)


def build_request_framed(
    groups: Mapping[ResourceKey, Sequence[bytes]], resources: Resources
) -> bytes:
    """`build_request` from spans already framed with `span_field`: lengths are summed, not
    nested, so each span is copied once."""
    parts: list[bytes] = []
    for key, framed in groups.items():
        if not framed:
            continue
        resource, scope = resources.headers(key)
        scope_spans = len(scope) + sum(map(len, framed))
        resource_spans = len(resource) + 1 + varint_size(scope_spans) + scope_spans
        parts += (_RESOURCE_SPANS, varint(resource_spans), resource)
        parts += (_SCOPE_SPANS, varint(scope_spans), scope)
        parts += framed
    return b"".join(parts)


def request_size(groups: Mapping[ResourceKey, Sequence[bytes]], resources: Resources) -> int:
    return sum(
        resources.group_size(key, sum(framed_span_size(len(b)) for b in bodies))
        for key, bodies in groups.items()
        if bodies
    )
