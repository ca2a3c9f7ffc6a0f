"""span-json records straight to OTLP/protobuf span bytes: the agent's hot path.

    wire = SpanJsonWire(keep_trace=None)        # or a sampler's trace-ID decision
    encoded = wire.encode(obj, default_service)  # obj: one parsed span-json line
    # (resource key, framed span) | SAMPLED_OUT | None: take the general path

For the records it handles, `encode` answers exactly what the general path answers — the
same resource key as `resource_key(span_from_obj(obj, default_service))`, bytes identical to
`span_field(encode_span(span))` of that span (what the batcher holds for OTLP/protobuf), or
the same sampling decision — without building a `Span`, its events and its attribute dicts:
one pass over the parsed object that checks and writes as it goes (docs/benchmarks.md has
what it saves). It handles the shape nearly every emitter writes: IDs of full length,
integer nanosecond times, a kind and a status by name, scalar attributes, events with
integer times, a service. For anything else — other spellings, resources, links, scopes,
trace state or flags, nested attributes, any invalid value — it returns None and the caller
takes the general path, which has the answer (a span, or a dead letter that says why). The
fast path can be faster, never different: tests/unit/spans/encode/test_spanjson_direct.py holds it
to that, field by field and byte for byte.
"""

from __future__ import annotations

import struct
from typing import Any

from agent.spans.decode.spanjson import EXTRA_KEYS, KIND_CODES, STATUS_CODES
from agent.spans.encode.protobuf import (
    ATTRIBUTES,
    EVENT_ATTRIBUTES,
    EVENT_NAMES,
    PARENT_SPAN_ID,
    SPAN_NAMES,
    ResourceKey,
    event_field,
    span_field,
    status_field,
)
from agent.spans.encode.wire import VARINT_TABLE, VARINT_TABLE_SIZE, scalar_pair_encoder
from agent.spans.model import KIND_INTERNAL
from agent.spans.sampling import TraceFilter
from agent.spans.validate import MAX_DURATION_NS, MAX_TIME_NS, MIN_TIME_NS

EncodedSpan = tuple[ResourceKey, bytes]
SAMPLED_OUT: EncodedSpan = ((None, (), "", ""), b"")
"""What `encode` returns for a valid span the sampler drops (compare with `is`)."""

# The first fields of encode_span's output, in its order: trace_id and span_id (tag, length,
# bytes each), then, after parent and name, kind and the two fixed64 times.
_pack_ids = struct.Struct("<BB16sBB8s").pack
_TRACE_ID_AT = slice(2, 18)  # where _pack_ids puts the trace ID
_pack_kind_times = struct.Struct("<BBBQBQ").pack
_ID_TAGS = (0x0A, 0x10, 0x12, 0x08)
_KIND_TAG, _START_TAG, _END_TAG = 0x30, 0x39, 0x41
_pack_event_time = struct.Struct("<BQ").pack
_EVENT_TIME_TAG = 0x09  # Span.Event.time_unix_nano, fixed64
_EVENT = b"\x5a"  # Span.events
_SPANS = b"\x12"  # ScopeSpans.spans
_fromhex = bytes.fromhex
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
_RESOURCE_KEY_CACHE_LIMIT = 1024
_span_attributes = scalar_pair_encoder(ATTRIBUTES)
_event_attributes = scalar_pair_encoder(EVENT_ATTRIBUTES)


class SpanJsonWire:
    """`keep_trace` is the sampler's decision for spans without trace flags (the only ones
    this path handles), from the trace ID; None keeps every span."""

    def __init__(self, keep_trace: TraceFilter | None) -> None:
        self._keep_trace = keep_trace
        self._keys: dict[str | None, ResourceKey] = {}

    def encode(self, obj: dict[str, Any], default_service: str | None) -> EncodedSpan | None:
        body = _head(obj)
        if body is None:
            return None
        tail = _tail(obj)
        if tail is None:
            return None
        service = obj.get("service") or obj.get("service_name") or default_service
        if type(service) is not str and service is not None:
            return None
        if self._keep_trace is not None and not self._keep_trace(body[_TRACE_ID_AT]):
            return SAMPLED_OUT
        key = self._keys.get(service) or self._key(service)
        body += tail
        size = len(body)
        if size < VARINT_TABLE_SIZE:  # span_field(body), inlined: this runs for every span
            return key, _SPANS + VARINT_TABLE[size] + body
        return key, span_field(body)

    def _key(self, service: str | None) -> ResourceKey:
        """`resource_key` of a span with no resource attributes and no scope."""
        if len(self._keys) >= _RESOURCE_KEY_CACHE_LIMIT:
            self._keys.clear()  # unbounded service names must not grow memory
        key: ResourceKey = (service, (), "", "")
        self._keys[service] = key
        return key


def _head(obj: dict[str, Any]) -> bytes | None:
    """The span's fields up to its end time (the trace ID at `_TRACE_ID_AT`), or None."""
    get = obj.get
    start, end, name = get("start_time_unix_nano"), get("end_time_unix_nano"), get("name")
    trace_text, span_text = get("trace_id"), get("span_id")
    if not (
        type(start) is int
        and type(end) is int
        and MIN_TIME_NS <= start <= end <= MAX_TIME_NS
        and end - start <= MAX_DURATION_NS
        and type(name) is str
        and name
        and type(trace_text) is str
        and type(span_text) is str
        and len(trace_text) == 32
        and len(span_text) == 16
        and EXTRA_KEYS.isdisjoint(obj)
    ):
        return None
    kind = get("kind")
    kind_code = KIND_INTERNAL if kind is None else KIND_CODES.get(kind) if type(kind) is str else 0
    if not kind_code:
        return None
    try:
        trace_id, span_id = _fromhex(trace_text), _fromhex(span_text)
    except ValueError:
        return None
    # fromhex skips whitespace, so a length check is what makes the text exactly hex.
    if len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    ids = _pack_ids(_ID_TAGS[0], _ID_TAGS[1], trace_id, _ID_TAGS[2], _ID_TAGS[3], span_id)
    parent = get("parent_span_id")
    if parent:
        parent_field = _parent_field(parent)
        if parent_field is None:
            return None
        ids += parent_field
    rest = _pack_kind_times(_KIND_TAG, kind_code, _START_TAG, start, _END_TAG, end)
    return ids + SPAN_NAMES[name] + rest


def _parent_field(parent: object) -> bytes | None:
    """The parent_span_id field (b"" for an all-zero ID: a root span), or None."""
    if type(parent) is not str or len(parent) != 16:
        return None
    try:
        parent_id = _fromhex(parent)
    except ValueError:
        return None
    if len(parent_id) != 8:
        return None
    return b"" if parent_id == _ZERO_SPAN else PARENT_SPAN_ID + parent_id


def _tail(obj: dict[str, Any]) -> bytes | None:
    """The attributes, events and status fields, or None."""
    get = obj.get
    attributes = get("attributes")
    if attributes:
        tail = _span_attributes(attributes) if type(attributes) is dict else None
        if tail is None:
            return None
    elif attributes is None or type(attributes) is dict:
        tail = b""
    else:
        return None  # a falsy non-object: the general path names the error
    events = get("events")
    if events:
        encoded = _events(events) if type(events) is list else None
        if encoded is None:
            return None
        tail += encoded
    status = get("status")
    if status is not None:
        encoded = _status(status)
        if encoded is None:
            return None
        tail += encoded
    return tail


def _events(events: list[Any]) -> bytes | None:
    encoded = b""
    for event in events:
        if type(event) is not dict:
            return None
        time_ns, name = event.get("time_unix_nano"), event.get("name")
        if type(time_ns) is not int or type(name) is not str:
            return None
        if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
            return None
        attributes = event.get("attributes")
        if attributes:
            if type(attributes) is not dict:
                return None
            pairs = _event_attributes(attributes)
            if pairs is None:
                return None
        else:
            pairs = b""  # as the general path: a falsy value means no attributes
        body = _pack_event_time(_EVENT_TIME_TAG, time_ns) + EVENT_NAMES[name] + pairs
        size = len(body)
        if size < VARINT_TABLE_SIZE:  # event_field(...), inlined
            encoded += _EVENT + VARINT_TABLE[size] + body
        else:
            encoded += event_field(time_ns, name, pairs)
    return encoded


def _status(status: object) -> bytes | None:
    if type(status) is not dict:
        return None
    code, message = status.get("code"), status.get("message", "")
    if type(code) is not str or type(message) is not str:
        return None
    number = STATUS_CODES.get(code)
    if number is None:
        return None
    return status_field(number, message) if number or message else b""
