"""The direct path of `otel-sdk` one-line objects: Python's ConsoleSpanExporter
(`ReadableSpan.to_json()`) and Go's stdouttrace (`tracetest.SpanStub`). Same rule as
`agent.spans.decode.direct`: only what the general decoder (`otelsdk`) reads the same way and
the writer can write; False, with nothing appended, for anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from agent.spans.decode.common import utc_rfc3339
from agent.spans.decode.direct import optional_object, optional_text, pop_service
from agent.spans.encode.resources import make_key
from agent.spans.model import Attributes
from agent.spans.types import DirectEvent, DirectItem

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

# --- otel-sdk: Python's ConsoleSpanExporter ----------------------------------------------------

PY_KINDS: Final = {
    "SpanKind.INTERNAL": 1,
    "SpanKind.SERVER": 2,
    "SpanKind.CLIENT": 3,
    "SpanKind.PRODUCER": 4,
    "SpanKind.CONSUMER": 5,
}
PY_STATUS: Final = {None: 0, "UNSET": 0, "OK": 1, "ERROR": 2}
PY_EMPTY_TRACE_STATES: Final = (None, "", "[]")


def python_span(
    obj: dict[str, Any], default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """A `ReadableSpan.to_json()` object."""
    get = obj.get
    context = get("context")
    if type(context) is not dict or context.get("trace_state") not in PY_EMPTY_TRACE_STATES:
        return False
    trace_hex, span_hex = py_hex(context.get("trace_id"), 34), py_hex(context.get("span_id"), 18)
    parent = get("parent_id")
    parent_hex = None if parent is None else py_hex(parent, 18)
    status = optional_object(get("status"))
    kind_name = get("kind", "SpanKind.INTERNAL")
    kind = PY_KINDS.get(kind_name) if type(kind_name) is str else None
    if trace_hex is None or span_hex is None or (parent is not None and parent_hex is None):
        return False
    if status is None or kind is None or get("links") not in (None, []):
        return False
    code, message = status.get("status_code"), optional_text(status.get("description"))
    status_code = PY_STATUS.get(code) if type(code) is str or code is None else None
    resource = optional_object(get("resource"))
    events = _py_events(get("events"))
    if status_code is None or message is None or resource is None or events is None:
        return False
    attributes = _scalars(resource.get("attributes"))
    if attributes is None:
        return False
    service = pop_service(attributes, default_service)
    return direct.span(
        out,
        make_key(service, attributes, "", ""),
        trace_hex=trace_hex,
        span_hex=span_hex,
        parent_hex=parent_hex,
        name=get("name"),
        kind=kind,
        start_ns=sdk_time(get("start_time")),
        end_ns=sdk_time(get("end_time")),
        attributes=get("attributes"),
        events=events,
        status_code=status_code,
        status_message=message,
    )


def py_hex(value: object, size: int) -> str | None:
    """The hex digits of a Python "0x…" ID of `size` characters, else None."""
    if type(value) is str and len(value) == size and value[:2] == "0x":
        return value[2:]
    return None


def sdk_time(value: object) -> int | None:
    return utc_rfc3339(value) if type(value) is str else None


def _py_events(events: object) -> list[DirectEvent] | None:
    if events is None or events == []:
        return []
    if type(events) is not list:
        return None
    out: list[DirectEvent] = []
    for event in events:
        if type(event) is not dict:
            return None
        attributes = event.get("attributes")
        if attributes is not None and type(attributes) is not dict:
            return None
        out.append((sdk_time(event.get("timestamp")), event.get("name"), attributes))
    return out


def _scalars(attributes: object) -> Attributes | None:
    """A copy of a JSON object of scalar attribute values ({} for None), else None."""
    if attributes is None:
        return {}
    if type(attributes) is not dict:
        return None
    for value in attributes.values():
        if type(value) is dict or type(value) is list:
            return None
    return dict(attributes)


# --- otel-sdk: Go's stdouttrace ----------------------------------------------------------------

GO_STATUS: Final = {None: 0, "Unset": 0, "Ok": 1, "Error": 2}
GO_ZERO_SPAN_ID: Final = "0" * 16
# `_parsed_flags` of the texts Go writes (two lower-case hex digits), looked up per span.
TRACE_FLAGS: Final = {f"{flags:02x}": flags for flags in range(256)}


def go_span(
    obj: dict[str, Any], default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """A `tracetest.SpanStub` as stdouttrace writes it."""
    get = obj.get
    context, parent = get("SpanContext"), optional_object(get("Parent"))
    if type(context) is not dict or not context or parent is None:
        return False
    if context.get("TraceState") not in (None, "") or get("Links") not in (None, []):
        return False
    status = optional_object(get("Status"))
    scope = optional_object(get("InstrumentationScope") or get("InstrumentationLibrary"))
    resource, attributes = go_attributes(get("Resource")), go_attributes(get("Attributes"))
    events = _go_events(get("Events"))
    if status is None or scope is None or resource is None or attributes is None or not events:
        return False
    code, message = status.get("Code"), optional_text(status.get("Description"))
    status_code = GO_STATUS.get(code) if type(code) is str or code is None else None
    name, version = optional_text(scope.get("Name")), optional_text(scope.get("Version"))
    kind = get("SpanKind", 1)
    if status_code is None or message is None or name is None or version is None:
        return False
    if type(kind) is not int:
        return False
    service = pop_service(resource, default_service)
    parent_hex = parent.get("SpanID")
    return direct.span(
        out,
        make_key(service, resource, name, version),
        trace_hex=context.get("TraceID"),
        span_hex=context.get("SpanID"),
        parent_hex=parent_hex,
        name=get("Name"),
        kind=kind,
        start_ns=sdk_time(get("StartTime")),
        end_ns=sdk_time(get("EndTime")),
        attributes=attributes,
        events=events[0],
        status_code=status_code,
        status_message=message,
        flags=_go_flags(context, parent, parent_hex),
    )


def _go_flags(context: dict[str, Any], parent: dict[str, Any], parent_hex: object) -> int:
    """OTLP Span.flags as the general decoder makes them: W3C flags, and for a span with a
    parent, bit 8 (remoteness known) and bit 9 (remote)."""
    return go_span_flags(context.get("TraceFlags", "00"), parent_hex, parent.get("Remote") is True)


def go_span_flags(trace_flags_hex: object, parent_hex: object, remote: bool) -> int:
    """`_go_flags` from its parts: the context's TraceFlags (hex text), the parent's span ID
    and whether the parent context says Remote (the dict walk and the Structs share it)."""
    if type(trace_flags_hex) is not str:
        flags = 0
    else:
        known = TRACE_FLAGS.get(trace_flags_hex)
        flags = _parsed_flags(trace_flags_hex) if known is None else known
    has_parent = type(parent_hex) is str and parent_hex not in (GO_ZERO_SPAN_ID, "")
    if not has_parent:
        return flags
    return flags | 0x100 | (0x200 if remote else 0)


def _parsed_flags(trace_flags_hex: str) -> int:
    """What the general decoder makes of a TraceFlags text: hex (any that `int` reads), low
    eight bits, 0 when not hex."""
    try:
        return int(trace_flags_hex, 16) & 0xFF
    except ValueError:
        return 0


def _go_events(events: object) -> tuple[list[DirectEvent]] | None:
    """The events (in a 1-tuple, so that no events is not falsy), or None."""
    if events is None or events == []:
        return ([],)
    if type(events) is not list:
        return None
    out: list[DirectEvent] = []
    for event in events:
        if type(event) is not dict:
            return None
        attributes = go_attributes(event.get("Attributes"))
        if attributes is None:
            return None
        out.append((sdk_time(event.get("Time")), event.get("Name"), attributes))
    return (out,)


def go_attributes(items: object) -> Attributes | None:
    """stdouttrace's `[{"Key": k, "Value": {"Type": "STRING", "Value": v}}, ...]` of scalars."""
    if items is None or items == []:
        return {}
    if type(items) is not list:
        return None
    out: Attributes = {}
    for item in items:
        if type(item) is not dict:
            return None
        key, typed = item.get("Key"), item.get("Value")
        if type(key) is not str or type(typed) is not dict:
            return None
        kind, payload = typed.get("Type"), typed.get("Value")
        if (
            (kind == "STRING" and type(payload) is str)
            or (kind == "INT64" and type(payload) is int)
            or (kind == "BOOL" and type(payload) is bool)
        ):
            out[key] = payload
        elif kind == "FLOAT64" and (type(payload) is float or type(payload) is int):
            out[key] = float(payload)
        else:
            return None
    return out
