"""The direct path of `otel-sdk` one-line objects through msgspec Structs (`sdkstructs`):
a line's bytes decoded straight into typed objects, walked as `direct_sdk` walks the parsed
dict (`go_line` as `go_span`, `python_line` as `python_span`) and handed to the same writer.

Each answers True when it wrote the span — exactly what the dict walk writes for the line's
object — and False, with nothing appended, for any line the dict walk is to see instead
(it declines it or reads it): a decode that fails, a key whose presence the dict walk tests
(routing, the older scope name), anything unusual. A span's resource (and Go's scope) is
left as its JSON bytes, and its resource key looked up by them (`lookups.Remembered`, and
first `lookups.Latest`, the last line's): a service writes the same ones in every line.
tests/unit/spans/decode/test_direct_structs.py and test_direct_sdkstructs.py hold each to its
dict walk on generated and changed objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
from msgspec import Raw

from agent.spans.decode import sdkstructs as structs
from agent.spans.decode.direct import pop_service
from agent.spans.decode.direct_sdk import (
    GO_STATUS,
    PY_EMPTY_TRACE_STATES,
    PY_KINDS,
    PY_STATUS,
    go_span_flags,
    py_hex,
    sdk_time,
)
from agent.spans.decode.lookups import Latest, Remembered, StructPairs
from agent.spans.encode.direct import event_bytes, event_of, scalar_attributes, status_and_flags
from agent.spans.encode.protobuf import ATTRIBUTES, EVENT_ATTRIBUTES
from agent.spans.encode.resources import make_key
from agent.spans.model import Attributes, AttrValue
from agent.spans.types import DirectItem, ResourceKey

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

# Bound once: compiled code reads a module's attribute by a dict lookup on every use.
_decode_go_span: Final = structs.decode_go_span
_decode_python_span: Final = structs.decode_python_span
_UNSET: Final = structs.UNSET
GO_KEY: Final = b'"SpanContext"'  # in every stdouttrace line: lines without it are not tried as one
_FIRST_KEY_WITHIN: Final = 40  # how far into an object its first key is looked for
_KEY_MAX_BYTES: Final = 8192  # a resource and scope longer than this are decoded every time


def sdk_line(
    line: bytes, default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """A one-line SDK object of either language: `go_line` for a line that names a
    SpanContext, `python_line` for the others. The first key, as each SDK writes it, picks
    without a search of the line (each declines the other's objects: any line sent to the
    wrong one takes the dict walk, which tells them apart by their keys). Pretty-printed
    objects alike: the first key is the one after the whitespace that follows `{`."""
    first = line[1:_FIRST_KEY_WITHIN].lstrip()[:7]
    if first == b'"name":':
        return python_line(line, default_service, direct, out)
    if first == b'"Name":' or GO_KEY in line:
        return go_line(line, default_service, direct, out)
    return python_line(line, default_service, direct, out)


# --- Go's stdouttrace --------------------------------------------------------------------------


def go_line(
    line: bytes, default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """`go_span` of a line's bytes decoded straight into Structs (`sdkstructs`): True when the
    span was written (what `go_span` writes for the line's object); False, with nothing
    appended, for any line `go_span` is to see instead (it declines or reads it)."""
    try:
        span = _astuple(_decode_go_span(line))  # one call, where each read is a lookup
    except structs.DecodeError:
        return False
    context, parent, kind = span[_GO_CONTEXT], span[_GO_PARENT], span[_GO_KIND]
    if context is None or context.TraceState or span[_GO_LINKS] or type(kind) is not int:
        return False
    for at in range(_GO_ROUTING, len(span)):  # `_struct_plain` of the tuple
        if span[at] is not _UNSET:
            return False
    parts = (default_service, span[_GO_RESOURCE], span[_GO_SCOPE], span[_GO_LIBRARY])
    key = _go_latest.get(parts)
    if key is None:
        lookup = (default_service, bytes(parts[1]), bytes(parts[2]), bytes(parts[3]))
        key = _go_keys.get(lookup) or _go_key(lookup)
        if key is not None:
            _go_latest.remember(parts, key)
    tail = _go_span_pairs.fields(span[_GO_ATTRIBUTES])
    if key is None or tail is None:
        return False
    for event in span[_GO_EVENTS] or ():
        pairs = _go_event_pairs.fields(event.Attributes)
        encoded = None if pairs is None else event_bytes(sdk_time(event.Time), event.Name, pairs)
        if encoded is None:
            return False
        tail += encoded
    status = span[_GO_STATUS]
    code, message = (None, "") if status is None else (status.Code, status.Description or "")
    status_code = GO_STATUS.get(code)
    if status_code is None:
        return False
    parent_hex = None if parent is None else parent.SpanID
    remote = parent is not None and parent.Remote is True
    end = status_and_flags(
        status_code, message, go_span_flags(context.TraceFlags, parent_hex, remote)
    )
    if end is None:
        return False
    return direct.encoded_span(
        out,
        key,
        trace_hex=context.TraceID,
        span_hex=context.SpanID,
        parent_hex=parent_hex,
        name=span[_GO_NAME],
        kind=kind,
        start_ns=sdk_time(span[_GO_START]),
        end_ns=sdk_time(span[_GO_END]),
        tail=tail,
        status=end,
    )


_astuple: Final = msgspec.structs.astuple
# Where `_astuple` puts a GoSpan's fields (their order in `sdkstructs.GoSpan`, pinned by a
# test); from `_GO_ROUTING` on, the keys `_struct_plain` tests.
_GO_NAME: Final = 0
_GO_CONTEXT: Final = 1
_GO_PARENT: Final = 2
_GO_KIND: Final = 3
_GO_START: Final = 4
_GO_END: Final = 5
_GO_ATTRIBUTES: Final = 6
_GO_EVENTS: Final = 7
_GO_LINKS: Final = 8
_GO_STATUS: Final = 9
_GO_RESOURCE: Final = 10
_GO_SCOPE: Final = 11
_GO_LIBRARY: Final = 12
_GO_ROUTING: Final = 13
_go_keys: Final = Remembered[tuple[str | None, bytes, bytes, bytes], ResourceKey](256)
_go_latest: Final = Latest[tuple[str | None, Raw, Raw, Raw], ResourceKey]()


def _go_key(lookup: tuple[str | None, bytes, bytes, bytes]) -> ResourceKey | None:
    """The resource key of (default service, Resource, InstrumentationScope and
    InstrumentationLibrary JSON), remembered; None if they are not what `go_span` takes.
    The older scope name is read only when the other is empty, as `go_span` reads it."""
    default_service, resource_json, scope_json, library_json = lookup
    try:
        resource = _go_struct_attributes(structs.decode_go_attributes(resource_json))
        scope = structs.decode_go_scope(scope_json)
        if scope is None or scope.is_empty():  # `get("InstrumentationScope") or ...`
            scope = structs.decode_go_scope(library_json)
    except structs.DecodeError:
        return None
    name, version = ("", "") if scope is None else (scope.Name or "", scope.Version or "")
    key = make_key(pop_service(resource, default_service), resource, name, version)
    if len(resource_json) + len(scope_json) + len(library_json) <= _KEY_MAX_BYTES:
        _go_keys.remember(lookup, key)
    return key


def _struct_plain(span: structs.GoSpan | structs.PySpan) -> bool:
    """No key that makes `auto` route the object as OTLP/JSON, and no JobFirst message key
    (which makes `auto` route the record from scratch)."""
    unset = _UNSET
    return (
        span.resourceSpans is unset
        and span.resource_spans is unset
        and span.scopeSpans is unset
        and span.scope_spans is unset
        and span.message is unset
        and span.msg is unset
    )


def _go_struct_attributes(items: list[structs.GoKeyValue] | None) -> Attributes:
    """`go_attributes` of KeyValue Structs (each a scalar of its Type, or no Struct)."""
    return {item.Key: item.Value.Value for item in items or ()}


def _key_and_value(item: structs.GoKeyValue) -> tuple[str, AttrValue]:
    return item.Key, item.Value.Value


_go_span_pairs: Final = StructPairs(ATTRIBUTES, _key_and_value)
_go_event_pairs: Final = StructPairs(EVENT_ATTRIBUTES, _key_and_value)


# --- Python's ConsoleSpanExporter --------------------------------------------------------------


def python_line(
    line: bytes, default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """`python_span` of a line's bytes decoded straight into Structs."""
    try:
        span = _decode_python_span(line)
    except structs.DecodeError:
        return False
    context = span.context
    if not isinstance(context, structs.PyContext) or type(span.name) is not str:
        return False  # the route tests the keys' presence: the dict walk's
    if span.SpanContext is not _UNSET or not _struct_plain(span):
        return False
    if context.trace_state not in PY_EMPTY_TRACE_STATES or span.links:
        return False
    trace_hex, span_hex = py_hex(context.trace_id, 34), py_hex(context.span_id, 18)
    parent_hex = None if span.parent_id is None else py_hex(span.parent_id, 18)
    kind = PY_KINDS.get(span.kind) if type(span.kind) is str else None
    status = span.status
    code, message = (None, "") if status is None else (status.status_code, status.description)
    status_code = PY_STATUS.get(code)
    if trace_hex is None or span_hex is None or (span.parent_id is not None and parent_hex is None):
        return False
    if kind is None or status_code is None:
        return False
    key = _python_resource_key(default_service, span.resource)
    tail = scalar_attributes(span.attributes)
    if key is None or tail is None:
        return False
    for event in span.events or ():  # what `DirectWriter.span` writes of the event tuples
        encoded = event_of(sdk_time(event.timestamp), event.name, event.attributes)
        if encoded is None:
            return False
        tail += encoded
    end = status_and_flags(status_code, message or "", None)
    if end is None:
        return False
    return direct.encoded_span(
        out,
        key,
        trace_hex=trace_hex,
        span_hex=span_hex,
        parent_hex=parent_hex,
        name=span.name,
        kind=kind,
        start_ns=sdk_time(span.start_time),
        end_ns=sdk_time(span.end_time),
        tail=tail,
        status=end,
    )


_python_keys: Final = Remembered[tuple[str | None, bytes], ResourceKey](256)
_python_latest: Final = Latest[tuple[str | None, Raw], ResourceKey]()


def _python_resource_key(default_service: str | None, resource: Raw) -> ResourceKey | None:
    """The resource key of a span's resource JSON: the last line's when it is the same,
    else remembered (`_python_key`)."""
    parts = (default_service, resource)
    key = _python_latest.get(parts)
    if key is None:
        lookup = (default_service, bytes(resource))
        key = _python_keys.get(lookup) or _python_key(lookup)
        if key is not None:
            _python_latest.remember(parts, key)
    return key


def _python_key(lookup: tuple[str | None, bytes]) -> ResourceKey | None:
    """The resource key of (default service, resource JSON), remembered; None if the
    resource is not what `python_span` takes."""
    default_service, resource_json = lookup
    try:
        resource = structs.decode_python_resource(resource_json)
    except structs.DecodeError:
        return None
    attributes: Attributes = {}
    if resource is not None and resource.attributes is not None:
        attributes = resource.attributes  # type: ignore[assignment]  # scalars: AttrValues
    key = make_key(pop_service(attributes, default_service), attributes, "", "")
    if len(resource_json) <= _KEY_MAX_BYTES:
        _python_keys.remember(lookup, key)
    return key
