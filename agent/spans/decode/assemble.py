"""JobFirst span assembly: joins "Span started" / "event added" / "ended" lines into spans.

Pure state, no I/O; `agent.spans.decode.jobfirst` parses the lines and feeds
`JobFirstLine`s to `JobFirstAssembler.add` (its direct path calls the assembler's compiled
open-span table, `agent.spans.decode.jobfirst_open.OpenSpans`, itself).

- IDs: JobFirst's `trace_<nanos>` / `span_<nanos>` map to W3C IDs through blake2b of
  the original strings (16 / 8 bytes, never all zero), so a replay maps to the same
  IDs and Jaeger dedupes. The originals stay as `jobfirst.trace_id` / `jobfirst.span_id`.
- Times: start = the nanos in the span ID (it is generated at span start), else the
  nanos in the trace ID, else the line timestamp (a candidate more than a day away from
  the line's time is not a timestamp and is ignored). End = start + `duration`.
- Events carry no span ID: they join the most recently started open span with the same
  trace ID and span name. Event time = the line timestamp (whole seconds) clamped into
  [start, end].
- A span started in one file and ended in another (the log was rotated in between) is
  completed once, by the assembler that reads its end line, with what its start line said:
  the assemblers of one pipeline share an `OpenSpanExchange`, and an end line whose start
  this assembler has not seen takes the open span from whichever assembler holds it.
- An end line whose start was never seen anywhere still makes a span, with any events that
  were waiting for it. A start never ended is exported after the orphan
  timeout (judged on the caller's clock, so a fast backfill never times out) marked
  `sidecar.incomplete=true`, ending at its last seen activity, status unset; so is the
  oldest open span when more than `max_open_spans` are open. Events whose span never
  appears are dead letters (`orphan_event`) after the same timeout.
- Status 0 is UNSET, not OK: JobFirst's Gin middleware sets 0 on every non-error
  response, which is "nothing to report", and OTel reserves OK for an explicit "this
  succeeded" statement. Any other status is ERROR with `status_desc` as the message.
- Kind: SERVER for names like "GET /api/v1/jobs" (the Gin middleware's spans, which also
  get `http.method` and `http.route` — the concrete path, as logged), else INTERNAL.
- Extra fields on a line (logrus `level`, fields a later JobFirst may add) become span
  attributes (start line, then end line) or event attributes (event lines).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from agent.spans.decode.jobfirst_mapping import (
    span_attributes,
    start_time,
    w3c_span_id,
    w3c_trace_id,
)
from agent.spans.decode.jobfirst_open import EVENT, START, OpenSpan, OpenSpans
from agent.spans.model import (
    INCOMPLETE_ATTRIBUTE,
    STATUS_ERROR,
    STATUS_UNSET,
    Attributes,
    DeadLetter,
    DecodeResult,
    Span,
    SpanEvent,
)
from agent.spans.validate import check_span

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class JobFirstLine:
    """One tracing line, its fields pulled out and checked."""

    kind: str  # START, EVENT or END
    trace: str
    span: str  # "" on event lines, which carry no span_id
    name: str
    time_ns: int
    event_name: str = ""
    duration_ns: int | None = None
    status: int = 0
    status_desc: str = ""
    service: str | None = None
    attributes: Attributes = field(default_factory=dict)


class OpenSpanExchange:
    """The JobFirst assemblers of one pipeline (one per followed file), so that an end line can
    claim an open span whose start line another file's assembler read: the old file of a
    rotation holds the start, the new file reads the end. Without it the span would be exported
    twice, complete from its end line and later incomplete from the old file's orphan timeout."""

    def __init__(self) -> None:
        # Weak: an assembler leaves when its file's state is dropped.
        self._members: weakref.WeakSet[JobFirstAssembler] = weakref.WeakSet()
        self.handed_over = 0

    def join(self, assembler: JobFirstAssembler) -> None:
        self._members.add(assembler)

    def take(self, asker: JobFirstAssembler, trace: str, span: str) -> OpenSpan | None:
        """The open span (trace, span) removed from the assembler holding it, if another does."""
        for member in self._members:  # WeakSet iteration tolerates collection meanwhile
            if member is not asker:
                opened = member.take_open(trace, span)
                if opened is not None:
                    self.handed_over += 1
                    return opened
        return None


class JobFirstAssembler:
    """One file's assembly: the open-span table (`OpenSpans`, compiled, where the per-line
    work runs) and what is rarer, done here: an end line's span built the general way (its
    start read in another file, or never), incomplete spans, expiry, checkpoints."""

    def __init__(
        self,
        *,
        default_service: str | None,
        orphan_timeout_ns: int,
        max_open_spans: int = 10_000,
        max_waiting_events: int = 10_000,
        exchange: OpenSpanExchange | None = None,
    ) -> None:
        self.default_service = default_service
        self.orphan_timeout_ns = orphan_timeout_ns
        self.table = OpenSpans(max_open_spans, max_waiting_events)
        self._exchange = exchange
        if exchange is not None:
            exchange.join(self)

    @property
    def pending(self) -> int:
        return self.table.pending

    def add(self, line: JobFirstLine, raw: bytes, now_ns: int, into: DecodeResult) -> None:
        """Apply one line; raises BadRecord if it ends a span that is not valid."""
        if line.kind == START:
            evicted = self.table.start(
                line.trace, line.span, line.name, time_ns=line.time_ns, service=line.service,
                attributes=line.attributes, raw=raw, now_ns=now_ns,
            )  # fmt: skip
            if evicted is not None:
                self.close_evicted(evicted, into)
        elif line.kind == EVENT:
            self.table.event(
                line.trace, line.name, line.event_name, time_ns=line.time_ns,
                attributes=line.attributes, raw=raw, now_ns=now_ns, into=into,
            )  # fmt: skip
        else:
            into.spans.append(self._end(line))

    def close_evicted(self, opened: OpenSpan, into: DecodeResult) -> None:
        """The oldest open span, which `OpenSpans.start` took out to stay within its bound."""
        self._close_incomplete(opened, "evicted", into)
        into.evicted += 1

    def take_open(self, trace: str, span: str) -> OpenSpan | None:
        """Remove and return an open span, for another assembler that read its end line."""
        return self.table.take(trace, span)

    def _end(self, line: JobFirstLine) -> Span:
        opened = self.table.take(line.trace, line.span)
        if opened is None and self._exchange is not None:
            opened = self._exchange.take(self, line.trace, line.span)
        if opened is not None:
            opened.attributes.update(line.attributes)
            opened.service = line.service or opened.service
        else:  # the start line was never seen: the end line alone makes the span
            around = line.time_ns - (line.duration_ns or 0)
            start = start_time(line.span, line.trace, around)
            opened = OpenSpan(
                line.trace, line.span, line.name, start_ns=start, last_line_ns=line.time_ns,
                last_seen_ns=0, service=line.service, attributes=line.attributes, raw=b"",
                events=[],
            )  # fmt: skip
        # Events wait here only while no span of their name is open here: those of a span
        # started in another file, or never started at all.
        opened.events.extend(self.table.take_waiting(line.trace, line.name))
        start = opened.start_ns
        end = max(start, line.time_ns) if line.duration_ns is None else start + line.duration_ns
        span = self._span(opened, end)
        if line.status:
            span.status_code, span.status_message = STATUS_ERROR, line.status_desc
        return check_span(span)

    def _span(self, opened: OpenSpan, end: int) -> Span:
        trace, start = opened.trace, opened.start_ns
        attributes, kind = span_attributes(trace, opened.span, opened.name, opened.attributes)
        events = [
            SpanEvent(min(max(e.time_ns, start), end), e.name, e.attributes) for e in opened.events
        ]
        return Span(
            trace_id=w3c_trace_id(trace),
            span_id=w3c_span_id(trace, opened.span),
            name=opened.name,
            start_ns=start,
            end_ns=end,
            kind=kind,
            attributes=attributes,
            events=events,
            status_code=STATUS_UNSET,
            service_name=opened.service or self.default_service,
        )

    def _close_incomplete(self, opened: OpenSpan, reason: str, into: DecodeResult) -> None:
        """An open span, taken out of the table, exported as incomplete (or dead-lettered)."""
        span = self._span(opened, max(opened.start_ns, opened.last_line_ns))
        span.attributes[INCOMPLETE_ATTRIBUTE] = True
        span.attributes["sidecar.incomplete_reason"] = reason
        try:
            into.spans.append(check_span(span))
        except Exception as exc:  # an invalid start line must not stop expiry
            into.dead.append(
                DeadLetter(getattr(exc, "reason", "internal_error"), str(exc), opened.raw)
            )
            return
        into.incomplete += 1

    def expire(self, now_ns: int, into: DecodeResult) -> None:
        cutoff = now_ns - self.orphan_timeout_ns
        for opened in self.table.seen_before(cutoff):
            self.table.take(opened.trace, opened.span)
            self._close_incomplete(opened, "timeout", into)
        for (trace, name), waiting in self.table.take_waiting_before(cutoff):
            detail = f"no span {name!r} of trace {trace!r} was seen before the timeout"
            into.dead.extend(DeadLetter("orphan_event", detail, e.raw) for e in waiting.events)

    # --- checkpoint state ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        if not self.pending:
            return {}
        return {"v": SNAPSHOT_VERSION, **self.table.state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the state with a `snapshot()`; ValueError if it is not one."""
        self.table.clear()
        if not state:
            return
        if state.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown jobfirst decoder state version {state.get('v')!r}")
        try:
            self.table.load(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad jobfirst decoder state: {exc}") from exc
