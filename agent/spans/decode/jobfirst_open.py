"""What the JobFirst assembler (`agent.spans.decode.assemble`) keeps between lines: open spans,
the events of each, events waiting for a span, and their rows in a checkpoint snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.spans.model import Attributes


@dataclass(slots=True)
class OpenEvent:
    """An event line kept with its span (or waiting for it)."""

    name: str
    time_ns: int
    attributes: Attributes
    raw: bytes  # the line, to dead-letter an event whose span never shows up


@dataclass(slots=True)
class OpenSpan:
    """A span whose start line has been read and whose end line has not."""

    trace: str
    span: str
    name: str
    start_ns: int
    last_line_ns: int  # latest line timestamp: the end of a span that never ends
    last_seen_ns: int  # the caller's clock at the latest line: drives the timeout
    service: str | None
    attributes: Attributes
    raw: bytes  # the start line, to dead-letter a span that is not valid
    events: list[OpenEvent] = field(default_factory=list)


@dataclass(slots=True)
class Waiting:
    """Events whose span is not open: kept for an end line that may still come."""

    last_seen_ns: int
    events: list[OpenEvent] = field(default_factory=list)


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
        checked(int, start_ns),
        checked(int, last_line_ns),
        checked(int, last_seen_ns),
        None if service is None else checked(str, service),
        checked(dict, attributes),
        _raw_line(raw),
        [event_from_state(e) for e in checked(list, events)],
    )
