"""`span-json`: our one-finished-span-per-line JSON (schema in docs/span-format.md).

    {"trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>",
     "name": "GET /jobs", "kind": "server",
     "start_time_unix_nano": 1732777445123456789, "duration_ms": 12.5,
     "attributes": {"http.status_code": 200}, "events": [...], "links": [...],
     "status": {"code": "error", "message": "boom"}, "service": "jobs-api"}

Required: `trace_id`, `span_id`, `name`, a start (`start_time_unix_nano` or `start`)
and an end (`end_time_unix_nano`, `end`, `duration_ns`, `duration_us` or
`duration_ms`). Unknown keys are ignored so emitters can add fields freely.
`span_from_obj` is the conversion; `SpanJsonDecoder` wraps it for the Decoder API.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from orjson import loads

from agent.spans.decode.common import (
    get_str,
    opt_str,
    parse_int,
    parse_kind,
    parse_rfc3339,
    parse_status_code,
)
from agent.spans.decode.lines import JsonLineDecoder
from agent.spans.model import (
    KIND_INTERNAL,
    STATUS_UNSET,
    DecodeResult,
    Span,
    SpanEvent,
    SpanLink,
)
from agent.spans.types import DirectItem
from agent.spans.validate import (
    BadRecord,
    attr_map,
    check_span,
    check_time,
    parse_parent_span_id,
    parse_span_id,
    parse_trace_id,
)

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

# The usual spellings, looked up without parse_kind / parse_status_code (which take the rest).
KIND_CODES: Final = {"server": 2, "client": 3, "internal": 1, "producer": 4, "consumer": 5}
_DURATION_UNITS: Final = (("duration_ns", 1), ("duration_us", 1_000), ("duration_ms", 1_000_000))


def _time(obj: dict[str, Any], nanos_key: str, text_key: str) -> int | None:
    value = obj.get(nanos_key)
    if type(value) is int:
        return value  # the common case; check_span bounds it
    if value is not None:
        return check_time(parse_int(value, nanos_key), nanos_key)
    value = obj.get(text_key)
    if value is None:
        return None
    if type(value) is not str:
        # A bare number could be s, ms, us or ns: refuse to guess.
        raise BadRecord("bad_time", f"{text_key} must be an RFC 3339 string; use {nanos_key}")
    return check_time(parse_rfc3339(value, text_key), text_key)


def _end(obj: dict[str, Any], start: int) -> int:
    end = _time(obj, "end_time_unix_nano", "end")
    if end is not None:
        return end
    duration = obj.get("duration_ms")
    if (  # the common case first; an earlier unit given too still wins, below
        type(duration) is float
        and -1e12 < duration < 1e12  # NaN fails this too
        and "duration_ns" not in obj
        and "duration_us" not in obj
    ):
        return start + round(duration * 1_000_000)
    for key, unit in _DURATION_UNITS:
        value = obj.get(key)
        if value is None:
            continue
        if type(value) is int:
            return start + value * unit
        if type(value) is float and abs(value) < 1e18:  # NaN compares False
            return start + round(value * unit)
        raise BadRecord("bad_field", f"{key} must be a number, got {value!r:.80}")
    raise BadRecord("missing_field", "end_time_unix_nano, end or duration_ns/_us/_ms is missing")


STATUS_CODES: Final = {"ok": 1, "error": 2, "unset": 0, "OK": 1, "ERROR": 2, "UNSET": 0}


def _status(value: Any) -> tuple[int, str]:
    if type(value) is dict:
        code = value.get("code")
        message = value.get("message", "")
        if type(code) is str and type(message) is str and code in STATUS_CODES:
            return STATUS_CODES[code], message
    if type(value) is str or type(value) is int:
        return parse_status_code(value), ""
    if type(value) is not dict:
        raise BadRecord("bad_status", "status must be an object or a code")
    code = value.get("code")
    message = opt_str(value.get("message"), "status.message")
    return (STATUS_UNSET if code is None else parse_status_code(code)), message


def _events(value: Any, start: int) -> list[SpanEvent]:
    if type(value) is not list:
        raise BadRecord("bad_field", "events must be a list")
    events = []
    for item in value:
        if type(item) is not dict:
            raise BadRecord("bad_field", "each event must be an object")
        time_ns = item.get("time_unix_nano")
        if type(time_ns) is not int:
            time_ns = _time(item, "time_unix_nano", "time")
        name = item.get("name")
        if type(name) is not str:
            name = get_str(item, "name", "event name")
        attrs = item.get("attributes")
        attrs = attr_map(attrs, "event attributes") if attrs else {}
        events.append(SpanEvent(start if time_ns is None else time_ns, name, attrs))
    return events


def _links(value: Any) -> list[SpanLink]:
    if not value:
        return []
    if type(value) is not list:
        raise BadRecord("bad_field", "links must be a list")
    links = []
    for item in value:
        if type(item) is not dict:
            raise BadRecord("bad_field", "each link must be an object")
        links.append(
            SpanLink(
                parse_trace_id(item.get("trace_id"), "link trace_id"),
                parse_span_id(item.get("span_id"), "link span_id"),
                opt_str(item.get("trace_state"), "link trace_state"),
                attr_map(item.get("attributes"), "link attributes"),
            )
        )
    return links


def _extras(span: Span, obj: dict[str, Any]) -> None:
    """The rarely used fields, kept off the fast path."""
    get = obj.get
    if "resource" in obj:
        _service_and_resource(span, obj)
    links = get("links")
    if links:
        span.links = _links(links)
    scope = get("scope")
    if scope is not None:
        if type(scope) is not dict:
            raise BadRecord("bad_field", "scope must be an object")
        span.scope_name = opt_str(scope.get("name"), "scope.name")
        span.scope_version = opt_str(scope.get("version"), "scope.version")
    span.trace_state = opt_str(get("trace_state"), "trace_state")
    flags = get("flags")
    if flags is not None:
        span.flags = parse_int(flags, "flags") & 0xFF


def _service_and_resource(span: Span, obj: dict[str, Any]) -> None:
    resource = attr_map(obj.get("resource"), "resource")
    if "service.name" in resource:
        resource = dict(resource)
        named = resource.pop("service.name")
        unnamed = obj.get("service") is None and obj.get("service_name") is None
        if unnamed and type(named) is str and named:
            span.service_name = named
    span.resource = resource


def _kind(value: Any) -> int:
    if value is None:
        return KIND_INTERNAL
    return parse_kind(value)


_fromhex: Final = bytes.fromhex
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
# The rarely used fields `_extras` reads.
EXTRA_KEYS: Final = frozenset(("resource", "links", "scope", "trace_state", "flags"))


def span_from_obj(obj: dict[str, Any], default_service: str | None) -> Span:
    """One span-json object as a validated Span (raises BadRecord)."""
    get = obj.get
    start = get("start_time_unix_nano")
    if type(start) is not int:
        start = _time(obj, "start_time_unix_nano", "start")
        if start is None:
            raise BadRecord("missing_field", "start_time_unix_nano or start is missing")
    end = get("end_time_unix_nano")
    if type(end) is not int:
        end = _end(obj, start)
    name = get("name")
    if type(name) is not str:
        name = get_str(obj, "name")
    kind = get("kind")
    kind_code = KIND_CODES.get(kind) if type(kind) is str else None
    status = get("status")
    status_code, status_message = (STATUS_UNSET, "") if status is None else _status(status)
    service = get("service") or get("service_name") or default_service
    if type(service) is not str and service is not None:
        raise BadRecord("bad_field", "service must be a string")
    parent = get("parent_span_id")
    events = get("events")
    # Inlined fast path of parse_trace_id/parse_span_id for canonical lowercase hex.
    trace_text: Any = get("trace_id")
    span_text: Any = get("span_id")
    try:
        trace_id = _fromhex(trace_text) if len(trace_text) == 32 else b""
        span_id = _fromhex(span_text) if len(span_text) == 16 else b""
    except (TypeError, ValueError):
        trace_id = span_id = b""
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        trace_id = parse_trace_id(trace_text)
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        span_id = parse_span_id(span_text)
    span = Span(
        trace_id,
        span_id,
        name,
        start,
        end,
        parse_parent_span_id(parent) if parent else b"",
        _kind(kind) if kind_code is None else kind_code,
        attr_map(get("attributes")),
        _events(events, start) if events else [],
        [],
        status_code,
        status_message,
        "",
        service,
    )
    if not EXTRA_KEYS.isdisjoint(obj):
        _extras(span, obj)
    return check_span(span)


class SpanJsonDecoder(JsonLineDecoder):
    """One finished span per line; stateless."""

    format = "span-json"

    def feed_many(self, lines: Iterable[bytes], now_ns: int) -> DecodeResult:
        # The hot loop of the agent: valid lines take the shortest path, anything
        # else goes through feed_into, which parses again and explains.
        result = DecodeResult()
        append, service, limit = result.spans.append, self.default_service, self.max_line_bytes
        for line in lines:
            try:
                if len(line) <= limit:
                    obj = loads(line)
                    if type(obj) is dict:
                        append(span_from_obj(obj, service))
                        continue
            except Exception:  # feed_into below parses again and reports it
                pass
            self.feed_into(line, now_ns, result)
        return result

    def decode_obj(self, obj: dict[str, Any], raw: bytes, into: DecodeResult) -> None:
        into.spans.append(span_from_obj(obj, self.default_service))

    def decode_direct(
        self, obj: dict[str, Any], direct: DirectWriter, out: list[DirectItem]
    ) -> bool:
        return direct.span_json(out, obj, self.default_service)
