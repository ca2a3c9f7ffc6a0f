"""JobFirst's direct path: an end line whose start line this file's assembler holds becomes
span bytes through the `DirectWriter`, without the `Span` the general path builds, checks and
encodes. The span's fields are the general path's (`JobFirstAssembler._end`), taken from the
same open span; what the writer declines (a nested attribute, an invalid time) and the rarer
cases (the start line read in another file or never, events waiting for the span's name) go
through `_end` unchanged, counted as fallbacks. tests/unit/spans/decode/test_direct.py holds
both paths to the same bytes.

The attributes are written in `span_attributes`' order without its dict: the two ID
attributes (unique per span, so written uncached), the lines' fields through a `KeyedPairs`
(looked up by key, then value), then `http.method` / `http.route`, encoded once per span name.
A line field that would take one of those four places takes the dict instead. The events are
written in the same loop, their attributes through a `KeyedPairs` too; the span's fields
after its times are joined once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from agent.spans.decode.jobfirst_mapping import (
    SPAN_ID_KEY,
    TRACE_ID_KEY,
    http_parts,
    span_attributes,
    w3c_span_id,
    w3c_trace_id,
)
from agent.spans.decode.jobfirst_open import OpenSpans
from agent.spans.decode.lookups import KeyedPairs, Remembered
from agent.spans.encode.direct import event_bytes
from agent.spans.encode.protobuf import ATTRIBUTES, EVENT_ATTRIBUTES, status_field
from agent.spans.encode.wire import pair_prefix, prefixed_pair_field, scalar_pair_encoder
from agent.spans.model import KIND_INTERNAL, KIND_SERVER, STATUS_ERROR, Attributes
from agent.spans.types import DirectItem

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

# An end line's fields, as `JobFirstLine` holds them: trace, span, name, time, duration, status,
# status description, service, attributes.
EndFields = tuple[str, str, str, int, int | None, int, str, str | None, Attributes]
_CACHE_LIMIT: Final = 4096
_encode_attributes: Final = scalar_pair_encoder(ATTRIBUTES)
_SPAN_PAIRS: Final = KeyedPairs(ATTRIBUTES)
_EVENT_PAIRS: Final = KeyedPairs(EVENT_ATTRIBUTES)
# The two ID attributes are unique per span: written from their keys' prefixes, never cached.
_TRACE_ID_PREFIX: Final = pair_prefix(TRACE_ID_KEY)
_SPAN_ID_PREFIX: Final = pair_prefix(SPAN_ID_KEY)
# Line fields that would change the order `span_attributes` writes in: the dict's.
_PLACED: Final = frozenset((TRACE_ID_KEY, SPAN_ID_KEY, "http.method", "http.route"))
_NAME_FIELDS: Final = Remembered[str, tuple[int, bytes]](
    _CACHE_LIMIT
)  # name -> kind, http.* fields


class TraceIds:
    """The W3C trace ID of each JobFirst trace ID: a trace's spans end close together, so the
    blake2b is done once per trace, not once per span. Bounded: cleared when full."""

    def __init__(self) -> None:
        self._ids: dict[str, bytes] = {}

    def get(self, trace: str) -> bytes:
        found = self._ids.get(trace)
        if found is None:
            if len(self._ids) >= _CACHE_LIMIT:
                self._ids.clear()
            found = self._ids[trace] = w3c_trace_id(trace)
        return found


def end_direct(
    table: OpenSpans,
    traces: TraceIds,
    direct: DirectWriter,
    out: list[DirectItem],
    end_line: EndFields,
    *,
    default_service: str | None,
) -> bool:
    """The span an end line finishes, written to `out`; False (nothing changed) to take the
    general path."""
    trace, span, name, time_ns, duration_ns, status, status_desc, service, attributes = end_line
    opened = table.to_end(trace, span, name)
    if opened is None or type(opened.name) is not str or not opened.name:
        return False  # (a name that is not a string comes from a doctored checkpoint only)
    name, start = opened.name, opened.start_ns  # the start line's name names the span
    end = max(start, time_ns) if duration_ns is None else start + duration_ns
    fields = opened.attributes
    if attributes:
        fields = {**fields, **attributes}
    if _PLACED.isdisjoint(fields):
        kind, http = _name_fields(name)
        encoded = _SPAN_PAIRS.fields(fields)
        if encoded is None:
            return False
        parts = [
            prefixed_pair_field(ATTRIBUTES, _TRACE_ID_PREFIX, trace),
            prefixed_pair_field(ATTRIBUTES, _SPAN_ID_PREFIX, span),
            encoded,
            http,
        ]
    else:
        merged, kind = span_attributes(trace, span, name, opened.attributes, attributes)
        encoded = _encode_attributes(merged)
        if encoded is None:
            return False
        parts = [encoded]
    for event in opened.events:  # as `event_fields` writes them, time clamped into the span
        at = min(max(event.time_ns, start), end)
        pairs = _EVENT_PAIRS.fields(event.attributes) if event.attributes else b""
        encoded_event = None if pairs is None else event_bytes(at, event.name, pairs)
        if encoded_event is None:
            return False
        parts.append(encoded_event)
    if status:
        parts.append(status_field(STATUS_ERROR, status_desc))
    written = direct.span_of_ids(
        out,
        direct.key_for(service or opened.service or default_service),
        trace_id=traces.get(trace),
        span_id=w3c_span_id(trace, span),
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=end,
        tail=b"".join(parts),
    )
    if written:
        table.close(opened)
    return written


def _name_fields(name: str) -> tuple[int, bytes]:
    """A span name's kind and its `http.*` attribute fields (b"" for names not "GET /path"),
    looked up: a service's span names repeat. Bounded: cleared when full."""
    found = _NAME_FIELDS.get(name)
    if found is None:
        http = http_parts(name)
        if http is None:
            found = (KIND_INTERNAL, b"")
        else:
            fields = _encode_attributes({"http.method": http[0], "http.route": http[1]})
            found = (KIND_SERVER, fields or b"")
        _NAME_FIELDS.remember(name, found)
    return found
