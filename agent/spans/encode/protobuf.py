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

Resource merge, lowest to highest precedence: `Resources.attributes`
(OTEL_RESOURCE_ATTRIBUTES), `service.name` = `Resources.service_name`
(OTEL_SERVICE_NAME / per-path default; "unknown_service" if neither), the record's
own resource attributes, then the record's service (`Span.service_name`). The record
wins because it is the more specific statement about where the span came from.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from agent.spans.encode.wire import (
    StringFields,
    field_bytes,
    key_values,
    pack_fixed32,
    string_field,
    varint,
    varint_size,
)
from agent.spans.model import Attributes, AttrValue, Span, SpanLink

DEFAULT_SERVICE_NAME = "unknown_service"
SERVICE_NAME = "service.name"

ResourceKey = tuple[str | None, tuple[tuple[str, Hashable], ...], str, str]

_pack_times = struct.Struct("<BQBQ").pack
_pack_event_time = struct.Struct("<BQ").pack

# Span field tags (opentelemetry/proto/trace/v1/trace.proto).
_TRACE_ID = b"\x0a\x10"
_SPAN_ID = b"\x12\x08"
_TRACE_STATE = b"\x1a"
PARENT_SPAN_ID = b"\x22\x08"
SPAN_NAME = b"\x2a"
_KIND = (b"", b"\x30\x01", b"\x30\x02", b"\x30\x03", b"\x30\x04", b"\x30\x05")
ATTRIBUTES = b"\x4a"
_EVENT = b"\x5a"
_LINK = b"\x6a"
_STATUS = b"\x7a"
_FLAGS = b"\x85\x01"
_TAG_START, _TAG_END = 0x39, 0x41
# Span.Event: time 1 (fixed64), name 2, attributes 3.
_EVENT_TIME = 0x09
_EVENT_NAME = b"\x12"
EVENT_ATTRIBUTES = b"\x1a"
# Span.Link: trace_id 1, span_id 2, trace_state 3, attributes 4, flags 6 (fixed32).
_LINK_TRACE_STATE = b"\x1a"
_LINK_ATTRIBUTES = b"\x22"
_LINK_FLAGS = b"\x35"
# Status: message 2, code 3.
_STATUS_MESSAGE = b"\x12"
_STATUS_CODE = (b"", b"\x18\x01", b"\x18\x02")
_STATUS_ONLY_CODE = (b"\x7a\x00", b"\x7a\x02\x18\x01", b"\x7a\x02\x18\x02")
# Request / ResourceSpans / ScopeSpans / Resource / InstrumentationScope.
_RESOURCE_SPANS = b"\x0a"
_RESOURCE = b"\x0a"
_SCOPE_SPANS = b"\x12"
_SCOPE = b"\x0a"
_SPANS = b"\x12"
_RESOURCE_ATTRIBUTES = b"\x0a"
_SCOPE_NAME = b"\x0a"
_SCOPE_VERSION = b"\x12"

SPAN_NAMES = StringFields(SPAN_NAME)
EVENT_NAMES = StringFields(_EVENT_NAME)
_STATUS_MESSAGES = StringFields(_STATUS_MESSAGE)


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


# --- resources -------------------------------------------------------------------


def _freeze(value: AttrValue) -> Hashable:
    """A hashable, type-exact stand-in for an attribute value (True != 1 here)."""
    kind = type(value)
    if kind is list:
        return ("list", tuple(_freeze(item) for item in value))  # type: ignore[union-attr]
    if kind is dict:
        return ("dict", tuple((k, _freeze(v)) for k, v in value.items()))  # type: ignore[union-attr]
    return (kind.__name__, value)


def _thaw(frozen: Any) -> AttrValue:
    kind, payload = frozen
    if kind == "list":
        return [_thaw(item) for item in payload]
    if kind == "dict":
        return {k: _thaw(v) for k, v in payload}
    return payload  # type: ignore[no-any-return]


def resource_key(span: Span) -> ResourceKey:
    """Spans with equal keys share one ResourceSpans/ScopeSpans in a request."""
    resource = span.resource
    frozen = tuple(sorted((k, _freeze(v)) for k, v in resource.items())) if resource else ()
    return (span.service_name, frozen, span.scope_name, span.scope_version)


class Resources:
    """The configured resource (service name + attributes) merged with each record's.

    Encoded resource/scope headers are cached per key; the cache is bounded and a
    miss only costs a re-encode.
    """

    _CACHE_LIMIT = 1024

    def __init__(
        self, service_name: str | None = None, attributes: Mapping[str, AttrValue] | None = None
    ) -> None:
        base = dict(attributes or {})
        named = base.get(SERVICE_NAME)
        fallback = named if type(named) is str and named else DEFAULT_SERVICE_NAME
        base[SERVICE_NAME] = service_name or fallback
        self.base: Attributes = base
        self._headers: dict[ResourceKey, tuple[bytes, bytes]] = {}

    def attributes_for(self, key: ResourceKey) -> Attributes:
        service, frozen, _, _ = key
        merged = dict(self.base)
        for name, value in frozen:
            merged[name] = _thaw(value)
        if service:
            merged[SERVICE_NAME] = service
        return merged

    def headers(self, key: ResourceKey) -> tuple[bytes, bytes]:
        """(ResourceSpans.resource field, ScopeSpans.scope field), encoded."""
        cached = self._headers.get(key)
        if cached is None:
            if len(self._headers) >= self._CACHE_LIMIT:
                self._headers.clear()
            resource = key_values(_RESOURCE_ATTRIBUTES, self.attributes_for(key))
            scope = _encode_scope(key[2], key[3])
            cached = self._headers[key] = (field_bytes(_RESOURCE, resource), scope)
        return cached

    def group_size(self, key: ResourceKey, framed_spans: int) -> int:
        """Exact bytes of a ResourceSpans field holding spans whose framed sizes sum to
        `framed_spans` (see `framed_span_size`)."""
        resource, scope = self.headers(key)
        scope_spans = len(scope) + framed_spans
        resource_spans = len(resource) + 1 + varint_size(scope_spans) + scope_spans
        return 1 + varint_size(resource_spans) + resource_spans


def _encode_scope(name: str, version: str) -> bytes:
    body = b""
    if name:
        body += string_field(_SCOPE_NAME, name)
    if version:
        body += string_field(_SCOPE_VERSION, version)
    return field_bytes(_SCOPE, body)


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
