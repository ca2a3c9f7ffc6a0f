"""`otlp-json`: OTLP/JSON, one `ExportTraceServiceRequest` or `ResourceSpans` per line.

Follows the OTLP/JSON mapping (lowerCamelCase keys, hex IDs, enums as integers,
int64 as strings or numbers) and also accepts what careful readers meet in the wild:
snake_case keys, enum names (`SPAN_KIND_SERVER`), base64 IDs (protobuf's generic JSON
mapping), and the pre-1.0 `instrumentationLibrarySpans` / `instrumentationLibrary`.

A bad span dead-letters alone (its raw is the span object, the detail says where it
was in the record); a bad record structure dead-letters the whole line. Resource
`service.name` becomes `Span.service_name`, the other resource attributes
`Span.resource`; the scope becomes `scope_name` / `scope_version`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from agent.spans.decode.common import (
    opt_list,
    opt_object,
    opt_str,
    parse_int,
    parse_kind,
    parse_status_code,
    pop_service_name,
)
from agent.spans.decode.direct import otlp_request
from agent.spans.decode.direct_otlpstructs import otlp_line
from agent.spans.decode.lines import JsonLineDecoder
from agent.spans.model import (
    KIND_UNSPECIFIED,
    STATUS_UNSET,
    Attributes,
    AttrValue,
    DeadLetter,
    DecodeResult,
    Span,
    SpanEvent,
    SpanLink,
)
from agent.spans.types import DirectItem
from agent.spans.validate import (
    MAX_ATTR_DEPTH,
    BadRecord,
    check_span,
    parse_parent_span_id,
    parse_span_id,
    parse_trace_id,
)

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

_RECORD_KEYS: Final = ("resourceSpans", "resource_spans")
_SCOPE_SPANS_KEYS: Final = (
    "scopeSpans",
    "scope_spans",
    "instrumentationLibrarySpans",
    "instrumentation_library_spans",
)
_SCOPE_KEYS: Final = ("scope", "instrumentationLibrary", "instrumentation_library")


def field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def any_value(value: Any, depth: int = 0) -> AttrValue:
    """An OTLP/JSON AnyValue object as an attribute value."""
    obj = opt_object(value, "attribute value")
    if depth > MAX_ATTR_DEPTH:
        raise BadRecord("bad_attribute", f"attribute value nested over {MAX_ATTR_DEPTH} levels")
    for key, item in obj.items():
        if item is None:
            continue
        if key in ("stringValue", "string_value"):
            return opt_str(item, "stringValue")
        if key in ("boolValue", "bool_value"):
            return _bool(item)
        if key in ("intValue", "int_value"):
            return parse_int(item, "intValue")
        if key in ("doubleValue", "double_value"):
            return _double(item)
        if key in ("arrayValue", "array_value"):
            values = opt_list(opt_object(item, "arrayValue").get("values"), "arrayValue.values")
            return [any_value(v, depth + 1) for v in values]
        if key in ("kvlistValue", "kvlist_value"):
            values = opt_list(opt_object(item, "kvlistValue").get("values"), "kvlistValue.values")
            return key_values(values, depth + 1)
        if key in ("bytesValue", "bytes_value"):
            return _bytes(item)
    return None  # an empty AnyValue is a legal "no value"


def _bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise BadRecord("bad_attribute", f"boolValue must be true or false, got {value!r:.40}")


_NON_FINITE: Final = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _double(value: Any) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    if type(value) is str and value in _NON_FINITE:
        return _NON_FINITE[value]
    raise BadRecord("bad_attribute", f"doubleValue must be a number, got {value!r:.40}")


def _bytes(value: Any) -> bytes:
    if type(value) is str:
        try:
            altchars = b"-_" if ("-" in value or "_" in value) else None
            return base64.b64decode(value, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise BadRecord("bad_attribute", f"bytesValue must be base64, got {value!r:.40}")


def key_values(items: list[Any], depth: int = 0) -> Attributes:
    out: Attributes = {}
    for item in items:
        kv = opt_object(item, "attribute")
        key = kv.get("key")
        if type(key) is not str:
            raise BadRecord("bad_attribute", "attribute key must be a string")
        out[key] = any_value(kv.get("value"), depth)
    return out


def _attributes(obj: dict[str, Any], what: str) -> Attributes:
    return key_values(opt_list(obj.get("attributes"), f"{what} attributes"))


def _time(obj: dict[str, Any], camel: str, snake: str) -> int:
    value = field(obj, camel, snake)
    return 0 if value is None else parse_int(value, camel)


def _flags(obj: dict[str, Any]) -> int | None:
    value = obj.get("flags")
    return None if value is None else parse_int(value, "flags") & 0xFFFFFFFF


def _events(span: dict[str, Any]) -> list[SpanEvent]:
    events = []
    for item in opt_list(span.get("events"), "events"):
        event = opt_object(item, "event")
        time_ns = _time(event, "timeUnixNano", "time_unix_nano")
        name = opt_str(event.get("name"), "event name")
        events.append(SpanEvent(time_ns, name, _attributes(event, "event")))
    return events


def _links(span: dict[str, Any]) -> list[SpanLink]:
    links = []
    for item in opt_list(span.get("links"), "links"):
        link = opt_object(item, "link")
        links.append(
            SpanLink(
                parse_trace_id(
                    field(link, "traceId", "trace_id"), "link traceId", allow_base64=True
                ),
                parse_span_id(field(link, "spanId", "span_id"), "link spanId", allow_base64=True),
                opt_str(field(link, "traceState", "trace_state"), "link traceState"),
                _attributes(link, "link"),
                _flags(link),
            )
        )
    return links


def _status(span: dict[str, Any]) -> tuple[int, str]:
    status = opt_object(span.get("status"), "status")
    code = status.get("code")
    message = opt_str(status.get("message"), "status message")
    return (STATUS_UNSET if code is None else parse_status_code(code)), message


class _Scope:
    """What every span of one ScopeSpans shares."""

    __slots__ = ("name", "resource", "service", "version")

    def __init__(self, service: str | None, resource: Attributes, name: str, version: str) -> None:
        self.service, self.resource, self.name, self.version = service, resource, name, version


def span_from_otlp(span: dict[str, Any], scope: _Scope) -> Span:
    kind = span.get("kind")
    status_code, status_message = _status(span)
    parent = field(span, "parentSpanId", "parent_span_id")
    built = Span(
        trace_id=parse_trace_id(field(span, "traceId", "trace_id"), "traceId", allow_base64=True),
        span_id=parse_span_id(field(span, "spanId", "span_id"), "spanId", allow_base64=True),
        name=opt_str(span.get("name"), "name"),
        start_ns=_time(span, "startTimeUnixNano", "start_time_unix_nano"),
        end_ns=_time(span, "endTimeUnixNano", "end_time_unix_nano"),
        parent_span_id=parse_parent_span_id(parent, "parentSpanId", allow_base64=True),
        kind=KIND_UNSPECIFIED if kind is None else parse_kind(kind),
        attributes=_attributes(span, "span"),
        events=_events(span),
        links=_links(span),
        status_code=status_code,
        status_message=status_message,
        trace_state=opt_str(field(span, "traceState", "trace_state"), "traceState"),
        service_name=scope.service,
        resource=scope.resource,
        scope_name=scope.name,
        scope_version=scope.version,
        flags=_flags(span),
    )
    return check_span(built)


def _resource(resource_spans: dict[str, Any], default: str | None) -> tuple[str | None, Attributes]:
    resource = _attributes(opt_object(resource_spans.get("resource"), "resource"), "resource")
    return pop_service_name(resource, default), resource


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


class OtlpJsonDecoder(JsonLineDecoder):
    """OTLP/JSON lines; stateless. One line may hold many spans."""

    format = "otlp-json"

    def decode_direct(
        self, obj: dict[str, Any], direct: DirectWriter, out: list[DirectItem]
    ) -> bool:
        return otlp_request(obj, self.default_service, direct, out)

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """Each line decoded straight into Structs (`otlp_line`), not parsed into dicts."""
        out: list[DirectItem] = []
        service, limit = self.default_service, self.max_line_bytes
        for line in lines:
            if len(line) <= limit and otlp_line(line, service, direct, out):
                continue
            if line and not line.isspace():
                into.fallbacks += 1
            self.feed_general(line, now_ns, into, out)
        return out

    def decode_obj(self, obj: dict[str, Any], raw: bytes, into: DecodeResult) -> None:
        records = _first(obj, _RECORD_KEYS)
        if records is None:
            if _first(obj, _SCOPE_SPANS_KEYS) is None:
                raise BadRecord("unknown_format", "no resourceSpans or scopeSpans in the object")
            records = [obj]  # a bare ResourceSpans
        spans: list[Span] = []
        dead: list[DeadLetter] = []
        for i, item in enumerate(opt_list(records, "resourceSpans")):
            resource_spans = opt_object(item, "resourceSpans item")
            service, resource = _resource(resource_spans, self.default_service)
            scope_spans_list = opt_list(_first(resource_spans, _SCOPE_SPANS_KEYS), "scopeSpans")
            for j, scope_item in enumerate(scope_spans_list):
                scope_spans = opt_object(scope_item, "scopeSpans item")
                scope_obj = opt_object(_first(scope_spans, _SCOPE_KEYS), "scope")
                scope = _Scope(
                    service,
                    resource,
                    opt_str(scope_obj.get("name"), "scope name"),
                    opt_str(scope_obj.get("version"), "scope version"),
                )
                where = f"resourceSpans[{i}].scopeSpans[{j}]"
                self._spans(scope_spans, scope, where, spans, dead)
        into.spans.extend(spans)
        into.dead.extend(dead)

    @staticmethod
    def _spans(
        scope_spans: dict[str, Any],
        scope: _Scope,
        where: str,
        spans: list[Span],
        dead: list[DeadLetter],
    ) -> None:
        for k, item in enumerate(opt_list(scope_spans.get("spans"), "spans")):
            try:
                spans.append(span_from_otlp(opt_object(item, "span"), scope))
            except BadRecord as exc:
                dead.append(DeadLetter(exc.reason, f"{where}.spans[{k}]: {exc.detail}", _raw(item)))


def _raw(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:  # cannot happen for parsed JSON, but a dead letter must not raise
        return repr(item).encode()
