"""The direct path of `otlp-json` records parsed into dicts (camelCase keys, attributes as
key/value lists; `direct_otlpstructs` reads a line's bytes through Structs), and what the
direct paths of the formats share (`direct_sdk` has otel-sdk's). Each pulls a parsed record's
fields out and hands them to `DirectWriter.span` (agent.spans.encode.direct), which checks
and writes them.

The rule: take only what the general decoder (`otlpjson`, `otelsdk`) would read the same way
and the writer can write — known keys in their usual spelling, scalar attribute values, no
links or trace state — and return False for anything else, appending nothing, so the line
takes the general path, which decodes it or says why not. A record whose keys are not all
known takes the general path too, so a spelling the general decoder reads (snake_case,
older names) is never read differently here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from agent.spans.encode.resources import SERVICE_NAME, make_key
from agent.spans.model import Attributes
from agent.spans.types import DirectEvent, DirectItem, ResourceKey

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

T = TypeVar("T")

# --- OTLP/JSON ---------------------------------------------------------------------------------

_OTLP_REQUEST_KEYS: Final = frozenset(("resourceSpans",))
_OTLP_RESOURCE_SPANS_KEYS: Final = frozenset(("resource", "scopeSpans", "schemaUrl"))
_OTLP_RESOURCE_KEYS: Final = frozenset(("attributes", "droppedAttributesCount"))
_OTLP_SCOPE_SPANS_KEYS: Final = frozenset(("scope", "spans", "schemaUrl"))
_OTLP_SCOPE_KEYS: Final = frozenset(("name", "version", "attributes", "droppedAttributesCount"))
_OTLP_SPAN_KEYS: Final = frozenset(
    (
        "traceId",
        "spanId",
        "parentSpanId",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "events",
        "status",
        "flags",
        "traceState",
        "links",
        "droppedAttributesCount",
        "droppedEventsCount",
        "droppedLinksCount",
    )
)
_OTLP_EVENT_KEYS: Final = frozenset(
    ("timeUnixNano", "name", "attributes", "droppedAttributesCount")
)
_OTLP_STATUS_KEYS: Final = frozenset(("code", "message"))


def otlp_request(
    obj: dict[str, Any], default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    """An ExportTraceServiceRequest or a bare ResourceSpans; every span, or none of them."""
    if obj.keys() <= _OTLP_REQUEST_KEYS:
        records = obj.get("resourceSpans")
        if type(records) is not list:
            return False
    elif type(obj.get("scopeSpans")) is list:
        records = [obj]
    else:
        return False
    return write_all(records, _otlp_resource_spans, default_service, direct, out)


def write_all(
    records: Iterable[T],
    write: Callable[[T, str | None, DirectWriter, list[DirectItem]], bool],
    default_service: str | None,
    direct: DirectWriter,
    out: list[DirectItem],
) -> bool:
    """Each of a line's records through `write`, all or none: when one declines, what the
    others appended (and sampled out) is taken back, so the general path reads the line whole."""
    mark, sampled_out = len(out), direct.sampled_out
    for record in records:
        if not write(record, default_service, direct, out):
            del out[mark:]
            direct.sampled_out = sampled_out  # the general path samples them again
            return False
    return True


def _otlp_resource_spans(
    record: object, default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    if type(record) is not dict or not record.keys() <= _OTLP_RESOURCE_SPANS_KEYS:
        return False
    resource = optional_object(record.get("resource"))
    if resource is None or not resource.keys() <= _OTLP_RESOURCE_KEYS:
        return False
    attributes = otlp_attributes(resource.get("attributes"))
    if attributes is None:
        return False
    service = pop_service(attributes, default_service)
    scope_spans_list = record.get("scopeSpans")
    if type(scope_spans_list) is not list:
        return scope_spans_list is None
    return all(
        _otlp_scope_spans(scope_spans, service, attributes, direct, out)
        for scope_spans in scope_spans_list
    )


def _otlp_scope_spans(
    scope_spans: object,
    service: str | None,
    resource: Attributes,
    direct: DirectWriter,
    out: list[DirectItem],
) -> bool:
    if type(scope_spans) is not dict or not scope_spans.keys() <= _OTLP_SCOPE_SPANS_KEYS:
        return False
    scope = optional_object(scope_spans.get("scope"))
    if scope is None or not scope.keys() <= _OTLP_SCOPE_KEYS:
        return False
    name, version = optional_text(scope.get("name")), optional_text(scope.get("version"))
    if name is None or version is None:
        return False
    key = make_key(service, resource, name, version)
    spans = scope_spans.get("spans")
    if spans is None:
        return True
    if type(spans) is not list:
        return False
    return all(_otlp_span(span, key, direct, out) for span in spans)


def _otlp_span(span: object, key: ResourceKey, direct: DirectWriter, out: list[DirectItem]) -> bool:
    if type(span) is not dict or not span.keys() <= _OTLP_SPAN_KEYS:
        return False
    get = span.get
    if get("links") not in (None, []) or get("traceState") not in (None, ""):
        return False
    kind, flags = get("kind"), get("flags")
    if type(kind) is not int or (flags is not None and type(flags) is not int):
        return False
    attributes = otlp_attributes(get("attributes"))
    events = _otlp_events(get("events"))
    status = _otlp_status(get("status"))
    if attributes is None or events is None or status is None:
        return False
    return direct.span(
        out,
        key,
        trace_hex=get("traceId"),
        span_hex=get("spanId"),
        parent_hex=get("parentSpanId"),
        name=get("name"),
        kind=kind,
        start_ns=json_uint(get("startTimeUnixNano")),
        end_ns=json_uint(get("endTimeUnixNano")),
        attributes=attributes,
        events=events,
        status_code=status[0],
        status_message=status[1],
        flags=flags,
    )


def json_uint(value: object) -> int | None:
    """A non-negative int64 as proto3 JSON writes it (a decimal string) or as a number."""
    if type(value) is str:
        return int(value) if value.isascii() and value.isdigit() else None
    return value if type(value) is int else None


def _otlp_events(events: object) -> list[DirectEvent] | None:
    if not events:
        return [] if events is None or events == [] else None
    if type(events) is not list:
        return None
    out: list[DirectEvent] = []
    for event in events:
        if type(event) is not dict or not event.keys() <= _OTLP_EVENT_KEYS:
            return None
        attributes = otlp_attributes(event.get("attributes"))
        if attributes is None:
            return None
        out.append((json_uint(event.get("timeUnixNano")), event.get("name"), attributes))
    return out


def _otlp_status(status: object) -> tuple[int, str] | None:
    if status is None:
        return 0, ""
    if type(status) is not dict or not status.keys() <= _OTLP_STATUS_KEYS:
        return None
    code, message = status.get("code", 0), optional_text(status.get("message"))
    if type(code) is not int or not 0 <= code <= 2 or message is None:
        return None
    return code, message


def optional_object(value: object) -> dict[str, Any] | None:
    """An optional object: {} when absent, None (take the general path) when not an object."""
    if value is None:
        return {}
    return value if type(value) is dict else None


def optional_text(value: object) -> str | None:
    """An optional string: "" when absent, None (take the general path) when not a string."""
    if value is None:
        return ""
    return value if type(value) is str else None


def otlp_attributes(items: object) -> Attributes | None:
    """OTLP/JSON `[{"key": k, "value": {"stringValue": v}}, ...]` as a dict of scalars."""
    if not items:
        return {} if items is None or items == [] else None
    if type(items) is not list:
        return None
    out: Attributes = {}
    for item in items:
        if type(item) is not dict or len(item) != 2:
            return None
        key, value = item.get("key"), item.get("value")
        if type(key) is not str or type(value) is not dict or len(value) != 1:
            return None
        ((kind, payload),) = value.items()
        if kind == "stringValue" and type(payload) is str:
            out[key] = payload
        elif kind == "intValue":
            number = json_int(payload)
            if number is None:
                return None
            out[key] = number
        elif kind == "boolValue" and type(payload) is bool:
            out[key] = payload
        elif kind == "doubleValue" and (type(payload) is float or type(payload) is int):
            out[key] = float(payload)
        else:
            return None
    return out


def json_int(value: object) -> int | None:
    """An int64 as proto3 JSON writes it (a decimal string, maybe signed) or as a number."""
    if type(value) is int:
        return value
    if type(value) is str and value.isascii():
        digits = value[1:] if value[:1] == "-" else value
        if digits.isdigit():
            return int(value)
    return None


def pop_service(attributes: Attributes, default_service: str | None) -> str | None:
    named = attributes.pop(SERVICE_NAME, None)
    return named if type(named) is str and named else default_service
