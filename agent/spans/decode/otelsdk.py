"""`otel-sdk`: what OpenTelemetry SDKs' console/stdout exporters print.

Two shapes, told apart by their keys, each one object per span, pretty-printed over
many lines or compact on one (framing in `agent.spans.decode.framing`):

- Python `ConsoleSpanExporter` (`span.to_json()`): `name`, `context{trace_id "0x…",
  span_id, trace_state "[…]"}`, `kind "SpanKind.SERVER"`, `parent_id`, `start_time` /
  `end_time` (ISO, µs, "Z"), `status{status_code, description}`, `attributes{}`,
  `events[{name, timestamp, attributes}]`, `links[{context, attributes}]`,
  `resource{attributes{}, schema_url}`. It prints no instrumentation scope.
- Go `stdouttrace` (a `tracetest.SpanStub`): `Name`, `SpanContext{TraceID, SpanID,
  TraceFlags "01", TraceState, Remote}`, `Parent{…}` (all zeros for a root),
  `SpanKind` (int, same values as OTLP), `StartTime` / `EndTime` (RFC 3339 nano),
  `Attributes [{Key, Value{Type, Value}}]`, `Events [{Name, Attributes, Time}]`,
  `Links [{SpanContext, Attributes}]`, `Status{Code "Unset"|"Error"|"Ok",
  Description}`, `Resource [{Key, Value}]`, `InstrumentationScope` (or the older
  `InstrumentationLibrary`) `{Name, Version}`.

Go's exporter with `WithoutTimestamps()` prints zero times (year 1): those spans are
dead letters (`bad_time`) because a made-up time would mislead more than help.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from agent.spans.decode.common import (
    DEFAULT_MAX_LINE_BYTES,
    LineFeeder,
    dead_letter_for,
    line_too_long,
    load_object,
    opt_list,
    opt_object,
    opt_str,
    parse_kind,
    parse_rfc3339,
    parse_status_code,
    pop_service_name,
)
from agent.spans.decode.direct_sdk import go_span, python_span
from agent.spans.decode.direct_sdkstructs import sdk_line
from agent.spans.decode.framing import ObjectFramer
from agent.spans.decode.pretty import (
    block_items,
    continued_direct,
    is_pretty_start,
    pretty_direct,
)
from agent.spans.model import (
    STATUS_UNSET,
    Attributes,
    AttrValue,
    DeadLetter,
    DecodeResult,
    Span,
    SpanEvent,
    SpanLink,
)
from agent.spans.types import DirectItem, LineBlock
from agent.spans.validate import (
    BadRecord,
    attr_map,
    attr_value,
    check_span,
    parse_parent_span_id,
    parse_span_id,
    parse_trace_id,
)

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

DEFAULT_MAX_OBJECT_BYTES: Final = 1 << 20
_PY_TRACE_STATE_ENTRY: Final = re.compile(r"\{key=([^,{}]*), value=([^{}]*)\}")


# --- Python ConsoleSpanExporter ----------------------------------------------------


def _py_trace_state(value: Any) -> str:
    """`repr(TraceState)` is "['{key=k, value=v}', ...]"; W3C form is "k=v,..."."""
    text = opt_str(value, "trace_state")
    return ",".join(f"{k}={v}" for k, v in _PY_TRACE_STATE_ENTRY.findall(text))


def _py_context(value: Any, what: str) -> tuple[bytes, bytes, str]:
    context = opt_object(value, what)
    if not context:
        raise BadRecord("missing_field", f"{what} is missing")
    return (
        parse_trace_id(context.get("trace_id"), f"{what}.trace_id"),
        parse_span_id(context.get("span_id"), f"{what}.span_id"),
        _py_trace_state(context.get("trace_state")),
    )


def _py_events(value: Any) -> list[SpanEvent]:
    events = []
    for item in opt_list(value, "events"):
        event = opt_object(item, "event")
        time_ns = parse_rfc3339(event.get("timestamp"), "event timestamp")
        name = opt_str(event.get("name"), "event name")
        events.append(SpanEvent(time_ns, name, attr_map(event.get("attributes"), "event")))
    return events


def _py_links(value: Any) -> list[SpanLink]:
    links = []
    for item in opt_list(value, "links"):
        link = opt_object(item, "link")
        trace_id, span_id, trace_state = _py_context(link.get("context"), "link context")
        links.append(SpanLink(trace_id, span_id, trace_state, attr_map(link.get("attributes"))))
    return links


def span_from_python(obj: dict[str, Any], default_service: str | None) -> Span:
    trace_id, span_id, trace_state = _py_context(obj.get("context"), "context")
    status = opt_object(obj.get("status"), "status")
    code = status.get("status_code")
    resource = dict(attr_map(opt_object(obj.get("resource"), "resource").get("attributes")))
    service = pop_service_name(resource, default_service)
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        name=opt_str(obj.get("name"), "name"),
        start_ns=parse_rfc3339(obj.get("start_time"), "start_time"),
        end_ns=parse_rfc3339(obj.get("end_time"), "end_time"),
        parent_span_id=parse_parent_span_id(obj.get("parent_id"), "parent_id"),
        kind=parse_kind(obj.get("kind", "SpanKind.INTERNAL")),
        attributes=attr_map(obj.get("attributes")),
        events=_py_events(obj.get("events")),
        links=_py_links(obj.get("links")),
        status_code=STATUS_UNSET if code is None else parse_status_code(code),
        status_message=opt_str(status.get("description"), "status description"),
        trace_state=trace_state,
        service_name=service,
        resource=resource,
    )
    return check_span(span)


# --- Go stdouttrace ------------------------------------------------------------------


def _go_value(value: Any) -> AttrValue:
    typed = opt_object(value, "attribute Value")
    kind, payload = typed.get("Type"), typed.get("Value")
    if kind in ("BYTES", "BYTESLICE") and type(payload) is str:
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BadRecord("bad_attribute", "BYTES attribute is not base64") from None
    if kind == "FLOAT64" and type(payload) is int:
        return float(payload)  # Go prints 2.0 as 2
    if kind == "FLOAT64SLICE" and type(payload) is list:
        return [float(v) if type(v) is int else attr_value(v, 1) for v in payload]
    return attr_value(payload, 1)


def _go_attributes(value: Any, what: str) -> Attributes:
    out: Attributes = {}
    for item in opt_list(value, what):
        kv = opt_object(item, what)
        key = kv.get("Key")
        if type(key) is not str:
            raise BadRecord("bad_attribute", f"{what} Key must be a string")
        out[key] = _go_value(kv.get("Value"))
    return out


def _go_context(value: Any, what: str) -> tuple[bytes, bytes, str, int, bool]:
    context = opt_object(value, what)
    if not context:
        raise BadRecord("missing_field", f"{what} is missing")
    flags = context.get("TraceFlags", "00")
    try:
        trace_flags = int(flags, 16) & 0xFF if type(flags) is str else 0
    except ValueError:
        trace_flags = 0
    return (
        parse_trace_id(context.get("TraceID"), f"{what}.TraceID"),
        parse_span_id(context.get("SpanID"), f"{what}.SpanID"),
        opt_str(context.get("TraceState"), f"{what}.TraceState"),
        trace_flags,
        context.get("Remote") is True,
    )


def _go_parent(value: Any) -> tuple[bytes, bool]:
    parent = opt_object(value, "Parent")
    parent_id = parse_parent_span_id(parent.get("SpanID"), "Parent.SpanID")
    return parent_id, bool(parent_id) and parent.get("Remote") is True


def _go_time(value: Any, what: str) -> int:
    if type(value) is str and value.startswith("0001-01-01T00:00:00"):
        raise BadRecord("bad_time", f"{what} is Go's zero time (exporter WithoutTimestamps?)")
    return parse_rfc3339(value, what)


def _go_events(value: Any) -> list[SpanEvent]:
    events = []
    for item in opt_list(value, "Events"):
        event = opt_object(item, "Event")
        time_ns = _go_time(event.get("Time"), "event Time")
        name = opt_str(event.get("Name"), "event Name")
        events.append(SpanEvent(time_ns, name, _go_attributes(event.get("Attributes"), "event")))
    return events


def _go_links(value: Any) -> list[SpanLink]:
    links = []
    for item in opt_list(value, "Links"):
        link = opt_object(item, "Link")
        trace_id, span_id, trace_state, trace_flags, _ = _go_context(
            link.get("SpanContext"), "Link"
        )
        attributes = _go_attributes(link.get("Attributes"), "link")
        links.append(SpanLink(trace_id, span_id, trace_state, attributes, trace_flags))
    return links


def span_from_go(obj: dict[str, Any], default_service: str | None) -> Span:
    trace_id, span_id, trace_state, trace_flags, _ = _go_context(
        obj.get("SpanContext"), "SpanContext"
    )
    parent_id, parent_remote = _go_parent(obj.get("Parent"))
    status = opt_object(obj.get("Status"), "Status")
    code = status.get("Code")
    resource = _go_attributes(obj.get("Resource"), "Resource")
    service = pop_service_name(resource, default_service)
    scope = opt_object(
        obj.get("InstrumentationScope") or obj.get("InstrumentationLibrary"), "scope"
    )
    # OTLP Span.flags: W3C flags, plus "parent remoteness known" (bit 8) and "is remote" (9).
    flags = trace_flags | ((0x100 | (0x200 if parent_remote else 0)) if parent_id else 0)
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        name=opt_str(obj.get("Name"), "Name"),
        start_ns=_go_time(obj.get("StartTime"), "StartTime"),
        end_ns=_go_time(obj.get("EndTime"), "EndTime"),
        parent_span_id=parent_id,
        kind=parse_kind(obj.get("SpanKind", 1)),
        attributes=_go_attributes(obj.get("Attributes"), "Attributes"),
        events=_go_events(obj.get("Events")),
        links=_go_links(obj.get("Links")),
        status_code=STATUS_UNSET if code is None else parse_status_code(code),
        status_message=opt_str(status.get("Description"), "Status.Description"),
        trace_state=trace_state,
        service_name=service,
        resource=resource,
        scope_name=opt_str(scope.get("Name"), "scope Name"),
        scope_version=opt_str(scope.get("Version"), "scope Version"),
        flags=flags,
    )
    return check_span(span)


def span_from_sdk_obj(obj: dict[str, Any], default_service: str | None) -> Span:
    if "SpanContext" in obj:
        return span_from_go(obj, default_service)
    if "context" in obj:
        return span_from_python(obj, default_service)
    raise BadRecord("unknown_format", "neither a Python (context) nor a Go (SpanContext) span")


def load_sdk_object(text: bytes) -> dict[str, Any]:
    """Python's json module writes NaN/Infinity for such float attributes; accept them."""
    try:
        return load_object(text)
    except BadRecord as exc:
        if exc.reason != "malformed_json" or not (b"NaN" in text or b"Infinity" in text):
            raise
        strict_error = exc
    try:
        obj = json.loads(text)
        orjson.dumps(obj)  # rejects lone surrogates, which the stdlib lets through
    except (ValueError, TypeError, RecursionError):
        raise strict_error from None
    if type(obj) is not dict:
        raise BadRecord("not_an_object", "expected a JSON object")
    return obj


class OtelSdkDecoder(LineFeeder):
    """Console/stdout exporter output; holds at most one unfinished object."""

    format = "otel-sdk"

    def __init__(
        self,
        *,
        default_service: str | None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    ) -> None:
        self.default_service = default_service
        self.max_line_bytes = max_line_bytes
        self.framer = ObjectFramer(max_object_bytes)
        self.object_lines = 0  # the last pretty-printed object's lines: `object_at`'s hint
        self.reads_pretty = False
        """The file's last read held a pretty-printed object's first line: the next block is
        read unsplit (`block_direct`)."""

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """One-line objects (Go's default, Python's with a compact formatter) and whole
        pretty-printed ones (Python's default) straight to the writer; other lines, and the
        lines of a pretty object `pretty_direct` leaves to it, through the framer."""
        out: list[DirectItem] = []
        self.lines_into(lines, now_ns, direct=direct, into=into, out=out, continued=True)
        return out

    def feed_block_direct(
        self, block: LineBlock, now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """`feed_direct` of the block's lines, pretty-printed objects sliced out of the block
        whole (`block_direct`) while the file prints them."""
        return block_items(self, self, block, now_ns=now_ns, direct=direct, into=into)

    def lines_into(
        self,
        lines: Sequence[bytes],
        now_ns: int,
        *,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
        continued: bool,
    ) -> None:
        """`feed_direct` into `out`; `continued`: an object the framer holds may be completed
        whole from these lines (`pretty.LineRuns`)."""
        at, count = 0, len(lines)
        if continued and self.framer.pending and count:
            at = continued_direct(self, lines, direct=direct, into=into, out=out)
        while at < count:
            at = self._lines_direct(lines, at, now_ns=now_ns, direct=direct, into=into, out=out)
            if at < count:
                at = pretty_direct(
                    self, lines, at, now_ns=now_ns, direct=direct, into=into, out=out
                )

    def _lines_direct(
        self,
        lines: Sequence[bytes],
        at: int,
        *,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> int:
        """Lines from `at`, one at a time; the index of the first line that starts a
        pretty-printed object (for `pretty_direct`)."""
        service, limit, framer = self.default_service, self.max_line_bytes, self.framer
        for index in range(at, len(lines)):
            line = lines[index]
            obj = None
            if line[:1] == b"{" and not framer.pending and len(line) <= limit:
                if is_pretty_start(line):
                    return index
                if sdk_line(line, service, direct, out):
                    continue  # straight into Structs
                obj = self._one_line_object(line)
            if obj is not None:
                if "SpanContext" in obj:
                    if go_span(obj, service, direct, out):
                        continue
                elif python_span(obj, service, direct, out):
                    continue
                into.fallbacks += 1
            self.feed_general(line, now_ns, into, out)
        return len(lines)

    def _one_line_object(self, line: bytes) -> dict[str, Any] | None:
        """The object a line holds whole, when no multi-line object is open: the framer would
        make it one frame of just this line. None for any other line."""
        if line[:1] != b"{" or self.framer.pending:
            return None
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None  # NaN or a pretty-printed object's first line: the framer's
        return obj if type(obj) is dict else None

    def feed_into(self, line: bytes, now_ns: int, into: DecodeResult) -> None:
        if len(line) > self.max_line_bytes:
            into.dead.append(line_too_long(line, self.max_line_bytes))
            return
        obj = self._one_line_object(line)
        if obj is not None:  # the framer's scan costs more than the whole decoding
            try:
                into.spans.append(span_from_sdk_obj(obj, self.default_service))
            except Exception as exc:  # feed must never raise on input
                into.dead.append(dead_letter_for(exc, line))
            return
        try:
            frames = self.framer.push(line)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))
            return
        for kind, text in frames:
            self._frame(kind, text, into)

    def _frame(self, kind: str, text: bytes, into: DecodeResult) -> None:
        if kind == "skip":
            into.skipped += 1
        elif kind == "object":
            self.decode_text(text, into)
        else:
            into.dead.append(DeadLetter(kind, _FRAME_DETAIL[kind], text))

    def decode_text(self, text: bytes, into: DecodeResult) -> None:
        try:
            into.spans.append(span_from_sdk_obj(load_sdk_object(text), self.default_service))
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, text))

    def expire(self, now_ns: int) -> DecodeResult:
        return DecodeResult()

    def end_of_file(self) -> DecodeResult:
        result = DecodeResult()
        for kind, text in self.framer.end():
            self._frame(kind, text, result)
        return result

    def snapshot(self) -> dict[str, Any]:
        return self.framer.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        self.framer.restore(state)

    @property
    def pending(self) -> int:
        return self.framer.pending


_FRAME_DETAIL: Final = {
    "not_json": "a line outside any JSON object that does not start one",
    "truncated_object": "an object was cut off: a new one started before it closed",
    "object_too_large": "a multi-line object grew past the size limit; the rest was skipped",
}
