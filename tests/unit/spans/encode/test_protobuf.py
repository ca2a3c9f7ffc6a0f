"""The wire encoder, read back with the official opentelemetry-proto classes."""

from __future__ import annotations

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
from tests.unit.spans.samples.requests import (
    assert_request_matches,
    grouped,
)
from tests.unit.spans.strategies import spans


@settings(max_examples=100, deadline=None)
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
