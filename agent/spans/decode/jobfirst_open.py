"""What the JobFirst assembler (`agent.spans.decode.assemble`) keeps between lines: open spans,
the events of each, events waiting for a span, and their rows in a checkpoint snapshot.

`OpenSpans` is that table with the bookkeeping of every start and event line and of the end
line's lookups. It is a module of its own so that it is compiled (agent/native/build.py):
the assembler, which an `OpenSpanExchange` holds weakly, cannot be, and the per-line work
would otherwise run as Python. The assembler keeps what is rare (an end line's span built
the general way, expiry, eviction's incomplete span) and delegates the rest here.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from agent.spans.decode.jobfirst_mapping import start_time
from agent.spans.model import Attributes, DeadLetter, DecodeResult

# A line's kind (`JobFirstLine.kind`): Final, so compiled modules compare them as constants.
START: Final = "start"
EVENT: Final = "event"
END: Final = "end"
MAX_EVENTS_PER_SPAN: Final = 1000


class OpenEvent:
    """An event line kept with its span (or waiting for it)."""

    __slots__ = ("attributes", "name", "raw", "time_ns")

    def __init__(self, name: str, time_ns: int, attributes: Attributes, raw: bytes) -> None:
        self.name = name
        self.time_ns = time_ns
        self.attributes = attributes
        self.raw = raw  # the line, to dead-letter an event whose span never shows up


class OpenSpan:
    """A span whose start line has been read and whose end line has not."""

    __slots__ = (
        "attributes", "events", "last_line_ns", "last_seen_ns", "name", "raw", "service", "span",
        "start_ns", "trace",
    )  # fmt: skip

    def __init__(
        self,
        trace: str,
        span: str,
        name: str,
        *,
        start_ns: int,
        last_line_ns: int,
        last_seen_ns: int,
        service: str | None,
        attributes: Attributes,
        raw: bytes,
        events: list[OpenEvent],
    ) -> None:
        self.trace = trace
        self.span = span
        self.name = name
        self.start_ns = start_ns
        self.last_line_ns = last_line_ns  # latest line timestamp: the end of a span never ended
        self.last_seen_ns = last_seen_ns  # the caller's clock at the latest line: the timeout
        self.service = service
        self.attributes = attributes
        self.raw = raw  # the start line, to dead-letter a span that is not valid
        self.events = events


class Waiting:
    """Events whose span is not open: kept for an end line that may still come."""

    __slots__ = ("events", "last_seen_ns")

    def __init__(self, last_seen_ns: int, events: list[OpenEvent]) -> None:
        self.last_seen_ns = last_seen_ns
        self.events = events


class OpenSpans:
    """One file's open spans, by (trace, span ID) in the order they started, and the events
    waiting for a span that is not open, by (trace, span name). Bounded: `start` answers the
    oldest open span once more than `max_open_spans` are open, and `event` dead-letters an
    event once `max_waiting_events` wait."""

    def __init__(self, max_open_spans: int, max_waiting_events: int) -> None:
        self.max_open_spans = max_open_spans
        self.max_waiting_events = max_waiting_events
        self.open: dict[tuple[str, str], OpenSpan] = {}
        # (trace, span name) -> span IDs open under that name, oldest first.
        self.by_name: dict[tuple[str, str], list[str]] = {}
        self.waiting: dict[tuple[str, str], Waiting] = {}
        self.waiting_count = 0

    @property
    def pending(self) -> int:
        return len(self.open) + self.waiting_count

    def start(
        self,
        trace: str,
        span: str,
        name: str,
        *,
        time_ns: int,
        service: str | None,
        attributes: Attributes,  # a fresh dict per line: kept, not copied
        raw: bytes,
        now_ns: int,
    ) -> OpenSpan | None:
        """Open the span of a start line; the oldest open span, taken out, when that makes one
        too many (the caller closes it as incomplete), else None."""
        opened = self.open
        key = (trace, span)
        if key in opened:  # a repeated start line: the newer one wins
            self.forget(opened.pop(key))
        events = self.take_waiting(trace, name) if self.waiting else []
        start = start_time(span, trace, time_ns)
        opened[key] = OpenSpan(
            trace, span, name, start_ns=start, last_line_ns=time_ns, last_seen_ns=now_ns,
            service=service, attributes=attributes, raw=raw, events=events,
        )  # fmt: skip
        by_name = (trace, name)
        spans = self.by_name.get(by_name)
        if spans is None:
            self.by_name[by_name] = [span]
        else:
            spans.append(span)
        if len(opened) > self.max_open_spans:
            oldest = next(iter(opened.values()))
            return self.take(oldest.trace, oldest.span)
        return None

    def event(
        self,
        trace: str,
        name: str,
        event_name: str,
        *,
        time_ns: int,
        attributes: Attributes,
        raw: bytes,
        now_ns: int,
        into: DecodeResult,
    ) -> None:
        """Join an event line to the latest open span of its trace and name, or keep it
        waiting for one; a dead letter in `into` when the span or the waiting room is full."""
        spans = self.by_name.get((trace, name))
        if spans:
            opened = self.open[(trace, spans[-1])]
            if len(opened.events) >= MAX_EVENTS_PER_SPAN:
                detail = f"span already has {MAX_EVENTS_PER_SPAN} events"
                into.dead.append(DeadLetter("too_many_events", detail, raw))
                return
            opened.events.append(OpenEvent(event_name, time_ns, attributes, raw))
            opened.last_line_ns = max(opened.last_line_ns, time_ns)
            opened.last_seen_ns = now_ns
            return
        if self.waiting_count >= self.max_waiting_events:
            detail = f"{self.waiting_count} events already wait for spans never started"
            into.dead.append(DeadLetter("orphan_event", detail, raw))
            return
        waiting = self.waiting.get((trace, name))
        if waiting is None:
            waiting = self.waiting[(trace, name)] = Waiting(now_ns, [])
        waiting.last_seen_ns = now_ns
        waiting.events.append(OpenEvent(event_name, time_ns, attributes, raw))
        self.waiting_count += 1

    def take(self, trace: str, span: str) -> OpenSpan | None:
        """Remove and return an open span (its end line is read, or it is closed)."""
        opened = self.open.pop((trace, span), None)
        if opened is not None:
            self.forget(opened)
        return opened

    def close(self, opened: OpenSpan) -> None:
        """Remove an open span `to_end` answered (its end line is written)."""
        del self.open[(opened.trace, opened.span)]
        self.forget(opened)

    def to_end(self, trace: str, span: str, name: str) -> OpenSpan | None:
        """The open span an end line closes, when this table alone holds all of it (no events
        of its name waiting): what the direct path writes. Nothing changes until `close`."""
        if self.waiting and (trace, name) in self.waiting:
            return None
        return self.open.get((trace, span))

    def take_waiting(self, trace: str, name: str) -> list[OpenEvent]:
        """The events waiting for a span of this trace and name, no longer waiting."""
        waiting = self.waiting.pop((trace, name), None)
        if waiting is None:
            return []
        self.waiting_count -= len(waiting.events)
        return waiting.events

    def forget(self, opened: OpenSpan) -> None:
        key = (opened.trace, opened.name)
        spans = self.by_name.get(key)
        if spans is not None:
            spans.remove(opened.span)
            if not spans:
                del self.by_name[key]

    def seen_before(self, cutoff_ns: int) -> list[OpenSpan]:
        """The open spans whose latest line came at `cutoff_ns` or before (still open)."""
        return [o for o in self.open.values() if o.last_seen_ns <= cutoff_ns]

    def take_waiting_before(self, cutoff_ns: int) -> list[tuple[tuple[str, str], Waiting]]:
        """The waiting events whose latest line came at `cutoff_ns` or before, taken out."""
        taken = [(key, w) for key, w in self.waiting.items() if w.last_seen_ns <= cutoff_ns]
        for key, waiting in taken:
            del self.waiting[key]
            self.waiting_count -= len(waiting.events)
        return taken

    # --- checkpoint state ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The table as snapshot rows (`open_state`, and [trace, name, last seen, events])."""
        return {
            "open": [open_state(o) for o in self.open.values()],
            "waiting": [
                [trace, name, w.last_seen_ns, [event_state(e) for e in w.events]]
                for (trace, name), w in self.waiting.items()
            ],
        }

    def clear(self) -> None:
        self.open, self.by_name, self.waiting, self.waiting_count = {}, {}, {}, 0

    def load(self, state: dict[str, Any]) -> None:
        """Add the rows of a `state()`; KeyError, TypeError or ValueError if it is not one."""
        for row in state["open"]:
            opened = open_from_state(row)
            self.open[(opened.trace, opened.span)] = opened
            self.by_name.setdefault((opened.trace, opened.name), []).append(opened.span)
        for trace, name, last_seen, events in state["waiting"]:
            self.waiting[(checked(str, trace), checked(str, name))] = Waiting(
                checked(int, last_seen), [event_from_state(e) for e in checked(list, events)]
            )
            self.waiting_count += len(events)


# Snapshot rows hold the raw lines as text, as version 1 always has (lines read as JSON are
# UTF-8); `_raw_line` turns them back into bytes. Reading a row checks the type of each
# field, so a checkpoint that is not a snapshot is refused, not kept to fail later.

T = TypeVar("T")


def checked(kind: type[T], value: object) -> T:
    """`value` if it is exactly a `kind` (no bool for an int); TypeError if not."""
    if type(value) is not kind:
        raise TypeError(f"{kind.__name__} expected, got {type(value).__name__}")
    return value


def event_state(event: OpenEvent) -> list[Any]:
    return [event.name, event.time_ns, event.attributes, event.raw.decode()]


def event_from_state(row: list[Any]) -> OpenEvent:
    name, time_ns, attributes, raw = row
    return OpenEvent(
        checked(str, name), checked(int, time_ns), checked(dict, attributes), _raw_line(raw)
    )


def _raw_line(text: object) -> bytes:
    return checked(str, text).encode()


def open_state(opened: OpenSpan) -> list[Any]:
    """An open span as a snapshot row: its fields in `OpenSpan`'s order, events as lists."""
    return [
        opened.trace,
        opened.span,
        opened.name,
        opened.start_ns,
        opened.last_line_ns,
        opened.last_seen_ns,
        opened.service,
        opened.attributes,
        opened.raw.decode(),
        [event_state(e) for e in opened.events],
    ]


def open_from_state(row: list[Any]) -> OpenSpan:
    """The inverse of `open_state`; TypeError or ValueError for a row that is not one."""
    trace, span, name, start_ns, last_line_ns, last_seen_ns, service, attributes, raw, events = row
    return OpenSpan(
        checked(str, trace),
        checked(str, span),
        checked(str, name),
        start_ns=checked(int, start_ns),
        last_line_ns=checked(int, last_line_ns),
        last_seen_ns=checked(int, last_seen_ns),
        service=None if service is None else checked(str, service),
        attributes=checked(dict, attributes),
        raw=_raw_line(raw),
        events=[event_from_state(e) for e in checked(list, events)],
    )
