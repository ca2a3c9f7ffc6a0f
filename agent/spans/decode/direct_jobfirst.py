"""JobFirst's direct path: an end line whose start line this file's assembler holds becomes
span bytes through the `DirectWriter`, without the `Span` the general path builds, checks and
encodes. The span's fields are the general path's (`JobFirstAssembler._end`), taken from the
same open span; what the writer declines (a nested attribute, an invalid time) and the rarer
cases (the start line read in another file or never, events waiting for the span's name) go
through `_end` unchanged, counted as fallbacks. tests/unit/spans/decode/test_direct.py holds
both paths to the same bytes.
"""

from __future__ import annotations

from agent.spans.decode.assemble import JobFirstAssembler, JobFirstLine
from agent.spans.decode.jobfirst_mapping import span_attributes, w3c_span_id, w3c_trace_id
from agent.spans.model import STATUS_ERROR, STATUS_UNSET
from agent.spans.types import DirectEvent, DirectItem, DirectWriter

_TRACE_CACHE_LIMIT = 4096


class TraceIds:
    """The W3C trace ID (as hex) of each JobFirst trace ID: a trace's spans end close together,
    so the blake2b is done once per trace, not once per span. Bounded: cleared when full."""

    def __init__(self) -> None:
        self._hex: dict[str, str] = {}

    def hex(self, trace: str) -> str:
        found = self._hex.get(trace)
        if found is None:
            if len(self._hex) >= _TRACE_CACHE_LIMIT:
                self._hex.clear()
            found = self._hex[trace] = w3c_trace_id(trace).hex()
        return found


def end_direct(
    assembler: JobFirstAssembler,
    line: JobFirstLine,
    traces: TraceIds,
    direct: DirectWriter,
    out: list[DirectItem],
) -> bool:
    """The span an end line finishes, written to `out`; False (nothing changed) to take the
    general path."""
    opened = assembler.open_to_end(line.trace, line.span, line.name)
    if opened is None:
        return False
    start = opened.start_ns
    end = max(start, line.time_ns) if line.duration_ns is None else start + line.duration_ns
    attributes, kind = span_attributes(
        line.trace, line.span, opened.name, opened.attributes, line.attributes
    )
    events: list[DirectEvent] = [
        (min(max(e.time_ns, start), end), e.name, e.attributes) for e in opened.events
    ]
    service = line.service or opened.service or assembler.default_service
    written = direct.span(
        out,
        direct.key_for(service),
        trace_hex=traces.hex(line.trace),
        span_hex=w3c_span_id(line.trace, line.span).hex(),
        parent_hex=None,
        name=opened.name,
        kind=kind,
        start_ns=start,
        end_ns=end,
        attributes=attributes,
        events=events,
        status_code=STATUS_ERROR if line.status else STATUS_UNSET,
        status_message=line.status_desc if line.status else "",
    )
    if written:
        assembler.take_open(line.trace, line.span)
    return written
