"""The direct path of `otlp-json` lines through msgspec Structs (`otlpstructs`): a line's bytes
decoded straight into typed objects, walked as `direct.otlp_request` walks the parsed dict
(the same answer, with the walking done by msgspec in C), the span written by
`DirectWriter.encoded_span`.

What a service repeats in every line is not worked out again. A line's resource and scope
are left as their JSON bytes (`msgspec.Raw`) and the resource key of the pair is looked up
by those bytes: equal bytes are the same JSON, so a hit is what decoding them again gives.
Each attribute's encoded field is looked up by its KeyValue Struct (frozen, so hashable):
equal Structs give equal fields, but for doubles (0.0 == -0.0, and NaN equals nothing),
which are not kept. Each cache is bounded (cleared when full), keeps only short values, and
stops keeping a key's values after `_VALUES_PER_KEY` of them (user IDs, URLs), so values
that never repeat cannot evict the ones that do.

False, with nothing appended, for any line this path does not take; the caller gives it to
the general path. tests/unit/spans/decode/test_direct_structs.py holds it to the dict walk.
"""

from __future__ import annotations

from agent.spans.decode import otlpstructs as structs
from agent.spans.decode.direct import json_int, json_uint, pop_service
from agent.spans.encode.direct import event_bytes, status_and_flags
from agent.spans.encode.protobuf import ATTRIBUTES, EVENT_ATTRIBUTES
from agent.spans.encode.resources import make_key
from agent.spans.encode.wire import pair_field
from agent.spans.model import Attributes
from agent.spans.types import DirectItem, DirectWriter, ResourceKey

_KEYS_LIMIT = 256
_KEY_MAX_BYTES = 8192  # a resource and scope longer than this are decoded every time
_PAIRS_LIMIT = 8192
_PAIR_MAX_CHARS = 128
_VALUES_PER_KEY = 256


def otlp_line(
    line: bytes, default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """An ExportTraceServiceRequest or a bare ResourceSpans: every span, or none of them."""
    try:
        if line[:16] == b'{"resourceSpans"':
            records = structs.decode_request(line).resourceSpans
        else:
            bare = structs.decode_resource_spans(line)
            records = None if bare.scopeSpans is None else [bare]
    except structs.DecodeError:
        return False
    if records is None:
        return False
    mark, sampled_out = len(out), direct.sampled_out
    for record in records:
        if not _resource_spans(record, default_service, direct, out):
            del out[mark:]
            direct.sampled_out = sampled_out  # the general path samples them again
            return False
    return True


def _resource_spans(
    record: structs.ResourceSpans,
    default_service: str | None,
    direct: DirectWriter,
    out: list[DirectItem],
) -> bool:
    resource = bytes(record.resource)
    scope_spans_list = record.scopeSpans
    if not scope_spans_list:  # no key to look up, but a bad resource still fails the line
        return _resource_attributes(resource) is not None
    for scope_spans in scope_spans_list:
        lookup = (default_service, resource, bytes(scope_spans.scope))
        key = _keys.get(lookup) or _key(lookup)
        if key is None:
            return False
        for span in scope_spans.spans or ():
            if not _span(span, key, direct, out):
                return False
    return True


_keys: dict[tuple[str | None, bytes, bytes], ResourceKey] = {}


def _key(lookup: tuple[str | None, bytes, bytes]) -> ResourceKey | None:
    """The resource key of (default service, resource JSON, scope JSON), remembered; None
    if either does not decode to what the direct path takes."""
    default_service, resource, scope_json = lookup
    attributes = _resource_attributes(resource)
    if attributes is None:
        return None
    try:
        scope = structs.decode_scope(scope_json)
    except structs.DecodeError:
        return None
    name, version = ("", "") if scope is None else (scope.name or "", scope.version or "")
    key = make_key(pop_service(attributes, default_service), attributes, name, version)
    if len(resource) + len(scope_json) <= _KEY_MAX_BYTES:
        if len(_keys) >= _KEYS_LIMIT:
            _keys.clear()
        _keys[lookup] = key
    return key


def _resource_attributes(resource: bytes) -> Attributes | None:
    try:
        decoded = structs.decode_resource(resource)
    except structs.DecodeError:
        return None
    return {} if decoded is None else struct_attributes(decoded.attributes)


def _span(
    span: structs.Span, key: ResourceKey, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    if span.links or span.traceState or span.kind is None:
        return False
    tail = _span_pairs.fields(span.attributes)
    if tail is None:
        return False
    for event in span.events or ():
        pairs = _event_pairs.fields(event.attributes)
        if pairs is None:
            return False
        encoded = event_bytes(json_uint(event.timeUnixNano), event.name, pairs)
        if encoded is None:
            return False
        tail += encoded
    status = span.status
    if status is None:
        end = status_and_flags(0, "", span.flags)
    else:
        end = status_and_flags(status.code or 0, status.message or "", span.flags)
    if end is None:
        return False
    return direct.encoded_span(
        out,
        key,
        trace_hex=span.traceId,
        span_hex=span.spanId,
        parent_hex=span.parentSpanId,
        name=span.name,
        kind=span.kind,
        start_ns=json_uint(span.startTimeUnixNano),
        end_ns=json_uint(span.endTimeUnixNano),
        tail=tail + end,
    )


class _Pairs:
    """The encoded KeyValue fields of one tag (span or event attributes), by KeyValue Struct:
    (key, field) per KeyValue seen, bounded as the module says."""

    __slots__ = ("_fields", "_per_key", "_tag")

    def __init__(self, tag: bytes) -> None:
        self._tag = tag
        self._fields: dict[structs.KeyValue, tuple[str, bytes]] = {}
        self._per_key: dict[str, int] = {}

    def fields(self, items: list[structs.KeyValue] | None) -> bytes | None:
        """What the tag's pair encoder writes for `struct_attributes(items)`: the fields
        joined, a key that comes twice in its first place with its last value (as in the
        dict); None if one is not a scalar attribute."""
        if not items:
            return b""
        known = self._fields
        try:
            if len(items) == 1:
                pair = known.get(items[0]) or self._encode(items[0])
                return None if pair is None else pair[1]
            pairs: dict[str, bytes] = {}
            for item in items:
                pair = known.get(item) or self._encode(item)
                if pair is None:
                    return None
                pairs[pair[0]] = pair[1]
        except TypeError:  # an array or map value cannot be hashed, nor is it a scalar
            return None
        return b"".join(pairs.values())

    def _encode(self, item: structs.KeyValue) -> tuple[str, bytes] | None:
        """(key, field) of a KeyValue not seen (or no longer kept), remembered unless it is
        a double (0.0 == -0.0, NaN != NaN), a long string, or its key has had its share."""
        attributes = struct_attributes([item])
        if attributes is None:
            return None
        key = item.key
        value = attributes[key]
        pair = (key, pair_field(self._tag, key, value))
        if type(value) is float or (type(value) is str and len(value) > _PAIR_MAX_CHARS):
            return pair
        seen = self._per_key.get(key, 0)
        if seen < _VALUES_PER_KEY:
            if len(self._fields) >= _PAIRS_LIMIT:
                self._fields.clear()
                self._per_key.clear()
                seen = 0
            self._fields[item] = pair
            self._per_key[key] = seen + 1
        return pair


_span_pairs, _event_pairs = _Pairs(ATTRIBUTES), _Pairs(EVENT_ATTRIBUTES)


def struct_attributes(items: list[structs.KeyValue] | None) -> Attributes | None:
    """KeyValue Structs as a dict of scalars; None if a value is not exactly one scalar."""
    out: Attributes = {}
    for item in items or ():
        value = item.value
        if value.arrayValue is not None or value.kvlistValue is not None:
            return None
        if value.bytesValue is not None:
            return None
        text, number, flag, double = (
            value.stringValue,
            value.intValue,
            value.boolValue,
            value.doubleValue,
        )
        if text is not None:
            if number is not None or flag is not None or double is not None:
                return None
            out[item.key] = text
        elif number is not None:
            number = json_int(number)
            if number is None or flag is not None or double is not None:
                return None
            out[item.key] = number
        elif flag is not None:
            if double is not None:
                return None
            out[item.key] = flag
        elif double is not None:
            out[item.key] = double
        else:
            return None  # an empty AnyValue: the general path's to decode
    return out
