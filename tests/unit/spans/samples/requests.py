"""Checks that a decoded OTLP request holds the spans it was built from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.spans.encode.resources import Resources, resource_key
from agent.spans.model import Span
from tests.unit.spans.strategies import expected_value, read_attributes, same


def assert_span_matches(got: Any, span: Span) -> None:
    assert got.trace_id == span.trace_id
    assert got.span_id == span.span_id
    assert got.parent_span_id == span.parent_span_id
    assert got.trace_state == span.trace_state
    assert got.name == span.name
    assert got.kind == span.kind
    assert got.start_time_unix_nano == span.start_ns
    assert got.end_time_unix_nano == span.end_ns
    assert same(read_attributes(got.attributes), expected_value(span.attributes))
    assert len(got.events) == len(span.events)
    for got_event, event in zip(got.events, span.events, strict=True):
        assert got_event.time_unix_nano == event.time_ns
        assert got_event.name == event.name
        assert same(read_attributes(got_event.attributes), expected_value(event.attributes))
    assert len(got.links) == len(span.links)
    for got_link, link in zip(got.links, span.links, strict=True):
        assert (got_link.trace_id, got_link.span_id) == (link.trace_id, link.span_id)
        assert got_link.trace_state == link.trace_state
        assert got_link.flags == (link.flags or 0)
        assert same(read_attributes(got_link.attributes), expected_value(link.attributes))
    assert got.status.code == span.status_code
    assert got.status.message == span.status_message
    assert got.flags == (span.flags or 0)


def expected_resource(span: Span, resources: Resources) -> dict[str, Any]:
    merged = dict(resources.base)
    merged.update(span.resource)
    if span.service_name:
        merged["service.name"] = span.service_name
    return expected_value(merged)  # type: ignore[no-any-return]


def grouped(
    batch: list[Span], encode: Callable[[Span], bytes]
) -> tuple[dict[Any, list[bytes]], list[Span]]:
    """`batch` as a request holds it: span bodies (by `encode`) grouped by resource, and the
    spans in the order the request lists them."""
    groups: dict[Any, list[bytes]] = {}
    in_request_order: dict[Any, list[Span]] = {}
    for span in batch:
        groups.setdefault(resource_key(span), []).append(encode(span))
        in_request_order.setdefault(resource_key(span), []).append(span)
    return groups, [span for group in in_request_order.values() for span in group]


def assert_request_matches(
    decoded: ExportTraceServiceRequest, expected: list[Span], resources: Resources
) -> None:
    """Span for span, with its resource and its scope (one scope per resource)."""
    got_spans = []
    for resource_spans in decoded.resource_spans:
        got_resource = read_attributes(resource_spans.resource.attributes)
        (scope_spans,) = resource_spans.scope_spans
        for got in scope_spans.spans:
            got_spans.append((got, got_resource, scope_spans.scope))
    assert len(got_spans) == len(expected)
    for (got, got_resource, scope), span in zip(got_spans, expected, strict=True):
        assert_span_matches(got, span)
        assert same(got_resource, expected_resource(span, resources))
        assert (scope.name, scope.version) == (span.scope_name, span.scope_version)
