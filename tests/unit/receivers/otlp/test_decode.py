"""Request bodies to spans: protobuf through opentelemetry-proto, JSON through the otlp-json
decoder; the same request in both encodings gives the same spans; invalid spans are rejected
alone with a reason, undecodable bodies are a BadRequestError."""

from __future__ import annotations

import base64

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from agent.receivers.otlp.decode import BadRequestError, decode_json, decode_protobuf

START = 1_700_000_000_000_000_000


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def proto_span(index: int, **overrides: object) -> Span:
    fields: dict[str, object] = {
        "trace_id": bytes.fromhex(f"{index + 1:032x}"),
        "span_id": bytes.fromhex(f"{index + 1:016x}"),
        "parent_span_id": bytes.fromhex("00000000000000aa"),
        "name": f"op-{index}",
        "kind": Span.SPAN_KIND_SERVER,
        "start_time_unix_nano": START + index,
        "end_time_unix_nano": START + index + 1_500_000,
        "attributes": [
            kv("http.method", string_value="GET"),
            kv("http.status_code", int_value=200),
            kv("ratio", double_value=0.5),
            kv("ok", bool_value=True),
            kv("blob", bytes_value=b"\x00\x01"),
            kv("list", array_value=ArrayValue(values=[AnyValue(int_value=1)])),
            kv("map", kvlist_value=KeyValueList(values=[kv("k", string_value="v")])),
        ],
        "events": [
            Span.Event(time_unix_nano=START + 10, name="ev", attributes=[kv("a", int_value=1)])
        ],
        "links": [
            Span.Link(
                trace_id=bytes.fromhex("ff" * 16),
                span_id=bytes.fromhex("ee" * 8),
                trace_state="k=v",
                attributes=[kv("l", string_value="x")],
            )
        ],
        "status": Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        "trace_state": "vendor=1",
        "flags": 0x101,
    }
    fields.update(overrides)
    return Span(**fields)  # type: ignore[arg-type]


def request_of(*spans: Span, service: str = "svc") -> ExportTraceServiceRequest:
    resource = Resource(
        attributes=[kv("service.name", string_value=service), kv("host", string_value="h1")]
    )
    scope = InstrumentationScope(name="lib", version="1.2")
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=list(spans))]
            )
        ]
    )


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """The OTLP/JSON form (hex IDs, as the OTLP spec shapes it, not protobuf's base64)."""
    obj = MessageToDict(request)
    for resource_spans in obj["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        link[key] = base64.b64decode(link[key]).hex()
    return orjson.dumps(obj)


def test_protobuf_request_keeps_every_field() -> None:
    decoded = decode_protobuf(request_of(proto_span(0)).SerializeToString())
    assert decoded.rejected_count == 0
    (span,) = decoded.spans
    assert span.trace_id == bytes.fromhex(f"{1:032x}")
    assert span.parent_span_id == bytes.fromhex("00000000000000aa")
    assert span.service_name == "svc"
    assert span.resource == {"host": "h1"}
    assert (span.scope_name, span.scope_version) == ("lib", "1.2")
    assert span.kind == 2 and span.status_code == 2 and span.status_message == "boom"
    assert span.attributes == {
        "http.method": "GET",
        "http.status_code": 200,
        "ratio": 0.5,
        "ok": True,
        "blob": b"\x00\x01",
        "list": [1],
        "map": {"k": "v"},
    }
    assert span.events[0].name == "ev" and span.events[0].attributes == {"a": 1}
    link = span.links[0]
    assert (link.trace_id, link.span_id, link.trace_state) == (b"\xff" * 16, b"\xee" * 8, "k=v")
    assert span.trace_state == "vendor=1" and span.flags == 0x101


def test_json_and_protobuf_give_the_same_spans() -> None:
    request = request_of(proto_span(0), proto_span(1, parent_span_id=b""))
    from_protobuf = decode_protobuf(request.SerializeToString()).spans
    from_json = decode_json(otlp_json(request)).spans
    assert from_json == from_protobuf


def test_invalid_spans_are_rejected_alone_with_reasons() -> None:
    request = request_of(
        proto_span(0),
        proto_span(1, trace_id=b"\x01" * 8),
        proto_span(2, span_id=bytes(8)),
        proto_span(3, end_time_unix_nano=START),
    )
    decoded = decode_protobuf(request.SerializeToString())
    assert [span.name for span in decoded.spans] == ["op-0"]
    assert decoded.rejected == {"bad_trace_id": 1, "bad_span_id": 1, "end_before_start": 1}
    message = decoded.message()
    assert message.startswith("3 spans rejected: bad_trace_id: ")
    assert "traceId has 8 bytes, not 16" in message


def test_message_names_a_few_and_counts_the_rest() -> None:
    spans = [proto_span(i, span_id=bytes(8)) for i in range(10)]
    decoded = decode_protobuf(request_of(*spans).SerializeToString())
    assert decoded.rejected_count == 10
    assert decoded.message().endswith("; and 7 more")


def test_all_zero_parent_means_root() -> None:
    decoded = decode_protobuf(
        request_of(proto_span(0, parent_span_id=bytes(8))).SerializeToString()
    )
    assert decoded.spans[0].parent_span_id == b""


def test_empty_requests_are_valid() -> None:
    assert decode_protobuf(b"").spans == []
    assert decode_json(b"{}").spans == []
    assert decode_json(b'{"resourceSpans": []}').spans == []


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc", b"not protobuf at all \x00"])
def test_undecodable_protobuf_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequestError, match="not an OTLP ExportTraceServiceRequest"):
        decode_protobuf(body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"spans": []}', "no resourceSpans"),
        (b'{"resourceSpans": 7}', "bad_field"),
    ],
)
def test_bad_json_is_a_bad_request(body: bytes, match: str) -> None:
    with pytest.raises(BadRequestError, match=match):
        decode_json(body)


def test_json_span_with_bad_id_is_rejected_alone() -> None:
    request = request_of(proto_span(0), proto_span(1))
    obj = orjson.loads(otlp_json(request))
    obj["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "xyz"
    decoded = decode_json(orjson.dumps(obj))
    assert [span.name for span in decoded.spans] == ["op-0"]
    assert decoded.rejected == {"bad_trace_id": 1}


def test_received_spans_count_as_sampled() -> None:
    # Python's SDK writes only the parent-is-remote bits; the span was sampled all the same.
    request = request_of(proto_span(0, flags=0x100), proto_span(1, flags=0))
    for decoded in (
        decode_protobuf(request.SerializeToString()),
        decode_json(otlp_json(request)),
    ):
        assert [span.flags for span in decoded.spans] == [0x101, None]
