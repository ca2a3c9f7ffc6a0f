from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.spans.decode.registry import make_decoder
from agent.spans.encode.protojson import build_request_json, encode_span_json
from agent.spans.encode.resources import Resources
from agent.spans.model import KIND_CLIENT, STATUS_ERROR, DecodeResult, Span
from tests.unit.spans.samples.otlpjson import SPAN, TRACE, otlp_span, request
from tests.unit.spans.samples.requests import grouped
from tests.unit.spans.strategies import expected_value, same, spans


def decode(obj: Any) -> DecodeResult:
    decoder = make_decoder("otlp-json", orphan_timeout_ns=0, default_service="fallback")
    result: DecodeResult = decoder.feed(obj if isinstance(obj, bytes) else orjson.dumps(obj), 0)
    return result


def test_spec_example_request() -> None:
    result = decode(request(otlp_span()))
    assert result.dead == []
    (span,) = result.spans
    assert span.trace_id == bytes.fromhex(TRACE)
    assert span.kind == KIND_CLIENT
    assert (span.start_ns, span.end_ns) == (1544712660000000000, 1544712661000000000)
    assert span.attributes == {
        "db.system": "mysql",
        "rows": 42,
        "ratio": 0.5,
        "ok": True,
        "raw": b"\x00\x01",
        "list": [1, None],
        "map": {"a": "b"},
    }
    assert span.events[0].name == "fetch"
    assert (span.status_code, span.status_message) == (STATUS_ERROR, "timeout")
    assert span.service_name == "db-proxy"
    assert span.resource == {}
    assert (span.scope_name, span.scope_version) == ("sqlx", "0.7")


def test_bare_resource_spans_and_snake_case_and_enum_names() -> None:
    span = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "parent_span_id": "eee19b7ec3c1b173",
        "name": "x",
        "kind": "SPAN_KIND_CLIENT",
        "start_time_unix_nano": 1544712660000000000,
        "end_time_unix_nano": 1544712660000000001,
        "status": {"code": "STATUS_CODE_ERROR"},
    }
    result = decode({"resource": {}, "scope_spans": [{"spans": [span]}]})
    (decoded,) = result.spans
    assert decoded.kind == KIND_CLIENT
    assert decoded.status_code == STATUS_ERROR
    assert decoded.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert decoded.service_name == "fallback"


def test_base64_ids_from_protobuf_json_mapping() -> None:
    trace_b64 = base64.b64encode(bytes.fromhex(TRACE)).decode()
    span_b64 = base64.b64encode(bytes.fromhex(SPAN)).decode()
    (span,) = decode(request(otlp_span(traceId=trace_b64, spanId=span_b64))).spans
    assert (span.trace_id, span.span_id) == (bytes.fromhex(TRACE), bytes.fromhex(SPAN))


def test_legacy_instrumentation_library_spans() -> None:
    obj = {
        "resourceSpans": [
            {
                "resource": {},
                "instrumentationLibrarySpans": [
                    {"instrumentationLibrary": {"name": "old"}, "spans": [otlp_span()]}
                ],
            }
        ]
    }
    (span,) = decode(obj).spans
    assert span.scope_name == "old"


def test_a_bad_span_dead_letters_alone() -> None:
    good, bad = otlp_span(), otlp_span(spanId="00000000000000")
    result = decode(request(good, bad, otlp_span(endTimeUnixNano="1")))
    assert len(result.spans) == 1
    assert [d.reason for d in result.dead] == ["bad_span_id", "end_before_start"]
    assert "spans[1]" in result.dead[0].detail
    assert orjson.loads(result.dead[0].raw) == bad


def test_structural_problems_dead_letter_the_line() -> None:
    assert [d.reason for d in decode({"hello": 1}).dead] == ["unknown_format"]
    assert [d.reason for d in decode({"resourceSpans": {"no": "list"}}).dead] == ["bad_field"]
    bad_value = otlp_span(attributes=[{"key": "k", "value": {"intValue": "x"}}])
    assert [d.reason for d in decode(request(bad_value)).dead] == ["bad_field"]


@settings(max_examples=80, deadline=None)
@given(st.lists(spans(), min_size=1, max_size=3))
def test_our_json_encoder_round_trips_through_the_decoder(batch: list[Span]) -> None:
    resources = Resources("default-svc")
    groups, expected = grouped(batch, encode_span_json)
    result = decode(build_request_json(groups, resources))
    assert result.dead == []
    assert len(result.spans) == len(expected)
    for got, span in zip(result.spans, expected, strict=True):
        assert (got.trace_id, got.span_id, got.parent_span_id) == (
            span.trace_id,
            span.span_id,
            span.parent_span_id,
        )
        assert (got.name, got.kind, got.start_ns, got.end_ns) == (
            span.name,
            span.kind,
            span.start_ns,
            span.end_ns,
        )
        assert same(got.attributes, expected_value(span.attributes))
        assert got.service_name == (span.service_name or "default-svc")
        assert (got.status_code, got.status_message) == (span.status_code, span.status_message)
        assert [e.time_ns for e in got.events] == [e.time_ns for e in span.events]
        assert [link.span_id for link in got.links] == [link.span_id for link in span.links]
