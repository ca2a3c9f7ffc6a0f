"""What the JobFirst assembler (`agent.spans.decode.assemble`) keeps between lines: open spans,
the events of each, events waiting for a span, and their rows in a checkpoint snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
# UTF-8); `_raw_line` turns them back into bytes.


def event_state(event: OpenEvent) -> list[Any]:
    return [event.name, event.time_ns, event.attributes, event.raw.decode()]


def event_from_state(row: list[Any]) -> OpenEvent:
    name, time_ns, attributes, raw = row
    return OpenEvent(name, time_ns, attributes, _raw_line(raw))


def _raw_line(text: object) -> bytes:
    if type(text) is not str:
        raise TypeError(f"a raw line must be text, got {type(text).__name__}")
    return text.encode()


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
    opened = OpenSpan(*row)  # its raw line still text and its events still lists, as in the row
    opened.raw = _raw_line(opened.raw)
    opened.events = [event_from_state(e) for e in row[-1]]
    return opened
