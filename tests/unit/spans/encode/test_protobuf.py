"""The wire encoder, read back with the official opentelemetry-proto classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.spans.encode.protobuf import (
    build_request,
    encode_span,
    framed_span_size,
    request_size,
)
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.encode.wire import varint, varint_size
from agent.spans.model import Span
from tests.unit.spans.strategies import expected_value, read_attributes, same, spans


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


@settings(max_examples=100, deadline=None)
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


@given(st.lists(spans(), min_size=1, max_size=3))
def test_request_decodes_field_by_field(batch: list[Span]) -> None:
    resources = Resources("default-svc", {"deployment.environment": "test", "host.id": 7})
    groups, expected = grouped(batch, encode_span)
    request = build_request(groups, resources)
    assert request_size(groups, resources) == len(request)
    assert_request_matches(ExportTraceServiceRequest.FromString(request), expected, resources)


@settings(max_examples=100, deadline=None)
@given(spans())
def test_group_size_adds_up_exactly(span: Span) -> None:
    resources = Resources("svc")
    body = encode_span(span)
    key = resource_key(span)
    for count in (1, 2, 5):
        request = build_request({key: [body] * count}, resources)
        assert resources.group_size(key, count * framed_span_size(len(body))) == len(request)


def test_service_name_precedence() -> None:
    span = Span(b"\x01" * 16, b"\x02" * 8, "op", 1, 2, resource={"team": "core"})
    for resources, expected in (
        (Resources(), "unknown_service"),
        (Resources(attributes={"service.name": "from-attrs"}), "from-attrs"),
        (Resources("from-env", {"service.name": "from-attrs"}), "from-env"),
    ):
        merged = resources.attributes_for(resource_key(span))
        assert merged["service.name"] == expected
        assert merged["team"] == "core"
    span.service_name = "from-record"
    assert Resources("from-env").attributes_for(resource_key(span))["service.name"] == "from-record"


def test_resource_key_tells_bool_from_int() -> None:
    a = Span(b"\x01" * 16, b"\x02" * 8, "op", 1, 2, resource={"flag": True})
    b = Span(b"\x01" * 16, b"\x02" * 8, "op", 1, 2, resource={"flag": 1})
    assert resource_key(a) != resource_key(b)
    assert Resources().attributes_for(resource_key(b))["flag"] is not True


def test_varint_matches_reference() -> None:
    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1):
        assert len(varint(value)) == varint_size(value)
    assert varint(300) == b"\xac\x02"
    assert varint(-1) == b"\xff" * 9 + b"\x01"


def test_empty_groups_make_an_empty_request() -> None:
    assert build_request({}, Resources()) == b""
    key = resource_key(Span(b"\x01" * 16, b"\x02" * 8, "op", 1, 2))
    assert build_request({key: []}, Resources()) == b""
