"""The direct path of `otlp-json` lines through msgspec Structs (`otlpstructs`): a line's bytes
decoded straight into typed objects, walked as `direct.otlp_request` walks the parsed dict
(the same answer, with the walking done by msgspec in C), the span written by
`DirectWriter.encoded_span`.

What a service repeats in every line is not worked out again (`lookups`): a line's resource
and scope are left as their JSON bytes (`msgspec.Raw`) and the resource key of the pair is
looked up by those bytes; each attribute's encoded field is looked up by its KeyValue Struct.

False, with nothing appended, for any line this path does not take; the caller gives it to
the general path. tests/unit/spans/decode/test_direct_structs.py and
test_direct_otlpstructs.py hold it to the dict walk and the general path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
from msgspec import Raw

from agent.spans.decode import otlpstructs as structs
from agent.spans.decode.direct import json_int, json_uint, pop_service, write_all
from agent.spans.decode.lookups import Latest, Remembered, StructPairs
from agent.spans.encode.direct import event_bytes, status_and_flags
from agent.spans.encode.protobuf import ATTRIBUTES, EVENT_ATTRIBUTES
from agent.spans.encode.resources import make_key
from agent.spans.model import Attributes, AttrValue
from agent.spans.types import DirectItem, ResourceKey

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

# Bound once: compiled code reads a module's attribute by a dict lookup on every use.
_decode_request: Final = structs.decode_request
_decode_resource_spans: Final = structs.decode_resource_spans
_KEY_MAX_BYTES: Final = 8192  # a resource and scope longer than this are decoded every time


def otlp_line(
    line: bytes, default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """An ExportTraceServiceRequest or a bare ResourceSpans: every span, or none of them."""
    try:
        if line[:16] == b'{"resourceSpans"':
            records = _decode_request(line).resourceSpans
        else:
            bare = _decode_resource_spans(line)
            records = None if bare.scopeSpans is None else [bare]
    except structs.DecodeError:
        return False
    if records is None:
        return False
    return write_all(records, _resource_spans, default_service, direct, out)


def _resource_spans(
    record: structs.ResourceSpans,
    default_service: str | None,
    direct: DirectWriter,
    out: list[DirectItem],
) -> bool:
    resource = record.resource
    scope_spans_list = record.scopeSpans
    if not scope_spans_list:  # no key to look up, but a bad resource still fails the line
        return _resource_attributes(bytes(resource)) is not None
    for scope_spans in scope_spans_list:
        parts = (default_service, resource, scope_spans.scope)
        key = _latest.get(parts)
        if key is None:
            lookup = (default_service, bytes(resource), bytes(scope_spans.scope))
            key = _keys.get(lookup) or _key(lookup)
            if key is None:
                return False
            _latest.remember(parts, key)
        for span in scope_spans.spans or ():
            if not _span(span, key, direct, out):
                return False
    return True


_keys: Final = Remembered[tuple[str | None, bytes, bytes], ResourceKey](256)
_latest: Final = Latest[tuple[str | None, Raw, Raw], ResourceKey]()


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
        _keys.remember(lookup, key)
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
    fields = _astuple(span)  # one call, where each attribute read is a lookup
    kind = fields[_KIND]
    if fields[_LINKS] or fields[_TRACE_STATE] or kind is None:
        return False
    tail = _span_pairs.fields(fields[_ATTRIBUTES])
    if tail is None:
        return False
    for event in fields[_EVENTS] or ():
        pairs = _event_pairs.fields(event.attributes)
        if pairs is None:
            return False
        encoded = event_bytes(json_uint(event.timeUnixNano), event.name, pairs)
        if encoded is None:
            return False
        tail += encoded
    status = fields[_STATUS]
    if status is None:
        end = status_and_flags(0, "", fields[_FLAGS])
    else:
        end = status_and_flags(status.code or 0, status.message or "", fields[_FLAGS])
    if end is None:
        return False
    return direct.encoded_span(
        out,
        key,
        trace_hex=fields[_TRACE_ID],
        span_hex=fields[_SPAN_ID],
        parent_hex=fields[_PARENT_SPAN_ID],
        name=fields[_NAME],
        kind=kind,
        start_ns=json_uint(fields[_START]),
        end_ns=json_uint(fields[_END]),
        tail=tail,
        status=end,
    )


_astuple: Final = msgspec.structs.astuple
# Where `_astuple` puts a Span's fields (their order in `otlpstructs.Span`, pinned by a test).
_TRACE_ID: Final = 0
_SPAN_ID: Final = 1
_PARENT_SPAN_ID: Final = 2
_NAME: Final = 3
_KIND: Final = 4
_START: Final = 5
_END: Final = 6
_ATTRIBUTES: Final = 7
_EVENTS: Final = 8
_STATUS: Final = 9
_FLAGS: Final = 10
_TRACE_STATE: Final = 11
_LINKS: Final = 12


def struct_attributes(items: list[structs.KeyValue] | None) -> Attributes | None:
    """KeyValue Structs as a dict of scalars; None if a value is not exactly one scalar."""
    out: Attributes = {}
    for item in items or ():
        pair = key_and_value(item)
        if pair is None:
            return None
        out[pair[0]] = pair[1]
    return out


def key_and_value(item: structs.KeyValue) -> tuple[str, AttrValue] | None:
    """(key, value) of a KeyValue Struct holding exactly one scalar; None otherwise."""
    text, number, flag, double = _astuple(item.value)
    if text is not None:
        if number is not None or flag is not None or double is not None:
            return None
        return item.key, text
    if number is not None:
        number = json_int(number)
        if number is None or flag is not None or double is not None:
            return None
        return item.key, number
    if flag is not None:
        return None if double is not None else (item.key, flag)
    if double is not None:
        return item.key, double
    return None  # an empty AnyValue: the general path's to decode


_span_pairs: Final = StructPairs(ATTRIBUTES, key_and_value)
_event_pairs: Final = StructPairs(EVENT_ATTRIBUTES, key_and_value)
