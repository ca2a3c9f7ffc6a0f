"""Plain spans straight to OTLP/protobuf span bytes: the agent's hot path, for every format.

    direct = DirectWriter(keep_trace=None)      # or a sampler's trace-ID decision
    direct.span_json(out, record, default_service)   # one parsed span-json line
    direct.span(out, key, trace_hex=..., span_hex=..., parent_hex=..., name=..., kind=...,
                start_ns=..., end_ns=..., attributes=..., events=..., status_code=...,
                status_message=..., flags=...)        # any format's fields
    # True: the span was appended to `out` as (resource key, framed span) or sampled out;
    # False: nothing appended, take the general path.

Every decoder's `feed_direct` (agent.spans.types.Decoder) pulls a record's fields out of its
parsed JSON and hands them to `span`; span-json records, whose fields already have the names
and units OTLP uses, go through `span_json`. For the spans it takes, the answer is exactly
what the general path answers — the same resource key as `resource_key` of the decoded
`Span`, bytes identical to `span_field(encode_span(span))` (what the batcher holds for
OTLP/protobuf), or the same sampling decision — without building a `Span`, its events and
its attribute dicts: one pass that checks and writes as it goes (docs/benchmarks.md has what
it saves). It takes the shape nearly every emitter writes: IDs as hex of full length,
integer nanosecond times, scalar attributes, events, a status. Anything else — links, trace
state or flags, nested attributes, any invalid value — returns False and the caller takes
the general path, which has the answer (a span, or a dead letter that says why). The direct
path can be faster, never different: tests/unit/spans/encode/test_direct.py and
tests/unit/spans/decode/test_direct.py hold it to that, field by field and byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

from agent.spans.decode.spanjson import EXTRA_KEYS, KIND_CODES, STATUS_CODES
from agent.spans.encode.protobuf import (
    ATTRIBUTES,
    EVENT_ATTRIBUTES,
    EVENT_NAMES,
    PARENT_SPAN_ID,
    SPAN_NAMES,
    event_field,
    status_field,
)
from agent.spans.encode.wire import (
    VARINT_TABLE,
    VARINT_TABLE_SIZE,
    pack_fixed32,
    scalar_pair_encoder,
    varint,
)
from agent.spans.model import KIND_INTERNAL
from agent.spans.sampling import TraceFilter
from agent.spans.types import DirectEvent, DirectItem, ResourceKey
from agent.spans.validate import MAX_DURATION_NS, MIN_TIME_NS

# The fields of encode_span's output after parent and name, in its order: kind and the two
# fixed64 times.
_pack_kind_times: Final = struct.Struct("<BBBQBQ").pack
_KIND_TAG: Final = 0x30
_START_TAG: Final = 0x39
_END_TAG: Final = 0x41
# ... as the kind's field with the start time's tag (by kind, 0-5), then the times.
_KIND_HEADS: Final = [bytes((_KIND_TAG, kind, _START_TAG)) for kind in range(6)]
_pack_times: Final = struct.Struct("<QBQ").pack
_pack_event_time: Final = struct.Struct("<BQ").pack
_EVENT_TIME_TAG: Final = 0x09  # Span.Event.time_unix_nano, fixed64
_EVENT_TIME_SIZE: Final = 9  # what _pack_event_time writes
_EVENT: Final = b"\x5a"  # Span.events
_SPANS: Final = b"\x12"  # ScopeSpans.spans
_FLAGS: Final = b"\x85\x01"  # Span.flags, fixed32
# The flags fields of the W3C flags with the two parent bits (every value Go's spans have),
# written once: packing one costs a call and a concatenation a span.
_FLAGS_FIELDS_SIZE: Final = 0x400
_FLAGS_FIELDS: Final = [_FLAGS + pack_fixed32(flags) for flags in range(_FLAGS_FIELDS_SIZE)]
_fromhex: Final = bytes.fromhex
_ZERO_TRACE: Final = bytes(16)
_ZERO_SPAN: Final = bytes(8)
_ZERO_SPAN_HEX: Final = "0" * 16  # a root span's parent as Go's stdouttrace writes it
_TRACE_ID_HEAD: Final = b"\x0a\x10"  # Span.trace_id: tag, length 16
_SPAN_ID_HEAD: Final = b"\x12\x08"  # Span.span_id: tag, length 8
_IDS_SIZE: Final = 28  # both IDs with their tags and lengths
_KIND_TIMES_SIZE: Final = 20  # what _pack_kind_times writes
_RESOURCE_KEY_CACHE_LIMIT: Final = 1024
# A time t >= MIN_TIME_NS is at most MAX_TIME_NS (2**63 - 1) when t >> 63 is 0: compiled, a
# comparison with MAX_TIME_NS, an int past the small ones held unboxed, is a generic one.
_TIME_BITS: Final = 63  # MAX_TIME_NS.bit_length(), pinned by a test
_span_attributes: Final = scalar_pair_encoder(ATTRIBUTES)
_event_attributes: Final = scalar_pair_encoder(EVENT_ATTRIBUTES)


class DirectWriter:
    """`keep_trace` is the sampler's decision for spans without trace flags (the only ones
    this path takes), from the trace ID; None keeps every span."""

    def __init__(self, keep_trace: TraceFilter | None) -> None:
        self._keep_trace = keep_trace
        self._keys: dict[str | None, ResourceKey] = {}
        self.sampled_out = 0

    def span_json(
        self, out: list[DirectItem], record: dict[str, Any], default_service: str | None
    ) -> bool:
        """A parsed span-json record (docs/span-format.md)."""
        if not EXTRA_KEYS.isdisjoint(record):
            return False
        get = record.get
        kind = get("kind")
        kind_code = (
            KIND_INTERNAL if kind is None else KIND_CODES.get(kind) if type(kind) is str else 0
        )
        if not kind_code:
            return False
        tail = _span_json_tail(record)
        if tail is None:
            return False
        service = get("service") or get("service_name") or default_service
        if type(service) is not str and service is not None:
            return False
        key = self._keys.get(service) or self.key_for(service)
        return self._write(
            out,
            key,
            trace_text=get("trace_id"),
            span_text=get("span_id"),
            parent=get("parent_span_id"),
            name=get("name"),
            kind=kind_code,
            start=get("start_time_unix_nano"),
            end=get("end_time_unix_nano"),
            tail=tail,
        )

    def span(
        self,
        out: list[DirectItem],
        key: ResourceKey,
        *,
        trace_hex: object,
        span_hex: object,
        parent_hex: object,
        name: object,
        kind: int,
        start_ns: object,
        end_ns: object,
        attributes: object,
        events: Sequence[DirectEvent],
        status_code: int,
        status_message: str,
        flags: int | None = None,
    ) -> bool:
        """A span's fields as a decoder found them: IDs as hex text (`parent_hex` None or
        empty for a root span), `kind` and `status_code` as OTLP numbers, `attributes` a dict
        (or None), events as (time, name, attributes) tuples, OTLP `Span.flags` if known."""
        tail = scalar_attributes(attributes)
        if tail is None:
            return False
        if events:
            encoded = event_fields(events)
            if encoded is None:
                return False
            tail += encoded
        end = status_and_flags(status_code, status_message, flags)
        if end is None:
            return False
        return self._write(
            out,
            key,
            trace_text=trace_hex,
            span_text=span_hex,
            parent=parent_hex,
            name=name,
            kind=kind,
            start=start_ns,
            end=end_ns,
            tail=tail,
            status=end,
        )

    def encoded_span(
        self,
        out: list[DirectItem],
        key: ResourceKey,
        *,
        trace_hex: object,
        span_hex: object,
        parent_hex: object,
        name: object,
        kind: int,
        start_ns: object,
        end_ns: object,
        tail: bytes,
        status: bytes = b"",
    ) -> bool:
        """`span` of a decoder that wrote the rest itself: `tail` is the span's attribute and
        event fields (`event_bytes`), `status` its status and flags fields
        (`status_and_flags`), written after them."""
        return self._write(
            out,
            key,
            trace_text=trace_hex,
            span_text=span_hex,
            parent=parent_hex,
            name=name,
            kind=kind,
            start=start_ns,
            end=end_ns,
            tail=tail,
            status=status,
        )

    def span_of_ids(
        self,
        out: list[DirectItem],
        key: ResourceKey,
        *,
        trace_id: bytes,
        span_id: bytes,
        name: str,
        kind: int,
        start_ns: int,
        end_ns: int,
        tail: bytes,
    ) -> bool:
        """`span` for a decoder that has the IDs as bytes (16 and 8, not all zero), a name
        that is not empty, a valid kind, and the fields after the times encoded already
        (`tail`: attributes, events, status, as `span` writes them); False for times `span`
        declines."""
        if not (
            MIN_TIME_NS <= start_ns <= end_ns
            and end_ns >> _TIME_BITS == 0  # <= MAX_TIME_NS
            and end_ns - start_ns <= MAX_DURATION_NS
        ):
            return False
        if self._keep_trace is not None and not self._keep_trace(trace_id):
            self.sampled_out += 1
            return True
        name_field = SPAN_NAMES[name]
        size = _IDS_SIZE + len(name_field) + _KIND_TIMES_SIZE + len(tail)
        times = _pack_times(start_ns, _END_TAG, end_ns)
        length = VARINT_TABLE[size] if size < VARINT_TABLE_SIZE else varint(size)
        out.append(
            (
                key,
                b"".join(
                    (
                        _SPANS,
                        length,
                        _TRACE_ID_HEAD,
                        trace_id,
                        _SPAN_ID_HEAD,
                        span_id,
                        name_field,
                        _KIND_HEADS[kind],
                        times,
                        tail,
                    )
                ),
            )
        )
        return True

    def _write(
        self,
        out: list[DirectItem],
        key: ResourceKey,
        *,
        trace_text: object,
        span_text: object,
        parent: object,
        name: object,
        kind: int,
        start: object,
        end: object,
        tail: bytes,
        status: bytes = b"",
    ) -> bool:
        """The span's fields, checked, joined once with `tail` and `status` (the fields that
        follow the times) into the framed span: the IDs (each a tag, a length and its bytes),
        the parent if any, the name, kind and the two fixed64 times, in encode_span's order.
        False, with nothing appended, for a field the general path reads otherwise."""
        if not (
            type(start) is int
            and type(end) is int
            and MIN_TIME_NS <= start <= end
            and end >> _TIME_BITS == 0  # <= MAX_TIME_NS
            and end - start <= MAX_DURATION_NS
            and type(name) is str
            and name
            and type(trace_text) is str
            and type(span_text) is str
            and len(trace_text) == 32
            and len(span_text) == 16
            and 0 < kind <= 5
        ):
            return False
        try:
            trace_id, span_id = _fromhex(trace_text), _fromhex(span_text)
        except ValueError:
            return False
        # fromhex skips whitespace, so a length check is what makes the text exactly hex.
        if len(trace_id) != 16 or len(span_id) != 8:
            return False
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return False
        parent_field = b""
        if parent is not None and parent not in ("", _ZERO_SPAN_HEX):
            checked = _parent_field(parent)
            if checked is None:
                return False
            parent_field = checked
        if self._keep_trace is not None and not self._keep_trace(trace_id):
            self.sampled_out += 1
            return True
        name_field = SPAN_NAMES[name]
        size = (
            _IDS_SIZE
            + len(parent_field)
            + len(name_field)
            + _KIND_TIMES_SIZE
            + len(tail)
            + len(status)
        )
        kind_times = _pack_kind_times(_KIND_TAG, kind, _START_TAG, start, _END_TAG, end)
        length = VARINT_TABLE[size] if size < VARINT_TABLE_SIZE else varint(size)
        out.append(
            (
                key,
                b"".join(
                    (
                        _SPANS,
                        length,
                        _TRACE_ID_HEAD,
                        trace_id,
                        _SPAN_ID_HEAD,
                        span_id,
                        parent_field,
                        name_field,
                        kind_times,
                        tail,
                        status,
                    )
                ),
            )
        )
        return True

    def key_for(self, service: str | None) -> ResourceKey:
        """`resource_key` of a span with no resource attributes and no scope."""
        key = self._keys.get(service)
        if key is None:
            if len(self._keys) >= _RESOURCE_KEY_CACHE_LIMIT:
                self._keys.clear()  # unbounded service names must not grow memory
            key = self._keys[service] = ResourceKey(service, (), "", "")
        return key


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


def scalar_attributes(attributes: object) -> bytes | None:
    """Span attributes as their fields; None for anything but a dict of scalars (or None)."""
    if attributes:
        return _span_attributes(attributes) if type(attributes) is dict else None
    if attributes is None or type(attributes) is dict:
        return b""
    return None  # a falsy non-object: the general path names the error


def _span_json_tail(obj: dict[str, Any]) -> bytes | None:
    """The attributes, events and status fields of a span-json record, or None."""
    get = obj.get
    tail = scalar_attributes(get("attributes"))
    if tail is None:
        return None
    events = get("events")
    if events:
        encoded = _span_json_events(events) if type(events) is list else None
        if encoded is None:
            return None
        tail += encoded
    status = get("status")
    if status is not None:
        encoded = _span_json_status(status)
        if encoded is None:
            return None
        tail += encoded
    return tail


def _span_json_events(events: list[Any]) -> bytes | None:
    as_tuples: list[DirectEvent] = []
    for event in events:
        if type(event) is not dict:
            return None
        as_tuples.append((event.get("time_unix_nano"), event.get("name"), event.get("attributes")))
    return event_fields(as_tuples)


def event_fields(events: Sequence[DirectEvent]) -> bytes | None:
    """The `Span.events` fields of (time, name, attributes) tuples; None for one `span`
    declines."""
    encoded = b""
    for time_ns, name, attributes in events:
        event = event_of(time_ns, name, attributes)
        if event is None:
            return None
        encoded += event
    return encoded


def event_of(time_ns: object, name: object, attributes: object) -> bytes | None:
    """One `Span.events` field of an event's time, name and attributes (a dict of scalars,
    or a falsy value for none), or None for one `span` declines: what `event_fields` writes
    for the tuple, for a decoder that has the three at hand."""
    if attributes:
        if type(attributes) is not dict:
            return None
        pairs = _event_attributes(attributes)
        if pairs is None:
            return None
    else:
        pairs = b""  # as the general path: a falsy value means no attributes
    return event_bytes(time_ns, name, pairs)


def event_bytes(time_ns: object, name: object, pairs: bytes) -> bytes | None:
    """One `Span.events` field (`pairs`: its attributes, encoded with the EVENT_ATTRIBUTES
    tag), or None for a time or name the general path reads otherwise."""
    if type(time_ns) is not int or type(name) is not str:
        return None
    if not (time_ns >= MIN_TIME_NS and time_ns >> _TIME_BITS == 0):  # <= MAX_TIME_NS
        return None
    name_field = EVENT_NAMES[name]
    size = _EVENT_TIME_SIZE + len(name_field) + len(pairs)
    if size < VARINT_TABLE_SIZE:  # event_field(...), inlined, joined once
        time_field = _pack_event_time(_EVENT_TIME_TAG, time_ns)
        return b"".join((_EVENT, VARINT_TABLE[size], time_field, name_field, pairs))
    return event_field(time_ns, name, pairs)


def status_and_flags(status_code: int, status_message: str, flags: int | None) -> bytes | None:
    """The status field (none for an unset status) and the flags field (none for None), or
    None for a status code OTLP does not have."""
    tail = b""
    if status_code or status_message:
        if not 0 <= status_code <= 2:
            return None
        tail = status_field(status_code, status_message)
    if flags is not None:
        if 0 <= flags < _FLAGS_FIELDS_SIZE:
            tail += _FLAGS_FIELDS[flags]
        else:
            tail += _FLAGS + pack_fixed32(flags & 0xFFFFFFFF)
    return tail


def _span_json_status(status: object) -> bytes | None:
    if type(status) is not dict:
        return None
    code, message = status.get("code"), status.get("message", "")
    if type(code) is not str or type(message) is not str:
        return None
    number = STATUS_CODES.get(code)
    if number is None:
        return None
    return status_field(number, message) if number or message else b""


def span_identity(body: bytes) -> tuple[str, bytes, bytes]:
    """(name, trace ID, span ID) of span bytes this module wrote (for a dead letter): the IDs
    at their fixed places, then an optional parent, then the name."""
    trace_id, span_id = body[2:18], body[20:28]
    at = 28
    if body[at : at + 1] == PARENT_SPAN_ID[:1]:
        at += 10
    at += 1  # the name's tag
    size = shift = 0
    while True:  # the name's length, a varint
        byte = body[at]
        at += 1
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return body[at : at + size].decode(), trace_id, span_id
