"""What a delivery attempt needs from a tracer (`agent.messages.tracing` is the real one).

The consumer asks for one span per attempt; the span's traceparent (the message's trace, this
span as parent) goes to the app, so the app's own span is a child of the delivery.
"""

from __future__ import annotations

from typing import Protocol

from agent.messages.subscribe.model import Entry


class AttemptSpan(Protocol):
    @property
    def traceparent(self) -> str | None: ...

    def end(self, outcome: str, status: int | None) -> None: ...


class DeliveryTracer(Protocol):
    def attempt(self, topic: str, entry: Entry) -> AttemptSpan: ...


class _Untraced:
    @property
    def traceparent(self) -> str | None:
        return None

    def end(self, outcome: str, status: int | None) -> None:
        pass


UNTRACED = _Untraced()


class _PassThrough:
    __slots__ = ("traceparent",)

    def __init__(self, traceparent: str | None) -> None:
        self.traceparent = traceparent

    def end(self, outcome: str, status: int | None) -> None:
        pass


class PassThroughTracer:
    """No spans of our own (the span pipeline is off): the publisher's traceparent goes on."""

    def attempt(self, topic: str, entry: Entry) -> AttemptSpan:
        return _PassThrough(entry.traceparent)
