"""The OTLP/JSON encoder, read back with protobuf's json_format."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.spans.encode.protojson import build_request_json, encode_span_json, request_size_json
from agent.spans.encode.resources import Resources
from agent.spans.model import Span
from tests.unit.spans.samples.requests import assert_request_matches, grouped
from tests.unit.spans.strategies import spans

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes IDs as hex; protobuf's generic JSON parser wants base64."""
    if isinstance(node, list):
        return [hex_ids_to_base64(item) for item in node]
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in _ID_KEYS
            else hex_ids_to_base64(v)
            for k, v in node.items()
        }
    return node


def parse(request: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    json_format.Parse(orjson.dumps(hex_ids_to_base64(orjson.loads(request))), message)
    return message


@settings(max_examples=100, deadline=None)
@given(st.lists(spans(), min_size=1, max_size=3))
def test_json_request_parses_field_by_field(batch: list[Span]) -> None:
    resources = Resources("default-svc", {"deployment.environment": "test"})
    groups, expected = grouped(batch, encode_span_json)
    request = build_request_json(groups, resources)
    assert request_size_json(groups, resources) == len(request)
    assert_request_matches(parse(request), expected, resources)


def test_json_ids_are_hex_and_ints_are_strings() -> None:
    span = Span(b"\xab" * 16, b"\xcd" * 8, "op", 5, 9, attributes={"n": 2**40, "big": 2**64})
    obj = orjson.loads(encode_span_json(span))
    assert obj["traceId"] == "ab" * 16
    assert obj["spanId"] == "cd" * 8
    assert obj["startTimeUnixNano"] == "5"
    assert obj["attributes"][0] == {"key": "n", "value": {"intValue": str(2**40)}}
    assert obj["attributes"][1] == {"key": "big", "value": {"stringValue": str(2**64)}}
