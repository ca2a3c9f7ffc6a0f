"""Trace context across the queue (W3C traceparent), and the spans the agent makes for it.

A publish that carries `traceparent` (the HTTP header, or a message header of its own) gets a
PRODUCER span, child of the publisher's span; the message keeps `traceparent` pointing at that
producer span. Each delivery attempt gets a CONSUMER span, child of the producer span, and the
app receives `traceparent` pointing at the consumer span. Jaeger then shows one trace:
publishing app → publish → delivery → receiving app. Untraced messages cost nothing here.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from agent.messages.codec import Envelope
from agent.messages.subscribe.model import TRACEPARENT, Entry
from agent.messages.subscribe.tracing import UNTRACED, AttemptSpan, PassThroughTracer
from agent.spans.model import KIND_CONSUMER, KIND_PRODUCER, STATUS_ERROR, STATUS_OK, Span

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SERVICE = "sidecar-agent"

Emit = Callable[[Span], None]


class TraceParent(NamedTuple):
    trace_id: bytes
    span_id: bytes
    flags: int

    @classmethod
    def parse(cls, text: str | None) -> TraceParent | None:
        """None for absent or malformed values and all-zero ids (the W3C rules)."""
        found = _TRACEPARENT.match(text.strip().lower()) if text else None
        if found is None:
            return None
        trace_id, span_id = bytes.fromhex(found.group(1)), bytes.fromhex(found.group(2))
        if not any(trace_id) or not any(span_id):
            return None
        return cls(trace_id, span_id, int(found.group(3), 16))

    def child(self) -> TraceParent:
        return TraceParent(self.trace_id, os.urandom(8), self.flags)

    def __str__(self) -> str:
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{self.flags:02x}"


class PendingSpan:
    """A span begun now, emitted by `end`."""

    __slots__ = ("_emit", "_parent", "context", "span")

    def __init__(self, emit: Emit, parent: TraceParent, name: str, kind: int) -> None:
        self._emit = emit
        self._parent = parent
        self.context = parent.child()
        self.span = Span(
            trace_id=parent.trace_id,
            span_id=self.context.span_id,
            parent_span_id=parent.span_id,
            name=name,
            start_ns=time.time_ns(),
            end_ns=0,
            kind=kind,
            service_name=SERVICE,
            flags=parent.flags,
        )

    @property
    def traceparent(self) -> str:
        return str(self.context)

    def end(self, outcome: str, status: int | None) -> None:
        span = self.span
        span.end_ns = max(time.time_ns(), span.start_ns)
        span.attributes["messaging.outcome"] = outcome
        if status is not None:
            span.attributes["http.response.status_code"] = status
        failed = outcome not in ("handled", "dropped", "accepted")
        span.status_code = STATUS_ERROR if failed else STATUS_OK
        self._emit(span)


class MessageTracer:
    """`emit` None: no spans of our own (the span pipeline is off), but the context still
    travels: the publisher's traceparent is kept in the message and sent on to the app."""

    def __init__(self, emit: Emit | None) -> None:
        self._emit = emit

    @staticmethod
    def may_trace(envelopes: list[Envelope], request_traceparent: str | None) -> bool:
        """Whether `publishing` may have anything to do: the request or an entry names a
        parent. False for nearly every publish, which then skips the tracing path."""
        if request_traceparent is not None:
            return True
        return any(e[2] and TRACEPARENT in e[2] for e in envelopes)

    def publishing(
        self, topic: str, envelopes: list[Envelope], request_traceparent: str | None
    ) -> tuple[list[Envelope], list[tuple[int, PendingSpan]]]:
        """Producer spans (with the envelope's index) for the traced envelopes, whose
        traceparent header now names their span."""
        from_request = TraceParent.parse(request_traceparent)
        if from_request is None and not any(e[2] and TRACEPARENT in e[2] for e in envelopes):
            return envelopes, []  # the common case, at the cost of one look per message
        spans: list[tuple[int, PendingSpan]] = []
        traced: list[Envelope] = []
        for index, envelope in enumerate(envelopes):
            given_id, data, headers, metadata = envelope
            parent = TraceParent.parse(headers.get(TRACEPARENT)) if headers else None
            parent = parent or from_request
            if parent is None:
                traced.append(envelope)
                continue
            if self._emit is None:
                traced.append(
                    (given_id, data, {**(headers or {}), TRACEPARENT: str(parent)}, metadata)
                )
                continue
            pending = PendingSpan(self._emit, parent, f"{topic} publish", KIND_PRODUCER)
            _messaging(pending.span, topic, "publish")
            spans.append((index, pending))
            headers = {**(headers or {}), TRACEPARENT: pending.traceparent}
            traced.append((given_id, data, headers, metadata))
        return traced, spans

    @staticmethod
    def published(
        spans: Sequence[tuple[int, PendingSpan]], ids: Sequence[str], outcome: str
    ) -> None:
        for index, pending in spans:
            if index < len(ids):
                pending.span.attributes["messaging.message.id"] = ids[index]
            pending.end(outcome, None)

    def attempt(self, topic: str, entry: Entry) -> AttemptSpan:
        parent = TraceParent.parse(entry.traceparent)
        if parent is None:
            return UNTRACED
        if self._emit is None:
            return PassThroughTracer().attempt(topic, entry)
        pending = PendingSpan(self._emit, parent, f"{topic} process", KIND_CONSUMER)
        _messaging(pending.span, topic, "process")
        pending.span.attributes["messaging.message.id"] = entry.message_id
        pending.span.attributes["messaging.delivery.attempt"] = entry.attempt
        return pending


def _messaging(span: Span, topic: str, operation: str) -> None:
    span.attributes.update(
        {
            "messaging.system": "redis",
            "messaging.destination.name": topic,
            "messaging.operation.type": operation,
        }
    )
