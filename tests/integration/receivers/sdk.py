"""Spans made by the real OpenTelemetry Python SDK, for sending through its own exporters."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def sdk_spans(service: str, traces: int = 1) -> Sequence[ReadableSpan]:
    """Per trace: a server span with a client child (attributes of every type, an event with
    attributes, a link to the previous trace's root, an error status)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "pod": "p-1"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("checkout-lib", "2.1.0")
    previous = None
    for index in range(traces):
        links = [Link(previous, {"link.why": "retry-of"})] if previous is not None else []
        with tracer.start_as_current_span(
            f"GET /orders/{index}", kind=SpanKind.SERVER, links=links
        ) as root:
            root.set_attributes(
                {
                    "http.method": "GET",
                    "http.status_code": 200,
                    "ratio": 0.25,
                    "cached": True,
                    "tags": ["a", "b"],
                    "seq": index,
                }
            )
            root.add_event("cache.miss", {"key": f"order:{index}", "attempt": 2})
            with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.system", "postgresql")
                child.set_status(Status(StatusCode.ERROR, "deadlock detected"))
            previous = root.get_span_context()
    provider.shutdown()
    return memory.get_finished_spans()
