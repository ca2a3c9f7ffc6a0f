"""Trace context across the queue: what a delivery attempt needs from a tracer.

The consumer asks the tracer for one consumer span per attempt; the span's traceparent (the
message's trace, this span as parent) goes to the app, so the app's own span is a child of the
delivery and the trace reads publisher → publish → delivery → app.
"""

from __future__ import annotations

from typing import Protocol

from agent.messages.subscribe.model import Entry


class AttemptSpan(Protocol):
    traceparent: str | None

    def end(self, outcome: str, status: int | None) -> None: ...


class DeliveryTracer(Protocol):
    def attempt(self, topic: str, entry: Entry) -> AttemptSpan: ...


class _Untraced:
    __slots__ = ("traceparent",)

    def __init__(self, traceparent: str | None) -> None:
        self.traceparent = traceparent

    def end(self, outcome: str, status: int | None) -> None:
        pass


class PassThroughTracer:
    """No spans of our own: the publisher's traceparent goes on unchanged."""

    def attempt(self, topic: str, entry: Entry) -> AttemptSpan:
        return _Untraced(entry.traceparent)
